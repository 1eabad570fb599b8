"""Lighting through the generator's colour hint: one text, many looks.

The generator's input carries a colour hint (8x8-block mean colours, `models.contract`). In
training it is a real crop's hint, with that photo's exposure, colour cast, shading and shadows,
and the generator learned to render them through its texture; a clean render's hint is flat, so
every translated plate of a text looked alike. Relighting the hint of each translated plate
(exposure, colour cast, a light gradient, sometimes a cast shadow) makes the generator render
those looks; the outline channel, and so the text and every label, is untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..renderer.device import to_device
from .presets import resolve_preset


@dataclass(frozen=True)
class Lighting:
    """Per-plate random lighting of the colour hint. Ranges are (low, high), drawn uniformly."""

    gain: tuple[float, float] = (0.45, 1.1)  # exposure: the hint's brightness multiplied by this
    cast: float = 0.15  # colour cast: each channel's gain times 1 +- up to this
    gradient: float = 0.5  # light falling off across the plate: darkest edge x (1 - up to this)
    p_shadow: float = 0.3  # probability of a cast shadow (a soft-edged half-plane)
    shadow: tuple[float, float] = (0.35, 0.7)  # brightness left in the shadow
    softness: tuple[float, float] = (0.04, 0.2)  # shadow edge width, fraction of the plate's width

    def __post_init__(self):
        ranges = {"gain": (0.0, 2.0), "shadow": (0.0, 1.0), "softness": (0.0, 1.0)}
        for name, (bottom, top) in ranges.items():
            lo, hi = getattr(self, name)
            if not bottom <= lo <= hi <= top:
                raise ValueError(f"Lighting.{name} must be (low, high) with {bottom} <= low <= high <= {top}, "
                                 f"got {(lo, hi)}")
        if self.softness[0] <= 0:
            raise ValueError(f"Lighting.softness must be > 0, got {self.softness}")
        for name in ("cast", "gradient", "p_shadow"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"Lighting.{name} must be in [0, 1], got {getattr(self, name)}")


LIGHTINGS: dict[str, Lighting | None] = {"none": None, "varied": Lighting()}


def resolve_lighting(lighting: str | Lighting | dict | None) -> Lighting | None:
    """A preset name ("none", "varied"), a Lighting, a dict of Lighting fields (JSON/TOML config),
    or None (= no relighting: the render's own hint)."""
    return resolve_preset(lighting, Lighting, LIGHTINGS, "lighting")


def lighting_field(lighting: Lighting, n: int, size: tuple[int, int], g: torch.Generator,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """n random lighting fields: (n, 3, H, W) float >= 0, multipliers of a colour hint.

    Parameters are drawn on the CPU from `g` (one draw per kind for the whole batch), the field is
    built on `device`."""
    H, W = size
    u = lambda lo, hi, *shape: torch.rand(n, *shape, generator=g) * (hi - lo) + lo  # noqa: E731
    gain = u(*lighting.gain, 1)  # (n, 1)
    cast = 1 + u(-lighting.cast, lighting.cast, 3)  # (n, 3)
    angle = u(0, 2 * math.pi)  # gradient direction, (n,)
    fall = u(0, lighting.gradient)
    shadow_on = torch.rand(n, generator=g) < lighting.p_shadow
    shadow_angle, shadow_offset = u(0, 2 * math.pi), u(-0.6, 0.6)
    shadow_level, soft = u(*lighting.shadow), u(*lighting.softness)
    params = torch.stack([torch.cos(angle), torch.sin(angle), fall, torch.cos(shadow_angle), torch.sin(shadow_angle),
                          shadow_offset, torch.where(shadow_on, 1 - shadow_level, torch.zeros(n)), soft], 1)
    p = to_device(torch.cat([params, gain * cast], 1), device)  # (n, 11): one copy, no host sync
    aspect = W / H
    ys = torch.linspace(-1, 1, H, device=device).view(1, H, 1)
    xs = torch.linspace(-aspect, aspect, W, device=device).view(1, 1, W)  # plate units: equal steps in x and y
    reach = lambda c, s: (c.abs() * aspect + s.abs())[:, None, None]  # noqa: E731  half the plate along (c, s)
    ramp = (xs * p[:, 0, None, None] + ys * p[:, 1, None, None]) / reach(p[:, 0], p[:, 1])  # (n, H, W) in [-1, 1]
    light = 1 - p[:, 2, None, None] * (1 - ramp) / 2  # 1 on the lit edge, 1 - fall on the other
    side = xs * p[:, 3, None, None] + ys * p[:, 4, None, None] - p[:, 5, None, None] * reach(p[:, 3], p[:, 4])
    edge = torch.sigmoid(side / (p[:, 7, None, None] * 2 * aspect / 4))  # 0 -> 1 across the edge
    light = light * (1 - p[:, 6, None, None] * edge)
    return light[:, None] * p[:, 8:, None, None]  # (n, 3, H, W)


def relight_hint(condition: torch.Tensor, lighting: Lighting | None, g: torch.Generator) -> torch.Tensor:
    """The generator input with each plate's colour hint relit.

    condition: (B, 4, H, W) float in [0, 1] (outline, hint r, g, b; `models.contract`)
    -> (B, 4, H, W): the outline as given, the hint times a random lighting field, clipped to [0, 1].
    """
    if lighting is None:
        return condition
    if condition.ndim != 4 or condition.shape[1] != 4:
        raise ValueError(f"relight_hint expects a (B, 4, H, W) generator input, got {tuple(condition.shape)}")
    field = lighting_field(lighting, len(condition), tuple(condition.shape[-2:]), g, condition.device)
    hint = (condition[:, 1:] * field.to(condition.dtype)).clamp_(0, 1)
    return torch.cat([condition[:, :1], hint], 1)
