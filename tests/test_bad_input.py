"""Bad input at every public entry point (issue 8): each case ends in one clear error naming the
file / key / reason, or in a counted skip; valid-but-odd images load correctly.

Complements test_spec.py (MALFORMED), test_stream.py (test_bad_arguments), test_onnx_runtime.py
(missing / truncated / junk files, wrong metadata, 3-channel graph), test_generate.py and
test_train.py (their CLI error cases): nothing here repeats a case from those tables.

"""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import plateaug.training.realdata as realdata
from plateaug import PlateGANStream, RegionSpecError, load_region
from plateaug.generate import main as generate_main
from plateaug.generator.checkpoint import FORMAT, atomic_save
from plateaug.generator.onnx_runtime import OnnxGenerator
from plateaug.train import main as train_main
from plateaug.training.realdata import load_image, load_real

# ---- region specs ---------------------------------------------------------------------------------

def sub(old: str, new: str):
    """Edit: replace `old` (which must occur exactly once) by `new`."""

    def edit(s: str) -> str:
        assert s.count(old) == 1, f"{old!r} does not occur exactly once in the spec"
        return s.replace(old, new)

    return edit


def top(line: str, remove: str = ""):
    """Edit: add a top-level `line` (before any table), optionally removing a block first."""

    def edit(s: str) -> str:
        if remove:
            assert s.count(remove) == 1, f"{remove!r} does not occur exactly once in the spec"
            s = s.replace(remove, "")
        return line + "\n" + s

    return edit


def band(body: str):
    """Edit: append a [[bands]] table with `body` (a valid band is `rect_mm = [0, 0, 300, 12]`)."""
    return lambda s: s + "\n[[bands]]\n" + body + "\n"


ROWS_BLOCK = "[[rows]]\ny_mm = 15\nheight_mm = 70\nchar_width_mm = 36\ngap_mm = 4\n"
TEXT_BLOCK = '[text]\ncolors = ["#101010"]\nfont = "DejaVuSansCondensed-Bold"\n'
BG_BLOCK = '[background]\ncolors = ["#c8c8c8"]\n'
PATTERN_BLOCK = '[[patterns]]\npattern = "L L L - D D D"\nweight = 1\n'
CLASSES = 'L = "ABCXYZ"\nD = "0123456789"\n'
ROW_END = "gap_mm = 4"
BG_END = 'colors = ["#c8c8c8"]'
RECT = "rect_mm = [0, 0, 300, 12]"

# (case, edit of conftest.MINI_SPEC, key the error must name, words of the reason)
SPEC_CASES = [
    # wrong types in nested tables
    ("class is a number", sub('L = "ABCXYZ"', "L = 5"), "classes.L", "expected a string of characters or a table"),
    ("class chars a number", sub('L = "ABCXYZ"', "L = { chars = 5 }"), "classes.L.chars", "expected str"),
    ("class fit a number", sub('L = "ABCXYZ"', 'L = { chars = "ABC", fit = 3 }'), "classes.L.fit", "expected str"),
    ("class fit unknown", sub('L = "ABCXYZ"', 'L = { chars = "ABC", fit = "squash" }'), "classes.L.fit",
     "expected one of"),
    ("class width a string", sub('L = "ABCXYZ"', 'L = { chars = "ABC", width_mm = "wide" }'), "classes.L.width_mm",
     "expected float"),
    ("separator is a string", sub('"-" = { shape = "hyphen", width_mm = 16, size_mm = 10 }', '"-" = "hyphen"'),
     "separators.-", "expected a table"),
    ("separator width a string", sub("width_mm = 16", 'width_mm = "16"'), "separators.-.width_mm", "expected float"),
    ("rows are numbers", top("rows = [1]", remove=ROWS_BLOCK), "rows[0]", "expected a table"),
    ("rows is one table", sub("[[rows]]", "[rows]"), "rows", "expected list"),
    ("row x_mm strings", sub(ROW_END, ROW_END + '\nx_mm = ["a", 100]'), "rows[0].x_mm", "list of 2 numbers"),
    ("row x_mm three numbers", sub(ROW_END, ROW_END + "\nx_mm = [0, 100, 200]"), "rows[0].x_mm", "list of 2 numbers"),
    ("row align a number", sub(ROW_END, ROW_END + "\nalign = 1"), "rows[0].align", "expected str"),
    ("row align unknown", sub(ROW_END, ROW_END + '\nalign = "right"'), "rows[0].align", "'center' or 'left'"),
    ("row gap a string", sub("gap_mm = 4", 'gap_mm = "4"'), "rows[0].gap_mm", "expected float"),
    ("background a string", top('background = "grey"', remove=BG_BLOCK), "background", "expected dict"),
    ("background colour a number", sub(BG_END, "colors = [5]"), "background.colors", "'#rrggbb' or [top, bottom]"),
    ("background pair of one", sub(BG_END, 'colors = [["#c8c8c8"]]'), "background.colors", "[top, bottom]"),
    ("background no colours", sub(BG_END, "colors = []"), "background.colors", "at least one colour"),
    ("border width a string", sub(BG_END, BG_END + '\nborder_mm = "thin"'), "background.border_mm", "expected float"),
    ("border colour a number", sub(BG_END, BG_END + "\nborder_color = 5"), "background.border_color",
     "expected a colour"),
    ("text a string", top('text = "black"', remove=TEXT_BLOCK), "text", "expected dict"),
    ("text colours a string", sub('colors = ["#101010"]', 'colors = "#101010"'), "text.colors", "expected list"),
    ("text font a number", sub('font = "DejaVuSansCondensed-Bold"', "font = 5"), "text.font", "expected str"),
    ("bands a number", top("bands = 3"), "bands", "expected list"),
    ("band not a table", top("bands = [5]"), "bands[0]", "expected a table"),
    ("band rect a string", band('rect_mm = "top"'), "bands[0].rect_mm", "expected list"),
    ("band rect three numbers", band("rect_mm = [0, 0, 300]"), "bands[0].rect_mm", "list of 4 numbers"),
    ("band texts a string", band(RECT + '\ntexts = "TEXAS"'), "bands[0].texts", "expected list"),
    ("band texts numbers", band(RECT + "\ntexts = [1, 2]"), "bands[0].texts", "list of strings"),
    ("band emblem a number", band(RECT + "\nemblem = 3"), "bands[0].emblem", "expected str"),
    ("band emblem unknown", band(RECT + '\nemblem = "stars"'), "bands[0].emblem", "('eu_stars', 'sk_arms')"),
    ("band colour a name", band(RECT + '\ncolor = "blue"'), "bands[0].color", "colour"),
    ("band font unknown", band(RECT + '\nfont = "Nope"'), "bands[0].font", "not found"),
    ("patterns are numbers", top("patterns = [7]", remove=PATTERN_BLOCK), "patterns[0]",
     "pattern string or a table"),
    ("pattern a number", sub('pattern = "L L L - D D D"', "pattern = 7"), "patterns[0].pattern", "expected str"),
    ("weight a string", sub("weight = 1", 'weight = "heavy"'), "patterns[0].weight", "expected float"),
    ("canvas a string", sub("canvas_px = [64, 192]", 'canvas_px = "64x192"'), "canvas_px", "expected list"),
    ("canvas floats", sub("canvas_px = [64, 192]", "canvas_px = [64.0, 192]"), "canvas_px", "multiples of 16"),
    ("size a string", sub("size_mm = [300, 100]", 'size_mm = "300x100"'), "size_mm", "expected list"),
    ("size booleans", sub("size_mm = [300, 100]", "size_mm = [true, 100]"), "size_mm", "list of 2 numbers"),
    ("name a number", sub('name = "mini"', "name = 5"), "name", "expected str"),
    ("description a number", sub('description = "test plate: 3 letters, hyphen, 3 digits, flat grey"',
                                 "description = 5"), "description", "expected str"),
    # zero / negative sizes
    ("row height zero", sub("height_mm = 70", "height_mm = 0"), "rows[0].height_mm", "must be > 0"),
    ("row height negative", sub("height_mm = 70", "height_mm = -5"), "rows[0].height_mm", "must be > 0"),
    ("row char width negative", sub("char_width_mm = 36", "char_width_mm = -36"), "rows[0].char_width_mm",
     "must be > 0"),
    ("row gap negative", sub("gap_mm = 4", "gap_mm = -1"), "rows[0].gap_mm", "must be >= 0"),
    ("row x reversed", sub(ROW_END, ROW_END + "\nx_mm = [200, 100]"), "rows[0]", "not inside"),
    ("row x negative", sub(ROW_END, ROW_END + "\nx_mm = [-10, 290]"), "rows[0]", "not inside"),
    ("row y negative", sub("y_mm = 15", "y_mm = -1"), "rows[0]", "not inside"),
    ("separator width zero", sub("width_mm = 16", "width_mm = 0"), "separators.-.width_mm", "must be > 0"),
    ("separator width negative", sub("width_mm = 16", "width_mm = -16"), "separators.-.width_mm", "must be > 0"),
    ("separator size zero", sub("size_mm = 10 }", "size_mm = 0 }"), "separators.-.size_mm", "must be > 0"),
    ("class width zero", sub('L = "ABCXYZ"', 'L = { chars = "ABC", width_mm = 0 }'), "classes.L.width_mm",
     "must be > 0"),
    ("band width zero", band("rect_mm = [0, 0, 0, 12]"), "bands[0].rect_mm", "not inside"),
    ("band height negative", band("rect_mm = [0, 20, 300, -12]"), "bands[0].rect_mm", "not inside"),
    ("band text rect negative", band(RECT + "\ntext_rect_mm = [0, 0, -5, 10]"), "bands[0].text_rect_mm",
     "not inside"),
    ("border negative", sub(BG_END, BG_END + "\nborder_mm = -1"), "background.border_mm", "must be >= 0"),
    ("plate height zero", sub("size_mm = [300, 100]", "size_mm = [300, 0]"), "size_mm", "must be positive"),
    ("canvas zero", sub("canvas_px = [64, 192]", "canvas_px = [0, 192]"), "canvas_px", "multiples of 16"),
    ("canvas negative", sub("canvas_px = [64, 192]", "canvas_px = [-64, 192]"), "canvas_px", "multiples of 16"),
    ("glyphs too small to draw", sub("canvas_px = [64, 192]", "canvas_px = [16, 16]"), "patterns[0].pattern",
     "too small to draw"),
    # characters missing from fonts
    ("band text not in default font", band(RECT + '\ntexts = ["OHIO", "北京"]'), "bands[0].texts", "not in font"),
    ("band text not in band font", band(RECT + '\nfont = "DejaVuSansMono-Bold"\ntexts = ["京A"]'), "bands[0].texts",
     "'京' are not in font DejaVuSansMono-Bold"),
    ("class char not in class font", sub('L = "ABCXYZ"', 'L = { chars = "AB京", font = "DejaVuSans-Bold" }'),
     "classes.L.chars", "not in font DejaVuSans-Bold"),
    # empty / malformed classes
    ("class chars empty", sub('L = "ABCXYZ"', 'L = ""'), "classes.L.chars", "distinct non-space"),
    ("class chars empty in table", sub('L = "ABCXYZ"', 'L = { chars = "" }'), "classes.L.chars", "distinct non-space"),
    ("class chars with space", sub('L = "ABCXYZ"', 'L = "A B"'), "classes.L.chars", "distinct non-space"),
    ("class table without chars", sub('L = "ABCXYZ"', "L = {}"), "classes.L.chars", "missing required field"),
    ("no classes", sub(CLASSES, ""), "classes", "at least one character class"),
    ("class key slash", sub('L = "ABCXYZ"', 'L = "ABCXYZ"\n"/" = "AB"'), "classes./", "may not"),
    ("separator key is a class", sub('"-" = {', 'L = {'), "separators", "also used as classes"),
    # weights <= 0, non-finite numbers
    ("weight zero", sub("weight = 1", "weight = 0"), "patterns[0].weight", "must be > 0"),
    ("weight negative", sub("weight = 1", "weight = -2"), "patterns[0].weight", "must be > 0"),
    ("weight minus infinity", sub("weight = 1", "weight = -inf"), "patterns[0].weight", "must be > 0"),
    pytest.param("weight nan", sub("weight = 1", "weight = nan"), "patterns[0].weight", "finite"),
    pytest.param("weight infinite", sub("weight = 1", "weight = inf"), "patterns[0].weight", "finite"),
    pytest.param("row height nan", sub("height_mm = 70", "height_mm = nan"), "rows[0].height_mm", "finite"),
]


def _ids(cases: list) -> list[str]:
    return [(c.values[0] if hasattr(c, "values") else c[0]) for c in cases]


def test_spec_edits_start_from_a_valid_spec(write_spec, mini_spec_text):
    assert load_region(write_spec(mini_spec_text, name="valid")).name == "mini"
    assert load_region(write_spec(band(RECT + '\ntexts = ["OHIO"]')(mini_spec_text), name="banded")).bands


@pytest.mark.parametrize("case,edit,key,reason", SPEC_CASES, ids=_ids(SPEC_CASES))
def test_malformed_spec_names_file_key_reason(write_spec, mini_spec_text, case, edit, key, reason):
    path = write_spec(edit(mini_spec_text), name=re.sub(r"\W+", "_", case))
    with pytest.raises(RegionSpecError) as info:
        load_region(path)
    err = info.value
    assert err.file == str(path.resolve()), str(err)
    assert err.key == key, str(err)
    assert reason in err.reason, str(err)
    assert str(err) == f"{path.resolve()}: [{key}] {err.reason}"


# ---- stream arguments -----------------------------------------------------------------------------

STREAM_CASES = [
    ("chunk zero", {"chunk": 0}, ValueError, "chunk must be a positive int"),
    ("chunk float", {"chunk": 1.5}, ValueError, "chunk must be a positive int"),
    ("no plates per scene", {"plates_per_scene": (0, 1)}, ValueError, "plates_per_scene"),
    ("plates per scene reversed", {"plates_per_scene": (3, 2)}, ValueError, "plates_per_scene"),
    ("too many plates per scene", {"plates_per_scene": (1, 9)}, ValueError, "plates_per_scene"),
    ("image too small", {"image_size": (4, 4)}, ValueError, "image_size"),
    ("image size floats", {"image_size": (64.0, 256)}, ValueError, "image_size"),
    ("batch size bool", {"batch_size": True}, ValueError, "batch_size must be a positive int"),
    ("length float", {"length": 1.5}, ValueError, "length must be a positive int"),
    ("length zero", {"length": 0}, ValueError, "length must be a positive int"),
    ("augment a number", {"augment": 5}, TypeError, "augment must be a preset name"),
    ("region weight zero", {"regions": {"us": 0}}, ValueError, "weight for 'us' must be > 0"),
    ("region weight a string", {"regions": {"us": "2"}}, ValueError, "weight for 'us' must be > 0"),
    ("region file missing", {"regions": "/nonexistent/region.toml"}, RegionSpecError, "file not found"),
    ("backgrounds is a file", {"backgrounds": __file__}, NotADirectoryError, "backgrounds must be a folder"),
    ("device unknown", {"device": "tpu"}, (ValueError, RuntimeError), "tpu"),
    pytest.param("region weight nan", {"regions": {"us": float("nan")}}, ValueError, "weight"),
    pytest.param("region weight infinite", {"regions": {"us": float("inf")}}, ValueError, "weight"),
    pytest.param("generator not a model file", {"generator": __file__}, ValueError, "generator"),
    pytest.param("generator a number", {"generator": 123}, (TypeError, ValueError), "generator"),
    pytest.param("plates per scene a number", {"plates_per_scene": 5}, (TypeError, ValueError), "plates_per_scene"),
    pytest.param("image size a number", {"image_size": 64}, (TypeError, ValueError), "image_size"),
    pytest.param("seed a word", {"seed": "abc"}, (TypeError, ValueError), "seed"),
    pytest.param("regions a number", {"regions": 5}, (TypeError, ValueError), "regions"),
]


@pytest.mark.parametrize("case,kwargs,error,match", STREAM_CASES, ids=_ids(STREAM_CASES))
def test_bad_stream_arguments(case, kwargs, error, match):
    with pytest.raises(error, match=match):
        PlateGANStream(**{"generator": None, **kwargs})


def test_stream_malformed_spec_path_names_key(write_spec, mini_spec_text):
    path = write_spec(sub("height_mm = 70", "height_mm = 0")(mini_spec_text), name="stream_bad")
    with pytest.raises(RegionSpecError, match=r"\[rows\[0\]\.height_mm\] must be > 0") as info:
        PlateGANStream(regions={"us": 1, str(path): 2}, generator=None)
    assert info.value.file == str(path.resolve())


def test_stream_junk_onnx_generator_named_at_first_batch(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07 not a protobuf model")
    stream = PlateGANStream(regions="us", generator=junk, batch_size=2, seed=0)
    with pytest.raises(ValueError, match="junk.onnx cannot be loaded"):
        next(iter(stream))


# ---- training folders: load_image -------------------------------------------------------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG file whose header declares width x height (RGB, 8 bit): no pixel data to speak of."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + _chunk(b"IEND", b""))


def gradient(h: int = 32, w: int = 96) -> np.ndarray:
    """(h, w, 3) uint8 with distinct values in every channel."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), 255 - x * 255 // (w - 1)], -1).astype(np.uint8)


def write_truncated_jpeg(path: Path) -> Path:
    Image.fromarray(gradient()).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


UNUSABLE = [
    ("truncated jpeg", write_truncated_jpeg, "(?i)truncated"),
    ("text file named .jpg", lambda p: p.write_text("hello") and p, "cannot identify image file"),
    ("empty file", lambda p: p.write_bytes(b"") or p, "cannot identify image file"),
    ("1x1 image", lambda p: Image.new("RGB", (1, 1), (9, 9, 9)).save(p, format="PNG") or p, "1x1, too small"),
    ("4x1 image", lambda p: Image.new("L", (4, 1)).save(p, format="PNG") or p, "4x1, too small"),
    ("header beyond MAX_PIXELS", lambda p: p.write_bytes(png_header(7000, 7000)) and p, "larger than 40000000"),
    ("decompression bomb header", lambda p: p.write_bytes(png_header(20000, 20000)) and p, "decompression bomb"),
    ("directory", lambda p: p.mkdir() or p, "Is a directory"),
    ("missing file", lambda p: p, "No such file"),
]


@pytest.mark.parametrize("case,make,reason", UNUSABLE, ids=[c[0] for c in UNUSABLE])
def test_unusable_image_is_a_clear_value_error(tmp_path, case, make, reason):
    path = make(tmp_path / "crop.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Pillow warning either (DecompressionBombWarning)
        with pytest.raises(ValueError, match=reason):
            load_image(path, (32, 96))


def test_max_pixels_is_checked_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "crop.png"
    Image.fromarray(gradient()).save(path)
    assert load_image(path, (32, 96)).shape == (32, 96, 3)
    monkeypatch.setattr(realdata, "MAX_PIXELS", 1000)
    with pytest.raises(ValueError, match=r"96x32, larger than 1000 pixels"):
        load_image(path, (32, 96))


def _stripes(colours: list[tuple[int, int, int]], h: int = 32, w: int = 96) -> np.ndarray:
    """(h, w, 3) uint8: vertical stripes of the given colours."""
    arr = np.zeros((h, w, 3), np.uint8)
    for i, c in enumerate(colours):
        arr[:, i * w // len(colours): (i + 1) * w // len(colours)] = c
    return arr


STRIPES = [(200, 40, 10), (10, 120, 230), (250, 250, 250), (0, 0, 0)]


def _save_odd(path: Path, kind: str) -> np.ndarray:
    """Write a valid but unusual file; returns the RGB image it should load as (H, W, 3) uint8."""
    rgb = _stripes(STRIPES)
    if kind == "cmyk jpeg":
        Image.fromarray(rgb).convert("CMYK").save(path, format="JPEG", quality=95)
        return rgb
    if kind == "16-bit grey png":
        ramp = np.tile(np.linspace(0, 65535, 96), (32, 1)).astype(np.uint16)
        Image.fromarray(ramp).save(path, format="PNG")
        with Image.open(path) as im:
            assert im.mode.startswith("I"), im.mode  # really a 16-bit file
        return np.repeat((ramp // 257).astype(np.uint8)[..., None], 3, -1)
    if kind == "palette png":
        Image.fromarray(rgb).quantize(len(STRIPES)).save(path, format="PNG")
        return rgb
    if kind == "palette png with transparency":
        Image.fromarray(rgb).quantize(len(STRIPES)).save(path, format="PNG", transparency=0)
        return rgb
    if kind == "rgba png":
        alpha = np.full((32, 96, 1), 255, np.uint8)
        Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA").save(path, format="PNG")
        return rgb
    if kind == "grey+alpha png":
        grey = rgb.mean(-1).astype(np.uint8)
        Image.fromarray(np.stack([grey, np.full_like(grey, 128)], -1), "LA").save(path, format="PNG")
        return np.repeat(grey[..., None], 3, -1)
    if kind == "1-bit png":
        bw = (rgb.mean(-1) > 100).astype(np.uint8) * 255
        Image.fromarray(bw).convert("1").save(path, format="PNG")
        return np.repeat(bw[..., None], 3, -1)
    raise AssertionError(kind)


ODD = ["cmyk jpeg", "16-bit grey png", "palette png", "palette png with transparency", "rgba png",
       "grey+alpha png", "1-bit png"]


@pytest.mark.parametrize("kind", ODD)
def test_odd_but_valid_images_load_as_rgb(tmp_path, kind):
    path = tmp_path / ("crop.jpg" if "jpeg" in kind else "crop.png")
    want = _save_odd(path, kind)
    got = load_image(path, (32, 96))  # the file's own size: no resampling, values comparable
    assert got.shape == (32, 96, 3) and got.dtype == np.uint8
    tol = 12 if "jpeg" in kind else 2  # JPEG (CMYK) is lossy at the stripe edges
    inner = np.ones(96, bool)
    inner[[0, 23, 24, 47, 48, 71, 72, 95]] = False  # stripe borders
    diff = np.abs(got.astype(int) - want.astype(int))[:, inner]
    assert diff.max() <= tol, f"{kind}: max error {diff.max()}"
    small = load_image(path, (16, 48))  # and resized like every crop
    assert small.shape == (16, 48, 3) and small.dtype == np.uint8


# ---- training folders: load_real ------------------------------------------------------------------

def _good(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(gradient()).save(path)


def test_mixed_folder_loads_odd_images_and_counts_skips(tmp_path):
    folder = tmp_path / "real"
    _good(folder / "us" / "plain.png")
    for i, kind in enumerate(ODD):
        _save_odd(folder / "us" / (f"odd{i}.jpg" if "jpeg" in kind else f"odd{i}.png"), kind)
    write_truncated_jpeg(folder / "us" / "truncated.jpg")
    (folder / "us" / "fake.jpg").write_text("not an image")
    Image.new("RGB", (1, 1)).save(folder / "us" / "dot.png")
    (folder / "us" / "huge.png").write_bytes(png_header(7000, 7000))
    (folder / "us" / "notes.txt").write_text("ignored: not an image suffix")
    with pytest.warns(UserWarning) as record:
        data = load_real(folder)
    bad = {"us/truncated.jpg", "us/fake.jpg", "us/dot.png", "us/huge.png"}
    assert {f for f, _ in data.skipped} == bad and len(data.skipped) == 4
    assert all(why for _, why in data.skipped)
    warned = " ".join(str(w.message) for w in record)
    assert all(name in warned for name in bad)
    groups = list(data.train.values()) + list(data.val.values())
    assert sum(len(g.files) for g in groups) == 1 + len(ODD)
    for g in groups:
        assert g.region == "us" and g.images.shape[1:] == (3, 96, 192) and g.images.dtype == torch.float32
        assert 0 <= g.images.min() and g.images.max() <= 1


@pytest.mark.parametrize("case,make", [
    ("empty folder", lambda d: None),
    ("only non-image files", lambda d: [(d / "a.txt").write_text("x"), (d / "b.json").write_text("{}")]),
    ("only broken images", lambda d: [(d / "a.jpg").write_text("x"), write_truncated_jpeg(d / "b.jpg")]),
])
def test_folder_without_usable_images(tmp_path, case, make):
    folder = tmp_path / "real"
    folder.mkdir()
    make(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=f"no usable images in {re.escape(str(folder))}"):
            load_real(folder)


LABELS_CASES = [
    ("no file column", b"path,region,text\na.png,us,ABC\n", "needs a header with at least a 'file' column"),
    ("empty labels.csv", b"", "needs a header with at least a 'file' column"),
    ("header only in other case", b"FILE,REGION\na.png,us\n", "'file' column"),
    pytest.param("utf-8 BOM (Excel 'CSV UTF-8')", "\ufefffile,region,text\na.png,us,ABC\n".encode(), None),
    pytest.param("latin-1 labels", b"file,region,text\na.png,us,\xc4B\n", "labels.csv"),
]


@pytest.mark.parametrize("case,csv_bytes,match", LABELS_CASES, ids=_ids(LABELS_CASES))
def test_labels_csv_problems(tmp_path, case, csv_bytes, match):
    folder = tmp_path / "real"
    _good(folder / "a.png")
    (folder / "labels.csv").write_bytes(csv_bytes)
    if match is None:  # must load
        data = load_real(folder)
        assert sum(len(g.files) for g in [*data.train.values(), *data.val.values()]) == 1
        return
    with pytest.raises(ValueError, match=match) as info:
        load_real(folder)
    assert "labels.csv" in str(info.value)


def test_labels_rows_pointing_at_unusable_files_are_counted(tmp_path):
    folder = tmp_path / "real"
    _good(folder / "us" / "a.png")
    (folder / "notes.txt").write_text("x")
    (folder / "labels.csv").write_text("file,region,text\nus/a.png,us,ABC123\nnotes.txt,us,X\nus/gone.png,us,Y\n"
                                       ",us,Z\n")
    with pytest.warns(UserWarning, match="skipping"):
        data = load_real(folder)
    assert [f for f, _ in data.skipped] == ["notes.txt", "us/gone.png", ""]
    reasons = dict(data.skipped)
    assert "cannot identify image file" in reasons["notes.txt"] and "No such file" in reasons["us/gone.png"]


def test_missing_labels_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="real-image folder .* does not exist"):
        load_real(tmp_path / "nope")
    _good(tmp_path / "a.png")
    with pytest.raises(FileNotFoundError, match="labels file .*other.csv does not exist"):
        load_real(tmp_path, labels=tmp_path / "other.csv")


# ---- ONNX models ------------------------------------------------------------------------------------

GOOD_META = {"plateaug.in_channels": "4", "plateaug.channels": "outline,hint_r,hint_g,hint_b",
             "plateaug.value_range": "0,1", "plateaug.size_multiple": "16", "plateaug.dtype": "float32"}


def tiny_onnx(path: Path, meta: dict[str, str] | None = None, elem: int = TensorProto.FLOAT, inputs: int = 1,
              rank: int = 4) -> Path:
    """A hand-built model (no torch export: fast): a 1x1 conv (B, 4, H, W) -> (B, 3, H, W), or for
    rank 3 an Identity (4, H, W) -> (4, H, W)."""
    np_dtype = np.float16 if elem == TensorProto.FLOAT16 else np.float32
    in_shape, out_shape = (["b", 4, "h", "w"], ["b", 3, "h", "w"]) if rank == 4 else ([4, "h", "w"], [4, "h", "w"])
    ins = [helper.make_tensor_value_info("condition" if i == 0 else f"extra{i}", elem, in_shape)
           for i in range(inputs)]
    out = helper.make_tensor_value_info("image", elem, out_shape)
    if rank == 4:
        init = [numpy_helper.from_array(np.full((3, 4, 1, 1), 0.25, np_dtype), "w")]
        nodes = [helper.make_node("Conv", ["condition", "w"], ["image"])]
    else:
        init, nodes = [], [helper.make_node("Identity", ["condition"], ["image"])]
    graph = helper.make_graph(nodes, "tiny", ins, [out], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (GOOD_META if meta is None else meta).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def test_tiny_onnx_with_good_metadata_runs(tmp_path):
    gen = OnnxGenerator(tiny_onnx(tmp_path / "ok.onnx"), threads=1)
    out = gen(torch.full((2, 4, 16, 32), 0.5))
    assert out.shape == (2, 3, 16, 32) and torch.allclose(out, torch.full_like(out, 0.5))


ONNX_CASES = [
    ("no metadata at all", dict(meta={}), "is not a plateaug generator export: metadata"),
    ("value range unreadable", dict(meta={**GOOD_META, "plateaug.value_range": "zero,one"}),
     "unreadable metadata plateaug.value_range='zero,one'"),
    ("size multiple zero", dict(meta={**GOOD_META, "plateaug.size_multiple": "0"}), "size multiple 0"),
    ("size multiple a word", dict(meta={**GOOD_META, "plateaug.size_multiple": "sixteen"}),
     "plateaug.size_multiple='sixteen'"),
    ("dtype unknown", dict(meta={**GOOD_META, "plateaug.dtype": "bfloat16"}),
     "plateaug.dtype='bfloat16' is not one of"),
    ("fp16 graph, float32 metadata", dict(elem=TensorProto.FLOAT16), "do not match metadata plateaug.dtype=float32"),
    ("two inputs", dict(inputs=2), "expected one input and one output, got 2 and 1"),
    ("rank-3 input", dict(rank=3), "graph input shape"),
]


@pytest.mark.parametrize("case,kwargs,match", ONNX_CASES, ids=[c[0] for c in ONNX_CASES])
def test_bad_onnx_model_refused_with_reason(tmp_path, case, kwargs, match):
    path = tiny_onnx(tmp_path / "model.onnx", **kwargs)
    with pytest.raises(ValueError, match=match) as info:
        OnnxGenerator(path, threads=1)
    assert str(path) in str(info.value)


def test_empty_and_directory_onnx_paths(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.onnx cannot be loaded"):
        OnnxGenerator(tmp_path / "empty.onnx")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(FileNotFoundError, match="dir.onnx"):
        OnnxGenerator(tmp_path / "dir.onnx")


# ---- generator CLI ----------------------------------------------------------------------------------

GEN_BASE = ["--n", "2", "--generator", "none", "--regions", "us", "--mode", "crop", "--no-progress",
            "--batch-size", "2"]
NOT_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")

# (case, extra argv ({tmp} is the test's folder), environment, words of the one-line error)
GEN_CASES = [
    ("malformed region spec", ["--regions", "{tmp}/bad.toml"], {}, "bad.toml: [size_mm] missing required field"),
    ("junk onnx model", ["--generator", "{tmp}/junk.onnx"], {}, "junk.onnx cannot be loaded"),
    ("model with wrong suffix", ["--generator", "{tmp}/model.txt"], {}, "generator must be 'auto'"),
    ("image size zero", ["--image-size", "0x0"], {}, "image_size must be (H, W)"),
    ("image size not HxW", ["--image-size", "64"], {}, "expected HxW like 64x256"),
    ("augment unknown", ["--augment", "extreme"], {}, "unknown augmentation preset 'extreme'"),
    ("output is a file", ["--out", "{tmp}/a_file"], {}, "a_file is not writable"),
    ("format unknown", ["--format", "voc"], {}, "invalid choice: 'voc'"),
    ("empty region name", ["--regions", "us,"], {}, "unknown region ''"),
    ("batch size zero", ["--batch-size", "0"], {}, "--batch-size must be >= 1"),
    ("zero shards", ["--shards", "0"], {}, "--shard must be in"),
    ("WORLD_SIZE smaller than RANK", [], {"RANK": "3", "WORLD_SIZE": "2"}, "--shard must be in"),
    pytest.param("cuda without cuda", ["--device", "cuda"], {}, "CUDA is not available", marks=NOT_CUDA),
    pytest.param("RANK not an integer", [], {"RANK": "abc"}, "RANK"),
    pytest.param("device unknown", ["--device", "tpu"], {}, "tpu"),
]


@pytest.fixture
def cli_files(tmp_path):
    (tmp_path / "bad.toml").write_text('name = "bad"\n')
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07 not a protobuf model")
    (tmp_path / "model.txt").write_text("x")
    (tmp_path / "a_file").write_text("x")
    return tmp_path


def _run_cli(main, argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case,extra,env,match", GEN_CASES, ids=_ids(GEN_CASES))
def test_generate_cli_error_exits(cli_files, capsys, monkeypatch, case, extra, env, match):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    argv = [a.replace("{tmp}", str(cli_files)) for a in ["--out", "{tmp}/out", *GEN_BASE, *extra]]
    code, err = _run_cli(generate_main, argv, capsys)
    assert code == 2, err
    assert match in err and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert match in last, "the reason is on the last line (argparse puts usage before it)"
    assert not list(cli_files.rglob("*.tmp"))


# ---- train CLI ----------------------------------------------------------------------------------------

TRAIN_BASE = ["--generator", "unet_xs", "--epochs", "1", "--batch-size", "2", "--min-per-group", "2", "--no-progress",
              "--threads", "1", "--canvas", "us=32x64"]

TRAIN_CASES = [
    ("labels file missing", ["--labels", "{tmp}/missing.csv"], "labels file {tmp}/missing.csv does not exist"),
    ("labels without file column", ["--labels", "{tmp}/nofile.csv"], "needs a header with at least a 'file' column"),
    ("every file held out", ["--val-percent", "100"], "no training images left"),
    ("regions filter out everything", ["--regions", "eu"], "no usable images"),
    ("real is a file", ["--real", "{tmp}/nofile.csv"], "real-image folder {tmp}/nofile.csv does not exist"),
    ("canvas not multiple of 16", ["--canvas", "us=50x96"], "must be positive multiples of 16"),
    ("canvas without size", ["--canvas", "us"], "expected REGION=HxW"),
    ("epochs zero", ["--epochs", "0"], "--epochs must be >= 1"),
    ("batch of one", ["--batch-size", "1"], "--batch-size >= 2"),
    ("generator unknown", ["--generator", "unet_xxl"], "invalid choice: 'unet_xxl'"),
    ("negative learning rate", ["--lr", "-1"], "Invalid learning rate"),
    ("out missing", ["--out", None], "--real and --out are required"),
    ("resume garbage checkpoint", ["--resume", "{tmp}/garbage"], "garbage/last.pt cannot be read"),
    ("resume truncated checkpoint", ["--resume", "{tmp}/torn"], "torn/last.pt cannot be read"),
    ("resume foreign checkpoint", ["--resume", "{tmp}/foreign"], "is not a plateaug checkpoint"),
    pytest.param("cuda without cuda", ["--device", "cuda"], "CUDA is not available", marks=NOT_CUDA),
    pytest.param("negative threads", ["--threads", "-1"], "threads"),
    pytest.param("out is a file", ["--out", "{tmp}/nofile.csv"], "nofile.csv"),
    pytest.param("device unknown", ["--device", "tpu"], "tpu"),
    pytest.param("labels not UTF-8", ["--labels", "{tmp}/latin1.csv"], "latin1.csv"),
]


@pytest.fixture
def train_files(tmp_path):
    real = tmp_path / "real"
    for i in range(4):
        _good(real / "us" / f"u{i}.png")
    (tmp_path / "nofile.csv").write_text("path,region\nus/u0.png,us\n")
    (tmp_path / "latin1.csv").write_bytes(b"file,region,text\nus/u0.png,us,\xc4B\n")
    for name, payload in (("garbage", None), ("torn", {"format": FORMAT, "w": torch.zeros(1000)}),
                          ("foreign", {"weights": torch.zeros(3)})):
        (tmp_path / name).mkdir()
        if payload is None:
            (tmp_path / name / "last.pt").write_bytes(b"garbage, not a checkpoint")
        else:
            atomic_save(payload, tmp_path / name / "last.pt")
    torn = tmp_path / "torn" / "last.pt"
    torn.write_bytes(torn.read_bytes()[:200])
    threads = torch.get_num_threads()
    yield tmp_path
    torch.set_num_threads(threads)  # train.main sets the process-wide thread count


@pytest.mark.parametrize("case,extra,match", TRAIN_CASES, ids=_ids(TRAIN_CASES))
def test_train_cli_error_exits(train_files, capsys, case, extra, match):
    t = str(train_files)
    argv = ["--real", f"{t}/real", "--out", f"{t}/run", *TRAIN_BASE]
    if extra[0] == "--resume":
        argv = [*extra, "--threads", "1", "--no-progress"]
    elif extra[1] is None:
        i = argv.index(extra[0])
        del argv[i: i + 2]
    else:
        argv += extra
    argv = [a.replace("{tmp}", t) for a in argv]
    code, err = _run_cli(train_main, argv, capsys)
    assert code == 2, err
    match = match.replace("{tmp}", t)
    assert match in err.strip().splitlines()[-1] and "Traceback" not in err
    assert not (train_files / "run" / "last.pt").exists()
