"""Glyphs cut from real plate crops, written as bitmap typefaces (renderer/bitmap_font.py).

A recogniser trained on open stand-in typefaces misreads the real plates' own glyph shapes
(README, Realism). Each labelled real crop gets a render of its text, aligned to it
(pairs.align); every character slot of the render then marks where that character's ink lies in
the crop. The crop's luminance there, normalised between its ink and its background and sharpened,
is the real glyph. Variant k of a region's typeface takes each character's k-th best cut.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..renderer.bitmap_font import TYPEFACE_FILE, glyph_file
from ..renderer.draw import get_renderer, render
from ..renderer.spec import FONTS_DIR, RegionSpec
from ..renderer.spec_loader import load_region, missing_glyphs
from ..renderer.text import encode_texts
from .pairs import CHUNK, align, rectify
from .realdata import RealGroup

# real-data region -> the shipped spec whose renders are aligned to its crops: the openalpr eu crops
# are old Slovak plates (coat of arms, hyphen), which eu_sk_old draws
GLYPH_SPECS = {"us": "us", "br": "br_old", "eu": "eu_sk_old", "cn": "cn_blue"}
# margins around the plate tried per crop, the best fit kept: how a dataset cut its crops varies
# (openalpr's eu boxes are tighter than the plate, its br ones wider, CCPD's tight)
FIT_MARGINS = (0.06, 0.0, -0.03)
MIN_SCORE = 0.3  # fit of the whole crop (normalised cross-correlation of outlines) below which it gives no glyphs
MIN_CORR = 0.35  # correlation of a cell's luminance with the render's below which the cell gives no glyph
MIN_CONTRAST = 0.08  # ink-to-background luminance difference below which a cell gives no glyph
NEAR = 8  # real ink counts within (cell height / NEAR) px of the render's ink
BORDER = 0.8  # share of the text line's width above which a row of real ink is the plate's border, not text
UPSCALE = 4  # cells are cut at the render's resolution and upsampled before sharpening
SHARPNESS = 12.0  # slope of the sigmoid that turns the normalised luminance into crisp ink


@dataclass(frozen=True)
class Glyph:
    """One cut: the character the typeface draws, the cut's quality, its ink (h, w) uint8."""

    char: str
    quality: float
    ink: np.ndarray


def _luminance(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, H, W)."""
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


def border_rows(real: torch.Tensor, rendered: torch.Tensor, x0: int, x1: int) -> torch.Tensor:
    """An aligned real crop and its render, (H, W) luminance each, and the text line's columns ->
    (H,) bool: the rows where the real crop looks like ink across (BORDER of) the whole line, the
    plate's border or the car behind it; no row of text does (characters have gaps between them)
    and a glyph's own bar spans one cell. Each such row takes its neighbours (anti-aliased edges)."""
    real, rendered = real[:, x0:x1], rendered[:, x0:x1]
    ink = (rendered - rendered.median()).abs() > 0.25  # the render's ink (its background is most of the line)
    if ink.sum() < 4 or (~ink).sum() < 4:
        return torch.zeros(real.shape[0], dtype=torch.bool)
    fg, bg = real[ink].median(), real[~ink].median()
    if (fg - bg).abs() < MIN_CONTRAST:
        return torch.zeros(real.shape[0], dtype=torch.bool)
    rows = (((real - bg) / (fg - bg)) > 0.5).float().mean(1) >= BORDER  # (H,)
    return F.max_pool1d(rows[None].float(), 3, stride=1, padding=1)[0] > 0


def cut_cell(real: torch.Tensor, rendered: torch.Tensor, border: torch.Tensor | None = None
             ) -> tuple[np.ndarray, float] | None:
    """One character cell of an aligned real crop and of its render, (h, w) luminance each ->
    the real glyph as crisp white-on-black ink cropped to itself (uint8) and the cells'
    correlation, or None when the cell does not show the render's character clearly. `border`,
    (h,) bool, marks rows of the plate's border (`border_rows`): no ink is cut from them."""
    a, b = real - real.mean(), rendered - rendered.mean()
    corr = float((a * b).sum() / (a.norm() * b.norm() + 1e-6))
    if abs(corr) < MIN_CORR:
        return None
    background = torch.cat([rendered[0], rendered[-1]]).median()  # top and bottom rows: no ink
    ink = (rendered - background).abs() > 0.25  # the render's ink
    if ink.sum() < 4 or (~ink).sum() < 4:
        return None
    fg, bg = real[ink].median(), real[~ink].median()
    if (fg - bg).abs() < MIN_CONTRAST:
        return None
    cover = ((real - bg) / (fg - bg)).clamp(0, 1)  # 1 where the real crop looks like its ink
    # only ink near the render's: the plate's border, bolts and the neighbours' strokes are dropped
    r = max(2, real.shape[0] // NEAR)
    near = F.max_pool2d(ink[None, None].float(), 2 * r + 1, stride=1, padding=r)[0, 0]
    cover = cover * near
    if border is not None:
        cover[border] = 0
    up = F.interpolate(cover[None, None], scale_factor=UPSCALE, mode="bicubic", align_corners=False)[0, 0]
    up = torch.sigmoid((up - 0.5) * SHARPNESS)
    ys, xs = torch.nonzero(up > 0.5, as_tuple=True)
    if len(xs) < 10:
        return None
    crop = up[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    return (crop.numpy() * 255).round().astype(np.uint8), abs(corr)


def cut_glyphs(group: RealGroup, spec: RegionSpec | str, min_score: float = MIN_SCORE,
               margins: tuple[float, ...] = FIT_MARGINS) -> list[Glyph]:
    """Every clear character cut of the group's crops whose text the spec can draw (texts it
    cannot are skipped): glyphs keyed by the character the typeface draws (`CharClass.glyph`).
    Each crop is fitted once per margin in `margins`, the best fit kept."""
    spec = load_region(spec)
    keep = []
    batches = []
    for i, t in enumerate(group.texts):
        try:
            batches.append(encode_texts(spec, [t]))
        except ValueError:
            continue
        keep.append(i)
    if not keep:
        return []
    patterns = torch.cat([b.pattern for b in batches])
    texts = [group.texts[i] for i in keep]
    renders = render(spec, encode_texts(spec, texts)).images.clamp(0, 1)  # (K, 3, H, W)
    reals = group.images[keep]
    theta, score = None, None
    for margin in margins:
        fits = [align(r, x, margin) for r, x in zip(renders.split(CHUNK), reals.split(CHUNK))]
        t, c = torch.cat([t for t, _ in fits]), torch.cat([c for _, c in fits])
        if score is None:
            theta, score = t, c
        else:
            better = c > score
            theta, score = torch.where(better[:, None, None], t, theta), torch.maximum(c, score)
    H, W = spec.canvas
    real_l, render_l = _luminance(rectify(reals, theta, (H, W))), _luminance(renders)  # (K, H, W)
    layouts = get_renderer(spec, "cpu").glyphs.layouts
    out = []
    for n in torch.nonzero(score >= min_score).flatten().tolist():
        slots = layouts[int(patterns[n])].chars
        border = border_rows(real_l[n], render_l[n], min(c.x for c in slots), max(c.x + c.w for c in slots))
        top, bottom = min(c.y for c in slots), max(c.y + c.h for c in slots)
        if border[top + (bottom - top) // 5: bottom - (bottom - top) // 5].any():
            continue  # "ink" across the text's middle rows: the crop's light does not tell ink from plate
        for s, slot in enumerate(slots):
            pad = max(1, slot.w // 6)  # real glyphs may be a little wider than the render's cell
            x0, x1 = max(0, slot.x - pad), min(W, slot.x + slot.w + pad)
            y0, y1 = max(0, slot.y - 1), min(H, slot.y + slot.h + 1)
            cut = cut_cell(real_l[n, y0:y1, x0:x1], render_l[n, y0:y1, x0:x1], border[y0:y1])
            if cut is not None:
                ch = spec.class_map[slot.key].glyph(texts[n][s])
                out.append(Glyph(ch, cut[1] * float(score[n]), cut[0]))
    return out


def covering_font(spec: RegionSpec) -> Path | None:
    """The first of the spec's typefaces that draws every character its classes draw (the
    fallback for characters a cut typeface has no image of), or None."""
    glyphs = "".join(sorted({c.glyph(ch) for c in spec.classes for ch in c.chars}))
    fonts = dict.fromkeys(f for c in spec.classes for f in c.fonts if not Path(f).is_dir())
    return next((f for f in fonts if not missing_glyphs(f, glyphs)), None)


def fallback_name(font: Path) -> str:
    """How a typeface names its fallback: a shipped font by its stem, any other by its path."""
    font = Path(font).resolve()
    return font.stem if font.parent == FONTS_DIR.resolve() else str(font)


def write_typefaces(glyphs: list[Glyph], out: Path, name: str, variants: int, fallback: Path | None,
                    source: str = "", license: str = "") -> list[Path]:
    """Write `variants` bitmap typefaces `out/<name>_<k>`: variant k draws each character with
    its k-th best cut (none when it has fewer; the fallback font draws it then; fewer variants when
    no character has that many cuts). Each folder is
    built beside its target and renamed into place; an existing target is refused, never
    overwritten. Returns the folders written."""
    if variants < 1:
        raise ValueError(f"variants must be >= 1, got {variants}")
    if not glyphs:
        raise ValueError(f"no glyphs to write for {name!r}")
    by_char: dict[str, list[Glyph]] = {}
    for g in glyphs:
        by_char.setdefault(g.char, []).append(g)
    ranked = {ch: sorted(v, key=lambda g: -g.quality) for ch, v in by_char.items()}
    variants = min(variants, max(len(v) for v in ranked.values()))  # a variant with no image at all is left out
    targets = [Path(out) / f"{name}_{k}" for k in range(variants)]
    taken = [str(t) for t in targets if t.exists()]
    if taken:
        raise FileExistsError(f"refusing to overwrite {', '.join(taken)}: remove them or choose another --out")
    Path(out).mkdir(parents=True, exist_ok=True)
    fields = (("fallback", fallback_name(fallback) if fallback else ""), ("source", source), ("license", license))
    meta = "".join(f"{k} = {json.dumps(v, ensure_ascii=False)}\n" for k, v in fields if v)
    written = []
    for k, target in enumerate(targets):
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=out))
        try:
            for ch, cuts in ranked.items():
                if len(cuts) > k:
                    Image.fromarray(cuts[k].ink).save(tmp / glyph_file(ch))
            (tmp / TYPEFACE_FILE).write_text(meta, encoding="utf-8")
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        written.append(target)
    return written
