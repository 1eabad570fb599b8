"""Plates into photos: each plate is warped only into the tile of the scene it covers, from a
texture level about its own size (so a 30-pixel plate is filtered, not aliased), takes the local
light, colour and focus of its place, and is blended with a hard or a feathered edge.

Tiles are accumulated (premultiplied colour and coverage, scatter-added), so plates of one scene
composite in any order and a batch is a few batched warps whatever its plate count. Plates never
overlap (placement keeps them apart; overlapping annotated boxes split their coverage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d

from ..renderer.device import to_device
from .warp import warp_with_coverage

LEVELS = 4  # texture levels: full, 1/2, 1/4, 1/8
OVERSHOOT = 1.5  # a level is used down to plates this much narrower than it (then the next is sharper enough)
TILE_PAD = 3  # pixels around a plate's box in its tile (feathered edges, blur)
BLUR_BINS = (0.0, 0.6, 1.1, 1.7)  # focus blur sigmas (px) a plate is snapped to
LUMA = (0.299, 0.587, 0.114)
LIT_DARK = 0.25  # surroundings darker than this (luma) count as night for Harmonise.p_lit


@dataclass(frozen=True)
class Harmonise:
    """How a pasted plate takes on its place. Ranges are (low, high), drawn per plate."""

    match: tuple[float, float] = (0.5, 1.0)  # strength of light / colour matching (0 = plate as rendered)
    cast: tuple[float, float] = (0.0, 0.6)  # how much of the local colour cast a plate takes
    p_blur: float = 0.6  # share of plates blurred to a focus like their surroundings'
    p_soft_edge: float = 0.5  # share of plates with a feathered (not hard) edge
    p_lit: float = 0.0  # share of new plates in dark places lit as at night (plate lamp, headlights on
    #                     retroreflective sheeting): bright, washed out, a glow around them

    def __post_init__(self):
        for name in ("p_blur", "p_soft_edge", "p_lit"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"Harmonise.{name} must be in [0, 1], got {getattr(self, name)}")


def texture_levels(plates: torch.Tensor) -> list[torch.Tensor]:
    """(N, 3, h, w) -> LEVELS textures, each half the size of the one before (antialiased)."""
    out = [plates]
    for _ in range(LEVELS - 1):
        h, w = out[-1].shape[-2:]
        out.append(F.interpolate(out[-1], size=(max(4, h // 2), max(4, w // 2)), mode="bilinear",
                                 align_corners=False, antialias=True))
    return out


def pick_level(dest_width: torch.Tensor, texture_width: int) -> torch.Tensor:
    """(N,) texture level per plate: the smallest texture still >= dest width / OVERSHOOT... i.e. the
    one that shrinks least while staying at most ~2x the plate's width on the scene."""
    ratio = texture_width / (dest_width.clamp(min=1.0) * OVERSHOOT)
    return ratio.clamp(min=1).log2().floor().clamp(0, LEVELS - 1).long()


def plate_tiles(quads: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, 4) int64 x0, y0, x1, y1 (exclusive) of each quad's box plus TILE_PAD, clipped to the scene."""
    H, W = size
    lo = quads.amin(1).floor() - TILE_PAD
    hi = quads.amax(1).ceil() + TILE_PAD + 1
    x0, y0 = lo[:, 0].clamp(0, W - 1), lo[:, 1].clamp(0, H - 1)
    x1, y1 = hi[:, 0].clamp(1, W), hi[:, 1].clamp(1, H)
    return torch.stack([x0, y0, torch.maximum(x1, x0 + 1), torch.maximum(y1, y0 + 1)], 1).long()


def tile_index(tiles: torch.Tensor, owner: torch.Tensor, th: int, tw: int, size: tuple[int, int, int]
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat index (n, th, tw) of every tile pixel into a (B, C, H, W) batch's first channel (C, H, W
    = size; add c * H * W for channel c), and whether it lies in the plate's tile (n, th, tw) (a tile
    smaller than th x tw is padded; padding points at its scene's pixel 0)."""
    C, H, W = size
    ys = tiles[:, 1, None] + torch.arange(th, device=tiles.device)  # (n, th)
    xs = tiles[:, 0, None] + torch.arange(tw, device=tiles.device)  # (n, tw)
    inside = (ys < tiles[:, 3, None])[:, :, None] & (xs < tiles[:, 2, None])[:, None, :]
    base = owner[:, None, None] * (C * H * W)
    idx = base + ys.clamp(max=H - 1)[:, :, None] * W + xs.clamp(max=W - 1)[:, None, :]
    return torch.where(inside, idx, base.expand_as(idx)), inside


def _luma(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _weighted_stats(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and std of x (n, C, h, w) under weights w (n, 1, h, w)."""
    total = w.sum((2, 3), keepdim=True).clamp(min=1e-6)
    mean = (x * w).sum((2, 3), keepdim=True) / total
    var = ((x - mean) ** 2 * w).sum((2, 3), keepdim=True) / total
    return mean, var.clamp(min=1e-8).sqrt()


def composite(scenes: torch.Tensor, plates: torch.Tensor, quads: torch.Tensor, owner: torch.Tensor,
              g: torch.Generator, harmonise: Harmonise | None, reference: torch.Tensor | None = None,
              feather: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste plates (N, 3, h, w) into scenes (B, 3, H, W) (contiguous; modified in place and returned) at quads
    (N, 4, 2) (TL, TR, BR, BL scene pixels) in scene owner[i]. reference (N,) bool: plates that
    replace a real plate (match its light and colour: the scene still shows the real plate's pixels
    under the quad) rather than take their surroundings'. feather: every edge soft (without
    harmonise; with it, Harmonise.p_soft_edge decides per plate). Returns (scenes, M (N, 3, 3) texture
    level 0 -> scene homographies for the labels). Random draws: from g (CPU)."""
    scenes = scenes.contiguous()
    B, _, H, W = scenes.shape
    N, _, h, w = plates.shape
    dev = scenes.device
    quads = quads.float()
    src = torch.tensor([[0, 0], [w, 0], [w, h], [0, h]], dtype=torch.float32)
    M = _perspective(src.expand(N, 4, 2), quads.cpu())  # (N, 3, 3) float64, level 0 -> scene
    if N == 0:
        return scenes, M.float()
    # per-plate draws, all on the CPU in a fixed order (same seed, same scene on every device)
    u = torch.rand(N, 6, generator=g)
    dest_w = (quads[:, 1] - quads[:, 0]).norm(dim=-1).cpu().maximum((quads[:, 2] - quads[:, 3]).norm(dim=-1).cpu())
    level = pick_level(dest_w, w)
    tiles = plate_tiles(quads.cpu(), (H, W))
    ref = torch.zeros(N, dtype=torch.bool) if reference is None else reference.cpu()
    flat = scenes.view(-1)  # (B * 3 * H * W,): tiles are read from and added into it in place
    channel = torch.arange(3, device=dev).view(3, 1) * (H * W)
    textures = texture_levels(plates)
    for lv in range(LEVELS):
        sel = (level == lv).nonzero().squeeze(1)
        if len(sel) == 0:
            continue
        tex = textures[lv][to_device(sel, dev)]
        th_, tw_ = tex.shape[-2:]
        t = tiles[sel]
        th, tw = int((t[:, 3] - t[:, 1]).max()), int((t[:, 2] - t[:, 0]).max())
        # level lv texture -> tile pixels: scale the texture up to level 0, then M, then shift to the tile
        S = torch.diag(torch.tensor([w / tw_, h / th_, 1.0], dtype=torch.float64))
        T = torch.eye(3, dtype=torch.float64).repeat(len(sel), 1, 1)
        T[:, 0, 2], T[:, 1, 2] = -t[:, 0].double(), -t[:, 1].double()
        rgb, alpha = warp_with_coverage(tex, to_device((T @ M[sel] @ S).float(), dev), (th, tw))
        idx, inside = tile_index(to_device(t, dev), to_device(owner.cpu()[sel], dev), th, tw, (3, H, W))
        idx = idx.view(1, -1) + channel  # (3, n * th * tw) into flat
        alpha = alpha * inside[:, None].to(alpha.dtype)
        under = flat[idx].view(3, len(sel), th, tw).transpose(0, 1)  # (n, 3, th, tw) the scene there now
        if harmonise is not None:
            rgb, alpha = _harmonise(rgb, alpha, under, inside, u[sel], ref[sel], harmonise)
        elif feather:  # a fill (placement.erase), without a dark outline: its warped edge keeps its own colour (the
            #   zero padding's share of the taps taken out), and past that edge the colour is the scene's
            rgb = torch.where(alpha > 1e-3, rgb / alpha.clamp(min=1e-3), under)
            alpha = gaussian_blur2d(alpha, (3, 3), (0.7, 0.7), border_type="constant")
        # blend as an added change: tiles overlap only where one of them has no coverage (plates do not
        # overlap), so adding keeps every plate whatever the order
        flat.index_add_(0, idx.view(-1), ((rgb - under) * alpha).transpose(0, 1).reshape(-1))
    scenes.clamp_(0, 1)
    return scenes, M.float()


def _harmonise(rgb: torch.Tensor, alpha: torch.Tensor, under: torch.Tensor, inside: torch.Tensor, u: torch.Tensor,
               ref: torch.Tensor, h: Harmonise) -> tuple[torch.Tensor, torch.Tensor]:
    """Light, colour and focus of the place; a feathered edge on some plates. rgb, alpha, under:
    the plate's tile (n, 3|1, th, tw); u (n, 6) uniform draws; ref (n,) match the pixels under the
    plate (a replaced real plate) instead of the ring around it."""
    dev = rgb.device
    u = to_device(u, dev)
    on = (alpha > 0.5).to(rgb.dtype)  # the plate
    ring = (1 - alpha) * inside[:, None].to(rgb.dtype)  # the tile around it
    p_mean, p_std = _weighted_stats(rgb, on)
    u_mean, u_std = _weighted_stats(under, on)  # the pixels the plate covers
    r_mean, _ = _weighted_stats(under, ring)
    strength = (h.match[0] + (h.match[1] - h.match[0]) * u[:, 0]).view(-1, 1, 1, 1)
    # a replaced plate: the real plate's mean and contrast, channel by channel
    replaced = (rgb - p_mean) / p_std * u_std.clamp(min=0.02) + u_mean
    # a new plate: the exposure of its surroundings and part of their colour cast (a plate is brighter
    # than most surroundings, so the exposure moves halfway in log terms)
    p_l, r_l = _luma(p_mean), _luma(r_mean)
    gain = ((r_l.clamp(min=0.02) / p_l.clamp(min=0.02)) ** 0.5).clamp(0.35, 1.4)
    cast = (h.cast[0] + (h.cast[1] - h.cast[0]) * u[:, 1]).view(-1, 1, 1, 1)
    tint = (r_mean.clamp(min=0.02) / r_l.clamp(min=0.02)) ** cast
    pasted = rgb * gain * tint
    target = torch.where(to_device(ref, dev).view(-1, 1, 1, 1), replaced, pasted)
    rgb = torch.lerp(rgb, target, strength).clamp(0, 1)
    lit = (u[:, 5] < h.p_lit) & (r_l.view(-1) < LIT_DARK) & ~to_device(ref, dev)
    if bool(lit.any()):
        rgb, alpha = _lit(rgb, alpha, p_mean, p_l, tint, u[:, 5] / max(h.p_lit, 1e-6), lit)
    # focus: as blurred as the background is (its gradient energy relative to the plate's), snapped to bins
    blur = (u[:, 2] < h.p_blur) & ~lit  # a lit plate is the sharpest thing in a dark scene
    if bool(blur.any()):
        sharp_p = _sharpness(rgb, on)
        sharp_b = _sharpness(under, torch.ones_like(on) * inside[:, None].to(rgb.dtype))
        sigma = ((sharp_p / sharp_b.clamp(min=1e-3)).clamp(min=1).log2() * 0.8 * (0.5 + u[:, 3])).cpu()
        sigma = torch.where(blur.cpu(), sigma, torch.zeros_like(sigma))
        bins = torch.tensor(BLUR_BINS)
        snapped = (sigma[:, None] - bins).abs().argmin(1)
        for b in range(1, len(BLUR_BINS)):
            pick = (snapped == b).nonzero().squeeze(1)
            if len(pick):
                d = to_device(pick, dev)
                s = BLUR_BINS[b]
                k = 2 * math.ceil(2 * s) + 1
                both = gaussian_blur2d(torch.cat([rgb[d] * alpha[d], alpha[d]], 1), (k, k), (s, s),
                                       border_type="constant")
                alpha[d] = both[:, 3:]
                rgb[d] = both[:, :3] / both[:, 3:].clamp(min=1e-4)
    soft = (u[:, 4] < h.p_soft_edge).view(-1, 1, 1, 1)
    feathered = gaussian_blur2d(alpha, (3, 3), (0.7, 0.7), border_type="constant")
    return rgb.clamp(0, 1), torch.where(soft, feathered, alpha)


def _lit(rgb: torch.Tensor, alpha: torch.Tensor, p_mean: torch.Tensor, p_l: torch.Tensor, tint: torch.Tensor,
         v: torch.Tensor, lit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Plates `lit` (n,) bool as at night: from the rendered plate rgb (n, 3, th, tw) (mean p_mean, luma
    p_l), brightness 0.6-0.95 and contrast 0.7-0.3 of the rendered (v (n,) in [0, 1): brighter is more
    washed out), half the local colour cast `tint`, and a glow: coverage spread ~2 px past the edge."""
    k = lit.view(-1, 1, 1, 1)
    v = v.clamp(0, 1).view(-1, 1, 1, 1)
    level, contrast = 0.6 + 0.35 * v, 0.7 - 0.4 * v
    bright = ((rgb - p_mean) * contrast + p_mean) * (level / p_l.clamp(min=0.02)) * tint.sqrt()
    glow_colour = p_mean * (level / p_l.clamp(min=0.02)) * tint.sqrt()
    bright = torch.where(alpha > 0, bright, glow_colour.expand_as(bright)).clamp(0, 1)
    glow = torch.maximum(alpha, 0.8 * gaussian_blur2d(alpha, (7, 7), (1.5, 1.5), border_type="constant"))
    return torch.where(k, bright, rgb), torch.where(k, glow, alpha)


def _sharpness(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(n,) mean absolute luminance gradient under w, relative to the luminance's std there."""
    y = _luma(x)
    gx = (y[..., :, 1:] - y[..., :, :-1]).abs()
    gy = (y[..., 1:, :] - y[..., :-1, :]).abs()
    wx, wy = w[..., :, 1:] * w[..., :, :-1], w[..., 1:, :] * w[..., :-1, :]
    grad = ((gx * wx).sum((1, 2, 3)) + (gy * wy).sum((1, 2, 3))) / (wx.sum((1, 2, 3)) + wy.sum((1, 2, 3))).clamp(min=1)
    _, std = _weighted_stats(y, w)
    return grad / std.view(-1).clamp(min=0.01)


def _perspective(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) float64 homographies mapping src (N, 4, 2) to dst (N, 4, 2) (direct linear solve)."""
    from kornia.geometry.transform import get_perspective_transform

    return get_perspective_transform(src.double(), dst.double())
