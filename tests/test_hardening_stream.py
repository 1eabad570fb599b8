"""Hardening of the stream and the region loader (issue 13, items 3, 4 and part of 10).

- bad generator output (NaN/inf, wrong channels, too few images, wrong size, uint8, numpy) is
  refused once per batch with a GeneratorOutputError naming the generator, also through
  `python -m plateaug.generate`, which then exits non-zero and writes nothing for that batch;
- region specs are bounded (file size, nesting, canvas, counts, weights): each bound fails as a
  RegionSpecError naming the key, and every shipped region stays well inside them;
- PlateGANStream refuses at construction: non-path region entries, a file as `backgrounds`,
  devices other than cpu/cuda, and augment modules other than a kornia AugmentationSequential
  over (input, keypoints).
"""

from __future__ import annotations

import re
from pathlib import Path

import kornia.augmentation as K
import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import plateaug.renderer.spec_loader as spec_loader
from plateaug import PlateGANStream, RegionSpecError, builtin_regions, load_region
from plateaug.generate import main as generate_main
from plateaug.generator.backends import GeneratorOutputError

# ---- generator output -----------------------------------------------------------------------------


def nan_out(x):
    return torch.full_like(x[:, :3], float("nan"))


def inf_out(x):
    out = x[:, :3].clone()
    out[0, 0, 0, 0] = float("inf")
    return out


def one_channel(x):
    return x[:, :1]


def four_channels(x):
    return x


def uint8_out(x):
    return (x[:, :3] * 255).to(torch.uint8)


def too_few(x):
    return x[:-1, :3]


def half_size(x):
    return F.interpolate(x[:, :3], scale_factor=0.5)


def numpy_out(x):
    return x[:, :3].numpy()


def rank3(x):
    return x[0, :3]


BAD_OUTPUTS = [
    (nan_out, r"non-finite values \(NaN or inf\)"),
    (inf_out, r"non-finite values \(NaN or inf\)"),
    (one_channel, r"returned shape \(\d+, 1, \d+, \d+\) \(wrong channels\)"),
    (four_channels, r"returned shape \(\d+, 4, \d+, \d+\) \(wrong channels\)"),
    (too_few, r"\(wrong images\)"),
    (half_size, r"returned shape \(\d+, 3, (32|48), \d+\) \(wrong shape\)"),
    (rank3, r"\(wrong shape\)"),
    (uint8_out, r"returned dtype torch.uint8; expected a floating-point tensor"),
    (numpy_out, r"returned numpy.ndarray, expected a torch.Tensor"),
]


@pytest.mark.parametrize("fn,match", BAD_OUTPUTS, ids=[f[0].__name__ for f in BAD_OUTPUTS])
@pytest.mark.parametrize("mode", ["crop", "scene"])
def test_bad_generator_output_is_refused_naming_the_generator(fn, match, mode):
    stream = PlateGANStream(regions=["us", "eu_de"], mode=mode, generator=fn, augment="none", seed=0,
                            image_size=(64, 128) if mode == "crop" else (96, 160))
    with pytest.raises(GeneratorOutputError, match=match) as info:
        stream.make_batch(5, seed=1)
    assert isinstance(info.value, ValueError)
    assert fn.__name__ in str(info.value)  # the generator is named


def test_bad_output_of_one_call_in_a_batch_is_caught():
    """Many generator calls per batch (regions x CPU chunks): one bad call is enough."""
    calls = []

    def nan_in_third_call(x):
        calls.append(len(x))
        out = x[:, :3].clone()
        if len(calls) == 3:
            out[-1, 2, -1, -1] = float("nan")
        return out

    stream = PlateGANStream(regions=["us", "eu_de"], generator=nan_in_third_call, augment="none", seed=0,
                            generator_share=1.0)
    with pytest.raises(GeneratorOutputError, match=r"non-finite values .* in 1 of \d+ calls"):
        stream.make_batch(80, seed=0)
    assert len(calls) >= 3


def test_good_generator_output_passes_including_half_precision():
    for fn in (lambda x: x[:, :3], lambda x: x[:, :3].half(), lambda x: x[:, :3].double() * 1.5 - 0.2):
        batch = PlateGANStream(regions="us", generator=fn, augment="none", seed=0).make_batch(3, seed=0)
        assert batch.images.dtype == torch.float32 and torch.isfinite(batch.images).all()


def test_module_generator_named_by_class_not_layer_tree():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 1, 1)

        def forward(self, x):
            return self.conv(x)

    stream = PlateGANStream(regions="us", generator=Broken(), augment="none", seed=0)
    with pytest.raises(GeneratorOutputError, match=r"^generator Broken module returned shape \(2, 1, "):
        stream.make_batch(2, seed=0)


META = {"plateaug.in_channels": "4", "plateaug.channels": "outline,hint_r,hint_g,hint_b",
        "plateaug.value_range": "0,1", "plateaug.size_multiple": "16", "plateaug.dtype": "float32"}


def bad_onnx(path: Path, kind: str) -> Path:
    """A hand-built model that passes every load-time check but produces bad output: NaN (a 1x1
    conv with NaN weights) or one channel (a 1x1 conv to one output channel)."""
    c = 1 if kind == "one_channel" else 3
    w = np.full((c, 4, 1, 1), np.nan if kind == "nan" else 0.25, np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["condition", "w"], ["image"])], "bad",
                              [helper.make_tensor_value_info("condition", TensorProto.FLOAT, ["b", 4, "h", "w"])],
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", c, "h", "w"])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in META.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("kind,match", [("nan", "non-finite values"), ("one_channel", "wrong channels")])
def test_generate_with_bad_onnx_output_exits_nonzero_and_writes_no_items(tmp_path, capsys, kind, match):
    model = bad_onnx(tmp_path / f"{kind}.onnx", kind)
    out = tmp_path / "data"
    code = generate_main(["--n", "6", "--out", str(out), "--format", "yolo", "--mode", "crop", "--regions", "us",
                          "--generator", str(model), "--batch-size", "3", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert match in err and str(model) in err, err
    written = [p for p in out.rglob("*") if p.is_file() and p.name != "settings.json"]  # the run's settings may stay
    assert written == [], written  # no images, labels or sidecars: the batch was refused before writing


# ---- region spec limits ---------------------------------------------------------------------------

def sub(old: str, new: str):
    def edit(s: str) -> str:
        assert s.count(old) == 1, f"{old!r} does not occur exactly once in the spec"
        return s.replace(old, new)

    return edit


def append(text: str):
    return lambda s: s + "\n" + text + "\n"


def top(line: str):
    return lambda s: line + "\n" + s


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


PATTERN = '[[patterns]]\npattern = "L L L - D D D"\nweight = 1\n'
CANVAS = "canvas_px = [64, 192]"
CJK = "".join(chr(0x4E00 + i) for i in range(2000))

LIMIT_CASES = [
    ("canvas 100000 square", sub(CANVAS, "canvas_px = [100000, 100000]"), "canvas_px", "too large"),
    ("canvas side over 1024", sub(CANVAS, "canvas_px = [64, 1040]"), "canvas_px", "at most 1024 px a side"),
    ("canvas area over the bound", sub(CANVAS, "canvas_px = [768, 768]"), "canvas_px", "262,144 px in all"),
    ("file over 256 KiB", append("# " + "x" * (300 * 1024)), "-", "larger than 256 KiB"),
    ("230k patterns in 10 MB", append(PATTERN * 230_000), "-", "larger than 256 KiB"),
    ("nesting that breaks the TOML parser", top(f"extra = {nested(5000)}"), "-", "nested too deeply"),
    ("nesting beyond the bound", top(f"extra = {nested(20)}"), "extra", "nested more than 8"),
    ("too many patterns", append(PATTERN * 300), "patterns", "301 patterns; a region spec may have at most 256"),
    ("too many tokens", sub('pattern = "L L L - D D D"', 'pattern = "' + " ".join(["D"] * 40) + '"'),
     "patterns[0].pattern", "40 tokens"),
    ("two pattern weights of 1e308", lambda s: (s + "\n" + PATTERN).replace("weight = 1", "weight = 1e308"),
     "patterns[0].weight", "must be <= 1e+06"),
    ("too many classes", sub('D = "0123456789"', 'D = "0123456789"\n'
                             + "\n".join(f'K{i} = "ABC"' for i in range(40))), "classes", "42 character classes"),
    ("too many characters in a class", sub('L = "ABCXYZ"', f'L = "{CJK}"'), "classes.L.chars", "2,000 characters"),
    ("too many separators", sub('[separators]\n', "[separators]\n" + "".join(
        f'"s{i}" = {{ shape = "space", width_mm = 2 }}\n' for i in range(20))), "separators", "21 separators"),
    ("too many rows", append("[[rows]]\ny_mm = 15\nheight_mm = 70\nchar_width_mm = 36\n" * 9), "rows", "10 text rows"),
    ("too many bands", append("[[bands]]\nrect_mm = [0, 0, 300, 12]\n" * 9), "bands", "9 bands"),
    ("too many band texts", append("[[bands]]\nrect_mm = [0, 0, 300, 12]\ntexts = [" + ", ".join(['"A"'] * 300) + "]"),
     "bands[0].texts", "300 texts"),
    ("band text too long", append('[[bands]]\nrect_mm = [0, 0, 300, 12]\ntexts = ["' + "A" * 100 + '"]'),
     "bands[0].texts", "band texts may have at most 64"),
    ("too many text colours", sub('colors = ["#101010"]', "colors = [" + ", ".join(['"#101010"'] * 70) + "]"),
     "text.colors", "70 colours"),
    ("too many background colours", sub('colors = ["#c8c8c8"]', "colors = [" + ", ".join(['"#c8c8c8"'] * 70) + "]"),
     "background.colors", "70 colours"),
]


@pytest.mark.parametrize("case,edit,key,reason", LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES])
def test_spec_limits_name_the_key(write_spec, mini_spec_text, case, edit, key, reason):
    path = write_spec(edit(mini_spec_text), name=re.sub(r"\W+", "_", case))
    with pytest.raises(RegionSpecError) as info:
        load_region(path)
    err = info.value
    assert (err.file, err.key) == (str(path.resolve()), key), str(err)
    assert reason in err.reason, str(err)
    assert len(str(err)) < 600  # a clear message, not the offending data echoed back


def test_total_characters_over_all_classes_bounded(write_spec, mini_spec_text, monkeypatch):
    """The shipped fonts hold too few glyphs for 4,096 real characters: check the bound scaled down."""
    monkeypatch.setattr(spec_loader, "MAX_CHARS", 20)
    path = write_spec(sub('D = "0123456789"', 'D = "0123456789"\nE = "ABCDEFGH"')(mini_spec_text), name="total")
    with pytest.raises(RegionSpecError, match=r"\[classes\.E\.chars\] the classes hold more than 20 characters"):
        load_region(path)


def test_file_size_checked_before_reading(write_spec, mini_spec_text, monkeypatch):
    path = write_spec(mini_spec_text, name="sized")

    def no_read(*args, **kwargs):
        raise AssertionError("the file was read although its size is over the bound")

    monkeypatch.setattr(spec_loader, "MAX_SPEC_BYTES", 100)
    monkeypatch.setattr(spec_loader.tomllib, "loads", no_read)
    with pytest.raises(RegionSpecError, match=r"\[-\] the file is larger than 0 KiB"):
        load_region(path)


def test_region_weights_bounded_too():
    with pytest.raises(ValueError, match=r"region weight for 'us' must be <= 1e\+06"):
        PlateGANStream(regions={"us": 1e308, "eu_de": 1e308}, generator=None)
    stream = PlateGANStream(regions={"us": 1e6, "eu_de": 1e-6}, generator=None, augment="none", seed=0)
    assert stream.make_batch(4, seed=0).regions == ["us"] * 4


def test_shipped_regions_inside_the_limits():
    for name in builtin_regions():
        spec = load_region(name)
        assert spec.source.stat().st_size <= spec_loader.MAX_SPEC_BYTES // 16
        assert max(spec.canvas) <= spec_loader.MAX_CANVAS_SIDE // 2
        # patterns as written, and after the emblem / stack variants' repeats (us: 17 written, 59 in all)
        assert sum(p.variant == 0 for p in spec.patterns) <= spec_loader.MAX_PATTERNS // 8
        assert len(spec.patterns) <= spec_loader.MAX_PATTERNS // 4
        assert max(len(p.tokens) for p in spec.patterns) <= spec_loader.MAX_TOKENS // 2
        assert max(len(c.chars) for c in spec.classes) <= spec_loader.MAX_CLASS_CHARS // 16
        assert all(len(b.texts) <= spec_loader.MAX_BAND_TEXTS // 8 for b in spec.bands)
        assert max(p.weight for p in spec.patterns) <= spec_loader.MAX_WEIGHT


# ---- stream arguments at construction -------------------------------------------------------------

CONSTRUCTION_CASES = [
    ("regions [None]", {"regions": [None]}, TypeError, r"regions\[0\] must be a shipped region name, a path"),
    ("regions with a number", {"regions": ["us", 5]}, TypeError, r"regions\[1\] must be .* got int 5"),
    ("regions dict key None", {"regions": {None: 1.0}}, TypeError, r"regions key None must be"),
    ("region weight a bool", {"regions": {"us": True}}, ValueError, r"region weight for 'us' must be > 0"),
    ("backgrounds a file", {"backgrounds": __file__}, NotADirectoryError, r"backgrounds must be a folder of images"),
    ("backgrounds a number", {"backgrounds": 5}, TypeError, r"backgrounds must be a path to a folder"),
    ("device mps", {"device": "mps"}, ValueError, r"'mps' is not supported: .* 'cpu' or 'cuda\[:N\]'"),
    ("device meta", {"device": "meta"}, ValueError, r"'meta' is not supported: .* 'cpu' or 'cuda\[:N\]'"),
    ("device torch meta", {"device": torch.device("meta")}, ValueError, r"'cpu' or 'cuda\[:N\]'"),
    ("augment a plain module", {"augment": nn.Identity()}, TypeError,
     r"kornia.augmentation.AugmentationSequential\(.*data_keys=\['input', 'keypoints'\]\); got a .*Identity"),
    ("augment a single kornia op", {"augment": K.RandomAffine(3)}, TypeError, r"got a .*RandomAffine module"),
    ("augment without keypoints", {"augment": K.AugmentationSequential(K.RandomAffine(3))}, ValueError,
     r"data_keys \['image'\]; the stream needs"),
    ("augment with boxes", {"augment": K.AugmentationSequential(K.RandomAffine(3), data_keys=["input", "bbox_xyxy"])},
     ValueError, r"data_keys \['image', 'bbox_xyxy'\]"),
]


@pytest.mark.parametrize("case,kwargs,error,match", CONSTRUCTION_CASES, ids=[c[0] for c in CONSTRUCTION_CASES])
def test_stream_refuses_at_construction(case, kwargs, error, match):
    with pytest.raises(error, match=match):
        PlateGANStream(**{"generator": None, **kwargs})


def test_user_augmentation_over_input_and_keypoints_accepted():
    for keys in (["input", "keypoints"], ["image", "keypoints"]):
        aug = K.AugmentationSequential(K.RandomAffine(3, p=1.0), data_keys=keys)
        stream = PlateGANStream(regions="us", generator=None, augment=aug, seed=0)
        assert stream.augment is aug
        assert stream.make_batch(2, seed=0).images.shape[0] == 2
