"""OnnxGenerator: matches torch, refuses bad models and inputs, threads, and CUDA IOBinding."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch
from fixtures import onnx_exports, random_generator
from torch import nn

import plateaug.generator.onnx_runtime as onnx_runtime
from plateaug.generator.onnx_runtime import DEFAULT_MODEL, OnnxGenerator
from plateaug.generator.torch_generator import TorchGenerator
from plateaug.models import create_generator
from plateaug.renderer.draw import render
from plateaug.renderer.text import sample_text

TOL = {torch.float32: 1e-4, torch.float16: 1e-2}  # max relative error against the fp32 torch model
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return random_generator()


@pytest.fixture(scope="module")
def paths(model: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[torch.dtype, Path]:
    """fp32 and fp16 exports of `model` (verified by test_export; not here, to stay fast)."""
    return onnx_exports(model, tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def gen32(paths: dict[torch.dtype, Path]) -> OnnxGenerator:
    return OnnxGenerator(paths[torch.float32])


def edited(src: Path, dst: Path, **meta: str) -> Path:
    """A copy of an export with some metadata values replaced (or, with value "", removed)."""
    proto = onnx.load(str(src))
    props = {p.key: p.value for p in proto.metadata_props}
    props.update(meta)
    del proto.metadata_props[:]
    for k, v in props.items():
        if v:
            proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(dst))
    return dst


# ---- numbers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_matches_torch(model: nn.Module, paths: dict[torch.dtype, Path], dtype: torch.dtype) -> None:
    gen = OnnxGenerator(paths[dtype])
    assert gen.dtype == dtype and gen.providers == ["CPUExecutionProvider"] and gen.device == torch.device("cpu")
    rng = torch.Generator().manual_seed(3)
    for b, h, w in [(1, 64, 192), (3, 96, 256), (8, 32, 64)]:
        condition = torch.rand((b, 4, h, w), generator=rng)  # (B, 4, H, W) in [0, 1]
        out = gen(condition)
        assert out.shape == (b, 3, h, w) and out.dtype == torch.float32 and out.device.type == "cpu"
        with torch.no_grad():
            assert rel_err(out, model(condition)) <= TOL[dtype]


def test_input_dtypes_layouts_and_no_grad(model: nn.Module, gen32: OnnxGenerator) -> None:
    condition = torch.rand(2, 4, 32, 48, dtype=torch.float64)
    with torch.no_grad():
        ref = model(condition.float())
    assert rel_err(gen32(condition), ref) <= 1e-4  # float64 is cast
    assert rel_err(gen32(condition.half()), ref) <= 1e-2  # so is float16
    channels_last = condition.float().contiguous(memory_format=torch.channels_last)
    assert rel_err(gen32(channels_last), ref) <= 1e-4  # made contiguous before binding
    wide = torch.rand(2, 4, 32, 96)
    wide[..., :48] = condition.float()
    assert rel_err(gen32(wide[..., :48])[..., :16], ref[..., :16]) <= 1e-4  # a strided view
    out = gen32(condition.float().requires_grad_())
    assert not out.requires_grad
    assert gen32(torch.rand(0, 4, 32, 32)).shape == (0, 3, 32, 32)


def test_translate_renders(model: nn.Module, gen32: OnnxGenerator) -> None:
    batch = render("cn_blue", sample_text("cn_blue", 4, torch.Generator().manual_seed(0)))
    assert batch.images.shape == (4, 3, 64, 208)
    out = gen32.translate(batch.images)
    assert out.shape == (4, 3, 64, 208) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    with torch.no_grad():
        assert rel_err(out, TorchGenerator(model).translate(batch.images)) <= 1e-4
    plain = render("cn_blue", batch.texts[:2])  # plain strings, as the user would pass them
    assert gen32.translate(plain.images).shape == (2, 3, 64, 208)
    with pytest.raises(ValueError, match="multiple of 16"):
        gen32.translate(batch.images[..., :200])


# ---- bad models ---------------------------------------------------------------------------------

def test_torch_generator_bf16(model: nn.Module) -> None:
    """bfloat16 convolutions: float32 in and out, within bf16 rounding of the float32 model; float16
    on the CPU and other dtypes refused by name."""
    batch = render("br_old", sample_text("br_old", 3, torch.Generator().manual_seed(1)))
    with torch.no_grad():
        ref = TorchGenerator(model).translate(batch.images)  # (3, 3, 64, 192) float32
        out = TorchGenerator(copy.deepcopy(model), dtype=torch.bfloat16).translate(batch.images)
    assert out.shape == ref.shape and out.dtype == torch.float32 and out.is_contiguous()
    assert 0 < (out - ref).abs().max() <= 0.05 and (out - ref).abs().mean() <= 0.01
    with pytest.raises(ValueError, match="float16 needs a GPU"):
        TorchGenerator(copy.deepcopy(model), dtype=torch.float16)
    with pytest.raises(ValueError, match="dtype must be"):
        TorchGenerator(copy.deepcopy(model), dtype=torch.int8)


def test_split_head_computes_the_unet_head(model: nn.Module) -> None:
    """SplitHead (the reduced-precision copy's head): sigmoid(conv_h(h) + conv_x(xs)) with doubled,
    zero-padded weights equals tanh(head(cat([h, xs]))) / 2 + 1/2 in float32; a UNetGenerator's bf16
    copy uses it, any other module runs as it is; a split outside the head's input is refused."""
    from plateaug.generator.torch_generator import SplitHead

    x = torch.rand(2, 4, 64, 192, generator=torch.Generator().manual_seed(3))
    head = SplitHead(model.head, model.config["head_ch"])
    assert head.conv_h.out_channels == 4 and head.out_ch == 3
    with torch.no_grad():
        ref = model(x)  # (2, 3, 64, 192)
        out = head(*model.trunk(x))
    assert out.shape == ref.shape and out.dtype == torch.float32 and out.is_contiguous()
    assert (out - ref).abs().max() <= 1e-5
    assert TorchGenerator(copy.deepcopy(model), dtype=torch.bfloat16).split_head is not None
    assert TorchGenerator(copy.deepcopy(model)).split_head is None  # float32: the checkpoint as trained
    other = nn.Sequential(nn.Conv2d(4, 3, 3, 1, 1), nn.Sigmoid())
    plain = TorchGenerator(other, dtype=torch.bfloat16)
    assert plain.split_head is None
    with torch.no_grad():
        assert plain(x).shape == (2, 3, 64, 192)
    with pytest.raises(ValueError, match="split must be in"):
        SplitHead(model.head, 16)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_torch_generator_half_precision_on_cuda(model: nn.Module, dtype: torch.dtype) -> None:
    """On a GPU the reduced-precision TorchGenerator runs there: float32 out, on the device, within
    half-precision rounding of the float32 model; "auto" stays on ONNX Runtime on CUDA."""
    from plateaug.generator.backends import resolve_name

    condition = torch.rand(4, 4, 64, 192, generator=torch.Generator().manual_seed(2)).cuda()
    with torch.no_grad():
        ref = TorchGenerator(copy.deepcopy(model), device="cuda")(condition)
        out = TorchGenerator(copy.deepcopy(model), device="cuda", dtype=dtype)(condition)
    assert out.device.type == "cuda" and out.dtype == torch.float32 and out.shape == (4, 3, 64, 192)
    assert (out - ref).abs().max() <= 0.05
    assert resolve_name("auto", "cuda") == "onnx"


def test_auto_generator_is_bf16_only_on_cpus_with_bf16_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """PlateGANStream's default generator "auto": the shipped checkpoint in bfloat16 on a CPU with bf16
    units, the shipped ONNX model on other CPUs and on CUDA; generate records what it ran."""
    import plateaug.generator.backends as backends
    from plateaug import PlateGANStream
    from plateaug.generate import _settings, parse_args

    assert PlateGANStream(regions=["br_old"]).generator == "auto"
    for has_bf16, want in ((True, "torch-bf16"), (False, "onnx")):
        monkeypatch.setattr(backends, "cpu_has_bf16", lambda v=has_bf16: v)
        assert backends.resolve_name("auto", "cpu") == want
        assert backends.resolve_name("auto", "cuda") == "onnx" and backends.resolve_name("torch", "cpu") == "torch"
        stream = PlateGANStream(regions=["br_old"], batch_size=2, length=1, seed=0)
        backend = stream.backend()
        if has_bf16:
            assert isinstance(backend, TorchGenerator) and backend.dtype == torch.bfloat16
        else:
            assert isinstance(backend, OnnxGenerator)
        images, _ = next(iter(stream))
        assert images.shape == (2, 3, 64, 256) and torch.isfinite(images).all()
        args = parse_args(["--out", "unused", "--count", "1", "--regions", "br_old"])
        assert args.generator == "auto" and _settings(args, stream)["generator"] == want
        assert backends.describe_generator("auto", backend).endswith(
            ".pt'" if has_bf16 else ".onnx'")


def test_default_model_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert DEFAULT_MODEL == Path(onnx_runtime.__file__).resolve().parents[2] / "export" / "plateaug_default.onnx"
    monkeypatch.setattr(onnx_runtime, "DEFAULT_MODEL", tmp_path / "export" / "plateaug_default.onnx")
    with pytest.raises(FileNotFoundError, match="plateaug_default.onnx"):
        OnnxGenerator()


def test_missing_truncated_and_junk_files(paths: dict[torch.dtype, Path], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxGenerator(tmp_path / "missing.onnx")
    data = paths[torch.float32].read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.onnx"):
        OnnxGenerator(tmp_path / "cut.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"this is not a model")
    with pytest.raises(ValueError, match="junk.onnx"):
        OnnxGenerator(tmp_path / "junk.onnx")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter's notice
def test_wrong_metadata_refused(paths: dict[torch.dtype, Path], tmp_path: Path) -> None:
    src = paths[torch.float32]
    with pytest.raises(ValueError, match=r"plateaug.in_channels='3'"):
        OnnxGenerator(edited(src, tmp_path / "a.onnx", **{"plateaug.in_channels": "3"}))
    with pytest.raises(ValueError, match="plateaug.channels"):
        OnnxGenerator(edited(src, tmp_path / "b.onnx", **{"plateaug.channels": "r,g,b,a"}))
    with pytest.raises(ValueError, match="value range"):
        OnnxGenerator(edited(src, tmp_path / "c.onnx", **{"plateaug.value_range": "-1,1"}))
    with pytest.raises(ValueError, match="plateaug.dtype"):
        OnnxGenerator(edited(src, tmp_path / "d.onnx", **{"plateaug.dtype": "float16"}))
    with pytest.raises(ValueError, match="not a plateaug generator export"):
        OnnxGenerator(edited(src, tmp_path / "e.onnx", **{"plateaug.size_multiple": ""}))
    # a generator whose graph takes 3 channels, with metadata copied from a good export
    torch.onnx.export(create_generator("unet_xs", in_ch=3).eval(), (torch.rand(1, 3, 32, 32),),
                      str(tmp_path / "f.onnx"), dynamo=False, input_names=["condition"], output_names=["image"])
    proto = onnx.load(str(tmp_path / "f.onnx"))
    proto.metadata_props.extend(onnx.load(str(src)).metadata_props)
    onnx.save(proto, str(tmp_path / "f.onnx"))
    with pytest.raises(ValueError, match="graph input shape"):
        OnnxGenerator(tmp_path / "f.onnx")


# ---- bad inputs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, problem", [
    (torch.rand(4, 32, 32), "rank 4"),
    (torch.rand(1, 1, 4, 32, 32), "rank 4"),
    (torch.rand(2, 3, 32, 32), "4 channels"),
    (torch.rand(2, 5, 32, 32), "got 5"),
    (torch.randint(0, 2, (2, 4, 32, 32)), "dtype torch.int64"),
    (torch.rand(2, 4, 32, 32) > 0.5, "dtype torch.bool"),
    (torch.rand(2, 4, 60, 32), "60x32 must be a positive multiple of 16"),
    (torch.rand(2, 4, 32, 8), "32x8 must be a positive multiple of 16"),
    (torch.rand(2, 4, 32, 32) * 255, r"must lie in \[0, 1\], got min"),
    (torch.rand(2, 4, 32, 32) - 0.5, r"must lie in \[0, 1\]"),
    (torch.full((1, 4, 16, 16), float("nan")), r"must lie in \[0, 1\]"),
    (torch.empty(1, 4, 16, 16, device="meta"), "is on meta"),
])
def test_bad_inputs_named(gen32: OnnxGenerator, bad: torch.Tensor, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        gen32(bad)


def test_non_tensor_and_range_check_switch(paths: dict[torch.dtype, Path]) -> None:
    gen = OnnxGenerator(paths[torch.float32], check_range=False)
    with pytest.raises(TypeError, match="torch.Tensor"):
        gen(torch.rand(1, 4, 16, 16).numpy())
    assert gen(torch.full((1, 4, 16, 16), 2.0)).shape == (1, 3, 16, 16)  # not checked when switched off
    with pytest.raises(ValueError, match="'cpu' or 'cuda"):
        OnnxGenerator(paths[torch.float32], device="meta")


# ---- threads ------------------------------------------------------------------------------------

def test_session_options(paths: dict[torch.dtype, Path]) -> None:
    gen = OnnxGenerator(paths[torch.float32])
    so = gen.session.get_session_options()
    assert so.intra_op_num_threads == gen.intra_op_threads == torch.get_num_threads()
    assert so.inter_op_num_threads == 1
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert OnnxGenerator(paths[torch.float32], threads=3).session.get_session_options().intra_op_num_threads == 3


class _ThreadsInWorker(torch.utils.data.IterableDataset):
    """Builds an OnnxGenerator inside the DataLoader worker and yields its intra-op thread count."""

    def __init__(self, path: Path):
        self.path = path

    def __iter__(self):
        gen = OnnxGenerator(self.path)
        yield torch.tensor([gen.session.get_session_options().intra_op_num_threads, gen.intra_op_threads,
                            int(gen(torch.rand(1, 4, 16, 16)).shape[1])])


def test_one_thread_inside_dataloader_worker(paths: dict[torch.dtype, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: 7)  # the main process would take 7 (inherited by fork)
    assert OnnxGenerator(paths[torch.float32]).intra_op_threads == 7
    loader = torch.utils.data.DataLoader(_ThreadsInWorker(paths[torch.float32]), batch_size=None, num_workers=1)
    (values,) = list(loader)
    assert values.tolist() == [1, 1, 3]


def test_pickles_by_rebuilding(gen32: OnnxGenerator) -> None:
    copy = pickle.loads(pickle.dumps(gen32))
    assert copy.session is not gen32.session and copy.path == gen32.path and copy.metadata == gen32.metadata
    condition = torch.rand(2, 4, 32, 64)
    assert torch.equal(copy(condition), gen32(condition))


def test_cuda_without_cuda_is_a_clear_error(paths: dict[torch.dtype, Path]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="CUDA"):
        OnnxGenerator(paths[torch.float32], device="cuda")


# ---- CUDA ---------------------------------------------------------------------------------------

@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_iobinding_matches_cpu_without_host_copy(paths: dict[torch.dtype, Path], dtype: torch.dtype) -> None:
    cpu_gen = OnnxGenerator(paths[dtype])
    gen = OnnxGenerator(paths[dtype], device="cuda")
    assert "CUDAExecutionProvider" in gen.providers and gen.device.type == "cuda"
    bound = []
    bind = gen._bind
    gen._bind = lambda x, out, *a: bound.append(out) or bind(x, out, *a)  # record the preallocated output
    condition = torch.rand(3, 4, 64, 192)
    ref = cpu_gen(condition)
    x = condition.to(gen.device, dtype)
    gen(x)  # warm-up: ORT allocates and picks kernels on the first run
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any torch host sync or device->host copy now raises
    try:
        out = gen(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device == gen.device and out.dtype == torch.float32
    if dtype == torch.float32:
        assert out.data_ptr() == bound[-1].data_ptr()  # ORT wrote straight into the tensor we return
    assert rel_err(out.cpu(), ref) <= TOL[dtype]


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("synchronize", [True, False])
@pytest.mark.parametrize("side_stream", [False, True])
def test_cuda_stream_hand_off(model: nn.Module, paths: dict[torch.dtype, Path], synchronize: bool,
                              side_stream: bool) -> None:
    """Input written by a slow kernel on torch's current stream right before the call, output read
    right after on that stream, no synchronize in between: ORT must order itself between them."""
    gen = OnnxGenerator(paths[torch.float32], device="cuda", synchronize=synchronize)
    condition = torch.rand(16, 4, 64, 256)
    with torch.no_grad():
        ref = model(condition)
    src = condition.cuda()
    gen(src)  # warm-up
    torch.cuda.synchronize()
    stream = torch.cuda.Stream() if side_stream else torch.cuda.current_stream()
    with torch.cuda.stream(stream):
        for _ in range(3):
            x = torch.zeros_like(src)
            torch.cuda._sleep(20_000_000)  # keep the current stream busy so x is written late
            x.copy_(src)
            out = gen(x)
            del x  # freed while ORT may still be reading it: record_stream keeps the memory
            result = out * 1.0  # read on the current stream, no synchronize
            torch.cuda._sleep(5_000_000)
            out.zero_()  # must not race ORT's write either
    torch.cuda.synchronize()
    assert rel_err(result.cpu(), ref) <= 1e-4
