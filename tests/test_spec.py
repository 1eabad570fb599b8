"""Region specs: every shipped spec loads; malformed specs raise one clear, documented error."""

from __future__ import annotations

import pytest

from plateaug import RegionSpecError, builtin_regions, load_region

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
