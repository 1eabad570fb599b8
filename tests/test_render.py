"""Renderer: shapes, labels that match pixels, determinism, batch == one by one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from plateaug import builtin_regions, encode_texts, load_region, render, sample_text
from plateaug.renderer.draw import Renderer


def _sample(region, n, seed=0):
    return sample_text(region, n, torch.Generator().manual_seed(seed))


def _assert_boxes_hold_ink(image, background, boxes, min_share, what):
    """Every box (n, 4) xyxy of `image` (3, H, W) has >= min_share of its pixels far (> 0.3) from
    the plate drawn without text, `background` (3, H, W)."""
    for x0, y0, x1, y1 in boxes.long().tolist():
        diff = (image[:, y0:y1, x0:x1] - background[:, y0:y1, x0:x1]).abs().amax(0)
        assert (diff > 0.3).float().mean() > min_share, f"{what}: a character box holds no ink"


def _without_text(spec, background_style: torch.Tensor) -> torch.Tensor:
    """The background layer(s) (..., 3, H, W) that the background style value(s) draw."""
    r = Renderer(spec)
    return r.backgrounds[r.background_slots[background_style]]


@pytest.mark.parametrize("region", builtin_regions())
def test_every_region_renders_on_cpu(region):
    spec = load_region(region)
    batch = _sample(region, 8)
    plates = render(spec, batch)
    H, W = spec.canvas
    assert plates.images.shape == (8, 3, H, W) and plates.images.dtype == torch.float32
    assert 0.0 <= plates.images.min() and plates.images.max() <= 1.0
    assert plates.lengths.tolist() == [len(t) for t in plates.texts]
    assert plates.char_boxes.shape == (8, spec.max_len, 4)
    assert torch.equal(plates.corners[0], torch.tensor([[0.0, 0], [W, 0], [W, H], [0, H]]))
    for b, text in enumerate(plates.texts):
        n = len(text)
        boxes = plates.char_boxes[b, :n]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= W).all() and (boxes[:, 3] <= H).all(), "box outside the plate"
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (plates.char_boxes[b, n:] == 0).all(), "padding rows must be zero"
        assert (boxes[1:, 0] >= boxes[:-1, 0]).all(), "boxes follow reading order"
        # every box holds ink: pixels far from this plate's background layer (text colour)
        bg = _without_text(spec, batch.style[b, 0])  # (3, H, W) plate without text
        _assert_boxes_hold_ink(plates.images[b], bg, boxes, 0.15, f"{region} {text!r}")


def test_labels_match_pixels_exactly(write_spec, mini_spec_text):
    """On a flat background, every pixel that differs from the background lies in a character
    box or the separator, every box is tight around its glyph's ink."""
    spec = load_region(write_spec(mini_spec_text))
    plates = render(spec, _sample(spec, 16, seed=3))
    bg = torch.tensor([0xC8 / 255] * 3)[:, None, None]
    ink = (plates.images - bg).abs().amax(1) > 1 / 255  # (B, H, W)
    sep = Renderer(spec).separators[0, 0] > 0  # hyphen mask (H, W)
    for b in range(16):
        inside = torch.zeros_like(ink[b])
        for x0, y0, x1, y1 in plates.char_boxes[b, : plates.lengths[b]].long().tolist():
            inside[y0:y1, x0:x1] = True
            glyph = ink[b, y0:y1, x0:x1]
            rows, cols = glyph.any(1).nonzero(), glyph.any(0).nonzero()
            # tight: ink touches all four sides of the box
            assert rows.min() == 0 and rows.max() == y1 - y0 - 1
            assert cols.min() == 0 and cols.max() == x1 - x0 - 1
        stray = ink[b] & ~inside & ~sep
        assert not stray.any(), f"ink outside character boxes at {stray.nonzero()[:3].tolist()}"


def test_same_seed_same_plates_different_seed_different():
    a, b, c = (render("eu_de", _sample("eu_de", 32, s)) for s in (7, 7, 8))
    assert a.texts == b.texts and torch.equal(a.images, b.images) and torch.equal(a.char_boxes, b.char_boxes)
    assert a.texts != c.texts


@pytest.mark.parametrize("region", ["us", "eu_de", "cn_green"])
def test_batch_equals_one_by_one(region):
    batch = _sample(region, 12, seed=5)
    together = render(region, batch)
    for i in range(12):
        one = render(region, batch[i])
        again = render(region, encode_texts(region, [batch.texts[i]], batch.style[i: i + 1], batch.pattern[i: i + 1],
                                            batch.stroke[i: i + 1]))
        assert torch.equal(one.images, again.images)
        assert one.texts == [together.texts[i]]
        assert torch.allclose(one.images[0], together.images[i], atol=1e-6)
        assert torch.equal(one.char_boxes[0], together.char_boxes[i])


def test_render_plain_strings_and_errors():
    plates = render("br_mercosur", ["ABC1D23", "XYZ9A99"])
    assert plates.texts == ["ABC1D23", "XYZ9A99"] and plates.images.shape[0] == 2
    with pytest.raises(ValueError, match="matches no pattern"):
        render("br_mercosur", ["ABC-1234"])
    with pytest.raises(ValueError, match="positive int"):
        sample_text("us", 0)
    with pytest.raises(ValueError, match="not made for region"):
        render("us", _sample("cn_blue", 2))


def test_text_sampling_follows_grammar():
    spec = load_region("cn_green")
    batch = _sample(spec, 500, seed=1)
    provinces = spec.class_map["P"].chars
    for t in batch.texts:
        assert len(t) == 8 and t[0] in provinces and t[1] in spec.class_map["L"].chars
        assert t[2] in "DF" or t[7] in "DF"
    assert len(set(batch.texts)) > 490  # random, not repeating


def test_render_cli_writes_plates_outlines_and_sheet(tmp_path):
    from plateaug.render import main

    assert main(["--region", "br_old", "-n", "3", "--out", str(tmp_path), "--boxes"]) == 0
    labels = json.loads((tmp_path / "labels.json").read_text(encoding="utf-8"))
    assert len(labels) == 3 and all(len(r["char_boxes"]) == len(r["text"]) == 7 for r in labels)
    assert (tmp_path / "br_old_sheet.png").stat().st_size > 1000
    assert len(list(tmp_path.glob("br_old_0000?.png"))) == 3
    assert len(list(tmp_path.glob("*_outline.png"))) == 3


def test_strings_with_separators_pick_their_pattern():
    spec = load_region("us")
    a = encode_texts(spec, ["ABC 123", "123 ABC", "ABC-1234", "ABC123"])
    assert a.texts == ["ABC123", "123ABC", "ABC1234", "ABC123"]
    tokens = [" ".join(spec.patterns[int(p)].tokens) for p in a.pattern]
    assert tokens[:3] == ["L L L _ D D D", "D D D _ L L L", "L L L - D D D D"]
    with pytest.raises(ValueError, match="matches no pattern"):
        encode_texts(spec, ["ABC+123"])


@pytest.mark.parametrize("region", builtin_regions())
def test_every_typeface_of_every_region_draws_its_characters(region):
    """Each of a region's typefaces (forced through the style's last column) draws ink in every
    character box, and no two typefaces draw the same plate."""
    spec = load_region(region)
    batch = _sample(region, 6, seed=1)
    bg = _without_text(spec, batch.style[:, 0])  # (6, 3, H, W) plates without text
    drawn = []
    for v in range(spec.n_fonts):
        style = batch.style.clone()
        if spec.n_fonts > 1:
            style[:, -1] = v
        plates = render(spec, type(batch)(batch.texts, batch.pattern, batch.local, batch.lengths, style,
                                          torch.zeros(6)))
        for b, text in enumerate(plates.texts):
            _assert_boxes_hold_ink(plates.images[b], bg[b], plates.char_boxes[b, : len(text)], 0.1,
                                   f"{region} typeface {v} {text!r}")
        drawn.append(plates.images)
    for i in range(len(drawn)):
        for j in range(i + 1, len(drawn)):
            assert (drawn[i] - drawn[j]).abs().amax() > 0.5, f"{region}: typefaces {i} and {j} draw the same plates"


def test_slovak_arms_emblem_is_drawn_left_of_the_characters():
    """eu_sk_old: a red shield with a white cross and blue hills over "SK" in the band, every
    character to its right (a recogniser must learn that the arms are not a character)."""
    spec = load_region("eu_sk_old")
    plates = render(spec, encode_texts(spec, ["RK-755AJ", "BA738DE"]))
    H, W = spec.canvas
    band_right = round(42 / spec.size_mm[0] * W)  # the band ends at 6 + 36 mm
    for b in range(2):
        img = plates.images[b]  # (3, H, W)
        r, g, bl = img
        band = (slice(0, H), slice(0, band_right))
        red = (r > 0.7) & (g < 0.35) & (bl < 0.35)
        blue = (bl > 0.45) & (r < 0.3) & (g < 0.55)
        white = (img.amin(0) > 0.85)
        ys, xs = red.nonzero(as_tuple=True)
        assert len(ys) >= 20 and xs.max() < band_right, "no red shield in the band"
        assert ys.max() < H * 0.55, "the shield belongs in the upper part of the band"
        shield = (slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
        assert white[shield].sum() >= 4, "no white double cross on the shield"
        assert blue[band].sum() >= 4, "no blue hills"
        assert not red[:, band_right:].any() and not blue[:, band_right:].any(), "arms colours outside the band"
        dark = img.amax(0) < 0.3  # "SK" under the arms
        assert dark[int(H * 0.55):H - 3, 3:band_right].sum() >= 10, "no SK under the arms"
        n = int(plates.lengths[b])
        assert (plates.char_boxes[b, :n, 0] >= band_right).all(), "a character box over the arms"



def test_contact_sheet_draws_boxes_smaller_than_a_pixel(tmp_path):
    """A far-away plate's character boxes shrink below a pixel on the sheet: drawn, not an error."""
    from PIL import Image

    from plateaug.writers.sheet import contact_sheet

    contact_sheet([[torch.zeros(3, 64, 128)]], tmp_path / "s.png", boxes=[torch.tensor([[10.0, 10.0, 10.3, 10.2]])],
                  cell_h=32)
    with Image.open(tmp_path / "s.png") as im:
        assert np.asarray(im.convert("RGB"))[..., 0].max() == 255  # the box's colour (255, 0, 160) is there
