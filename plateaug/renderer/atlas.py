"""Glyph atlas: every glyph a region can draw, rasterised once with Pillow, kept on the device."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .bitmap_font import load_bitmap_typeface
from .layout import Layout, layout_pattern
from .spec import RegionSpec

SUPERSAMPLE = 4  # glyphs are drawn 4x larger and box-filtered down: smooth, even stroke weight


@lru_cache(maxsize=16)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def glyph_ink(font: Path, text: str, px: int = 160) -> Image.Image:
    """`text` drawn white on black at `px` size, cropped to its ink (mode L). `font` may be a bitmap
    typeface (a folder, bitmap_font.py): its image of the character, else its fallback font's glyph."""
    if font.is_dir():
        tf = load_bitmap_typeface(font)
        if text in tf.glyphs:
            return tf.glyphs[text]
        if tf.fallback is None:
            raise ValueError(f"{text!r} has no image in bitmap typeface {font} and it names no fallback font")
        font = tf.fallback
    f = _font(font, px)
    x0, y0, x1, y1 = f.getbbox(text)
    img = Image.new("L", (x1 - x0 + 8, y1 - y0 + 8), 0)
    ImageDraw.Draw(img).text((4 - x0, 4 - y0), text, font=f, fill=255)
    box = img.getbbox()
    if box is None:
        raise ValueError(f"{text!r} has no ink in font {font.name}")
    return img.crop(box)


def fit_ink(ink: Image.Image, w: int, h: int, fit: str) -> np.ndarray:
    """Fit cropped ink into a w x h cell: `height` keeps aspect (squeezed if too wide), `stretch`
    fills the cell. Returns (h, w) float32 coverage in [0, 1]."""
    W, H = w * SUPERSAMPLE, h * SUPERSAMPLE
    if fit == "stretch":
        tw, th = W, H
    else:
        th = H
        tw = max(1, min(W, round(ink.width * H / ink.height)))
    cell = Image.new("L", (W, H), 0)
    cell.paste(ink.resize((tw, th), Image.LANCZOS), ((W - tw) // 2, (H - th) // 2))
    return np.asarray(cell.resize((w, h), Image.BOX), dtype=np.float32) / 255.0


class GlyphAtlas:
    """All (class, character, cell size) glyphs of a spec in one tensor, plus where each pattern
    slot reads from it.

    atlas: (N + 1, Hc, Wc) float coverage, entry 0 blank; ink_boxes: (N + 1, 4) xyxy of the ink
    inside its cell; base: (A, S) first atlas entry of each slot's class (0 for padding slots);
    stride: (A, S) entries per typeface variant of that class (variant v of character i is entry
    base + v * stride + i; a class with fewer fonts than the spec's n_fonts cycles through them).
    """

    def __init__(self, spec: RegionSpec, device: torch.device | str = "cpu"):
        self.layouts: tuple[Layout, ...] = tuple(layout_pattern(spec, p) for p in spec.patterns)
        classes = spec.class_map
        blocks: dict[tuple[str, int, int], int] = {}
        cells: list[np.ndarray] = [np.zeros((1, 1), np.float32)]
        A, S = len(self.layouts), spec.max_len
        base = torch.zeros(A, S, dtype=torch.int64)
        stride = torch.zeros(A, S, dtype=torch.int64)
        for a, lay in enumerate(self.layouts):
            for s, slot in enumerate(lay.chars):
                key = (slot.key, slot.w, slot.h)
                cls = classes[slot.key]
                if key not in blocks:
                    blocks[key] = len(cells)
                    for v in range(spec.n_fonts):
                        font = cls.fonts[v % len(cls.fonts)]
                        cells += [fit_ink(glyph_ink(font, cls.glyph(ch)), slot.w, slot.h, cls.fit) for ch in cls.chars]
                base[a, s] = blocks[key]
                stride[a, s] = len(cls.chars)
        Hc = max(c.shape[0] for c in cells)
        Wc = max(c.shape[1] for c in cells)
        atlas = np.zeros((len(cells), Hc, Wc), np.float32)
        boxes = np.zeros((len(cells), 4), np.float32)
        for i, c in enumerate(cells):
            atlas[i, : c.shape[0], : c.shape[1]] = c
            ys, xs = np.nonzero(c > 0.5 / 255)
            if len(xs):
                boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        self.device = torch.device(device)
        self.atlas = torch.from_numpy(atlas).to(self.device)  # (N+1, Hc, Wc)
        self.ink_boxes = torch.from_numpy(boxes).to(self.device)  # (N+1, 4)
        self.base = base.to(self.device)  # (A, S)
        self.stride = stride.to(self.device)  # (A, S)
        self.n_fonts = spec.n_fonts
