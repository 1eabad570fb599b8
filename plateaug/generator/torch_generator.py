"""TorchGenerator: a trained checkpoint as a differentiable torch module (training, research)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..models import UNetGenerator, generator_input
from ..models.contract import IN_CHANNELS, check_images
from .checkpoint import load_checkpoint


def generator_from_checkpoint(ckpt: dict | str | Path, ema: bool = True) -> UNetGenerator:
    """The generator of a plateaug checkpoint (EMA weights by default), in eval mode."""
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    g = ckpt["generator"]
    model = UNetGenerator(**g["config"])
    model.load_state_dict(g["ema_state_dict"] if ema else g["state_dict"])
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
