"""The generator's input contract, in one place: what the channels are, their range, and the
one function that builds them. Training (real crops), inference (renders), export metadata
and the runtime checks all read this module."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..renderer.outline import outline

IN_CHANNELS = 4
CHANNELS = ("outline", "hint_r", "hint_g", "hint_b")
OUT_CHANNELS = 3
VALUE_RANGE = (0.0, 1.0)  # inputs and outputs are float in [0, 1]
HINT_POOL = 8  # colour hint: the image averaged over 8x8 blocks, upsampled back (colours, no text shapes)
SIZE_MULTIPLE = 16  # H and W must be multiples of this (four stride-2 levels)


def colour_hint(images: torch.Tensor) -> torch.Tensor:
    """Blurred low-resolution colours of the image: (B, 3, H, W) -> (B, 3, H, W) in [0, 1]."""
    small = F.avg_pool2d(images, HINT_POOL, ceil_mode=True)
    return F.interpolate(small, size=images.shape[-2:], mode="bilinear", align_corners=False)


def generator_input(images: torch.Tensor) -> torch.Tensor:
    """The generator's input for RGB images (renders or real crops), differentiable.

    images: (B, 3, H, W) float in [0, 1] -> (B, 4, H, W) float in [0, 1]: outline, colour hint.
    """
    check_images(images)
    return torch.cat([outline(images), colour_hint(images)], dim=1)


def check_images(images: torch.Tensor) -> None:
    """Raise a clear error unless images are (B, 3, H, W) float with H, W multiples of 16."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected images of shape (B, 3, H, W), got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got dtype {images.dtype}")
    H, W = images.shape[-2:]
    if H % SIZE_MULTIPLE or W % SIZE_MULTIPLE:
        raise ValueError(f"image size {H}x{W} must be a multiple of {SIZE_MULTIPLE} in both H and W")
