"""Static plate layers drawn once per region: backgrounds with bands and border, per-band text
overlays (e.g. one per US state name), and the separator marks of each pattern."""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
from PIL import Image, ImageDraw

from .atlas import SUPERSAMPLE, glyph_ink
from .graphics import graphic_variants, separator_emblem
from .layout import Layout
from .spec import VARIED_SEPARATORS, Band, RegionSpec, Separator

ARMS_TONE = 170  # coverage (of 255) of an arms separator's shield in the text colour: on a white plate about
# the luminance of the red shield (0.36)
ARMS_ASPECT = 1.2  # height / width of the Slovak shield


def rgb(color: str) -> np.ndarray:
    """'#rrggbb' -> (3,) float32 in [0, 1]."""
    return np.array([int(color[i: i + 2], 16) for i in (1, 3, 5)], np.float32) / 255.0


class _Canvas:
    """Supersampled drawing surface in plate millimetres."""

    def __init__(self, spec: RegionSpec):
        self.H, self.W = spec.canvas
        self.sx = self.W * SUPERSAMPLE / spec.size_mm[0]
        self.sy = self.H * SUPERSAMPLE / spec.size_mm[1]

    def box(self, rect: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        x, y, w, h = rect
        return round(x * self.sx), round(y * self.sy), round((x + w) * self.sx), round((y + h) * self.sy)

    def mask(self) -> Image.Image:
        return Image.new("L", (self.W * SUPERSAMPLE, self.H * SUPERSAMPLE), 0)

    def down(self, m: Image.Image) -> np.ndarray:
        """Supersampled L mask -> (H, W) float coverage."""
        return np.asarray(m.resize((self.W, self.H), Image.BOX), np.float32) / 255.0


def _text_mask(cv: _Canvas, band: Band, text: str) -> np.ndarray:
    """Band text fitted inside its rectangle, aspect kept, centred: (H, W) coverage."""
    m = cv.mask()
    if text.strip():
        ink = glyph_ink(band.font, text)
        x0, y0, x1, y1 = cv.box(band.text_rect_mm)
        scale = min((x1 - x0) / ink.width, (y1 - y0) / ink.height)
        tw, th = max(1, round(ink.width * scale)), max(1, round(ink.height * scale))
        m.paste(ink.resize((tw, th), Image.LANCZOS), (x0 + (x1 - x0 - tw) // 2, y0 + (y1 - y0 - th) // 2))
    return cv.down(m)


def _eu_stars(cv: _Canvas, rect: tuple[float, float, float, float]) -> np.ndarray:
    """Twelve small stars on a circle in the upper part of the EU strip."""
    m = cv.mask()
    d = ImageDraw.Draw(m)
    x0, y0, x1, y1 = cv.box(rect)
    cx, cy = (x0 + x1) / 2, y0 + (y1 - y0) * 0.3
    r = min(x1 - x0, y1 - y0) * 0.28
    s = r * 0.22
    for k in range(12):
        a = 2 * math.pi * k / 12
        px, py = cx + r * math.cos(a), cy + r * math.sin(a)
        star = [(px + s * (1 if i % 2 == 0 else 0.45) * math.cos(math.pi / 2 + i * math.pi / 5),
                 py - s * (1 if i % 2 == 0 else 0.45) * math.sin(math.pi / 2 + i * math.pi / 5))
                for i in range(10)]
        d.polygon(star, fill=255)
    return cv.down(m)


def _arms_shapes(cx: float, top: float, w: float, h: float) -> tuple[list, list, list]:
    """The Slovak coat of arms in a w x h box (supersampled px) under (cx, top): the shield's polygon,
    the three hills' ellipse boxes and the double cross's rectangles."""
    left, right = cx - w / 2, cx + w / 2
    # straight top and sides down to 55 %, then two curves meeting at the bottom point
    curve = [(cx + side * (w / 2) * math.cos(a), top + 0.55 * h + 0.45 * h * math.sin(a))
             for side in (1, -1) for a in np.linspace(0, math.pi / 2, 8)[:: side]]
    shield = [(left, top), (right, top), *curve, (left, top + 0.55 * h)]
    hills = []
    for dx, r in ((0.0, 0.26), (-0.3, 0.2), (0.3, 0.2)):  # three hills, the middle one highest
        px, py = cx + dx * w, top + (1.0 if dx else 0.93) * h
        hills.append((px - r * w, py - r * w, px + r * w, py + r * w))
    bar = 0.11 * w
    cross = [(cx - bar / 2, top + 0.14 * h, cx + bar / 2, top + 0.75 * h)]
    for y, half in ((0.3, 0.22), (0.47, 0.3)):  # the double cross: shorter upper, longer lower arm
        cross.append((cx - half * w, top + y * h - bar / 2, cx + half * w, top + y * h + bar / 2))
    return shield, hills, cross


def _sk_arms(cv: _Canvas, rect: tuple[float, float, float, float]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Slovak coat of arms in the upper part of the band: a red shield, a white double cross on blue
    hills. (coverage (H, W), colour (3,)) layers, bottom first."""
    x0, y0, x1, y1 = cv.box(rect)
    w = (x1 - x0) * 0.62
    h = min(w * ARMS_ASPECT, (y1 - y0) * 0.55)
    shield_poly, hill_boxes, cross_rects = _arms_shapes((x0 + x1) / 2, y0 + (y1 - y0) * 0.06, w, h)
    shield, hills, cross = cv.mask(), cv.mask(), cv.mask()
    ImageDraw.Draw(shield).polygon(shield_poly, fill=255)
    draw_hills, draw_cross = ImageDraw.Draw(hills), ImageDraw.Draw(cross)
    for box in hill_boxes:
        draw_hills.ellipse(box, fill=255)
    for box in cross_rects:
        draw_cross.rectangle(box, fill=255)
    shield_cov = cv.down(shield)
    return [(shield_cov, rgb("#ee1c25")), (cv.down(hills) * shield_cov, rgb("#0b4ea2")),
            (cv.down(cross) * shield_cov, rgb("#ffffff"))]


def _over(img: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> None:
    """In place: img (3, H, W) <- colour over img with coverage alpha (H, W)."""
    img *= 1 - alpha[None]
    img += alpha[None] * color[:, None, None]


def background_layers(spec: RegionSpec) -> torch.Tensor:
    """(n_layers, 3, H, W) plates without text: gradient, pictorial graphics, bands, emblems, fixed
    band texts, border. Per background colour: the plain plate, then one layer per graphics variant."""
    cv = _Canvas(spec)
    H, W = spec.canvas
    t = np.linspace(0.0, 1.0, H, dtype=np.float32)[:, None]  # (H, 1) top -> bottom
    variants = [[]] + [[(alpha, rgb(c)) for alpha, c in v] for v in graphic_variants(spec, cv)]  # plain first
    finish = _finishing_layers(spec, cv)  # drawn over every variant
    out = []
    for top, bottom in spec.backgrounds:
        base = ((1 - t) * rgb(top)[:, None, None] + t * rgb(bottom)[:, None, None]).repeat(W, axis=2)
        base = np.ascontiguousarray(base.reshape(3, H, W))
        for graphics in variants:
            img = base.copy()
            for alpha, color in graphics + finish:
                _over(img, alpha, color)
            out.append(img)
    return torch.from_numpy(np.stack(out))


def background_slots(spec: RegionSpec) -> torch.Tensor:
    """(spec.n_background_slots,) int64: the layer of `background_layers` each value of the
    background style column draws. Per colour: `plain_slots` plain slots, then the variants."""
    if spec.graphics is None:
        return torch.arange(len(spec.backgrounds))
    v, plain = spec.graphics.variants, spec.graphics.plain_slots
    per_colour = torch.cat([torch.zeros(plain, dtype=torch.int64), torch.arange(1, v + 1)])
    return torch.cat([c * (v + 1) + per_colour for c in range(len(spec.backgrounds))])


def _finishing_layers(spec: RegionSpec, cv: _Canvas) -> list[tuple[np.ndarray, np.ndarray]]:
    """(coverage (H, W), colour (3,)) of the bands, emblems, fixed band texts and border, bottom first."""
    out = []
    for band in spec.bands:
        if band.color:
            m = cv.mask()
            ImageDraw.Draw(m).rectangle(cv.box(band.rect_mm), fill=255)
            out.append((cv.down(m), rgb(band.color)))
        if band.emblem == "eu_stars":
            out.append((_eu_stars(cv, band.rect_mm), rgb("#ffcc00")))
        elif band.emblem == "sk_arms":
            out += _sk_arms(cv, band.rect_mm)
        if len(band.texts) == 1:
            out.append((_text_mask(cv, band, band.texts[0]), rgb(band.text_color)))
    if spec.border_color and spec.border_mm > 0:
        m = cv.mask()
        bw = max(1, round(spec.border_mm * cv.sy))
        ImageDraw.Draw(m).rounded_rectangle((0, 0, m.width - 1, m.height - 1), radius=3 * bw,
                                            outline=255, width=bw)
        out.append((cv.down(m), rgb(spec.border_color)))
    return out


def band_overlays(spec: RegionSpec) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """For each band with several texts: (band index, (K, 1, H, W) coverage, (3,) colour)."""
    cv = _Canvas(spec)
    out = []
    for i, band in enumerate(spec.bands):
        if len(band.texts) > 1:
            masks = np.stack([_text_mask(cv, band, t) for t in band.texts])[:, None]
            out.append((i, torch.from_numpy(masks), torch.from_numpy(rgb(band.text_color))))
    return out


def _stack(m: Image.Image, rng: np.random.Generator, sep: Separator, centre: tuple[float, float], w: float,
           h: float) -> None:
    """Two of `sep.chars` one above the other in a w x h box (supersampled px) around `centre`."""
    gap = h * 0.1
    ch_h = max(1, round((h - gap) / 2))
    for k, ch in enumerate(rng.choice(list(sep.chars), 2)):
        ink = glyph_ink(sep.font, str(ch))
        tw = max(1, min(round(w), round(ink.width * ch_h / ink.height)))
        x = round(centre[0] - tw / 2)
        y = round(centre[1] - h / 2 + k * (ch_h + gap))
        m.paste(255, (x, y, x + tw, y + ch_h), ink.resize((tw, ch_h), Image.LANCZOS))


def separator_masks(spec: RegionSpec, layouts: tuple[Layout, ...]) -> torch.Tensor:
    """(A, 1, H, W) coverage of each pattern's separators (drawn in the text colour). `layouts` are
    those of spec.patterns, in order (an emblem or stack makes the drawing of its pattern's variant)."""
    cv = _Canvas(spec)
    seps = spec.separator_map
    out = []
    for pattern, lay in zip(spec.patterns, layouts):
        m = cv.mask()
        d = ImageDraw.Draw(m)
        for slot in lay.separators:
            sep = seps[slot.key]
            cx = (slot.x + slot.w / 2) * SUPERSAMPLE
            cy = (slot.y + slot.h / 2) * SUPERSAMPLE
            size = sep.size_mm * cv.sx  # horizontal mm scale: shapes keep their width on the canvas
            if sep.shape == "dot":
                d.ellipse((cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2), fill=255)
            elif sep.shape == "hyphen":
                th = slot.h * SUPERSAMPLE * 0.11
                d.rectangle((cx - size / 2, cy - th / 2, cx + size / 2, cy + th / 2), fill=255)
            elif sep.shape == "seal":  # German registration stickers: two stacked discs, half tone
                r = size / 2
                for dy in (-r * 1.1, r * 1.1):
                    d.ellipse((cx - r, cy + dy - r, cx + r, cy + dy + r), fill=110)
            elif sep.shape == "arms":  # Slovak arms in its slot: half-tone shield, cross cut out
                h = min(sep.size_mm * cv.sy, slot.h * SUPERSAMPLE, slot.w * SUPERSAMPLE * ARMS_ASPECT)
                shield, _, cross = _arms_shapes(cx, cy - h / 2, h / ARMS_ASPECT, h)
                d.polygon(shield, fill=ARMS_TONE)
                for box in cross:
                    d.rectangle(box, fill=0)
            elif sep.shape in VARIED_SEPARATORS:  # seeded by region, pattern and variant: the same every run
                key = f"{spec.name}/{' '.join(pattern.tokens)}/{slot.key}/{pattern.variant}"
                rng = np.random.default_rng(zlib.crc32(key.encode()))
                h = min(sep.size_mm * cv.sy, slot.h * SUPERSAMPLE) * rng.uniform(0.75, 1.0)
                w = slot.w * SUPERSAMPLE * rng.uniform(0.85, 1.1)  # may reach into the gaps beside it
                if sep.shape == "emblem":
                    separator_emblem(d, rng, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
                else:
                    _stack(m, rng, sep, (cx, cy), w, h)
        out.append(cv.down(m))
    return torch.from_numpy(np.stack(out))[:, None]
