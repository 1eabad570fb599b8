"""Perspective warps as one grid_sample each. The sampling grid of a batch of homographies is built
in three broadcast passes from (H, 1) and (1, W) terms; kornia's warp_perspective builds and
transforms a full meshgrid per call, which dominated crop framing on the CPU."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..renderer.device import to_device

GRID_LIMIT = 4.0  # |normalised grid coordinate| beyond which every bilinear tap of a >= 2 px source is outside
HORIZON_EPS = 1e-6  # homogeneous denominators at or below this: the pixel is at or past the warp's horizon


def homography_grid(M: torch.Tensor, src_size: tuple[int, int], dst_size: tuple[int, int], align_corners: bool,
                    device: torch.device | str) -> torch.Tensor:
    """grid_sample grid (B, Hd, Wd, 2) float32 on `device` sampling a (Hs, Ws) source through the
    source -> destination pixel homographies M (B, 3, 3), pixel centres at integer coordinates.
    align_corners picks grid_sample's normalisation (kornia's warp_perspective convention for each).
    The inverse is taken in float64 on M's device (inv_ex: no error check, so no host sync on CUDA).

    Always finite: a strong perspective puts the image of the source plane's line at infinity (the
    horizon) inside the destination, where the homogeneous denominator is 0 (the grid would be inf,
    and grid_sample's output NaN) and, past it, negative (points behind the source plane). Every such
    pixel, and any coordinate beyond GRID_LIMIT, is sent to GRID_LIMIT: outside the source, so it
    samples zero padding (or the border) and has no coverage. A singular M samples nothing."""
    (Hs, Ws), (Hd, Wd) = src_size, dst_size
    device = torch.device(device)
    M64 = M.detach().to(torch.float64)
    if align_corners:  # u = 2x / (W - 1) - 1
        sx, sy, ox, oy = 2.0 / max(Ws - 1, 1), 2.0 / max(Hs - 1, 1), -1.0, -1.0
    else:  # u = (2x + 1) / W - 1
        sx, sy, ox, oy = 2.0 / Ws, 2.0 / Hs, 1.0 / Ws - 1.0, 1.0 / Hs - 1.0
    N = torch.tensor([[sx, 0.0, ox], [0.0, sy, oy], [0.0, 0.0, 1.0]], dtype=torch.float64, device=M64.device)
    # the source side of the horizon: where M's own denominator has the sign it has at the source's
    # centre; scaling the inverse by that sign makes the destination denominator positive there
    centre = torch.tensor([(Ws - 1) / 2, (Hs - 1) / 2, 1.0], dtype=torch.float64, device=M64.device)
    side = torch.where(M64[:, 2] @ centre < 0, -1.0, 1.0)  # (B,)
    G = N @ (torch.linalg.inv_ex(M64)[0] * side[:, None, None])  # destination pixels -> normalised source
    G = to_device(G.to(torch.float32), device)[:, :, :, None, None]  # (B, 3, 3, 1, 1)
    ys = torch.arange(Hd, device=device, dtype=torch.float32)[:, None]  # (Hd, 1)
    xs = torch.arange(Wd, device=device, dtype=torch.float32)  # (Wd,)
    grid = torch.empty((len(G), Hd, Wd, 2), device=device, dtype=torch.float32)
    torch.add(G[:, 0, 0] * xs, G[:, 0, 1] * ys + G[:, 0, 2], out=grid[..., 0])
    torch.add(G[:, 1, 0] * xs, G[:, 1, 1] * ys + G[:, 1, 2], out=grid[..., 1])
    den = G[:, 2, 0] * xs + (G[:, 2, 1] * ys + G[:, 2, 2])  # (B, Hd, Wd); > 0 on the source's side
    ahead = (den > HORIZON_EPS)[..., None]  # (B, Hd, Wd, 1); False for NaN (a singular M) too
    grid.div_(torch.where(ahead, den[..., None], 1.0)).clamp_(-GRID_LIMIT, GRID_LIMIT)
    return grid.masked_fill_(~ahead, GRID_LIMIT)


def warp_border(images: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """images (B, C, H, W) warped by the source -> destination pixel homographies M (B, 3, 3) into
    the same size: bilinear, border padding, align_corners=False (kornia's warp_perspective with
    padding_mode="border"). M may be on the CPU (any float dtype)."""
    H, W = images.shape[-2:]
    grid = homography_grid(M, (H, W), (H, W), False, images.device)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def warp_with_coverage(images: torch.Tensor, M: torch.Tensor, size: tuple[int, int]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """images (N, C, h, w) warped by M (N, 3, 3) into (Hd, Wd) = size, bilinear, zero padding,
    align_corners=True -> (warped (N, C, Hd, Wd), coverage (N, 1, Hd, Wd) in [0, 1]). coverage is
    what warping an all-ones channel alongside would give (kornia.warp_perspective of
    cat([images, ones])), computed from the grid instead: the in-bounds share of the bilinear taps."""
    h, w = images.shape[-2:]
    grid = homography_grid(M, (h, w), size, True, images.device)  # (N, Hd, Wd, 2) normalised
    warped = F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
    # a tap is in bounds for source pixel 0 <= x <= w - 1: the share is x + 1 left of 0 and w - x right
    # of w - 1, i.e. clamp(min(x + 1, w - x), 0, 1) = clamp(1 + c - c |u|, 0, 1) with c = (w - 1) / 2
    # and u = x / c - 1 the normalised grid coordinate (4 passes per axis instead of 6)
    cover = _axis_cover(grid[..., 0], 0.5 * (w - 1)).mul_(_axis_cover(grid[..., 1], 0.5 * (h - 1)))
    return warped, cover[:, None].to(images.dtype)


def _axis_cover(u: torch.Tensor, c: float) -> torch.Tensor:
    """In-bounds share (N, Hd, Wd) of the bilinear taps along one axis of half-extent c = (n - 1) / 2,
    from the normalised grid coordinate u (align_corners=True)."""
    return u.abs().mul_(-c).add_(1 + c).clamp_(0, 1)
