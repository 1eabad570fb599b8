"""TorchGenerator: a trained checkpoint as a differentiable torch module (training, research)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..models import UNetGenerator, generator_input
from ..models.contract import IN_CHANNELS, check_images
from .checkpoint import load_checkpoint, require_keys


def generator_from_checkpoint(ckpt: dict | str | Path, ema: bool = True, source: str | None = None) -> UNetGenerator:
    """The generator of a plateaug checkpoint (EMA weights by default), in eval mode; errors name
    `source` (default: the path, or "checkpoint dict")."""
    if not isinstance(ckpt, dict):
        source = source or f"checkpoint {ckpt}"
        ckpt = load_checkpoint(ckpt)  # weights_only: a file that would run code is refused
    source = source or "checkpoint dict"
    weights = "ema_state_dict" if ema else "state_dict"
    require_keys(ckpt, ("generator.config", f"generator.{weights}"), source, "holds no usable generator")
    g = ckpt["generator"]
    try:
        model = UNetGenerator(**g["config"])
        model.load_state_dict(g[weights])
    except (TypeError, RuntimeError) as e:  # unknown config fields, weights of another shape
        raise ValueError(f"{source} holds no usable generator ({type(e).__name__}: {e})") from None
    return model.eval()


class TorchGenerator(nn.Module):
    """Backend protocol shared with OnnxGenerator: `forward(condition)` maps the contract input
    (B, 4, H, W) in [0, 1] to RGB (B, 3, H, W) in [0, 1]; `translate(images)` builds the
    condition from renders first. Both are differentiable (gradients reach the render)."""

    def __init__(self, checkpoint: str | Path | dict | UNetGenerator, device: torch.device | str = "cpu"):
        super().__init__()
        self.model = checkpoint if isinstance(checkpoint, nn.Module) else generator_from_checkpoint(checkpoint)
        self.model.to(device).eval()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        if condition.ndim != 4 or condition.shape[1] != IN_CHANNELS:
            raise ValueError(f"generator input must be (B, {IN_CHANNELS}, H, W), got {tuple(condition.shape)}")
        return self.model(condition)

    def translate(self, images: torch.Tensor) -> torch.Tensor:
        """Clean renders (B, 3, H, W) in [0, 1] -> photographed-looking plates, same shape."""
        check_images(images)
        return self(generator_input(images))
