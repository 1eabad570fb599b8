"""Bitmap typefaces (renderer/bitmap_font.py): folders of glyph images a spec names like a font,
their checks, and the glyphs `python -m plateaug.glyphs` cuts from labelled crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import digits_spec
from PIL import Image

from plateaug import encode_texts, render
from plateaug.renderer.bitmap_font import load_bitmap_typeface
from plateaug.renderer.spec import RegionSpecError
from plateaug.renderer.spec_loader import load_region

SPEC = digits_spec('["DejaVuSansCondensed-Bold", "{face}"]', "bitmap")


def make_typeface(folder: Path, glyphs: dict[str, np.ndarray], meta: str = 'fallback = "DejaVuSansCondensed-Bold"\n'):
    folder.mkdir(parents=True)
    (folder / "typeface.toml").write_text(meta, encoding="utf-8")
    for ch, ink in glyphs.items():
        Image.fromarray(ink).save(folder / f"{ord(ch):04x}.png")
    return folder


def ring(h: int = 80, w: int = 40, t: int = 8) -> np.ndarray:
    """A hollow rectangle: white ink on black, (h, w) uint8."""
    a = np.full((h, w), 255, np.uint8)
    a[t:-t, t:-t] = 0
    return a


def render_variant(spec, text: str, variant: int) -> torch.Tensor:
    batch = encode_texts(spec, [text])
    style = batch.style.clone()
    style[:, -1] = variant  # the last style column is the typeface
    plates = render(spec, type(batch)(batch.texts, batch.pattern, batch.local, batch.lengths, style))
    return plates


def test_a_bitmap_typeface_draws_its_images_and_falls_back_for_the_rest(tmp_path, write_spec):
    face = make_typeface(tmp_path / "face", {"0": ring()})
    spec = load_region(write_spec(SPEC.replace("{face}", str(face))))
    assert spec.n_fonts == 2
    font = render_variant(spec, "010101", 0)
    bitmap = render_variant(spec, "010101", 1)
    ink = bitmap.images[0].mean(0) < 0.5  # (H, W)
    x0, y0, x1, y1 = bitmap.char_boxes[0, 0].round().long().tolist()
    ys, xs = torch.nonzero(ink[y0:y1, x0:x1], as_tuple=True)
    assert len(xs) and (ink.sum() - ink[y0:y1, x0:x1].sum()) < ink.sum()  # the box holds the glyph's ink
    cell = ink[y0:y1, x0:x1][ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    # the image's shape: ink all round its edge, none in its middle
    assert cell[0].float().mean() > 0.9 and cell[-1].float().mean() > 0.9
    assert cell[:, 0].float().mean() > 0.9 and cell[:, -1].float().mean() > 0.9
    h, w = cell.shape
    assert not cell[h // 3: 2 * h // 3, w // 3: 2 * w // 3].any()
    assert (font.images[0][:, y0:y1, x0:x1] - bitmap.images[0][:, y0:y1, x0:x1]).abs().max() > 0.5
    # "1" has no image: the fallback font draws it, the same pixels as the font variant
    x0, y0, x1, y1 = bitmap.char_boxes[0, 1].round().long().tolist()
    assert torch.equal(bitmap.char_boxes[0, 1], font.char_boxes[0, 1])
    assert torch.allclose(bitmap.images[0][:, y0:y1, x0:x1], font.images[0][:, y0:y1, x0:x1])
    assert bitmap.texts == ["010101"]


@pytest.mark.parametrize("edit, reason", [
    (lambda d: (d / "typeface.toml").write_text("fallback = = x"), "not valid TOML"),
    (lambda d: (d / "typeface.toml").write_text('colour = "red"'), "unknown keys"),
    (lambda d: (d / "typeface.toml").write_text('fallback = "NoSuchFont"'), "fallback font 'NoSuchFont' not found"),
    (lambda d: (d / "0030.png").write_bytes(b"\x89PNG\r\n\x1a\n broken"), "0030.png is not a readable image"),
    (lambda d: Image.fromarray(np.zeros((8, 8), np.uint8)).save(d / "0030.png"), "0030.png has no ink"),
    (lambda d: Image.fromarray(ring()).save(d / "zero.png"), "zero.png: a glyph image is named by its codepoint"),
    (lambda d: Image.new("L", (1100, 20), 255).save(d / "0030.png"), "1100x20 px"),
])
def test_a_bad_typeface_is_refused_naming_the_key_and_the_problem(tmp_path, write_spec, edit, reason):
    face = make_typeface(tmp_path / "face", {"2": ring()})
    edit(face)
    with pytest.raises(RegionSpecError, match=r"\[text.font\]") as err:
        load_region(write_spec(SPEC.replace("{face}", str(face))))
    assert reason in str(err.value) and str(face) in str(err.value)


def test_characters_neither_drawn_nor_in_the_fallback_are_named(tmp_path, write_spec):
    face = make_typeface(tmp_path / "face", {"0": ring()}, meta="")  # no fallback
    with pytest.raises(RegionSpecError, match=r"characters '123456789' are not in font face"):
        load_region(write_spec(SPEC.replace("{face}", str(face))))
    full = make_typeface(tmp_path / "full", {ch: ring() for ch in "0123456789"}, meta="")
    assert load_region(write_spec(SPEC.replace("{face}", str(full)), "full")).n_fonts == 2
    assert sorted(load_bitmap_typeface(full.resolve()).glyphs) == list("0123456789")


def test_the_shipped_real_typefaces_load_and_say_their_source_and_licence(monkeypatch):
    """plateaug ships the MIT CCPD typefaces; the AGPL-3.0 openalpr ones are the extras pack's."""
    import plateaug.renderer.spec_loader as spec_loader
    from plateaug.renderer.spec import FONTS_DIR

    extras = Path(__file__).resolve().parent.parent / "extras" / "openalpr" / "plateaug_openalpr" / "fonts"
    shipped = sorted(p for p in FONTS_DIR.iterdir() if p.is_dir())
    packed = sorted(p for p in extras.iterdir() if p.is_dir())
    assert {p.name.rsplit("_", 1)[0] for p in shipped} == {"real-cn"}
    assert {p.name.rsplit("_", 1)[0] for p in packed} == {"real-us", "real-br", "real-eu"}
    for p in shipped + packed:
        tf = load_bitmap_typeface(p)
        assert tf.fallback is not None and tf.source and tf.license, p.name
        assert tf.license.startswith("AGPL-3.0" if p in packed else "MIT"), p.name
    monkeypatch.setattr(spec_loader, "installed_font_dirs", lambda: (extras,))
    for region, face in (("cn_blue", "real-cn"), ("us", "real-us"), ("br_old", "real-br"), ("eu_sk", "real-eu"),
                         ("eu_sk_old", "real-eu")):
        fonts = load_region(region).classes[-1].fonts
        assert sum(f.name.startswith(face) for f in fonts) == 8, region


def write_crops(folder: Path, n: int = 16) -> list[str]:
    """n clean cn_blue renders as labelled "real" crops (labels.csv), first typeface and colours."""
    folder.mkdir(parents=True)
    texts = [f"皖A·{k:02d}{(7 * k) % 100:02d}8".replace("·", "") for k in range(n)]
    images = render("cn_blue", encode_texts("cn_blue", texts)).images.clamp(0, 1)
    rows = ["file,region,text"]
    for k, (t, img) in enumerate(zip(texts, images)):
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(folder / f"p{k}.png")
        rows.append(f"p{k}.png,cn,{t}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return texts


def test_glyphs_cli_cuts_each_character_as_drawn_and_never_overwrites(tmp_path, write_spec, capsys):
    from plateaug.glyphs import main
    from plateaug.renderer.atlas import fit_ink, glyph_ink
    from plateaug.training.realdata import is_validation

    texts = write_crops(tmp_path / "crops")
    train = [t for k, t in enumerate(texts) if not is_validation(f"p{k}.png")]
    out = tmp_path / "glyphs"
    assert main(["--real", str(tmp_path / "crops"), "--out", str(out), "--regions", "cn", "--variants", "2",
                 "--threads", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cn_0", "cn_1"]
    face = load_bitmap_typeface((out / "cn_0").resolve())
    assert face.fallback is not None and face.fallback.stem.startswith("NotoSansSC")
    drawn = {("l" if ch == "1" else ch) for t in train for ch in t}  # cn_blue draws 1 as a plain l
    assert set(face.glyphs) <= drawn and len(face.glyphs) >= len(drawn) - 2
    spec = load_region("cn_blue")
    font = spec.class_map["D"].fonts[0]
    for ch in "0248":  # each cut has its character's shape: it matches the typeface that drew the crops
        if ch not in face.glyphs:
            continue
        ink = face.glyphs[ch]
        cut = np.asarray(ink, np.float32) / 255
        ref = fit_ink(glyph_ink(font, ch), ink.width, ink.height, "stretch")
        corr = np.corrcoef(cut.ravel(), ref.ravel())[0, 1]
        assert corr > 0.75, (ch, corr)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["--real", str(tmp_path / "crops"), "--out", str(out), "--regions", "cn", "--variants", "2"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no half-written folder left
    spec_text = SPEC.replace('"{face}"', f'"{out / "cn_0"}", "{out / "cn_1"}"')
    assert load_region(write_spec(spec_text)).n_fonts == 3


def test_a_cell_cut_is_white_ink_on_black_whatever_the_plates_colours():
    from plateaug.training.real_glyphs import cut_cell

    rendered = torch.full((40, 24), 0.9)  # dark ink on a light render
    rendered[6:34, 6:10] = 0.1
    rendered[6:10, 6:18] = 0.1  # a Γ: a stem and a bar on top
    real = 1.0 - rendered * 0.6  # the real crop: light ink on a dark plate, lower contrast
    cut = cut_cell(real, rendered)
    assert cut is not None
    ink, corr = cut
    assert corr > 0.9 and ink.dtype == np.uint8
    assert ink.shape[0] >= 4 * 26 and ink.max() == 255  # cropped to the ink, 4x upsampled
    h, w = ink.shape
    assert ink[: h // 5].mean() > ink[-h // 3:, -w // 2:].mean() + 100  # the bar on top, no ink at bottom right
    noise = torch.rand(40, 24, generator=torch.Generator().manual_seed(0))
    assert cut_cell(noise, rendered) is None  # no character there: no cut
    assert cut_cell(torch.full((40, 24), 0.5), rendered) is None  # a flat cell: no cut


def test_the_plates_border_is_not_cut_into_a_glyph_but_a_glyphs_own_bar_is():
    from plateaug.training.real_glyphs import border_rows, cut_cell

    rendered = torch.full((40, 96), 0.9)  # a line of four cells, dark ink on a light plate
    for x in (4, 28, 52, 76):
        rendered[8:34, x: x + 4] = 0.1  # a stem per cell
    rendered[8:12, 4:18] = 0.1  # the first cell's own bar (a Γ), one cell wide
    real = rendered.clone()
    real[3:7] = 0.1  # the real plate's dark border runs along the whole line, touching the glyphs
    rows = border_rows(real, rendered, 0, 96)
    assert rows[3:7].all() and rows[2] and rows[7]  # the border and its edge rows
    assert not rows[9:].any() and not rows[:2].any()  # the bar (rows 8-11) spans one cell: text, kept
    plain = cut_cell(real[:, :24], rendered[:, :24])
    clean = cut_cell(real[:, :24], rendered[:, :24], rows)
    assert plain is not None and clean is not None
    # without the border rows the cut starts at the glyph's bar (rows 8-33: 26 rows, 4x upsampled)
    assert clean[0].shape[0] < plain[0].shape[0] and abs(clean[0].shape[0] - 4 * 26) <= 4
    assert clean[0][:8].mean() > 200  # its top is the bar, full width
    assert not border_rows(torch.full((40, 96), 0.1), rendered, 0, 96).any()  # no contrast: nothing to tell


def test_a_crop_whose_middle_rows_look_like_ink_across_the_line_gives_no_glyphs():
    from plateaug.training.real_glyphs import cut_glyphs
    from plateaug.training.realdata import RealGroup

    texts = ["皖A12345", "皖B67890", "皖C24680", "皖D13579"]
    images = render("cn_blue", encode_texts("cn_blue", texts)).images.clamp(0, 1)  # (4, 3, H, W) light ink
    H = images.shape[2]

    def cut(rows: slice) -> int:
        striped = images.clone()
        striped[:, :, rows] = 1.0  # a light stripe along the whole plate: ink-like across the line
        return len(cut_glyphs(RealGroup("cn", striped, [f"p{k}" for k in range(4)], texts), "cn_blue"))

    assert cut(slice(0, 2)) >= 4 * 5  # along the plate's edge: the glyphs are still cut
    assert cut(slice(H // 2, H // 2 + 2)) == 0  # through the text's middle: the crop is not trusted
