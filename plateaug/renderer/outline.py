"""Sobel outlines: the single transform that turns both real crops (training) and renders
(inference) into the generator's edge input."""

from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from . import memory

SOFTEN = 2  # luminance is averaged over SOFTEN x SOFTEN blocks before Sobel
MIN_EDGE = 0.05  # edge strength below which an image counts as flat (not amplified further)
CPU_CHUNK = 32  # plates per CPU chunk


def outline(images: torch.Tensor) -> torch.Tensor:
    """Edge magnitude of the luminance, contrast-normalised per image, differentiable.

    Real crops (soft, low-contrast, upscaled) and renders (crisp) give edges of very different
    width and strength; the luminance is first softened (2x2 mean, resampled back), and the
    magnitude divided by each image's robust edge maximum (the max of a 3x3 mean of the
    magnitude, at least MIN_EDGE), which puts both on the same scale.

    images: (B, 3, H, W) float in [0, 1] -> (B, 1, H, W) float in [0, 1].
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"outline expects (B, 3, H, W) RGB images, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"outline expects float images in [0, 1], got dtype {images.dtype}")
    if images.device.type == "cpu":
        H, W = images.shape[-2:]
        if H % 2 == 0 and W % 2 == 0 and H >= 2 * SOFTEN and W >= 2 * SOFTEN:
            return _outline_polyphase(images)
        # cache-sized chunks: faster than whole (512, 3, 64, 304) passes on 2 cores
        return torch.cat([_outline(c) for c in images.split(CPU_CHUNK)])
    return _outline(images)  # CUDA: shifted views (cuDNN convolutions may run in TF32)


def _outline(images: torch.Tensor) -> torch.Tensor:
    gray = kornia.color.rgb_to_grayscale(images)  # (B, 1, H, W)
    H, W = gray.shape[-2:]
    if W >= 2 * SOFTEN and H >= 2 * SOFTEN:
        # camera-like softening: crisp renders and soft photos then give similar edge widths
        small = F.avg_pool2d(gray, SOFTEN)
        even = H % 2 == 0 and W % 2 == 0
        gray = upsample2(small) if even else F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False)
    edges = sobel_magnitude(gray)  # (B, 1, H, W)
    ref = box3_mean(edges).amax(dim=(1, 2, 3), keepdim=True).clamp_min(MIN_EDGE)  # (B, 1, 1, 1)
    return (edges / ref).clamp(0.0, 1.0)


# Polyphase outline (CPU, even H and W). Softening, upsampling and Sobel are linear, so the
# gradients of the upsampled image are, per output pixel parity, 3x3 filters on the half-resolution
# image s (s padded by one replicated pixel reproduces the upsample's edge clamp and Sobel's
# replicate border exactly). Per axis, with u = upsample2(s):
#   smooth [1 2 1] of u at 2i: 1.25 s[i-1] + 2.5 s[i] + 0.25 s[i+1];  at 2i+1: 0.25, 2.5, 1.25
#   diff [-1 0 1] of u at 2i: -0.75 s[i-1] + 0.5 s[i] + 0.25 s[i+1];  at 2i+1: -0.25, -0.5, 0.75
# So the whole outline is one strided convolution (luminance + 2x2 mean), one 8-filter 3x3
# convolution at half resolution (gx, gy for the four parities), the magnitude, and a pixel shuffle
# that interleaves the parities: equal to the formula within float rounding (tests/test_outline.py),
# ~1.5x faster than the shifted views on 2 CPU cores (benchmarks/results/outline_polyphase_xeon.txt).
_SMOOTH = ((1.25, 2.5, 0.25), (0.25, 2.5, 1.25))  # even, odd output parity
_DIFF = ((-0.75, 0.5, 0.25), (-0.25, -0.5, 0.75))
_LUMA = (0.299, 0.587, 0.114)  # kornia.color.rgb_to_grayscale


def _polyphase_kernels() -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, 2, 2) luminance + 2x2 mean, and (8, 1, 3, 3): gx for parities (y, x) = 00, 01, 10, 11,
    then gy for the same, each divided by 8 (kornia's normalised Sobel)."""
    pool = (torch.tensor(_LUMA)[None, :, None, None] / 4).expand(1, 3, 2, 2).contiguous()
    bank = []
    for along_y, along_x in ((_SMOOTH, _DIFF), (_DIFF, _SMOOTH)):  # gx, gy
        for py in (0, 1):
            for px in (0, 1):
                bank.append(torch.tensor(along_y[py])[:, None] * torch.tensor(along_x[px])[None, :] / 8)
    return pool, torch.stack(bank)[:, None]


_POOL, _BANK = _polyphase_kernels()
_EPS = torch.tensor(1e-6)  # sobel_magnitude's eps


def _outline_polyphase(images: torch.Tensor) -> torch.Tensor:
    """outline() for even H, W on the CPU, in cache-sized chunks; in place where autograd allows."""
    B, _, H, W = images.shape
    pool, bank = _POOL.to(images.dtype), _BANK.to(images.dtype)
    grad = torch.is_grad_enabled() and images.requires_grad
    parts, out = [], None if grad else memory.empty(B, 1, H, W, dtype=images.dtype)
    for i in range(0, B, CPU_CHUNK):
        chunk = images[i:i + CPU_CHUNK]
        small = F.conv2d(chunk, pool, stride=2)  # (b, 1, H/2, W/2) softened luminance
        g = F.conv2d(F.pad(small, (1, 1, 1, 1), mode="replicate"), bank)  # (b, 8, H/2, W/2)
        gx, gy = g[:, :4], g[:, 4:]
        if grad:
            edges = F.pixel_shuffle(torch.sqrt(gx * gx + gy * gy + 1e-6), 2)  # (b, 1, H, W)
            ref = box3_mean(edges).amax(dim=(1, 2, 3), keepdim=True).clamp_min(MIN_EDGE)
            parts.append((edges / ref).clamp(0.0, 1.0))
        else:  # fewer full passes: eps folded into the first product, the robust maximum without padding
            mag = torch.addcmul(_EPS.to(g.dtype), gx, gx).addcmul_(gy, gy)
            edges = F.pixel_shuffle(mag.sqrt_(), 2)
            ref = box3_max(edges).clamp_min(MIN_EDGE)
            torch.div(edges, ref, out=out[i:i + CPU_CHUNK]).clamp_(0.0, 1.0)
    return torch.cat(parts) if grad else out


# The three filters below are sums of shifted views, equal to their conv/interpolate forms within
# float rounding (tests/test_outline.py); the whole outline is 1.3-1.9x faster with them on a 2-core
# CPU (512 renders, interleaved A/B: benchmarks/results/outline_ab_xeon.txt): a 1-channel 3x3 conv
# on small plates is mostly call overhead.

def sobel_magnitude(gray: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """kornia.filters.sobel(gray, normalized=True): sqrt(gx^2 + gy^2 + eps) of the 3x3 Sobel
    gradients divided by 8, borders replicated. gray: (B, 1, H, W) -> (B, 1, H, W)."""
    H, W = gray.shape[-2:]
    p = F.pad(gray, (1, 1, 1, 1), mode="replicate")  # (B, 1, H + 2, W + 2)
    rows = p[..., 0:H, :] + 2 * p[..., 1:H + 1, :] + p[..., 2:H + 2, :]  # [1 2 1] down: (B, 1, H, W + 2)
    cols = p[..., :, 0:W] + 2 * p[..., :, 1:W + 1] + p[..., :, 2:W + 2]  # [1 2 1] across: (B, 1, H + 2, W)
    gx = (rows[..., 2:] - rows[..., :-2]) / 8
    gy = (cols[..., 2:, :] - cols[..., :-2, :]) / 8
    return torch.sqrt(gx * gx + gy * gy + eps)


def box3_mean(x: torch.Tensor) -> torch.Tensor:
    """F.avg_pool2d(x, 3, 1, 1): 3x3 mean, zero padding counted. (B, C, H, W) -> same shape."""
    H, W = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1))
    rows = p[..., 0:H, :] + p[..., 1:H + 1, :] + p[..., 2:H + 2, :]  # (B, C, H, W + 2)
    return (rows[..., 0:W] + rows[..., 1:W + 1] + rows[..., 2:W + 2]) / 9


def box3_max(x: torch.Tensor) -> torch.Tensor:
    """box3_mean(x).amax(dim=(1, 2, 3), keepdim=True), equal to the bit, without the padded copy:
    interior sums from views, the one-pixel border (where the zero padding counts) from thin strips.
    (B, C, H, W) with H, W >= 3 -> (B, 1, 1, 1)."""
    B = x.shape[0]
    rows = x[..., :-2, :] + x[..., 1:-1, :]
    rows += x[..., 2:, :]  # vertical 3-sums of rows 1 .. H-2: (B, C, H - 2, W)
    inner = rows[..., :-2] + rows[..., 1:-1]
    inner += rows[..., 2:]  # rows 1 .. H-2, columns 1 .. W-2
    sides = torch.cat([rows[..., :1] + rows[..., 1:2], rows[..., -2:-1] + rows[..., -1:]], -1)  # columns 0, W-1
    edge_rows = torch.cat([x[..., :1, :] + x[..., 1:2, :], x[..., -2:-1, :] + x[..., -1:, :]], -2)  # rows 0, H-1
    p = F.pad(edge_rows, (1, 1))
    ends = p[..., :-2] + p[..., 1:-1] + p[..., 2:]  # (B, C, 2, W)
    peak = torch.stack([t.reshape(B, -1).amax(1) for t in (inner, sides, ends)], 1).amax(1)
    return (peak / 9).view(B, 1, 1, 1)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False): every output pixel
    0.75 of its nearer and 0.25 of its farther input neighbour, edges clamped. (B, C, h, w) ->
    (B, C, 2h, 2w)."""

    def along(t: torch.Tensor, dim: int) -> torch.Tensor:
        n = t.shape[dim]
        before = torch.cat([t.narrow(dim, 0, 1), t.narrow(dim, 0, n - 1)], dim)  # t[i - 1], clamped
        after = torch.cat([t.narrow(dim, 1, n - 1), t.narrow(dim, n - 1, 1)], dim)  # t[i + 1], clamped
        pair = torch.stack([0.25 * before + 0.75 * t, 0.75 * t + 0.25 * after], dim + 1)  # even, odd
        shape = list(t.shape)
        shape[dim] = 2 * n
        return pair.reshape(shape)

    return along(along(x, 2), 3)


class Outline(nn.Module):
    """nn.Module wrapper of `outline` for use in pipelines."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return outline(images)
