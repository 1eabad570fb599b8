"""Generator backends behind one interface: condition (B, 4, H, W) -> RGB (B, 3, H, W), both
float in [0, 1]. Chosen by name ("auto", "onnx", "torch", "torch-bf16", "none"), by path (.onnx /
.pt) or given as any callable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .shipped import DEFAULT_CHECKPOINT, DEFAULT_ONNX

Backend = Callable[[torch.Tensor], torch.Tensor]

# name -> the shipped model file it runs; "torch-bf16": the checkpoint in bfloat16 (TorchGenerator dtype)
NAMED_MODELS: dict[str, Path] = {"onnx": DEFAULT_ONNX, "torch": DEFAULT_CHECKPOINT, "torch-bf16": DEFAULT_CHECKPOINT}
GENERATOR_NAMES = ("auto", *NAMED_MODELS, "none")


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX), where oneDNN's bf16
    convolutions beat fp32 ones; elsewhere torch emulates bf16, slower than ONNX Runtime's fp32."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a torch without these probes: assume no
        return False


def resolve_name(generator: str | Path | Backend | None,
                 device: torch.device | str = "cpu") -> str | Path | Backend | None:
    """What "auto" (the stream's default) runs on this device: "torch-bf16" on a CPU with bf16 units
    (generator 2.0-3.5x faster than ONNX Runtime fp32 by batch size, the stream a median 1.3x over
    eight noisy runs, realism level within the seed spread: benchmarks/HISTORY.md), else "onnx" (ONNX
    Runtime fp32 on the CPU, the IOBinding path on CUDA). Any other value is returned as is."""
    if isinstance(generator, str) and generator == "auto":
        return "torch-bf16" if torch.device(device).type == "cpu" and cpu_has_bf16() else "onnx"
    return generator


class GeneratorOutputError(ValueError):
    """A generator backend returned something other than float RGB (B, 3, H, W) for its input."""


def resolve_generator(generator: str | Path | Backend | None, device: torch.device | str = "cpu") -> Backend | None:
    """Build the backend: None/"none" = clean renders; "auto" = resolve_name's choice; "onnx" =
    shipped ONNX model on ORT; "torch" = shipped checkpoint in torch; "torch-bf16" = the same in
    bfloat16 (about 3x faster on CPUs with bf16 units, outputs within 0.012 of float32); a path to
    an .onnx or .pt file; or a callable."""
    generator = resolve_name(generator, device)
    if generator is None or (isinstance(generator, str) and generator == "none"):
        return None
    if callable(generator):
        return generator
    if generator == "torch-bf16":
        from .torch_generator import TorchGenerator

        return TorchGenerator(DEFAULT_CHECKPOINT, device=device, dtype=torch.bfloat16)
    if isinstance(generator, str) and generator in NAMED_MODELS:
        generator = NAMED_MODELS[generator]
    path = Path(generator)
    if path.suffix == ".onnx":
        from .onnx_runtime import OnnxGenerator

        return OnnxGenerator(path, device=device)
    if path.suffix in (".pt", ".pth"):
        from .torch_generator import TorchGenerator

        return TorchGenerator(path, device=device)
    raise ValueError(f"generator must be one of {GENERATOR_NAMES}, a path to an .onnx or .pt file, or a callable; "
                     f"got {generator!r}")


def describe_generator(generator: str | Path | Backend | None, backend: Backend | None = None) -> str:
    """A short name for error messages: the model path for a name or path, else the callable."""
    if isinstance(generator, str) and generator == "auto":  # what it resolved to
        generator = "onnx" if type(backend).__name__ == "OnnxGenerator" else resolve_name(generator)
    if isinstance(generator, str) and generator in NAMED_MODELS:
        generator = NAMED_MODELS[generator]
    if isinstance(generator, (str, Path)):
        return f"generator {str(generator)!r}"
    target = backend if backend is not None else generator
    if isinstance(target, torch.nn.Module):  # a module's repr is its whole layer tree
        return f"generator {type(target).__name__} module"
    text = repr(target)
    return f"generator {text if len(text) <= 120 else text[:117] + '...'}"


def check_output(out: object, condition: torch.Tensor, name: str) -> None:
    """Raise GeneratorOutputError unless `out` is a floating tensor of shape (B, 3, H, W) for the
    condition (B, 4, H, W). Metadata only: no values are read, so no device sync."""
    B, _, H, W = condition.shape
    want = (B, 3, H, W)
    if not isinstance(out, torch.Tensor):
        raise GeneratorOutputError(f"{name} returned {type(out).__module__}.{type(out).__name__}, expected a "
                                   f"torch.Tensor of shape {want} (RGB, float in [0, 1])")
    if tuple(out.shape) != want:
        what = ("channels" if out.ndim == 4 and out.shape[0] == B and tuple(out.shape[2:]) == (H, W)
                else "images" if out.ndim == 4 and out.shape[0] != B else "shape")
        raise GeneratorOutputError(f"{name} returned shape {tuple(out.shape)} (wrong {what}) for an input of shape "
                                   f"{tuple(condition.shape)}; expected {want} (RGB, float in [0, 1])")
    if not out.is_floating_point():
        raise GeneratorOutputError(f"{name} returned dtype {out.dtype}; expected a floating-point tensor with "
                                   f"values in [0, 1]")
