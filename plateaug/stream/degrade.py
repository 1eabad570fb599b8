"""Degradations of whole scenes, applied after the plates are in (and after augmentation): low light,
defocus, sensor noise and JPEG compression hit the photo and its plates alike, so a pasted plate is
never the only sharp, clean thing in the image (../shared/REALISM.md, detection)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from kornia.filters import gaussian_blur2d
from PIL import Image

from ..renderer.device import to_device
from .scene import add_fine_noise


@dataclass(frozen=True)
class Degrade:
    """Per-scene probabilities and ranges (low, high) of each degradation."""

    p_low_light: float = 0.2
    low_light: tuple[float, float] = (0.3, 0.75)  # exposure scale (then a gamma lifting the shadows a little)
    p_blur: float = 0.3
    blur: tuple[float, float] = (0.4, 1.3)  # Gaussian sigma, pixels
    p_noise: float = 0.5
    noise: tuple[float, float] = (0.004, 0.035)  # Gaussian std
    p_jpeg: float = 0.6
    jpeg: tuple[int, int] = (30, 92)  # quality

    def __post_init__(self):
        for name in ("p_low_light", "p_blur", "p_noise", "p_jpeg"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"Degrade.{name} must be in [0, 1], got {getattr(self, name)}")
        for name, lo, hi in (("low_light", 0.05, 1.0), ("blur", 0.0, 5.0), ("noise", 0.0, 0.3), ("jpeg", 1, 100)):
            a, b = getattr(self, name)
            if not lo <= a <= b <= hi:
                raise ValueError(f"Degrade.{name} must be (low, high) within [{lo}, {hi}], got {(a, b)}")


def degrade(images: torch.Tensor, d: Degrade, g: torch.Generator) -> torch.Tensor:
    """images (B, 3, H, W) in [0, 1] -> degraded copy. Draws come from the CPU generator g in a fixed
    order (B x 9 values), so a seed gives the same degradations on every device; the noise field
    comes from a generator seeded by g (on a GPU, drawn there)."""
    B = len(images)
    dev = images.device
    u = torch.rand(B, 9, generator=g)
    noise_seed = int(torch.randint(0, 2**62, (1,), generator=g))
    out = images.clone()

    def span(r, x):
        return r[0] + (r[1] - r[0]) * x

    sel = (u[:, 0] < d.p_low_light).nonzero().squeeze(1)
    if len(sel):
        k = to_device(span(d.low_light, u[sel, 1]).view(-1, 1, 1, 1), dev)
        i = to_device(sel, dev)
        out[i] = (out[i] * k).clamp(0, 1) ** 0.9
    sel = (u[:, 2] < d.p_blur).nonzero().squeeze(1)
    for s in sel.tolist():  # per scene: each has its own sigma (a few scenes per batch)
        sigma = float(span(d.blur, u[s, 3]))
        k = 2 * int(np.ceil(2 * sigma)) + 1
        out[s: s + 1] = gaussian_blur2d(out[s: s + 1], (k, k), (sigma, sigma), border_type="reflect")
    sel = (u[:, 4] < d.p_noise).nonzero().squeeze(1)
    if len(sel):  # sensor noise: one grey field per scene (the fine-noise bank on the CPU)
        gen = torch.Generator(device=dev if dev.type == "cuda" else "cpu").manual_seed(noise_seed)
        i = to_device(sel, dev)
        out[i] = add_fine_noise(out[i], span(d.noise, u[sel, 5]), gen).clamp_(0, 1)
    sel = (u[:, 6] < d.p_jpeg).nonzero().squeeze(1)
    if len(sel):
        q = (d.jpeg[0] + (d.jpeg[1] - d.jpeg[0]) * u[sel, 7]).round().int().tolist()
        i = to_device(sel, dev)
        out[i] = to_device(jpeg(out[i].cpu(), q), dev)
    return out.clamp_(0, 1)


def jpeg(images: torch.Tensor, qualities: list[int]) -> torch.Tensor:
    """(n, 3, H, W) float in [0, 1] on the CPU -> the same, JPEG-compressed at the given qualities
    (Pillow, 4:2:0 chroma: real camera JPEG artefacts, a few ms per 640x384 image)."""
    arr = (images.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    out = []
    for a, q in zip(arr, qualities):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=int(q))
        buf.seek(0)
        with Image.open(buf) as im:
            out.append(np.array(im.convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255
