"""Detector-like framing of crops: the plate inside a box with margins, surroundings, tilt,
perspective and the low resolution of a far-away plate, as a detector would hand it to a
recogniser. Labels (character boxes, plate corners) move with the pixels.

Real crops come from a detector box: a margin of car body around the plate, the plate tilted
and seen in perspective, often only 20-40 pixels tall. A crop that is exactly the plate, corners
on the image corners, teaches a recogniser a framing it never meets (../shared/REALISM.md, cause 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.geometry.transform import get_perspective_transform

from ..renderer.device import to_device
from .presets import resolve_preset
from .scene import compose, procedural_backgrounds

LOW_RES_LEVELS = 4  # low-resolution scales are bucketed so each bucket is one batched resize


@dataclass(frozen=True)
class Framing:
    """How a crop frames its plate. Fractions are of the crop size; ranges are (low, high)."""

    # Defaults = the "detector" preset, chosen on the realism benchmark's validation split: a first,
    # stronger setting (margins 8 % / 18 %, tilt 6, perspective 0.06, 60 % low resolution at 0.3-0.9)
    # lowered the stream-trained recogniser's real-plate accuracy in every region; this milder one
    # is level with "tight" (README, realism ablation).
    margin_x: tuple[float, float] = (0.0, 0.04)  # left and right margin, each drawn separately
    margin_y: tuple[float, float] = (0.0, 0.10)  # top and bottom margin
    tilt_deg: float = 3.0  # in-plane rotation, uniform in +-tilt
    perspective: float = 0.03  # corner jitter, fraction of the plate's width / height
    p_low_res: float = 0.3  # probability that a crop is seen at low resolution
    low_res: tuple[float, float] = (0.5, 0.9)  # resolution scale of a low-resolution crop
    p_holder: float = 0.0  # probability that the plate sits in a holder: a dark (or silver) frame around it
    holder: tuple[float, float] = (0.04, 0.12)  # the holder's width around the plate, fraction of its height

    def __post_init__(self):
        limits = {"margin_x": 0.45, "margin_y": 0.45, "low_res": 1.0, "holder": 0.5}  # highest value of each range
        for name, top in limits.items():
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi <= top:
                raise ValueError(f"Framing.{name} must be (low, high) with 0 <= low <= high <= {top}, got {(lo, hi)}")
        if self.low_res[0] <= 0:
            raise ValueError(f"Framing.low_res must be > 0, got {self.low_res}")
        for name, top in (("tilt_deg", 45.0), ("perspective", 0.3), ("p_low_res", 1.0), ("p_holder", 1.0)):
            if not 0 <= getattr(self, name) <= top:
                raise ValueError(f"Framing.{name} must be in [0, {top}], got {getattr(self, name)}")


FRAMINGS: dict[str, Framing | None] = {"tight": None, "detector": Framing()}


def resolve_framing(framing: str | Framing | dict | None) -> Framing | None:
    """A preset name ("tight": the plate fills the crop; "detector"), a Framing, a dict of Framing
    fields (from a JSON/TOML config), or None (= tight)."""
    return resolve_preset(framing, Framing, FRAMINGS, "framing")


def sample_quads(aspects: torch.Tensor, size: tuple[int, int], framing: Framing,
                 g: torch.Generator) -> torch.Tensor:
    """Plate corners (N, 4, 2) TL, TR, BR, BL in crop pixels: a tilted, perspective plate of the
    given aspect (width / height), its enclosing box fitted to the crop minus random margins (the
    crop is stretched like a detector box resized to a fixed input). Every corner is inside."""
    H, W = size
    N = len(aspects)
    a = aspects.float()
    half = torch.stack([-a / 2, -0.5 * torch.ones_like(a), a / 2, -0.5 * torch.ones_like(a),
                        a / 2, 0.5 * torch.ones_like(a), -a / 2, 0.5 * torch.ones_like(a)], 1).view(N, 4, 2)
    ang = (torch.rand(N, generator=g) * 2 - 1) * math.radians(framing.tilt_deg)
    rot = torch.stack([torch.cos(ang), -torch.sin(ang), torch.sin(ang), torch.cos(ang)], 1).view(N, 2, 2)
    quad = half @ rot.transpose(1, 2)
    jitter = (torch.rand(N, 4, 2, generator=g) * 2 - 1) * framing.perspective
    quad = quad + jitter * torch.stack([a, torch.ones_like(a)], 1)[:, None, :]
    lo, hi = quad.amin(1, keepdim=True), quad.amax(1, keepdim=True)  # (N, 1, 2) enclosing box
    unit = (quad - lo) / (hi - lo)  # the quad inside its box, in [0, 1]

    def margin(r: tuple[float, float]) -> torch.Tensor:
        return r[0] + torch.rand(N, 2, generator=g) * (r[1] - r[0])

    mx, my = margin(framing.margin_x) * W, margin(framing.margin_y) * H  # (N, 2) each: before, after
    x0, x1 = mx[:, 0], W - mx[:, 1]
    y0, y1 = my[:, 0], H - my[:, 1]
    origin = torch.stack([x0, y0], 1)[:, None, :]
    extent = torch.stack([x1 - x0, y1 - y0], 1)[:, None, :]
    return origin + unit * extent


def low_resolution(images: torch.Tensor, framing: Framing, g: torch.Generator, inplace: bool = False) -> torch.Tensor:
    """Down- and up-sample a random subset of images (B, 3, H, W) to a random lower resolution
    (bucketed into a few scales), the blur and blockiness of a far-away plate. Geometry is unchanged.
    `inplace`: write into `images` (no copy of the batch) instead of a new tensor."""
    B, _, H, W = images.shape
    chosen = torch.rand(B, generator=g) < framing.p_low_res
    lo, hi = framing.low_res
    level = (torch.rand(B, generator=g) * LOW_RES_LEVELS).long().clamp(max=LOW_RES_LEVELS - 1)
    out = images if inplace else images.clone()
    # the level indices are found on the CPU (they come from g) and moved in one non-blocking copy
    picks = [(chosen & (level == k)).nonzero().squeeze(1) for k in range(LOW_RES_LEVELS)]
    sizes = [len(idx) for idx in picks]
    if not sum(sizes):
        return out
    for k, dev_idx in enumerate(to_device(torch.cat(picks), images.device).split(sizes)):
        if sizes[k] == 0:
            continue
        scale = lo + (hi - lo) * (k + 0.5) / LOW_RES_LEVELS
        small = (max(4, round(H * scale)), max(4, round(W * scale)))
        sub = F.interpolate(images[dev_idx], size=small, mode="bilinear", align_corners=False, antialias=True)
        out[dev_idx] = F.interpolate(sub, size=(H, W), mode="bilinear", align_corners=False)
    return out


HOLDER_SILVER = 0.15  # share of holders that are silver instead of dark


def holder_quads(quads: torch.Tensor, aspects: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """The plate quads (N, 4, 2) grown outward by `width` (N,) plate heights on every side, through
    each plate's own perspective (a holder seen from the same camera). -> (N, 4, 2)."""
    N = len(quads)
    unit = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]).expand(N, 4, 2)
    M = get_perspective_transform(unit, quads.float())  # (N, 3, 3) plate unit square -> crop
    ex, ey = width / aspects.float(), width  # (N,) the same width in plate-width and plate-height units
    grown = unit + torch.stack([-ex, -ey, ex, -ey, ex, ey, -ex, ey], 1).view(N, 4, 2)
    pts = torch.cat([grown, torch.ones(N, 4, 1)], -1) @ M.transpose(1, 2)
    return pts[..., :2] / pts[..., 2:]


def add_holders(backgrounds: torch.Tensor, quads: torch.Tensor, aspects: torch.Tensor, framing: Framing,
                g: torch.Generator) -> torch.Tensor:
    """Draw a holder (a flat dark or silver frame, framing.holder plate heights wide) behind a random
    framing.p_holder share of the plates, into backgrounds (N, 3, H, W). Draws from g only when
    p_holder > 0, so streams without holders keep their plates."""
    N = len(quads)
    if framing.p_holder <= 0:
        return backgrounds
    chosen = (torch.rand(N, generator=g) < framing.p_holder).nonzero().squeeze(1)  # (n,)
    lo, hi = framing.holder
    width = lo + (hi - lo) * torch.rand(N, generator=g)
    silver = torch.rand(N, generator=g) < HOLDER_SILVER
    grey = torch.where(silver, 0.55 + 0.25 * torch.rand(N, generator=g), 0.03 + 0.3 * torch.rand(N, generator=g))
    tint = 1 + 0.06 * (torch.rand(N, 3, generator=g) * 2 - 1)  # (N, 3) a slight colour cast
    if not len(chosen):
        return backgrounds
    dev, (H, W) = backgrounds.device, backgrounds.shape[-2:]
    # a flat texture at crop resolution: the warp's coverage edge is one texture pixel wide, so a
    # coarser texture would smear the holder's edge over the surroundings
    colour = to_device((grey[:, None] * tint).clamp(0, 1)[chosen], dev)[:, :, None, None].expand(-1, 3, H, W)
    idx = to_device(chosen, dev)
    held, _, _ = compose(backgrounds[idx], colour.contiguous(), (H, W), torch.zeros(len(chosen), 1, 4),
                         torch.ones(len(chosen), dtype=torch.int64),
                         holder_quads(quads[chosen], aspects[chosen], width[chosen]))
    backgrounds[idx] = held
    return backgrounds


def frame(plates: torch.Tensor, char_boxes: torch.Tensor, aspects: torch.Tensor, framing: Framing,
          g: torch.Generator, background_rng: torch.Generator | None = None
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frame plates like detector crops.

    plates (N, 3, H, W) in [0, 1], each filling its crop; char_boxes (N, S, 4) xyxy in those
    pixels (zero rows = no character); aspects (N,) plate width / height. Returns crops
    (N, 3, H, W) of the same size with surroundings, the moved character boxes (N, S, 4) and the
    plate corners (N, 4, 2). The surroundings are drawn from `background_rng` (a generator on
    the plates' device, so they are made there) when given, else from the CPU generator g."""
    N, _, H, W = plates.shape
    quads = sample_quads(aspects, (H, W), framing, g)
    backgrounds = to_device(procedural_backgrounds(N, (H, W), background_rng or g), plates.device)
    backgrounds = add_holders(backgrounds, quads, aspects, framing, g)
    ones = torch.ones(N, dtype=torch.int64)
    crops, boxes, corners = compose(backgrounds, plates, (H, W), char_boxes, ones, quads)
    # crops is compose's fresh output: low resolution in place; warps can overshoot [0, 1] by rounding
    return low_resolution(crops, framing, g, inplace=True).clamp_(0, 1), boxes, corners
