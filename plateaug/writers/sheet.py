"""Contact sheets: a grid of image rows with optional captions, saved as one PNG to look at."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..renderer.spec import FONTS_DIR
from .atomic import atomic_write_bytes


@lru_cache(maxsize=1)
def _caption_font() -> ImageFont.FreeTypeFont:
    """The bundled CJK-capable font, so captions show province characters too."""
    return ImageFont.truetype(str(FONTS_DIR / "NotoSansSC-Bold.otf"), 10)


def to_pil(image: torch.Tensor) -> Image.Image:
    """(C, H, W) float in [0, 1] (C = 1 or 3) -> RGB PIL image."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a (1|3, H, W) image, got shape {tuple(image.shape)}")
    arr = (image.detach().float().clamp(0, 1) * 255).round().byte().cpu()
    if arr.shape[0] == 1:
        arr = arr.expand(3, -1, -1)
    return Image.fromarray(arr.permute(1, 2, 0).numpy(), "RGB")


def contact_sheet(rows: list[list[torch.Tensor]], path: str | Path, captions: list[str] | None = None,
                  cell_h: int = 64, pad: int = 4, boxes: list[torch.Tensor | None] | None = None) -> Path:
    """Save rows of images (each (C, H, W) in [0, 1]) side by side, scaled to `cell_h` high.

    `captions[i]` is written under row i; `boxes[i]` ((S, 4) xyxy in the first image's
    pixels) are drawn on row i's first image, to check labels against pixels by eye.
    """
    pils = [[to_pil(im) for im in row] for row in rows]
    scaled = [[im.resize((max(1, round(im.width * cell_h / im.height)), cell_h), Image.BILINEAR)
               for im in row] for row in pils]
    text_h = 12 if captions else 0
    width = max(sum(im.width + pad for im in row) for row in scaled) + pad
    height = len(scaled) * (cell_h + text_h + pad) + pad
    sheet = Image.new("RGB", (width, height), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    y = pad
    for i, row in enumerate(scaled):
        x = pad
        for j, im in enumerate(row):
            sheet.paste(im, (x, y))
            if boxes is not None and j == 0 and boxes[i] is not None:
                s = cell_h / pils[i][0].height
                for b in np.asarray(boxes[i].detach().cpu(), dtype=np.float32):
                    if b[2] <= b[0] or b[3] <= b[1]:  # padding rows
                        continue
                    x0, y0 = x + b[0] * s, y + b[1] * s  # a box under a pixel wide is drawn one pixel wide
                    draw.rectangle([x0, y0, max(x0, x + b[2] * s - 1), max(y0, y + b[3] * s - 1)],
                                   outline=(255, 0, 160))
            x += im.width + pad
        if captions:
            draw.text((pad, y + cell_h + 1), captions[i], fill=(230, 230, 230), font=_caption_font())
        y += cell_h + text_h + pad
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())
