"""Stroke weight variety: thin or thicken rendered characters by a fractional number of pixels.

One typeface has one stroke weight; real plates' strokes vary with the font, wear, exposure and
blur, and a recogniser that only ever saw one weight confuses 0/O, 8/B and 7/T on the others.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .device import to_device


def _erode(x: torch.Tensor) -> torch.Tensor:
    return -F.max_pool2d(-x, 3, 1, 1)


def _dilate(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, 1, 1)


def stroke_weight(ink: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """Change the stroke weight of ink coverage per image.

    ink: (B, 1, H, W) float in [0, 1] on any device; amount: (B,) pixels on the CPU (so the number
    of steps is known without a device sync), > 0 thins (3x3 erosion per pixel), < 0 thickens
    (3x3 dilation), a fraction blends the two nearest whole steps.
    Returns (B, 1, H, W) in [0, 1]; images with amount 0 come back unchanged.
    """
    if ink.ndim != 4 or ink.shape[1] != 1 or amount.shape != (len(ink),):
        raise ValueError(f"expected ink (B, 1, H, W) and amount (B,), got {tuple(ink.shape)} and "
                         f"{tuple(amount.shape)}")
    if amount.device.type != "cpu":
        raise ValueError("stroke amounts must be a CPU tensor (their range sets the number of steps)")
    out = ink
    for sign, step in ((1.0, _erode), (-1.0, _dilate)):
        a = (amount.float() * sign).clamp(min=0)  # (B,) steps in this direction
        n = math.ceil(float(a.max())) if len(a) else 0
        if n == 0:
            continue
        levels = [out]
        for _ in range(n):
            levels.append(step(levels[-1]))
        stack = torch.stack(levels)  # (n + 1, B, 1, H, W)
        lo = a.floor().long().clamp(max=n - 1)  # (B,) whole steps below a
        frac = to_device(a - lo, ink.device).to(ink.dtype).view(-1, 1, 1, 1)
        rows = to_device(torch.stack([lo, lo + 1]), ink.device)  # (2, B)
        batch = torch.arange(len(a), device=ink.device)
        out = torch.lerp(stack[rows[0], batch], stack[rows[1], batch], frac)  # weight 0: the input exactly
    return out
