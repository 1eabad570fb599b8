"""OnnxGenerator: an exported generator run by ONNX Runtime on torch tensors (CPU, or CUDA with
zero-copy IOBinding on a dedicated stream), checking the model's metadata and every input."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from ..models.contract import CHANNELS, IN_CHANNELS, OUT_CHANNELS, VALUE_RANGE, check_images, generator_input
from ..renderer.device import resolve_device
from .shipped import DEFAULT_ONNX

DEFAULT_MODEL = DEFAULT_ONNX
TRT_CACHE = Path.home() / ".cache" / "plateaug" / "tensorrt"  # TensorRT engines, built once per model and shape
# TensorRT optimisation profile (B, H, W) min / opt / max: one engine for every shape in the range (the
# shipped canvases are 64-96 x 192-304); batches above max B are run in chunks of max B
TRT_PROFILE = ((1, 16, 16), (64, 64, 256), (256, 128, 512))
RANGE_SLACK = 1e-3  # float rounding allowed outside VALUE_RANGE before an input is refused
INSTALL_HINT = ('install the CUDA and cuDNN libraries this onnxruntime-gpu was built for with '
                '`pip install "onnxruntime-gpu[cuda,cudnn]"` (and not `onnxruntime` beside it), or call '
                '`onnxruntime.preload_dlls()` before building the generator to load the ones a torch of the same CUDA '
                'major brought; README "Install for CUDA" lists the matching versions')
_REQUIRED = ("plateaug.in_channels", "plateaug.channels", "plateaug.value_range", "plateaug.size_multiple",
             "plateaug.dtype")
_DTYPES = {"float32": (torch.float32, np.float32, "tensor(float)"),
           "float16": (torch.float16, np.float16, "tensor(float16)"),
           # int8 QDQ (generator/quantize.py): int8 weights and activations inside, float32 in and out
           "int8": (torch.float32, np.float32, "tensor(float)")}
_LOAD_ERRORS = (ort_state.InvalidProtobuf, ort_state.InvalidGraph, ort_state.NoModel, ort_state.Fail,
                ort_state.InvalidArgument, ort_state.NotImplemented)
_MODEL_ERRORS = (ort_state.InvalidProtobuf, ort_state.InvalidGraph, ort_state.NoModel)  # the file, not the device
# provider options OnnxGenerator sets and reads back after session creation (ORT reports them as strings)
_VERIFIED = {"CUDAExecutionProvider": ("device_id", "has_user_compute_stream", "user_compute_stream",
                                       "cudnn_conv_algo_search", "use_tf32", "arena_extend_strategy", "gpu_mem_limit"),
             "TensorrtExecutionProvider": ("device_id", "has_user_compute_stream", "user_compute_stream")}


class OnnxGenerator:
    """Backend protocol shared with TorchGenerator: `gen(condition)` maps (B, 4, H, W) float in
    [0, 1] to (B, 3, H, W) float32 in [0, 1] on the input's device; `translate(images)` builds the
    condition from renders first. Not differentiable (the output carries no gradient).

    CPU threads: `threads` when given, else 1 inside a DataLoader worker (N workers would
    otherwise each start a thread per core), else torch.get_num_threads().
    check_range: min/max check of every input; default on for CPU, off for CUDA, where reading
    the min/max back would sync the host on every batch.

    CUDA (device "cuda" = cuda:{LOCAL_RANK} when set, else the current device; see
    plateaug.renderer.device.resolve_device):
    synchronize: False (default) passes the run option disable_synchronize_execution_providers,
    so ORT returns without waiting for the GPU (no cudaStreamSynchronize per batch); the output is
    ordered by the stream hand-off (ORT's dedicated stream waits for torch's current stream, and
    torch's waits for ORT's). True makes every run wait for the GPU, as ORT does by default.
    tf32: ORT's CUDA provider runs fp32 convolutions in TF32 unless told otherwise (relative error
    about 1.5e-4 against fp32 instead of < 1e-5); default False, exact fp32. True is faster on
    Ampere and later at that error. (TensorRT, when asked for, keeps its own TF32 default.)
    gpu_mem_limit: bytes ORT's CUDA arena may hold (default: no limit). The arena grows by what is
    requested (arena_extend_strategy kSameAsRequested), not by powers of two.
    trt_profile: ((B, H, W) min, opt, max) of the TensorRT optimisation profile (default
    TRT_PROFILE); only with providers=["TensorrtExecutionProvider"]. Larger batches are split,
    larger images refused.
    allow_cpu_nodes: by default a CUDA session refuses to put any node on the CPU (session option
    session.disable_cpu_ep_fallback), so a CUDA provider that failed to load is an error instead of
    a silent CPU session; True allows models with CPU-only nodes.
    Construction on CUDA runs one tiny inference (ORT loads cuDNN at the first run) and checks the
    active providers and their options; any failure is a RuntimeError naming torch's CUDA and cuDNN,
    ONNX Runtime's version and build, and how to install the libraries. ORT's own retry on another
    provider set (device 0, no stream, CUDA+CPU) is switched off.
    """

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu",
                 providers: list[str | tuple[str, dict]] | None = None, threads: int | None = None,
                 check_range: bool | None = None, synchronize: bool = False, tf32: bool = False,
                 gpu_mem_limit: int | None = None,
                 trt_profile: tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]] | None = None,
                 allow_cpu_nodes: bool = False):
        self._init_args = dict(path=path, device=device, providers=providers, threads=threads,
                               check_range=check_range, synchronize=synchronize, tf32=tf32,
                               gpu_mem_limit=gpu_mem_limit, trt_profile=trt_profile, allow_cpu_nodes=allow_cpu_nodes)
        self.path = Path(path) if path is not None else DEFAULT_MODEL
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {self.path} does not exist")
        self.device = torch.device(device)
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"OnnxGenerator runs on 'cpu' or 'cuda[:N]', not {self.device}")
        if gpu_mem_limit is not None and (not isinstance(gpu_mem_limit, int) or isinstance(gpu_mem_limit, bool)
                                          or gpu_mem_limit < 1):
            raise ValueError(f"gpu_mem_limit must be a positive number of bytes or None, got {gpu_mem_limit!r}")
        self.check_range = self.device.type == "cpu" if check_range is None else check_range
        self.synchronize, self.tf32, self.gpu_mem_limit = bool(synchronize), bool(tf32), gpu_mem_limit
        self.allow_cpu_nodes = bool(allow_cpu_nodes)
        in_worker = torch.utils.data.get_worker_info() is not None
        self.intra_op_threads = threads or (1 if in_worker else torch.get_num_threads())
        self._stream: torch.cuda.Stream | None = None
        self._trt_profile: tuple | None = None  # set when TensorRT runs the model
        if self.device.type == "cuda":
            providers = self._cuda_setup(providers, trt_profile)
            self._init_args["device"] = str(self.device)  # a copy in another process uses the same GPU
        elif providers is None:
            providers = ["CPUExecutionProvider"]
        self.session = self._create_session(providers)
        self.providers: list[str] = self.session.get_providers()
        if self.device.type == "cuda":
            self._check_providers(providers)
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self._check_model()
        self._run_options = ort.RunOptions()
        if self._stream is not None and not self.synchronize:
            self._run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        if self._stream is not None:
            self._warm_up()

    # ---- set-up -----------------------------------------------------------------------------------

    def _options(self) -> ort.SessionOptions:
        """Threads set deliberately and no spinning: torch shares these cores."""
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = self.intra_op_threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # memory patterns are cached per input shape; the stream's shapes vary (region, chunk), so
        # the cache would keep growing with every new shape
        so.enable_mem_pattern = False
        return so

    def _guard(self):
        """ORT calls cudaSetDevice(device_id) when it creates a session and on every run and never
        restores it: inside this context torch puts the caller's current device back afterwards."""
        return torch.cuda.device(self.device.index) if self.device.type == "cuda" else contextlib.nullcontext()

    def _cuda_setup(self, providers: list[str | tuple[str, dict]] | None,
                    trt_profile: tuple | None) -> list[tuple[str, dict]]:
        """Provider list for CUDA (TensorRT first only when asked for), all on one dedicated torch
        stream: ORT ignores stream handle 0, and torch's default stream is handle 0. The device id,
        the stream and TF32 come from this generator; a caller's provider option that disagrees is
        refused (ORT on another GPU than the tensors' would read foreign pointers)."""
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {self.device} requested, but torch sees no CUDA device")
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(f"device {self.device} requested, but this onnxruntime has no CUDAExecutionProvider "
                               f"(available: {available}); install onnxruntime-gpu, and not onnxruntime beside it")
        self.device = resolve_device(self.device)
        index = self.device.index
        with self._guard():
            self._stream = torch.cuda.Stream(device=self.device)
        stream = str(self._stream.cuda_stream)
        forced = {"device_id": str(index), "has_user_compute_stream": "1", "user_compute_stream": stream}
        forced_by = {"CUDAExecutionProvider": {**forced, "use_tf32": "1" if self.tf32 else "0"},
                     "TensorrtExecutionProvider": forced}
        defaults = {
            "CUDAExecutionProvider": {"cudnn_conv_algo_search": "HEURISTIC",
                                      "arena_extend_strategy": "kSameAsRequested",
                                      **({"gpu_mem_limit": str(self.gpu_mem_limit)} if self.gpu_mem_limit else {})},
            "TensorrtExecutionProvider": {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(TRT_CACHE)},
        }
        requested = [(p, {}) if isinstance(p, str) else (p[0], dict(p[1])) for p in providers or []]
        names = [name for name, _ in requested]
        if "CPUExecutionProvider" in names and not self.allow_cpu_nodes:
            raise ValueError("CPUExecutionProvider cannot be listed for a CUDA OnnxGenerator: nodes falling back to "
                             "the CPU are refused (session.disable_cpu_ep_fallback); pass allow_cpu_nodes=True to "
                             "allow them")
        if "CUDAExecutionProvider" not in names:
            requested.append(("CUDAExecutionProvider", {}))  # TensorRT hands it what it cannot build
        out = []
        for name, options in requested:
            if name not in available:
                raise RuntimeError(f"provider {name} requested but not available (available: {available})")
            clash = {k: v for k, v in options.items() if k in forced_by.get(name, {})
                     and _norm(v) != _norm(forced_by[name][k])}
            if clash:
                raise ValueError(f"{name} options {clash} conflict with this OnnxGenerator on {self.device} "
                                 f"({', '.join(f'{k}={forced_by[name][k]}' for k in clash)}): the device id comes from "
                                 f"device='cuda:N', the stream is the generator's own, TF32 is the tf32 argument")
            if name == "TensorrtExecutionProvider":
                TRT_CACHE.mkdir(parents=True, exist_ok=True)
                options = {**self._trt_options(trt_profile), **options}
            if name in defaults:  # the caller's options win over the defaults, not over the forced ones
                options = {**defaults[name], **options, **forced_by[name]}
            out.append((name, options))
        return out

    def _trt_options(self, profile: tuple | None) -> dict[str, str]:
        """TensorRT optimisation profile for the model's input: without one TensorRT builds a new
        engine for every new input shape (minutes each, on the stream's varying batches)."""
        profile = TRT_PROFILE if profile is None else profile
        try:
            shapes = tuple(tuple(int(v) for v in p) for p in profile)
        except (TypeError, ValueError):
            shapes = ()
        if (len(shapes) != 3 or any(len(p) != 3 or min(p) < 1 for p in shapes)
                or any(shapes[0][i] > shapes[1][i] or shapes[1][i] > shapes[2][i] for i in range(3))):
            raise ValueError(f"trt_profile must be ((B, H, W) min, opt, max) with 1 <= min <= opt <= max, "
                             f"got {profile!r}")
        self._trt_profile = shapes
        try:
            import onnx

            graph = onnx.load(str(self.path), load_external_data=False).graph
            name = next(i.name for i in graph.input if i.name not in {t.name for t in graph.initializer})
        except Exception as e:  # noqa: BLE001 - any parse failure is the model's problem
            raise ValueError(f"ONNX model {self.path} cannot be loaded ({type(e).__name__}: {e})") from None

        def fmt(p: tuple[int, int, int]) -> str:
            return f"{name}:{p[0]}x{IN_CHANNELS}x{p[1]}x{p[2]}"

        return {"trt_profile_min_shapes": fmt(shapes[0]), "trt_profile_opt_shapes": fmt(shapes[1]),
                "trt_profile_max_shapes": fmt(shapes[2])}

    def _create_session(self, providers: list) -> ort.InferenceSession:
        """The session, without ORT's retry: when creating a session fails, InferenceSession
        retries with CUDA+CPU and no provider options (device 0, ORT's own stream, EXHAUSTIVE conv
        search); enable_fallback=0 turns that off, disable_fallback() the retry of a failed run."""
        cuda = self.device.type == "cuda"
        so = self._options()
        if cuda and not self.allow_cpu_nodes:
            so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        try:
            with self._guard():
                session = ort.InferenceSession(str(self.path), sess_options=so, providers=providers, enable_fallback=0)
        except _MODEL_ERRORS as e:
            raise ValueError(f"ONNX model {self.path} cannot be loaded ({type(e).__name__}: {e})") from None
        except Exception as e:  # noqa: BLE001 - on CUDA any other failure is reported with the versions
            if not cuda:
                if isinstance(e, _LOAD_ERRORS):
                    raise ValueError(f"ONNX model {self.path} cannot be loaded ({type(e).__name__}: {e})") from None
                raise
            hint = (" The model has nodes ONNX Runtime would run on the CPU, or the CUDA provider did not load (then "
                    "ORT logged why above); allow_cpu_nodes=True permits CPU nodes."
                    if "CPU EP" in str(e) or "fallback" in str(e) else "")
            message = self._cuda_problem(f"creating the session failed ({type(e).__name__}: {e}).{hint}")
            raise RuntimeError(message) from None
        session.disable_fallback()
        return session

    def _check_providers(self, requested: list[tuple[str, dict]]) -> None:
        """The session must run on the providers asked for, first, with the options asked for
        (ORT warns and carries on without a provider that cannot load)."""
        names = [name for name, _ in requested]
        if self.providers[: len(names)] != names:
            raise RuntimeError(self._cuda_problem(f"the session runs on {self.providers}, not {names}: ONNX Runtime "
                                                  f"could not start the CUDA provider"))
        got = self.session.get_provider_options()
        wrong = []
        for name, wanted in requested:
            have = got.get(name, {})
            for key in _VERIFIED.get(name, ()):
                if key in wanted and _norm(have.get(key)) != _norm(wanted[key]):
                    wrong.append(f"{name} {key}={have.get(key)!r} (asked for {wanted[key]!r})")
        if wrong:
            raise RuntimeError(self._cuda_problem(f"the session does not hold the provider options asked for: "
                                                  f"{'; '.join(wrong)}"))

    def _warm_up(self) -> None:
        """One tiny inference, waited for: ORT loads cuDNN (and picks kernels) at the first run, so a
        missing or mismatched library shows here, named, and not in the first batch."""
        b, h, w = self._trt_profile[0] if self._trt_profile else (1, self.size_multiple, self.size_multiple)
        x = np.zeros((b, IN_CHANNELS, h, w), dtype=self._np_dtype)
        try:
            with self._guard():
                (out,) = self.session.run([self.output_name], {self.input_name: x}, ort.RunOptions())
        except Exception as e:  # noqa: BLE001 - reported with the versions
            raise RuntimeError(self._cuda_problem(f"the warm-up inference failed ({type(e).__name__}: {e}); ONNX "
                                                  f"Runtime loads cuDNN at the first run")) from None
        if not np.isfinite(np.asarray(out, dtype=np.float32)).all():
            raise RuntimeError(self._cuda_problem("the warm-up inference on zeros returned NaN or inf"))

    def _cuda_problem(self, what: str) -> str:
        """An error message for a CUDA set-up failure: what failed, the versions involved, how to fix."""
        ort_cuda = None
        with contextlib.suppress(Exception):
            from onnxruntime.capi import build_and_package_info

            ort_cuda = getattr(build_and_package_info, "cuda_version", None)
        cudnn = None
        with contextlib.suppress(Exception):
            cudnn = torch.backends.cudnn.version()
        build = ""
        with contextlib.suppress(Exception):
            build = ort.get_build_info() if hasattr(ort, "get_build_info") else ""
        mismatch = ""
        if torch.version.cuda and ort_cuda and torch.version.cuda.split(".")[0] != str(ort_cuda).split(".")[0]:
            mismatch = (f" torch is built for CUDA {torch.version.cuda} but onnxruntime-gpu for CUDA {ort_cuda}: the "
                        f"major versions differ, so ORT needs its own CUDA {str(ort_cuda).split('.')[0]} libraries.")
        return (f"ONNX Runtime cannot run {self.path} on {self.device}: {what}.{mismatch} Versions: torch "
                f"{torch.__version__} (CUDA {torch.version.cuda}, cuDNN {cudnn}), onnxruntime {ort.__version__} (built "
                f"for CUDA {ort_cuda}{'; ' + build if build else ''}). Fix: {INSTALL_HINT}.")

    def _check_model(self) -> None:
        """Refuse a model whose metadata or graph does not match the generator contract."""
        missing = [k for k in _REQUIRED if k not in self.metadata]
        if missing:
            raise ValueError(f"{self.path} is not a plateaug generator export: metadata {missing} missing")
        meta = self.metadata
        expect = {"plateaug.in_channels": str(IN_CHANNELS), "plateaug.channels": ",".join(CHANNELS)}
        for key, want in expect.items():
            if meta[key] != want:
                raise ValueError(f"{self.path}: metadata {key}={meta[key]!r} does not match the generator "
                                 f"contract ({want!r})")
        try:
            self.value_range = tuple(float(v) for v in meta["plateaug.value_range"].split(","))
            self.size_multiple = int(meta["plateaug.size_multiple"])
        except ValueError:
            raise ValueError(f"{self.path}: unreadable metadata plateaug.value_range="
                             f"{meta['plateaug.value_range']!r} / plateaug.size_multiple="
                             f"{meta['plateaug.size_multiple']!r}") from None
        if self.value_range != tuple(VALUE_RANGE) or self.size_multiple < 1:
            raise ValueError(f"{self.path}: metadata value range {self.value_range} / size multiple "
                             f"{self.size_multiple} do not match the generator contract {VALUE_RANGE}")
        if meta["plateaug.dtype"] not in _DTYPES:
            raise ValueError(f"{self.path}: metadata plateaug.dtype={meta['plateaug.dtype']!r} is not one of "
                             f"{sorted(_DTYPES)}")
        self.dtype, self._np_dtype, ort_type = _DTYPES[meta["plateaug.dtype"]]
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{self.path}: expected one input and one output, got {len(inputs)} and {len(outputs)}")
        inp, out = inputs[0], outputs[0]
        if inp.type != ort_type or out.type != ort_type:
            raise ValueError(f"{self.path}: graph input/output types {inp.type}/{out.type} do not match metadata "
                             f"plateaug.dtype={meta['plateaug.dtype']}")
        if len(inp.shape) != 4 or (isinstance(inp.shape[1], int) and inp.shape[1] != IN_CHANNELS):
            raise ValueError(f"{self.path}: graph input shape {inp.shape} is not (B, {IN_CHANNELS}, H, W)")
        self.out_channels = out.shape[1] if len(out.shape) == 4 and isinstance(out.shape[1], int) else OUT_CHANNELS
        self.input_name, self.output_name = inp.name, out.name

    # ---- running ----------------------------------------------------------------------------------

    @property
    def canvases(self) -> dict[str, list[int]]:
        """The training canvases recorded at export ({} when unknown)."""
        return json.loads(self.metadata.get("plateaug.canvases", "{}"))

    def __call__(self, condition: torch.Tensor) -> torch.Tensor:
        """(B, 4, H, W) float in [0, 1] -> (B, 3, H, W) float32 in [0, 1], on condition's device."""
        self._check_input(condition)
        B, _, H, W = condition.shape
        x = condition.detach().to(self.dtype).contiguous()  # (B, 4, H, W) in the model's dtype
        out = torch.empty((B, self.out_channels, H, W), dtype=self.dtype, device=x.device)
        if B:
            self._run(x, out)
        return out.float()  # no-op for an fp32 model

    def _run(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """Run on x into out; under TensorRT in chunks of at most the profile's max batch."""
        run = self._run_cuda if self._stream is not None else self._run_cpu
        step = self._trt_profile[2][0] if self._trt_profile else len(x)
        for s in range(0, len(x), step):
            run(x[s: s + step], out[s: s + step])  # slices along dim 0 of contiguous tensors stay contiguous

    def translate(self, images: torch.Tensor) -> torch.Tensor:
        """Clean renders (B, 3, H, W) in [0, 1] -> photographed-looking plates, same shape."""
        check_images(images)
        return self(generator_input(images))

    def _check_input(self, x: Any) -> None:
        """ValueError naming the problem unless x is a float (B, 4, H, W) tensor fit for this model."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"generator input must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"generator input must have rank 4 (B, {IN_CHANNELS}, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != IN_CHANNELS:
            raise ValueError(f"generator input must have {IN_CHANNELS} channels ({','.join(CHANNELS)}), got "
                             f"{x.shape[1]} (shape {tuple(x.shape)})")
        if not x.is_floating_point():
            raise ValueError(f"generator input must be a float tensor in [0, 1], got dtype {x.dtype}")
        H, W = x.shape[-2:]
        m = self.size_multiple
        if H < m or W < m or H % m or W % m:
            raise ValueError(f"generator input size {H}x{W} must be a positive multiple of {m} in both H and W")
        if x.device != self.device:
            raise ValueError(f"generator input is on {x.device} but this OnnxGenerator runs on {self.device}")
        if self._trt_profile:
            (_, h0, w0), _, (_, h1, w1) = self._trt_profile
            if not (h0 <= H <= h1 and w0 <= W <= w1):
                raise ValueError(f"generator input size {H}x{W} is outside the TensorRT profile ({h0}-{h1} x "
                                 f"{w0}-{w1}); pass trt_profile=((B, H, W) min, opt, max) covering it")
        if self.check_range and x.numel():
            lo, hi = (float(v) for v in torch.aminmax(x.detach()))
            vmin, vmax = self.value_range
            if not (lo >= vmin - RANGE_SLACK and hi <= vmax + RANGE_SLACK):  # NaN fails too
                raise ValueError(f"generator input values must lie in [{vmin:g}, {vmax:g}], got min {lo:.4g}, "
                                 f"max {hi:.4g}")

    def _bind(self, x: torch.Tensor, out: torch.Tensor, device_type: str, device_id: int) -> ort.IOBinding:
        """IOBinding reading x and writing out in place: no copies on either side."""
        io = self.session.io_binding()
        io.bind_input(self.input_name, device_type, device_id, self._np_dtype, tuple(x.shape), x.data_ptr())
        io.bind_output(self.output_name, device_type, device_id, self._np_dtype, tuple(out.shape), out.data_ptr())
        return io

    def _run_cpu(self, x: torch.Tensor, out: torch.Tensor) -> None:
        self.session.run_with_iobinding(self._bind(x, out, "cpu", 0), self._run_options)

    def _run_cuda(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """Run on the dedicated stream, ordered after torch's current stream (which made x and
        out) and before whatever torch queues next: no host sync or copy needed."""
        current = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(current)
        with self._guard():  # ORT sets the device on every run; the caller's current device comes back
            self.session.run_with_iobinding(self._bind(x, out, "cuda", self.device.index), self._run_options)
        x.record_stream(self._stream)  # the allocator keeps x's memory until the ORT work is done
        out.record_stream(self._stream)
        current.wait_stream(self._stream)

    def __getstate__(self) -> dict:
        """Pickle the constructor arguments only (a session cannot be pickled): a copy sent to a
        spawned DataLoader worker builds its own session there, with that worker's thread count."""
        return self._init_args

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def __repr__(self) -> str:
        return (f"OnnxGenerator({str(self.path)!r}, device={str(self.device)!r}, dtype={self.dtype}, "
                f"providers={self.providers})")


def _norm(value: Any) -> str:
    """A provider option as ORT reports it back: a string, booleans as 0/1."""
    text = str(value).strip()
    return {"true": "1", "false": "0"}.get(text.lower(), text)
