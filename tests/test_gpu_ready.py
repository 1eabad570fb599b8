"""The GPU path, ready for its first run (issue #15).

CPU part (runs everywhere): OnnxGenerator's CUDA set-up with onnxruntime.InferenceSession and
torch.cuda replaced by fakes: provider options (device id from the device, the generator's own
stream, HEURISTIC conv search, TF32, arena), no CPU fallback and no ORT retry, the errors that
name the versions, the device guard around ORT, TensorRT profiles; PlateGANStream's device
resolution (LOCAL_RANK, cuda:N) and pin_memory refusal; compose's index plumbing; soak's GPU
memory column.

CUDA part (marked `cuda`, runs only where a GPU is lent): the same things for real, plus the
stream on the GPU in every mode, generator and augmentation preset.
"""

from __future__ import annotations

import configparser
import pickle
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import MagicMock

import kornia.augmentation as KA
import onnxruntime as ort
import pytest
import torch
from fixtures import onnx_exports, random_generator
from kornia.geometry.transform import get_perspective_transform, warp_perspective
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
from torch import nn
from torch.utils.data import DataLoader

from plateaug import PlateGANStream
from plateaug.generator.onnx_runtime import OnnxGenerator
from plateaug.renderer.device import resolve_device, to_device
from plateaug.stream.augment import resolve
from plateaug.stream.scene import compose

ROOT = Path(__file__).resolve().parents[1]
REAL_SESSION = ort.InferenceSession
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return random_generator()


@pytest.fixture(scope="module")
def paths(model: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[torch.dtype, Path]:
    return onnx_exports(model, tmp_path_factory.mktemp("onnx_gpu"))


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got.float().cpu() - ref.float().cpu()).abs().max() / ref.float().abs().max()).item()


# ==== CPU: fakes for torch.cuda and onnxruntime ===================================================

class FakeSession:
    """Stands in for onnxruntime.InferenceSession on a CUDA provider: records how it was built,
    echoes the provider options back as ORT does (strings), runs on a real CPU session, and sets
    the "current device" to its device_id on creation and every run, as ORT's cudaSetDevice does."""

    behaviour: dict = {}
    made: list[FakeSession] = []

    def __init__(self, path, sess_options=None, providers=None, **kwargs):
        b, state = FakeSession.behaviour, FakeSession.behaviour["state"]
        self.path, self.sess_options, self.providers_arg, self.kwargs = path, sess_options, providers, kwargs
        self.device_at_creation = state.current
        self.fallback_disabled = False
        self.runs: list = []
        FakeSession.made.append(self)
        if b.get("fail_create") is not None:
            if int(kwargs.get("enable_fallback", 1)) == 1:  # what ORT does: retry on CUDA+CPU, no options
                defaults = {"device_id": "0", "user_compute_stream": "0", "cudnn_conv_algo_search": "EXHAUSTIVE"}
                providers = [("CUDAExecutionProvider", defaults), "CPUExecutionProvider"]
            else:
                raise b["fail_create"]
        names = [p if isinstance(p, str) else p[0] for p in providers]
        self.options = {p[0]: {str(k): str(v) for k, v in p[1].items()} for p in providers if not isinstance(p, str)}
        for name, tampered in b.get("tamper", {}).items():
            self.options[name].update(tampered)
        device_id = self.options.get(names[0], {}).get("device_id")
        if device_id is not None:
            state.current = int(device_id)  # ORT's cudaSetDevice, never undone by ORT
        self.active = b.get("active") or names + ["CPUExecutionProvider"]
        self._real = REAL_SESSION(path, providers=["CPUExecutionProvider"])

    def _set_device(self):
        device_id = self.options.get(self.active[0], {}).get("device_id")
        if device_id is not None:
            FakeSession.behaviour["state"].current = int(device_id)

    def get_providers(self):
        return list(self.active)

    def get_provider_options(self):
        return {k: dict(v) for k, v in self.options.items()}

    def get_session_options(self):
        return self.sess_options

    def get_modelmeta(self):
        return self._real.get_modelmeta()

    def get_inputs(self):
        return self._real.get_inputs()

    def get_outputs(self):
        return self._real.get_outputs()

    def disable_fallback(self):
        self.fallback_disabled = True

    def run(self, output_names, feeds, run_options=None):
        self.runs.append(("run", FakeSession.behaviour["state"].current, {k: v.shape for k, v in feeds.items()}))
        self._set_device()
        if FakeSession.behaviour.get("fail_run") is not None:
            raise FakeSession.behaviour["fail_run"]
        return self._real.run(output_names, feeds, run_options)

    def io_binding(self):
        return MagicMock()

    def run_with_iobinding(self, io, run_options=None):
        self.runs.append(("iobinding", FakeSession.behaviour["state"].current, run_options))
        self._set_device()


class FakeStream:
    handles = iter(range(0x5000, 0x6000))

    def __init__(self, device=None, **_):
        self.device = device
        self.cuda_stream = next(FakeStream.handles)

    def wait_stream(self, other):
        pass


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Two fake GPUs; the caller's current device is 0; ORT has CUDA and TensorRT providers."""
    state = SimpleNamespace(current=0, guards=[])

    class Guard:  # torch.cuda.device: enter sets the device, exit restores the caller's
        def __init__(self, index):
            self.index = index

        def __enter__(self):
            self.prev = state.current
            state.current = self.index
            state.guards.append(self.index)

        def __exit__(self, *exc):
            state.current = self.prev
            return False

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: state.current)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: FakeStream(device))
    monkeypatch.setattr(torch.cuda, "device", Guard)
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    FakeSession.behaviour = {"state": state}
    FakeSession.made = []
    return state


def cuda_options(gen: OnnxGenerator, name: str = "CUDAExecutionProvider") -> dict[str, str]:
    return gen.session.get_provider_options()[name]


# ---- provider options, no fallback, no retry ------------------------------------------------------

def test_cuda_session_is_built_without_fallbacks(fake_cuda, paths) -> None:
    gen = OnnxGenerator(paths[torch.float32], device="cuda:1")
    sess = gen.session
    assert sess.kwargs.get("enable_fallback") == 0  # ORT's retry on CUDA+CPU without our options: off
    assert sess.fallback_disabled  # ... and its retry of a failed run
    assert sess.sess_options.get_session_config_entry("session.disable_cpu_ep_fallback") == "1"
    assert [p if isinstance(p, str) else p[0] for p in sess.providers_arg] == ["CUDAExecutionProvider"]
    opts = cuda_options(gen)
    assert opts["device_id"] == "1" and gen.device == torch.device("cuda", 1)
    assert opts["user_compute_stream"] == str(gen._stream.cuda_stream) and opts["has_user_compute_stream"] == "1"
    assert opts["cudnn_conv_algo_search"] == "HEURISTIC"
    assert opts["use_tf32"] == "0" and not gen.tf32  # exact fp32 by default
    assert opts["arena_extend_strategy"] == "kSameAsRequested" and "gpu_mem_limit" not in opts
    # ORT returns without waiting for the GPU by default; synchronize=True brings the wait back
    assert gen._run_options.get_run_config_entry("disable_synchronize_execution_providers") == "1"
    with pytest.raises(RuntimeError):  # no entry at all when synchronising
        OnnxGenerator(paths[torch.float32], device="cuda:1", synchronize=True
                      )._run_options.get_run_config_entry("disable_synchronize_execution_providers")
    # one tiny inference at construction (ORT loads cuDNN at the first run), of the model's dtype
    assert [r[0] for r in sess.runs] == ["run"] and sess.runs[0][2] == {gen.input_name: (1, 4, 16, 16)}


def test_tf32_and_memory_options(fake_cuda, paths) -> None:
    gen = OnnxGenerator(paths[torch.float32], device="cuda", tf32=True, gpu_mem_limit=2**30)
    opts = cuda_options(gen)
    assert opts["use_tf32"] == "1" and gen.tf32
    assert opts["gpu_mem_limit"] == str(2**30) and opts["arena_extend_strategy"] == "kSameAsRequested"
    for bad in (0, -5, 1.5, True, "1GB"):
        with pytest.raises(ValueError, match="gpu_mem_limit"):
            OnnxGenerator(paths[torch.float32], device="cuda", gpu_mem_limit=bad)
    # the caller's provider options win over the defaults ...
    gen = OnnxGenerator(paths[torch.float32], device="cuda",
                        providers=[("CUDAExecutionProvider", {"cudnn_conv_algo_search": "EXHAUSTIVE"})])
    assert cuda_options(gen)["cudnn_conv_algo_search"] == "EXHAUSTIVE"


def test_provider_options_cannot_move_ort_to_another_gpu(fake_cuda, paths) -> None:
    """ORT on GPU 0 with GPU 1's pointers would read foreign memory: device_id comes from the device."""
    with pytest.raises(ValueError, match="device_id"):
        OnnxGenerator(paths[torch.float32], device="cuda:1", providers=[("CUDAExecutionProvider", {"device_id": 0})])
    with pytest.raises(ValueError, match="user_compute_stream"):
        OnnxGenerator(paths[torch.float32], device="cuda:1",
                      providers=[("CUDAExecutionProvider", {"user_compute_stream": "1234"})])
    with pytest.raises(ValueError, match="use_tf32"):
        OnnxGenerator(paths[torch.float32], device="cuda", providers=[("CUDAExecutionProvider", {"use_tf32": 1})])
    with pytest.raises(ValueError, match="device_id"):
        OnnxGenerator(paths[torch.float32], device="cuda:1",
                      providers=[("TensorrtExecutionProvider", {"device_id": "0"})])
    gen = OnnxGenerator(paths[torch.float32], device="cuda:1", providers=[("CUDAExecutionProvider", {"device_id": 1})])
    assert cuda_options(gen)["device_id"] == "1"  # agreeing is fine
    with pytest.raises(ValueError, match="allow_cpu_nodes"):
        OnnxGenerator(paths[torch.float32], device="cuda", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_cpu_only_session_is_an_error_naming_the_versions(fake_cuda, paths) -> None:
    """ORT warns and builds a CPU session when the CUDA provider cannot load: refused, with versions."""
    FakeSession.behaviour["active"] = ["CPUExecutionProvider"]
    with pytest.raises(RuntimeError) as info:
        OnnxGenerator(paths[torch.float32], device="cuda")
    text = str(info.value)
    assert "CUDAExecutionProvider" in text and f"onnxruntime {ort.__version__}" in text
    assert f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN" in text
    assert 'onnxruntime-gpu[cuda,cudnn]' in text and "preload_dlls" in text
    if hasattr(ort, "get_build_info"):
        assert ort.get_build_info() in text


def test_session_creation_failure_is_not_retried(fake_cuda, paths) -> None:
    message = ("This session contains graph nodes that are assigned to the default CPU EP, but fallback to CPU EP "
               "has been explicitly disabled by the user.")
    FakeSession.behaviour["fail_create"] = ort_state.Fail(message)
    with pytest.raises(RuntimeError, match="allow_cpu_nodes=True") as info:
        OnnxGenerator(paths[torch.float32], device="cuda")
    assert "creating the session failed" in str(info.value) and "preload_dlls" in str(info.value)
    assert len(FakeSession.made) == 1  # tried once: no retry on other providers with ORT's defaults
    FakeSession.behaviour["fail_create"] = ort_state.InvalidProtobuf("protobuf parsing failed")
    with pytest.raises(ValueError, match="cannot be loaded"):  # a broken file stays a model error
        OnnxGenerator(paths[torch.float32], device="cuda")
    FakeSession.behaviour["fail_create"] = None
    gen = OnnxGenerator(paths[torch.float32], device="cuda", allow_cpu_nodes=True,
                        providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(RuntimeError, match="does not have configuration"):  # the option is not set at all
        gen.session.sess_options.get_session_config_entry("session.disable_cpu_ep_fallback")


@pytest.mark.parametrize("key, value", [("device_id", "0"), ("user_compute_stream", "0"),
                                        ("cudnn_conv_algo_search", "EXHAUSTIVE"), ("use_tf32", "1"),
                                        ("arena_extend_strategy", "kNextPowerOfTwo")])
def test_provider_options_are_read_back(fake_cuda, paths, key: str, value: str) -> None:
    """What ORT's own fallback builds (device 0, its own stream, EXHAUSTIVE search) is refused."""
    FakeSession.behaviour["tamper"] = {"CUDAExecutionProvider": {key: value}}
    with pytest.raises(RuntimeError, match=f"{key}='{value}'"):
        OnnxGenerator(paths[torch.float32], device="cuda:1")


def test_warm_up_failure_names_cudnn(fake_cuda, paths) -> None:
    FakeSession.behaviour["fail_run"] = ort_state.Fail("CUDNN failure 3: libcudnn_engines_precompiled.so.9: "
                                                       "cannot open shared object file")
    with pytest.raises(RuntimeError, match="warm-up inference failed.*cuDNN") as info:
        OnnxGenerator(paths[torch.float32], device="cuda")
    assert "libcudnn_engines_precompiled" in str(info.value) and "onnxruntime-gpu[cuda,cudnn]" in str(info.value)


def test_ort_never_changes_the_callers_current_device(fake_cuda, paths) -> None:
    """ORT calls cudaSetDevice on session creation and every run and never restores it."""
    assert fake_cuda.current == 0
    gen = OnnxGenerator(paths[torch.float32], device="cuda:1")
    sess = gen.session
    assert sess.device_at_creation == 1 and sess.runs[0][1] == 1  # created and warmed up inside the guard
    assert fake_cuda.current == 0  # and the caller's device came back
    x, out = MagicMock(), MagicMock()  # stand-ins for CUDA tensors
    gen._run_cuda(x, out)
    assert sess.runs[-1][:2] == ("iobinding", 1) and fake_cuda.current == 0
    x.record_stream.assert_called_once_with(gen._stream)
    assert sess.runs[-1][2] is gen._run_options


def test_local_rank_and_device_index(fake_cuda, paths, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cuda") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index wins
    assert resolve_device("cpu") == torch.device("cpu")
    gen = OnnxGenerator(paths[torch.float32], device="cuda")
    assert gen.device == torch.device("cuda", 1) and cuda_options(gen)["device_id"] == "1"
    assert gen.__getstate__()["device"] == "cuda:1"  # a copy in a worker uses the same GPU
    copy = pickle.loads(pickle.dumps(gen))
    assert copy.device == torch.device("cuda", 1) and copy.session is not gen.session
    monkeypatch.setenv("LOCAL_RANK", "3")  # one visible GPU per process (CUDA_VISIBLE_DEVICES): the current one
    assert resolve_device("cuda") == torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    fake_cuda.current = 1  # torch.cuda.set_device(1) was called
    assert resolve_device("cuda") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"cuda:2.*torch sees 2 CUDA device"):
        resolve_device("cuda:2")


def test_stream_resolves_its_gpu(fake_cuda, monkeypatch: pytest.MonkeyPatch) -> None:
    assert PlateGANStream(device="cuda", generator=None).device == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    stream = PlateGANStream(device="cuda", generator=None, augment="heavy")
    assert stream.device == torch.device("cuda", 1)  # DDP rank 1 on GPU 1 without set_device
    assert PlateGANStream(device="cuda:0", generator=None).device == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"cuda:7.*2 CUDA device"):
        PlateGANStream(device="cuda:7", generator=None)
    # the heavy preset's image-sized noise is drawn on the stream's GPU; the shared CPU preset is untouched
    noise = [m for m in stream.augment.modules() if isinstance(m, KA.RandomGaussianNoise)]
    assert noise and noise[0]._param_generator.device == torch.device("cuda", 1)
    cpu_noise = [m for m in resolve("heavy").modules() if isinstance(m, KA.RandomGaussianNoise)]
    assert cpu_noise[0]._param_generator.device == torch.device("cpu")


def test_pin_memory_on_a_cuda_stream_is_refused(fake_cuda, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    stream = PlateGANStream(device="cuda", generator=None, batch_size=2, augment="none")

    def no_gpu_here(n, seed):
        raise LookupError("make_batch reached")

    monkeypatch.setattr(stream, "make_batch", no_gpu_here)
    with pytest.raises(RuntimeError, match=r"pin_memory=True.*already on the GPU.*pin_memory=False"):
        next(iter(DataLoader(stream, batch_size=None, pin_memory=True)))
    with pytest.raises(LookupError):  # without pinning the stream goes on to make its batch
        next(iter(DataLoader(stream, batch_size=None)))


def test_tensorrt_profile(fake_cuda, paths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import plateaug.generator.onnx_runtime as onnx_runtime

    monkeypatch.setattr(onnx_runtime, "TRT_CACHE", tmp_path / "trt")
    gen = OnnxGenerator(paths[torch.float32], device="cuda", providers=["TensorrtExecutionProvider"])
    names = [p[0] for p in gen.session.providers_arg]
    assert names == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    trt = cuda_options(gen, "TensorrtExecutionProvider")
    name = gen.input_name
    assert trt["trt_profile_min_shapes"] == f"{name}:1x4x16x16"
    assert trt["trt_profile_opt_shapes"] == f"{name}:64x4x64x256"
    assert trt["trt_profile_max_shapes"] == f"{name}:256x4x128x512"
    assert trt["device_id"] == "0" and trt["user_compute_stream"] == str(gen._stream.cuda_stream)
    sizes = []
    monkeypatch.setattr(gen, "_run_cuda", lambda x, out: sizes.append((len(x), len(out))))
    gen._run(torch.zeros(600, 4, 16, 16), torch.zeros(600, 3, 16, 16))
    assert sizes == [(256, 256), (256, 256), (88, 88)]  # batches above the profile's max are split
    gen = OnnxGenerator(paths[torch.float32], device="cuda", providers=["TensorrtExecutionProvider"],
                        trt_profile=((2, 32, 32), (8, 64, 192), (16, 96, 320)))
    assert cuda_options(gen, "TensorrtExecutionProvider")["trt_profile_max_shapes"] == f"{name}:16x4x96x320"
    assert gen.session.runs[0][2] == {name: (2, 4, 32, 32)}  # warm-up inside the profile
    with pytest.raises(ValueError, match="trt_profile"):
        OnnxGenerator(paths[torch.float32], device="cuda", providers=["TensorrtExecutionProvider"],
                      trt_profile=((8, 32, 32), (4, 64, 64), (16, 96, 320)))


# ---- CPU parts of the stream's device work ---------------------------------------------------------

def test_to_device_on_the_cpu_is_a_no_op() -> None:
    t = torch.arange(6)
    assert to_device(t, "cpu") is t


def test_compose_slots_match_plate_by_plate_warps() -> None:
    """compose finds each slot's plates and scenes on the CPU and moves them in one copy: the result
    equals warping and blending every plate on its own, in order."""
    g = torch.Generator().manual_seed(0)
    counts = torch.tensor([3, 1, 2])
    B, N, (h, w), (Hs, Ws) = 3, 6, (16, 48), (40, 64)
    bg, plates = torch.rand(B, 3, Hs, Ws, generator=g), torch.rand(N, 3, h, w, generator=g)
    quads = torch.tensor([[4, 4], [30, 6], [28, 18], [5, 16]], dtype=torch.float32).repeat(N, 1, 1)
    quads = quads + torch.rand(N, 1, 2, generator=g) * 20
    boxes = torch.tensor([[2.0, 2.0, 10.0, 12.0]]).repeat(N, 1)[:, None]
    scenes, _, corners = compose(bg, plates, (h, w), boxes, counts, quads)
    ref = bg.clone()
    src = torch.tensor([[0, 0], [w, 0], [w, h], [0, h]], dtype=torch.float32)[None]
    owner = torch.repeat_interleave(torch.arange(B), counts)
    for i in range(N):
        M = get_perspective_transform(src, quads[i: i + 1])
        warped = warp_perspective(torch.cat([plates[i: i + 1], torch.ones(1, 1, h, w)], 1), M, (Hs, Ws),
                                  align_corners=True)
        alpha = warped[:, 3:].clamp(0, 1)
        ref[owner[i]] = ref[owner[i]] * (1 - alpha[0]) + warped[0, :3] * alpha[0]
    # compose's warp inverts the homography in float64 (kornia in float32): float32 rounding apart
    torch.testing.assert_close(scenes, ref, atol=1e-4, rtol=0)
    assert torch.equal(corners, quads)


def test_soak_records_device_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import soak
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    MB = 2**20
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d=None: 10 * MB)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda d=None: 20 * MB)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d=None: 15 * MB)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d=None: (60 * MB, 100 * MB))
    mem = soak.cuda_memory(torch.device("cuda", 0))
    assert mem["cuda_used_mb"] == 40.0 and mem["cuda_alloc_mb"] == 10.0  # ORT's arena shows in "used"
    assert soak.cuda_memory(torch.device("cpu")) == {}


def test_onnxruntime_gpu_pinned_to_cuda_13_builds() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    requires = [r for r in cfg["options"]["install_requires"].splitlines() if r.startswith("onnxruntime-gpu")]
    assert requires and requires[0].startswith("onnxruntime-gpu>=1.29,<2;")
    assert cfg["options.extras_require"]["cuda"].strip().startswith("onnxruntime-gpu[cuda,cudnn]>=1.29,<2;")


# ==== CUDA (runs only where a GPU is lent) ========================================================

TOL_ONNX = {(torch.float32, False): 1e-4, (torch.float32, True): 1e-3, (torch.float16, False): 1e-2,
            (torch.float16, True): 1e-2}  # relative to the fp32 torch model on the CPU
IMAGE_ATOL = {None: 1e-4, "onnx": 2e-3, "torch": 2e-3}  # CUDA vs CPU stream images (torch convs may use TF32)
# torch host syncs per make_batch after a warm-up batch: first guesses (scene augmentation retries a
# scene up to 4 times, with boolean indexing on the device); tighten them after the first GPU run
SYNC_BUDGET = {"none": 16, "light": 96, "heavy": 160}
SIZES = {"crop": (64, 192), "scene": (128, 224)}


def stream(device: str, mode: str, generator, augment: str, **kw) -> PlateGANStream:
    kw.setdefault("generator_share", 1.0)  # every plate through the generator: the hand-off under test
    return PlateGANStream(regions=kw.pop("regions", ["cn_blue", "eu_de"]), mode=mode, image_size=SIZES[mode],
                          batch_size=4, device=device, seed=5, generator=generator, augment=augment, **kw)


def count_syncs(fn) -> int:
    """Host syncs torch reports while fn runs (torch.cuda.set_sync_debug_mode)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing CUDA operation" in str(w.message) for w in caught)


def gpu_used() -> int:
    free, total = torch.cuda.mem_get_info()
    return total - free


@pytest.mark.cuda
@cuda_only
@pytest.mark.parametrize("augment", ["none", "light", "heavy"])
@pytest.mark.parametrize("generator", [None, "onnx", "torch"])
@pytest.mark.parametrize("mode", ["crop", "scene"])
def test_cuda_stream_every_mode_generator_preset(mode: str, generator, augment: str) -> None:
    a, b = stream("cuda", mode, generator, augment), stream("cuda", mode, generator, augment)
    a.backend(), b.backend()  # built first: a torch model's construction draws its initial weights
    cuda_rng, cpu_rng = torch.cuda.get_rng_state(), torch.random.get_rng_state()
    dev = a.device
    batch = a.make_batch(4, 7)
    again = b.make_batch(4, 7)
    assert batch.images.device == dev and batch.char_boxes.device == dev and batch.corners.device == dev
    assert batch.images.shape == (4, 3, *SIZES[mode]) and bool(torch.isfinite(batch.images).all())
    assert 0 <= batch.images.min() and batch.images.max() <= 1
    # same seed, same batch: labels exactly; pixels exactly without a generator (cuDNN may pick a
    # non-deterministic ConvTranspose algorithm, and JPEG rounding can amplify its last bits)
    assert batch.texts == again.texts
    for x, y in ((batch.char_boxes, again.char_boxes), (batch.corners, again.corners), (batch.owner, again.owner)):
        assert torch.equal(x, y)
    if generator is None:
        assert torch.equal(batch.images, again.images)
    else:
        assert (batch.images - again.images).abs().mean().item() <= 1e-4
    # the user's RNG streams are untouched (augment() forks and seeds the device generator)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_rng) and torch.equal(torch.random.get_rng_state(), cpu_rng)
    targets = a.targets(batch)  # targets live on the CPU
    assert len(targets) == 4
    assert all(v.device.type == "cpu" for t in targets for v in t.values() if isinstance(v, torch.Tensor))
    images, items = next(iter(DataLoader(a, batch_size=None)))
    assert images.device == dev and len(items) == 4


@pytest.mark.cuda
@cuda_only
@pytest.mark.parametrize("generator", [None, "onnx", "torch"])
@pytest.mark.parametrize("mode", ["crop", "scene"])
def test_cuda_stream_matches_cpu(mode: str, generator) -> None:
    """Texts, placements and (unaugmented, tight) crops equal the CPU's within IMAGE_ATOL; scene
    backgrounds are drawn on the GPU from another generator, so scenes compare by their labels."""
    kw = {"framing": "tight"} if mode == "crop" else {}
    cpu = stream("cpu", mode, generator, "none", **kw).make_batch(4, 7)
    gpu = stream("cuda", mode, generator, "none", **kw).make_batch(4, 7)
    assert gpu.texts == cpu.texts and gpu.regions == cpu.regions
    atol = 1e-3 if mode == "crop" else 1e-2  # pixels; scene boxes go through a homography on each device
    torch.testing.assert_close(gpu.char_boxes.cpu(), cpu.char_boxes, atol=atol, rtol=0)
    torch.testing.assert_close(gpu.corners.cpu(), cpu.corners, atol=atol, rtol=0)
    if mode == "crop":
        torch.testing.assert_close(gpu.images.cpu(), cpu.images, atol=IMAGE_ATOL[generator], rtol=0)


@pytest.mark.cuda
@cuda_only
@pytest.mark.parametrize("augment", ["none", "light", "heavy"])
@pytest.mark.parametrize("mode", ["crop", "scene"])
def test_cuda_host_syncs_per_batch(mode: str, augment: str) -> None:
    """A budget of torch host syncs per make_batch, and (without augmentation, whose kornia ops
    branch on the data) the same count for 4 and 16 images: syncs per batch, not per plate."""
    counts = {}
    for generator in (None, "onnx"):
        s = stream("cuda", mode, generator, augment, regions=["cn_blue"], plates_per_scene=(2, 2))
        s.make_batch(4, 1)  # warm-up: atlas, ORT kernels, cuDNN
        counts[generator] = [count_syncs(lambda n=n, s=s: s.make_batch(n, 2)) for n in (4, 16)]
    print(f"host syncs per make_batch ({mode}, {augment}; n=4, 16): {counts}")
    for generator, (small, large) in counts.items():
        assert max(small, large) <= SYNC_BUDGET[augment], (generator, small, large)
        if augment == "none":
            assert small == large, (generator, small, large)


@pytest.mark.cuda
@cuda_only
def test_cuda_current_device_unchanged(paths) -> None:
    index = torch.cuda.device_count() - 1  # another GPU than the current one where there are two
    before = torch.cuda.current_device()
    gen = OnnxGenerator(paths[torch.float32], device=f"cuda:{index}")
    assert torch.cuda.current_device() == before
    out = gen(torch.rand(2, 4, 32, 64, device=f"cuda:{index}"))
    assert out.device == torch.device("cuda", index) and torch.cuda.current_device() == before
    assert torch.zeros(1, device="cuda").device == torch.device("cuda", before)


@pytest.mark.cuda
@cuda_only
def test_cuda_provider_options_as_set(paths) -> None:
    gen = OnnxGenerator(paths[torch.float32], device="cuda")
    assert gen.providers[0] == "CUDAExecutionProvider"
    opts = gen.session.get_provider_options()["CUDAExecutionProvider"]
    assert opts["device_id"] == str(gen.device.index)
    assert opts["user_compute_stream"] == str(gen._stream.cuda_stream) != "0"
    assert opts["cudnn_conv_algo_search"] == "HEURISTIC" and opts["use_tf32"] == "0"
    assert opts["arena_extend_strategy"] == "kSameAsRequested"
    assert gen.session.get_session_options().get_session_config_entry("session.disable_cpu_ep_fallback") == "1"


@pytest.mark.cuda
@cuda_only
@pytest.mark.parametrize("tf32", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_tf32_tolerance(model: nn.Module, paths, dtype: torch.dtype, tf32: bool) -> None:
    gen = OnnxGenerator(paths[dtype], device="cuda", tf32=tf32)
    assert gen.session.get_provider_options()["CUDAExecutionProvider"]["use_tf32"] == ("1" if tf32 else "0")
    condition = torch.rand(4, 4, 64, 192, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(condition)
    err = rel_err(gen(condition.cuda()), ref)
    print(f"{dtype} tf32={tf32}: relative error {err:.2e}")
    assert err <= TOL_ONNX[dtype, tf32]


@pytest.mark.cuda
@cuda_only
@pytest.mark.parametrize("synchronize", [False, True])
def test_cuda_run_waits_only_when_asked(paths, synchronize: bool) -> None:
    """ORT's per-run cudaStreamSynchronize is off by default: with torch's current stream busy, the
    call returns before the GPU gets to it; with synchronize=True it waits."""
    gen = OnnxGenerator(paths[torch.float32], device="cuda", synchronize=synchronize)
    x = torch.rand(2, 4, 64, 64, device=gen.device)
    gen(x)
    torch.cuda.synchronize()
    cycles = 400_000_000
    t0 = time.perf_counter()
    torch.cuda._sleep(cycles)
    torch.cuda.synchronize()
    busy = time.perf_counter() - t0
    torch.cuda._sleep(cycles)
    t0 = time.perf_counter()
    out = gen(x)
    call = time.perf_counter() - t0
    torch.cuda.synchronize()
    print(f"synchronize={synchronize}: call {call * 1e3:.1f} ms while the stream was busy for {busy * 1e3:.1f} ms")
    assert bool(torch.isfinite(out).all())
    assert (call > 0.5 * busy) if synchronize else (call < 0.5 * busy)


@pytest.mark.cuda
@cuda_only
def test_cuda_ort_memory_flat_over_varying_shapes(paths) -> None:
    gen = OnnxGenerator(paths[torch.float32], device="cuda")
    shapes = [(b, h, w) for b in (1, 7, 33, 64) for h, w in ((64, 192), (96, 192), (64, 304))]

    def sweep():
        for b, h, w in shapes:
            gen(torch.rand(b, 4, h, w, device=gen.device))
        torch.cuda.synchronize()

    sweep()
    sweep()  # torch's caching allocator settles too (record_stream keeps blocks until ORT's stream is done)
    torch.cuda.empty_cache()  # torch's cached free blocks out of the count: what is left is mostly ORT's
    first = gpu_used()
    for _ in range(3):
        sweep()
    torch.cuda.empty_cache()
    grown = gpu_used() - first
    print(f"device memory after the first sweep {first / 2**20:.0f} MB, growth over 3 more {grown / 2**20:.1f} MB")
    assert grown <= 64 * 2**20


@pytest.mark.cuda
@cuda_only
def test_cuda_spawned_worker_and_pin_memory() -> None:
    s = PlateGANStream(regions=["cn_blue"], batch_size=2, length=2, device="cuda", seed=0, generator="onnx")
    loader = DataLoader(s, batch_size=None, num_workers=1, multiprocessing_context="spawn")
    seen = 0
    for images, targets in loader:  # used while the worker (which owns the CUDA memory) is alive
        assert images.device == s.device and images.shape == (2, 3, 64, 256) and len(targets) == 2
        assert bool(torch.isfinite(images).all())
        seen += 1
    assert seen == 2
    with pytest.raises(RuntimeError, match="pin_memory=False"):
        next(iter(DataLoader(s, batch_size=None, pin_memory=True)))


@pytest.mark.cuda
@cuda_only
def test_cuda_pickled_generator(paths) -> None:
    gen = OnnxGenerator(paths[torch.float32], device="cuda")
    copy = pickle.loads(pickle.dumps(gen))
    assert copy.device == gen.device and copy._stream is not gen._stream
    x = torch.rand(3, 4, 64, 128, device=gen.device)
    assert rel_err(copy(x), gen(x)) <= 1e-5
