"""Generator backends behind one interface: condition (B, 4, H, W) -> RGB (B, 3, H, W), both
float in [0, 1]. Chosen by name ("onnx", "torch", "none"), by path (.onnx / .pt) or given
as any callable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from .shipped import DEFAULT_CHECKPOINT, DEFAULT_ONNX

Backend = Callable[[torch.Tensor], torch.Tensor]


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
