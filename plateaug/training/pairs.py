"""Paired data for the generator: each real crop with a text gets a clean render of the same text,
aligned to it, so the generator learns outline(render) -> real crop, the very input it gets at
inference (../shared/REALISM.md, cause 1 and lever 2: pix2pix on real crops alone only ever sees
the soft outlines of real crops).

Alignment: an affine map from the real crop's frame to the render's is fitted per crop by
gradient ascent on the normalised cross-correlation of their blurred outlines (coarse to fine),
starting from the crop's known margin; the real crop is then resampled into the render's frame,
so input and target share the render's geometry. Crops whose text no pattern of the region's
spec accepts get no pair, unless `any_layout` draws them in a plain row of their own (`free_spec`);
crops whose fit stays poor get none either.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import kornia
import torch
import torch.nn.functional as F

from ..models.contract import colour_hint
from ..renderer.draw import render
from ..renderer.outline import outline
from ..renderer.spec import CharClass, Pattern, RegionSpec
from ..renderer.spec_loader import load_region
from ..renderer.text import encode_texts, grammar
from .realdata import RealGroup
from .unpaired import RENDER_SPECS

# Margin around the plate in the real crops of each region, as a fraction of the plate's size per
# side: openalpr scene crops were cut at their annotated box plus 6 %; CCPD crops are tight.
MARGINS = {"br": 0.06, "eu": 0.06, "us": 0.0, "cn": 0.0}
SIGMAS = (3.0, 1.5)  # blur of the outlines in each alignment stage, px (coarse to fine)
STEPS = 100  # optimiser steps per stage
CHUNK = 512  # crops aligned at once (memory stays bounded for large folders)
MIN_SCORE = 0.25  # normalised cross-correlation of the fitted outlines below which a crop gets no pair
# How far the fit may move from its start: scale (log), shift (fraction of the half-frame),
# rotation (degrees) and shear; a plate tilted or shifted further than this in its crop gets no pair.
LIMITS = torch.tensor([0.15, 0.15, 0.25, 0.25, 8.0, 0.15])
FREE_KEY = "free"  # class keys of free_spec's rows: "free<n>"
SHIFTS = torch.linspace(-0.12, 0.12, 9)  # horizontal starts tried first: characters repeat, so a
# fit started one character off would stay there


@dataclass(frozen=True)
class Pairs:
    """Paired crops of one region, in the render's frame. renders, reals: (P, 3, H, W) float in
    [0, 1]; index: (N,) int64, the pair of each real crop of the group or -1; score: (P,)."""

    region: str
    renders: torch.Tensor
    reals: torch.Tensor
    index: torch.Tensor
    score: torch.Tensor
    skipped_text: int  # crops whose text the region's spec cannot render
    free_layout: int = 0  # pairs whose render is a plain row (any_layout), not one of the spec's patterns

    def of(self, crops: torch.Tensor) -> torch.Tensor:
        """Pair numbers of the given crop indices that have a pair: (k,) int64."""
        p = self.index[crops]
        return p[p >= 0]


def paired_input(renders: torch.Tensor, reals: torch.Tensor) -> torch.Tensor:
    """The generator's input for pairs: the render's crisp outline and its real crop's colour hint,
    (P, 3, H, W) each -> (P, 4, H, W), laid out like `generator_input`."""
    return torch.cat([outline(renders), colour_hint(reals)], dim=1)


def _features(edges: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, 1, H, W) edge map -> blurred, standardised per image (zero mean, unit std)."""
    k = 2 * int(3 * sigma) + 1
    x = kornia.filters.gaussian_blur2d(edges, (k, k), (sigma, sigma))
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return x / x.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)


def _invert(theta: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) affine maps -> their inverses (B, 2, 3)."""
    full = torch.cat([theta, theta.new_tensor([0.0, 0.0, 1.0]).expand(len(theta), 1, 3)], dim=1)
    return torch.linalg.inv(full)[:, :2]


def affine(params: torch.Tensor, margin: float, aspect: float) -> torch.Tensor:
    """(B, 6) parameters (log scale x, log scale y, shift x, shift y, rotation in degrees, shear)
    -> (B, 2, 3) normalised maps from the real frame to the render's; `aspect` = W / H of the
    real frame (the rotation is one in pixels)."""
    sx, sy = (1 + 2 * margin) * params[:, 0].exp(), (1 + 2 * margin) * params[:, 1].exp()
    rot = torch.deg2rad(params[:, 4])
    cos, sin = rot.cos(), rot.sin()
    row0 = torch.stack([sx * cos, -sx * sin / aspect + params[:, 5], params[:, 2]], dim=1)
    row1 = torch.stack([sy * sin * aspect, sy * cos, params[:, 3]], dim=1)
    return torch.stack([row0, row1], dim=1)


def _ncc(f_render: torch.Tensor, f_real: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Normalised cross-correlation (B,) of the real features and the render's, warped by theta."""
    grid = F.affine_grid(theta, [len(f_real), 1, *f_real.shape[-2:]], align_corners=False)
    warped = F.grid_sample(f_render, grid, padding_mode="zeros", align_corners=False)
    return (warped * f_real).mean(dim=(1, 2, 3))


def align(renders: torch.Tensor, reals: torch.Tensor, margin: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit, per crop, the affine map (normalised coordinates) from the real crop's frame to the
    render's frame that best overlays their outlines: the best of SHIFTS horizontal starts, then
    gradient ascent, coarse to fine, within LIMITS.

    renders: (B, 3, h, w), reals: (B, 3, H, W) float in [0, 1] ->
    theta (B, 2, 3) for F.affine_grid(theta, reals.shape), score (B,) in [-1, 1]: the normalised
    cross-correlation of the fitted outlines at the finest blur."""
    if renders.ndim != 4 or reals.ndim != 4 or len(renders) != len(reals) or len(reals) == 0:
        raise ValueError(f"align expects (B, 3, h, w) renders and (B, 3, H, W) reals of one B > 0, got "
                         f"{tuple(renders.shape)} and {tuple(reals.shape)}")
    B, aspect = len(reals), reals.shape[-1] / reals.shape[-2]
    with torch.no_grad():
        edges_render, edges_real = outline(renders), outline(reals)  # (B, 1, ., .)
        f_render, f_real = _features(edges_render, SIGMAS[0]), _features(edges_real, SIGMAS[0])
        params = torch.zeros(B, 6)
        best = torch.full((B,), -2.0)
        for dx in SHIFTS:  # (B,) scores of each start, the best kept
            trial = params.clone()
            trial[:, 2] = dx
            score = _ncc(f_render, f_real, affine(trial, margin, aspect))
            better = score > best
            best = torch.where(better, score, best)
            params[better, 2] = dx
    params.requires_grad_(True)
    opt = torch.optim.Adam([params], lr=0.01)
    score = best
    for stage, sigma in enumerate(SIGMAS):
        f_render, f_real = _features(edges_render, sigma), _features(edges_real, sigma)
        free = torch.tensor([stage > 0, stage > 0, True, True, True, stage > 0])  # scales, shear last
        for _ in range(STEPS):
            ncc = _ncc(f_render, f_real, affine(params, margin, aspect))
            opt.zero_grad(set_to_none=True)
            (-ncc.sum()).backward()
            params.grad.mul_(free)
            opt.step()
            with torch.no_grad():
                params.copy_(params.clamp(-LIMITS, LIMITS))
        with torch.no_grad():
            score = _ncc(f_render, f_real, affine(params, margin, aspect))
    return affine(params.detach(), margin, aspect), score


def rectify(reals: torch.Tensor, theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample real crops (B, 3, H, W) into the render's frame (B, 3, *size) given the maps
    `align` fitted; outside the crop the border pixels repeat."""
    grid = F.affine_grid(_invert(theta), [len(reals), 3, *size], align_corners=False)
    return F.grid_sample(reals, grid, padding_mode="border", align_corners=False).clamp(0, 1)


def free_spec(spec: RegionSpec, lengths: set[int]) -> RegionSpec:
    """`spec` with one more pattern per text length n: n characters in its first row, evenly spaced
    and centred, each as wide as the row allows (at most its char width), any character drawn by
    the typefaces of the class holding "A" (or the first class). For texts no pattern accepts
    (vanity plates, other states' or countries' serials): a render of the same characters still
    aligns with the crop, the fit absorbing the layout's scale and shift. Lengths whose characters
    would be under 2 px wide are left out."""
    row, classes = spec.rows[0], spec.classes
    base = next((c for c in classes if "A" in c.chars), classes[0])
    chars = "".join(sorted({ch for c in classes if c.fonts == base.fonts for ch in c.chars}))
    room, px_per_mm = row.x1_mm - row.x0_mm, spec.canvas[1] / spec.size_mm[0]
    extra_classes, extra_patterns = [], []
    for n in sorted(lengths):
        width = min(row.char_width_mm, (room - row.gap_mm * (n - 1)) / n)
        if n < 1 or width * px_per_mm < 2:
            continue
        key = f"{FREE_KEY}{n}"
        extra_classes.append(CharClass(key, chars, base.font, base.fit, width, base.fonts))
        extra_patterns.append(Pattern((key,) * n, 1.0))
    return replace(spec, classes=classes + tuple(extra_classes), patterns=spec.patterns + tuple(extra_patterns))


def _renderable(spec: RegionSpec, text: str) -> bool:
    try:
        encode_texts(spec, [text])
    except ValueError:
        return False
    return True


def build_pairs(group: RealGroup, seed: int = 0, min_score: float = MIN_SCORE,
                any_layout: bool = False) -> Pairs | None:
    """Render each crop's text with the spec standing for its region (a random typeface and
    colour per crop, from `seed`), align, and keep the pairs that fit. With `any_layout`, texts no
    pattern accepts are drawn in a plain row (`free_spec`). None if no spec stands for the region."""
    spec_name = RENDER_SPECS.get(group.region)
    if spec_name is None:
        return None
    spec = load_region(spec_name)
    g = torch.Generator().manual_seed(seed)
    sizes = grammar(spec).style_sizes
    matched = [_renderable(spec, t) for t in group.texts]
    free = free_spec(spec, {len(t) for t, m in zip(group.texts, matched) if not m}) if any_layout else None
    free_ok = [free is not None and not m and _renderable(free, t) for t, m in zip(group.texts, matched)]
    keep = [i for i in range(len(group.texts)) if matched[i] or free_ok[i]]
    texts = [group.texts[i] for i in keep]
    H, W = spec.canvas
    index = torch.full((len(group.texts),), -1, dtype=torch.int64)
    empty = torch.zeros(0, 3, H, W)
    if not keep:
        return Pairs(group.region, empty, empty, index, torch.zeros(0), len(group.texts))
    renders = torch.empty(len(keep), 3, H, W)  # (K, 3, H, W)
    for which, sp in ((matched, spec), (free_ok, free)):  # styles drawn for the pattern texts first, as without
        rows = [k for k, i in enumerate(keep) if which[i]]  # any_layout, so those pairs do not change
        if rows:
            style = torch.stack([torch.randint(0, int(n), (len(rows),), generator=g) for n in sizes], dim=1) \
                if len(sizes) else None
            renders[rows] = render(sp, encode_texts(sp, [texts[k] for k in rows], style=style)).images.clamp(0, 1)
    reals = group.images[keep]  # (K, 3, h, w)
    fits = [align(r, x, MARGINS.get(group.region, 0.0)) for r, x in zip(renders.split(CHUNK), reals.split(CHUNK))]
    theta, score = torch.cat([t for t, _ in fits]), torch.cat([c for _, c in fits])
    good = score >= min_score
    if not good.any():
        return Pairs(group.region, empty, empty, index, torch.zeros(0), len(group.texts) - len(keep))
    chosen = torch.tensor(keep)[good]
    index[chosen] = torch.arange(len(chosen))
    return Pairs(group.region, renders[good], rectify(reals[good], theta[good], (H, W)), index, score[good],
                 len(group.texts) - len(keep), sum(free_ok[i] for i in chosen.tolist()))
