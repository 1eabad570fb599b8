"""OnnxGenerator: an exported generator run by ONNX Runtime on torch tensors (CPU, or CUDA with
zero-copy IOBinding on a dedicated stream), checking the model's metadata and every input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from ..models.contract import CHANNELS, IN_CHANNELS, OUT_CHANNELS, VALUE_RANGE, check_images, generator_input
from .shipped import DEFAULT_ONNX

DEFAULT_MODEL = DEFAULT_ONNX
TRT_CACHE = Path.home() / ".cache" / "plateaug" / "tensorrt"  # TensorRT engines, built once per model and shape
RANGE_SLACK = 1e-3  # float rounding allowed outside VALUE_RANGE before an input is refused
_REQUIRED = ("plateaug.in_channels", "plateaug.channels", "plateaug.value_range", "plateaug.size_multiple",
             "plateaug.dtype")
_DTYPES = {"float32": (torch.float32, np.float32, "tensor(float)"),
           "float16": (torch.float16, np.float16, "tensor(float16)")}
_LOAD_ERRORS = (ort_state.InvalidProtobuf, ort_state.InvalidGraph, ort_state.NoModel, ort_state.Fail,
                ort_state.InvalidArgument, ort_state.NotImplemented)


class OnnxGenerator:
    """Backend protocol shared with TorchGenerator: `gen(condition)` maps (B, 4, H, W) float in
    [0, 1] to (B, 3, H, W) float32 in [0, 1] on the input's device; `translate(images)` builds the
    condition from renders first. Not differentiable (the output carries no gradient).

    CPU threads: `threads` when given, else 1 inside a DataLoader worker (N workers would
    otherwise each start a thread per core), else torch.get_num_threads().
    check_range: min/max check of every input; default on for CPU, off for CUDA, where reading
    the min/max back would sync the host on every batch.
    synchronize: False lets ORT return before the GPU finished (run option
    disable_synchronize_execution_providers); correctness then rests on the stream hand-off
    alone, so it is opt-in until the CUDA stream test has passed on the machines that use it.
    """

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu",
                 providers: list[str | tuple[str, dict]] | None = None, threads: int | None = None,
                 check_range: bool | None = None, synchronize: bool = True):
        self._init_args = dict(path=path, device=device, providers=providers, threads=threads,
                               check_range=check_range, synchronize=synchronize)
        self.path = Path(path) if path is not None else DEFAULT_MODEL
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {self.path} does not exist")
        self.device = torch.device(device)
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"OnnxGenerator runs on 'cpu' or 'cuda[:N]', not {self.device}")
        self.check_range = self.device.type == "cpu" if check_range is None else check_range
        in_worker = torch.utils.data.get_worker_info() is not None
        self.intra_op_threads = threads or (1 if in_worker else torch.get_num_threads())
        self._stream: torch.cuda.Stream | None = None
        if self.device.type == "cuda":
            providers = self._cuda_setup(providers)
        elif providers is None:
            providers = ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=self._options(), providers=providers)
        except _LOAD_ERRORS as e:
            raise ValueError(f"ONNX model {self.path} cannot be loaded ({type(e).__name__}: {e})") from None
        self.providers: list[str] = self.session.get_providers()
        if self.device.type == "cuda" and "CUDAExecutionProvider" not in self.providers:
            raise RuntimeError(f"ONNX Runtime could not start the CUDA provider for {self.path} (active: "
                               f"{self.providers}); check the CUDA/cuDNN libraries onnxruntime-gpu needs")
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self._check_model()
        self._run_options = ort.RunOptions()
        if not synchronize:
            self._run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")

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

    def _cuda_setup(self, providers: list[str | tuple[str, dict]] | None) -> list[tuple[str, dict]]:
        """Provider list for CUDA (TensorRT first only when asked for), all on one dedicated torch
        stream: ORT ignores stream handle 0, and torch's default stream is handle 0."""
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {self.device} requested, but torch sees no CUDA device")
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(f"device {self.device} requested, but this onnxruntime has no CUDAExecutionProvider "
                               f"(available: {available}); install onnxruntime-gpu, and not onnxruntime beside it")
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        self.device = torch.device("cuda", index)
        self._stream = torch.cuda.Stream(device=self.device)
        stream = str(self._stream.cuda_stream)
        defaults = {
            "CUDAExecutionProvider": {"device_id": index, "cudnn_conv_algo_search": "HEURISTIC"},
            "TensorrtExecutionProvider": {"device_id": index, "trt_engine_cache_enable": "True",
                                          "trt_engine_cache_path": str(TRT_CACHE)},
        }
        requested = [(p, {}) if isinstance(p, str) else (p[0], dict(p[1])) for p in providers or []]
        names = [name for name, _ in requested]
        if "CUDAExecutionProvider" not in names:
            requested.append(("CUDAExecutionProvider", {}))  # TensorRT hands it what it cannot build
        out = []
        for name, options in requested:
            if name not in available:
                raise RuntimeError(f"provider {name} requested but not available (available: {available})")
            if name == "TensorrtExecutionProvider":
                TRT_CACHE.mkdir(parents=True, exist_ok=True)
            if name in defaults:  # the caller's options win, except the stream, which must be ours
                options = {**defaults[name], **options, "user_compute_stream": stream}
            out.append((name, options))
        return out

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
            (self._run_cuda if self._stream is not None else self._run_cpu)(x, out)
        return out.float()  # no-op for an fp32 model

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
