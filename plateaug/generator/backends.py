"""Generator backends behind one interface: condition (B, 4, H, W) -> RGB (B, 3, H, W), both
float in [0, 1]. Chosen by name ("onnx", "torch", "none"), by path (.onnx / .pt) or given
as any callable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .shipped import DEFAULT_CHECKPOINT, DEFAULT_ONNX

Backend = Callable[[torch.Tensor], torch.Tensor]


class GeneratorOutputError(ValueError):
    """A generator backend returned something other than float RGB (B, 3, H, W) for its input."""


def resolve_generator(generator: str | Path | Backend | None, device: torch.device | str = "cpu") -> Backend | None:
    """Build the backend: None/"none" = clean renders; "onnx" = shipped ONNX model on ORT;
    "torch" = shipped checkpoint in torch; a path to an .onnx or .pt file; or a callable."""
    if generator is None or (isinstance(generator, str) and generator == "none"):
        return None
    if callable(generator):
        return generator
    if generator == "onnx":
        generator = DEFAULT_ONNX
    elif generator == "torch":
        generator = DEFAULT_CHECKPOINT
    path = Path(generator)
    if path.suffix == ".onnx":
        from .onnx_runtime import OnnxGenerator

        return OnnxGenerator(path, device=device)
    if path.suffix in (".pt", ".pth"):
        from .torch_generator import TorchGenerator

        return TorchGenerator(path, device=device)
    raise ValueError(f"generator must be 'onnx', 'torch', 'none', a path to an .onnx or .pt file, or a callable; "
                     f"got {generator!r}")


def describe_generator(generator: str | Path | Backend | None, backend: Backend | None = None) -> str:
    """A short name for error messages: the model path for a name or path, else the callable."""
    if generator == "onnx":
        generator = DEFAULT_ONNX
    elif generator == "torch":
        generator = DEFAULT_CHECKPOINT
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
