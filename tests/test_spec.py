"""Region specs: every shipped spec loads; malformed specs raise one clear, documented error."""

from __future__ import annotations

import pytest
import torch
from fixtures import digits_spec

from plateaug import RegionSpecError, builtin_regions, load_region, sample_text

REQUIRED = {"cn_blue", "cn_green", "eu_de", "br_old", "br_mercosur", "us"}


def test_required_regions_ship_and_load():
    assert REQUIRED <= set(builtin_regions())
    for name in builtin_regions():
        spec = load_region(name)
        assert spec.name == name
        assert spec.canvas[0] % 16 == 0 and spec.canvas[1] % 16 == 0
        assert spec.max_len >= 5


def test_cn_blue_has_all_31_provinces():
    spec = load_region("cn_blue")
    assert len(spec.class_map["P"].chars) == 31
    assert spec.max_len == 7 and load_region("cn_green").max_len == 8


def test_user_spec_by_path(write_spec, mini_spec_text):
    spec = load_region(write_spec(mini_spec_text))
    assert spec.name == "mini" and spec.charset == "0123456789ABCXYZ"


def test_unknown_region_name_lists_shipped():
    with pytest.raises(ValueError, match="unknown region 'atlantis'.*cn_blue"):
        load_region("atlantis")


def test_missing_file():
    with pytest.raises(RegionSpecError, match="file not found"):
        load_region("/nonexistent/dir/region.toml")


# (case, edit to the valid mini spec, expected key, expected words in the reason)
MALFORMED = [
    ("unknown top key", lambda s: 'colour = "#ffffff"\n' + s, "colour", "unknown key"),
    ("unknown nested key", lambda s: s.replace("gap_mm = 4", "gap_mm = 4\nkerning = 1"), "rows[0].kerning",
     "unknown key"),
    ("missing field", lambda s: s.replace('size_mm = [300, 100]\n', ""), "size_mm", "missing required field"),
    ("wrong type", lambda s: s.replace("height_mm = 70", 'height_mm = "tall"'), "rows[0].height_mm",
     "expected float"),
    ("negative size", lambda s: s.replace("size_mm = [300, 100]", "size_mm = [-300, 100]"), "size_mm",
     "must be positive"),
    ("zero char width", lambda s: s.replace("char_width_mm = 36", "char_width_mm = 0"), "rows[0].char_width_mm",
     "must be > 0"),
    ("canvas not multiple of 16", lambda s: s.replace("canvas_px = [64, 192]", "canvas_px = [60, 192]"),
     "canvas_px", "multiples of 16"),
    ("impossible layout", lambda s: s.replace("char_width_mm = 36", "char_width_mm = 60"), "patterns[0].pattern",
     "impossible layout"),
    ("row outside plate", lambda s: s.replace("y_mm = 15", "y_mm = 50"), "rows[0]", "not inside"),
    ("char not in font", lambda s: s.replace('L = "ABCXYZ"', 'L = "ABCЖ"'), "classes.L.chars",
     "not in font"),
    ("CJK char not in Latin font", lambda s: s.replace('L = "ABCXYZ"', 'L = "AB京"'), "classes.L.chars",
     "not in font"),
    ("unknown font", lambda s: s.replace('font = "DejaVuSansCondensed-Bold"', 'font = "Comic"'), "text.font",
     "not found"),
    ("bad colour", lambda s: s.replace('colors = ["#101010"]', 'colors = ["black"]'), "text.colors",
     "colour"),
    ("empty patterns", lambda s: "patterns = []\n" + s[: s.index("[[patterns]]")], "patterns",
     "at least one pattern"),
    ("unknown token", lambda s: s.replace('pattern = "L L L - D D D"', 'pattern = "L L Q D"'),
     "patterns[0].pattern", "unknown tokens"),
    ("pattern without chars", lambda s: s.replace('pattern = "L L L - D D D"', 'pattern = "-"'),
     "patterns[0].pattern", "no character slot"),
    ("too many rows", lambda s: s.replace('pattern = "L L L - D D D"', 'pattern = "L L / D D"'),
     "patterns[0].pattern", "rows"),
    ("bad separator shape", lambda s: s.replace('shape = "hyphen"', 'shape = "star"'), "separators.-.shape",
     "expected one of"),
    ("duplicate chars", lambda s: s.replace('L = "ABCXYZ"', 'L = "AAB"'), "classes.L.chars", "distinct"),
    ("bad name", lambda s: s.replace('name = "mini"', 'name = "my region"'), "name", "identifier"),
    ("not toml", lambda s: "this is = = not toml\n" + s, "-", "not valid TOML"),
]


@pytest.mark.parametrize("case,edit,key,reason", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_spec_errors(write_spec, mini_spec_text, case, edit, key, reason):
    path = write_spec(edit(mini_spec_text), name=case.replace(" ", "_"))
    with pytest.raises(RegionSpecError) as info:
        load_region(path)
    err = info.value
    assert err.file == str(path.resolve())
    assert err.key == key, str(err)
    assert reason in err.reason, str(err)
    assert str(path.resolve()) in str(err) and key in str(err)


FONTS_SPEC = digits_spec('["OSP-DIN", "DejaVuSansCondensed-Bold"]')


def test_a_font_list_gives_each_plate_one_typeface(write_spec):
    from plateaug import encode_texts, render

    spec = load_region(write_spec(FONTS_SPEC))
    assert spec.n_fonts == 2 and [f.stem for f in spec.classes[0].fonts] == ["OSP-DIN", "DejaVuSansCondensed-Bold"]
    texts = encode_texts(spec, ["123456", "123456"])
    style = texts.style.clone()
    style[:, -1] = torch.tensor([0, 1])  # the last style column is the typeface
    plates = render(spec, type(texts)(texts.texts, texts.pattern, texts.local, texts.lengths, style))
    a, b = plates.images
    assert (a - b).abs().max() > 0.5, "two typefaces drew the same pixels"
    assert plates.texts == ["123456", "123456"]
    for img, boxes in zip(plates.images, plates.char_boxes):  # each box holds its own glyph's ink
        ink = img.mean(0) < 0.5
        for x0, y0, x1, y1 in boxes.round().long().tolist():
            assert ink[y0:y1, x0:x1].any()
        assert ink.sum() <= sum(ink[y0:y1, x0:x1].sum() for x0, y0, x1, y1 in boxes.round().long().tolist()) + 4
    sampled = sample_text(spec, 400, torch.Generator().manual_seed(0))
    counts = torch.bincount(sampled.style[:, -1], minlength=2)
    assert counts.min() > 120  # both typefaces are drawn


def test_font_list_errors_name_the_key(write_spec):
    bad = FONTS_SPEC.replace('font = ["OSP-DIN", "DejaVuSansCondensed-Bold"]', 'font = ["OSP-DIN", "NoSuchFont"]')
    with pytest.raises(RegionSpecError, match=r"\[text.font\].*NoSuchFont"):
        load_region(write_spec(bad))
    many = FONTS_SPEC.replace('font = ["OSP-DIN", "DejaVuSansCondensed-Bold"]', "font = [" + ", ".join(
        ['"OSP-DIN"'] * 17) + "]")
    with pytest.raises(RegionSpecError, match=r"\[text.font\].*1 to 16 fonts"):
        load_region(write_spec(many))
    cjk = FONTS_SPEC.replace('D = "0123456789"', 'D = { chars = "0123456789", font = ["OSP-DIN", "NotoSansSC-Bold"] }')
    assert load_region(write_spec(cjk, "cjk")).n_fonts == 2


def test_draw_as_draws_another_glyph_and_keeps_the_label(write_spec):
    """`draw_as = { "1" = "l" }`: the pixels show the typeface's "l" (a plain bar), the label stays "1",
    and the character box still holds that ink."""
    from plateaug import encode_texts, render

    plain = load_region(write_spec(FONTS_SPEC.replace('font = ["OSP-DIN", "DejaVuSansCondensed-Bold"]',
                                                      'font = "DejaVuSansCondensed-Bold"'), "plain"))
    barred = load_region(write_spec(FONTS_SPEC.replace('font = ["OSP-DIN", "DejaVuSansCondensed-Bold"]',
                                                       'font = "DejaVuSansCondensed-Bold"').replace(
        'D = "0123456789"', 'D = { chars = "0123456789", draw_as = { "1" = "l" } }'), "barred"))
    assert barred.classes[0].draw_as == (("1", "l"),) and barred.classes[0].glyph("1") == "l"
    a, b = (render(s, encode_texts(s, ["111111", "222222"])) for s in (plain, barred))
    assert b.texts == ["111111", "222222"]
    assert torch.equal(a.images[1], b.images[1]), "characters without draw_as changed"
    ink_a, ink_b = (x.images[0].mean(0) < 0.5 for x in (a, b))
    assert ink_b.sum() < ink_a.sum() * 0.8, "DejaVu's 1 (flag and foot) was not replaced by the bar l"
    for box_a, box_b in zip(a.char_boxes[0].round().long().tolist(), b.char_boxes[0].round().long().tolist()):
        x0, y0, x1, y1 = box_b  # the box fits the bar: narrower than the flagged 1's, nearly all ink
        assert x1 - x0 < box_a[2] - box_a[0]
        assert ink_b[y0:y1, x0:x1].float().mean() > 0.8
    assert ink_b.sum() <= sum(ink_b[y0:y1, x0:x1].sum() for x0, y0, x1, y1 in b.char_boxes[0].round().long().tolist())


@pytest.mark.parametrize("field,table,key,reason", [
    ("draw_as", '{ "X" = "l" }', "classes.D.draw_as", "not a character of the class"),
    ("draw_as", '{ "12" = "l" }', "classes.D.draw_as", "not a character of the class"),
    ("draw_as", '{ "1" = "ll" }', "classes.D.draw_as.1", "one non-space character"),
    ("draw_as", '{ "1" = 1 }', "classes.D.draw_as.1", "one non-space character"),
    ("draw_as", '{ "1" = "京" }', "classes.D.draw_as", "not in font"),
    ("draw_as", '"1l"', "classes.D.draw_as", "expected dict"),
    ("weights", '{ "X" = 2 }', "classes.D.weights", "not a character of the class"),
    ("weights", '{ "1" = 0 }', "classes.D.weights.1", "must be > 0"),
    ("weights", '{ "1" = -2 }', "classes.D.weights.1", "must be > 0"),
    ("weights", '{ "1" = 1e9 }', "classes.D.weights.1", "must be <= 1e+06"),
    ("weights", '{ "1" = "many" }', "classes.D.weights.1", "expected float"),
    ("weights", '{ "1" = nan }', "classes.D.weights.1", "finite"),
    ("weights", '[1, 2]', "classes.D.weights", "expected dict"),
])
def test_class_draw_as_and_weights_errors_name_the_key(write_spec, field, table, key, reason):
    bad = FONTS_SPEC.replace('D = "0123456789"', f'D = {{ chars = "0123456789", {field} = {table} }}')
    with pytest.raises(RegionSpecError) as info:
        load_region(write_spec(bad))
    assert info.value.key == key and reason in info.value.reason, str(info.value)


def test_character_weights_set_how_often_each_character_is_drawn(write_spec):
    """`weights = { "7" = 9 }`: the listed characters drawn that many times as often as the rest (which
    weigh 1), every character still drawn; the other classes, patterns and styles stay as without."""
    two = FONTS_SPEC.replace('D = "0123456789"', 'D = "0123456789"\nL = "ABCXYZ"').replace(
        'pattern = "D D D D D D"', 'pattern = "L L L D D D"')
    plain = load_region(write_spec(two, "plain"))
    weighted = load_region(write_spec(two.replace(
        'D = "0123456789"', 'D = { chars = "0123456789", weights = { "7" = 9, "0" = 0.5 } }'), "weighted"))
    assert weighted.class_map["D"].weights == (0.5, 1, 1, 1, 1, 1, 1, 9, 1, 1) and plain.class_map["D"].weights == ()
    texts = sample_text(weighted, 4000, torch.Generator().manual_seed(0)).texts
    digits = [ch for t in texts for ch in t[3:]]
    share = {d: digits.count(d) / len(digits) for d in "0123456789"}
    assert abs(share["7"] - 9 / 17.5) < 0.02 and abs(share["0"] - 0.5 / 17.5) < 0.01
    assert all(abs(share[d] - 1 / 17.5) < 0.01 for d in "12345689")
    a = sample_text(plain, 64, torch.Generator().manual_seed(3))
    b = sample_text(weighted, 64, torch.Generator().manual_seed(3))
    assert torch.equal(a.pattern, b.pattern) and torch.equal(a.style, b.style)
    assert [t[:3] for t in a.texts] == [t[:3] for t in b.texts]  # the letters: the same draws
    assert [t[3:] for t in a.texts] != [t[3:] for t in b.texts]


def test_one_font_specs_keep_their_style_columns(write_spec):
    one = FONTS_SPEC.replace('font = ["OSP-DIN", "DejaVuSansCondensed-Bold"]', 'font = "OSP-DIN"')
    spec = load_region(write_spec(one))
    assert spec.n_fonts == 1 and sample_text(spec, 3, torch.Generator().manual_seed(0)).style.shape == (3, 2)


def test_every_bundled_font_is_documented_with_its_licence():
    """A font ships only with its source and licence named in fonts/README.md, and that licence file."""
    from plateaug.renderer.spec import FONTS_DIR

    readme = (FONTS_DIR / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    fonts = sorted(p.name for p in FONTS_DIR.iterdir() if p.suffix in (".ttf", ".otf"))
    assert len(fonts) >= 9
    for name in fonts:
        row = next((r for r in rows if f"`{name}`" in r), None)
        assert row is not None, f"{name} is not in fonts/README.md"
        licences = [w.strip("`:,.") for w in row.split() if w.strip("`:,.").startswith("LICENSE-")]
        assert licences and all((FONTS_DIR / lic).is_file() for lic in licences), (name, licences)
    faces = sorted(p.name for p in FONTS_DIR.iterdir() if p.is_dir())  # bitmap typefaces: a row per family
    for name in faces:
        family = name.rsplit("_", 1)[0]
        row = next((r for r in rows if f"`{family}_0`" in r), None)
        assert row is not None and ("AGPL-3.0" in row or "MIT" in row), f"{name} is not in fonts/README.md"
    used = {f.name for r in builtin_regions() for c in load_region(r).classes for f in c.fonts}
    assert used <= set(fonts) | set(faces) and {"BarlowSemiCondensed-SemiBold.ttf", "Oswald-Medium.ttf"} <= used
