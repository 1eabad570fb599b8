"""Pictorial plate backgrounds: scenery, emblems, stripes and stickers behind the characters.

Many real plates (most US state designs) are not plain: a cactus or a peach sits between the
character groups, a rainbow or a ridge spans the plate, a registration sticker covers a corner.
A recogniser that only ever saw plain plates reads such marks as characters. These are static
layers like the rest of the background: drawn once per region (seeded by the region's name, so
every run draws the same ones), picked per plate by the background style column; the characters
are always composited on top, so labels stay exact.
"""

from __future__ import annotations

import math
import zlib
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw

from .spec import RegionSpec

SHAPES = ("emblem", "arc", "ridge", "disc", "stripes", "sticker")  # what a spec's graphics.shapes may list


class Canvas(Protocol):
    """The supersampled millimetre canvas of `layers` (sx, sy: supersampled px per mm)."""

    sx: float
    sy: float

    def mask(self) -> Image.Image: ...

    def down(self, m: Image.Image) -> np.ndarray: ...


def _emblem(d: ImageDraw.ImageDraw, rng: np.random.Generator, spec: RegionSpec, cv: Canvas) -> None:
    """A solid blob inside the character row (fruit, state outline, cactus-like post)."""
    row = spec.rows[0]
    h = row.height_mm * rng.uniform(0.45, 0.9)
    w = h * rng.uniform(0.5, 1.1)
    cx = rng.uniform(row.x0_mm + w / 2, max(row.x0_mm + w / 2, row.x1_mm - w / 2))
    cy = row.y_mm + row.height_mm * rng.uniform(0.35, 0.65)
    box = ((cx - w / 2) * cv.sx, (cy - h / 2) * cv.sy, (cx + w / 2) * cv.sx, (cy + h / 2) * cv.sy)
    kind = rng.integers(3)
    if kind == 0:
        d.ellipse(box, fill=255)
    elif kind == 1:  # diamond
        x0, y0, x1, y1 = box
        d.polygon([((x0 + x1) / 2, y0), (x1, (y0 + y1) / 2), ((x0 + x1) / 2, y1), (x0, (y0 + y1) / 2)], fill=255)
    else:  # post with two arms
        x0, y0, x1, y1 = box
        mid, arm = (x0 + x1) / 2, (x1 - x0) / 6
        d.rounded_rectangle((mid - arm, y0, mid + arm, y1), radius=arm, fill=255)
        for side in (-1, 1):
            ax = mid + side * (x1 - x0) / 3
            ay = y0 + (y1 - y0) * rng.uniform(0.25, 0.55)
            d.rounded_rectangle((min(ax, mid) - arm / 2, ay, max(ax, mid) + arm / 2, ay + arm * 1.6),
                                radius=arm / 2, fill=255)
            d.rounded_rectangle((ax - arm / 2, ay - (y1 - y0) * 0.25, ax + arm / 2, ay + arm * 1.6),
                                radius=arm / 2, fill=255)


def _arc(d: ImageDraw.ImageDraw, rng: np.random.Generator, spec: RegionSpec, cv: Canvas) -> None:
    """One or more concentric bands of a large circle (a rainbow)."""
    W, H = spec.size_mm
    r = W * rng.uniform(0.35, 0.8)
    cx, cy = W * rng.uniform(0.2, 0.8), H * rng.uniform(0.7, 1.6)
    band = H * rng.uniform(0.04, 0.12)
    for k in range(int(rng.integers(1, 4))):
        rr = r - k * band * 1.4
        d.arc(((cx - rr) * cv.sx, (cy - rr) * cv.sy, (cx + rr) * cv.sx, (cy + rr) * cv.sy), 180, 360,
              fill=255, width=max(1, round(band * cv.sy)))


def _ridge(d: ImageDraw.ImageDraw, rng: np.random.Generator, spec: RegionSpec, cv: Canvas) -> None:
    """A mountain or skyline silhouette filling the lower part of the plate."""
    W, H = spec.size_mm
    n = int(rng.integers(4, 10))
    xs = np.linspace(0, W, n)
    ys = H * rng.uniform(0.45, 0.85, n)
    pts = [(0.0, H * cv.sy)] + [(x * cv.sx, y * cv.sy) for x, y in zip(xs, ys)] + [(W * cv.sx, H * cv.sy)]
    d.polygon(pts, fill=255)


def _disc(d: ImageDraw.ImageDraw, rng: np.random.Generator, spec: RegionSpec, cv: Canvas) -> None:
    """A large sun or moon behind the characters."""
    W, H = spec.size_mm
    r = H * rng.uniform(0.2, 0.5)
    cx, cy = W * rng.uniform(0.1, 0.9), H * rng.uniform(0.2, 0.8)
    d.ellipse(((cx - r) * cv.sx, (cy - r) * cv.sy, (cx + r) * cv.sx, (cy + r) * cv.sy), fill=255)


def _stripes(d: ImageDraw.ImageDraw, rng: np.random.Generator, spec: RegionSpec, cv: Canvas) -> None:
    """Horizontal bars above and/or below the character row (flag-like designs)."""
    W, _ = spec.size_mm
    row = spec.rows[0]
    t = row.height_mm * rng.uniform(0.04, 0.12)
    for y in (row.y_mm - t * rng.uniform(1.2, 2.5), row.y_mm + row.height_mm + t * rng.uniform(0.2, 1.5)):
        if rng.random() < 0.8:
            d.rectangle((W * 0.03 * cv.sx, y * cv.sy, W * 0.97 * cv.sx, (y + t) * cv.sy), fill=255)


def _sticker(d: ImageDraw.ImageDraw, rng: np.random.Generator, spec: RegionSpec, cv: Canvas) -> None:
    """A registration sticker in a top corner."""
    W, H = spec.size_mm
    w, h = W * rng.uniform(0.08, 0.16), H * rng.uniform(0.12, 0.22)
    x = W * rng.uniform(0.02, 0.06) if rng.random() < 0.5 else W * rng.uniform(0.94, 0.98) - w
    y = H * rng.uniform(0.03, 0.08)
    d.rectangle((x * cv.sx, y * cv.sy, (x + w) * cv.sx, (y + h) * cv.sy), fill=255)


DRAW = {  # shape name -> draws one filled shape (255) on a supersampled mask
    "emblem": _emblem, "arc": _arc, "ridge": _ridge, "disc": _disc, "stripes": _stripes, "sticker": _sticker}


def _star(cx: float, cy: float, rx: float, ry: float, points: int, inner: float) -> list[tuple[float, float]]:
    """Vertices of a star polygon (outer radii rx, ry; inner radii `inner` times them) centred on (cx, cy)."""
    out = []
    for k in range(2 * points):
        a = math.pi * k / points
        f = 1.0 if k % 2 == 0 else inner
        out.append((cx + f * rx * math.sin(a), cy - f * ry * math.cos(a)))
    return out


def separator_emblem(d: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[float, float, float, float]) -> None:
    """A state-emblem silhouette (fruit, state outline, tree, palm, stars, compass rose) filling
    `box` (x0, y0, x1, y1, supersampled px) with one grey level: the mark that sits between the
    character groups of most US state plates, which a recogniser that never saw one reads as a 4."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    fill = int(255 * rng.uniform(0.55, 1.0))
    kind = int(rng.integers(6))
    if kind == 0:  # fruit with a leaf (a peach, an orange)
        rx, ry = w * rng.uniform(0.4, 0.5), h * rng.uniform(0.3, 0.4)
        d.ellipse((cx - rx, y1 - 2 * ry, cx + rx, y1), fill=fill)
        d.ellipse((cx, y1 - 2 * ry - h * 0.18, cx + rx, y1 - 2 * ry + h * 0.02), fill=fill)
    elif kind == 1:  # a state outline: an irregular polygon
        n = int(rng.integers(7, 14))
        angles = (np.arange(n) + rng.uniform(-0.4, 0.4, n)) * 2 * math.pi / n  # all round: no sliver
        radii = rng.uniform(0.55, 1.0, n)
        d.polygon([(cx + w / 2 * r * math.cos(a), cy + h / 2 * r * math.sin(a)) for a, r in zip(angles, radii)],
                  fill=fill)
    elif kind == 2:  # a conifer: stacked triangles on a trunk
        tiers = int(rng.integers(2, 4))
        trunk = w * 0.08
        d.rectangle((cx - trunk, y0 + h * 0.75, cx + trunk, y1), fill=fill)
        for t in range(tiers):
            top = y0 + h * 0.75 * t / tiers
            half = w * 0.5 * (t + 1) / tiers
            d.polygon([(cx, top), (cx + half, y0 + h * 0.75 * (t + 1) / tiers + h * 0.05),
                       (cx - half, y0 + h * 0.75 * (t + 1) / tiers + h * 0.05)], fill=fill)
    elif kind == 3:  # a palm: a trunk and fronds
        trunk = max(1.0, w * 0.07)
        crown = y0 + h * 0.3
        d.polygon([(cx - trunk, y1), (cx + trunk, y1), (cx + trunk * 0.6, crown), (cx - trunk * 0.6, crown)], fill=fill)
        for k in range(int(rng.integers(4, 7))):
            a = math.pi * (0.1 + 0.8 * k / 5)
            ex, ey = cx - w * 0.48 * math.cos(a), crown - h * 0.25 * math.sin(a) + h * 0.12
            d.line([(cx, crown), (ex, ey)], fill=fill, width=max(1, round(h * 0.07)))
    elif kind == 4:  # stars: one large, or three stacked small ones
        if rng.random() < 0.5:
            d.polygon(_star(cx, cy, w / 2, min(h / 2, w * 0.6), 5, 0.42), fill=fill)
        else:
            for k in range(3):
                d.polygon(_star(cx, y0 + h * (k + 0.5) / 3, w / 3, h / 7, 5, 0.42), fill=fill)
    else:  # a compass rose
        d.polygon(_star(cx, cy, w / 2, h / 2, int(rng.choice([4, 8])), 0.3), fill=fill)


def graphic_variants(spec: RegionSpec, cv: Canvas) -> list[list[tuple[np.ndarray, str]]]:
    """`spec.graphics` variants, each a list of (coverage (H, W) float in [0, 1], colour '#rrggbb')
    layers to composite over a plain background, bottom first. Deterministic per region name."""
    g = spec.graphics
    if g is None:
        return []
    rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
    out = []
    for _ in range(g.variants):
        layers = []
        for _ in range(int(rng.integers(1, g.max_shapes + 1))):
            shape = g.shapes[int(rng.integers(len(g.shapes)))]
            m = cv.mask()
            DRAW[shape](ImageDraw.Draw(m), rng, spec, cv)
            alpha = cv.down(m) * float(rng.uniform(*g.opacity))
            layers.append((alpha, g.colors[int(rng.integers(len(g.colors)))]))
        out.append(layers)
    return out
