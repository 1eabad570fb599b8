"""Plate colour randomisation for scene mode: a share of plates redrawn as a random two-colour plate
(light ground, dark ink, or the reverse), keeping their layout, so a detector learns a plate by its
shape and lettering rather than by the few grounds the shipped regions have (yellow, orange, black
plates of other countries)."""

from __future__ import annotations

import torch

from ..renderer.device import to_device
from .composite import LUMA


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(N,) hue in [0, 1), saturation, value in [0, 1] -> (N, 3) RGB in [0, 1]."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + h[:, None] * 6) % 6  # (N, 3)
    return v[:, None] - v[:, None] * s[:, None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def two_colours(n: int, g: torch.Generator, p_dark_ground: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """n random (ground, ink) colour pairs, (n, 3) each in [0, 1]: a bright ground of any hue and
    saturation with near-black ink, or (p_dark_ground) a dark ground with near-white ink."""
    hue = torch.rand(n, generator=g)
    sat = torch.rand(n, generator=g) ** 0.7  # leaning to saturated grounds (yellow, orange), pale ones too
    light = hsv_to_rgb(hue, sat, 0.75 + 0.25 * torch.rand(n, generator=g))
    dark = hsv_to_rgb(torch.rand(n, generator=g), torch.rand(n, generator=g), 0.25 * torch.rand(n, generator=g))
    flip = (torch.rand(n, generator=g) < p_dark_ground)[:, None]
    return torch.where(flip, dark, light), torch.where(flip, light, dark)


def recolour(plates: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """plates (N, 3, h, w) float in [0, 1] -> the same, each with probability p redrawn in two random
    colours: its luma stretched to [0, 1] per plate, then mapped ink (dark) -> ground (light). Returns
    a new tensor; the plates not drawn are unchanged."""
    if plates.ndim != 4 or plates.shape[1] != 3:
        raise ValueError(f"recolour expects plates (N, 3, h, w), got {tuple(plates.shape)}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"recolour's share p must be in [0, 1], got {p}")
    n = len(plates)
    pick = torch.rand(n, generator=g) < p
    ground, ink = two_colours(n, g)
    if n == 0 or not bool(pick.any()):
        return plates.clone()
    idx = to_device(pick.nonzero().squeeze(1), plates.device)
    sel = plates[idx]  # (k, 3, h, w)
    luma = (sel * sel.new_tensor(LUMA)[:, None, None]).sum(1, keepdim=True)  # (k, 1, h, w)
    flat = luma.flatten(1)
    lo = flat.quantile(0.02, dim=1)[:, None, None, None]
    hi = flat.quantile(0.98, dim=1)[:, None, None, None]
    t = ((luma - lo) / (hi - lo).clamp(min=0.05)).clamp(0, 1)  # (k, 1, h, w): 0 ink, 1 ground
    g_, i_ = (to_device(c[pick], plates.device)[:, :, None, None].to(plates.dtype) for c in (ground, ink))
    out = plates.clone()
    out[idx] = i_ + (g_ - i_) * t
    return out
