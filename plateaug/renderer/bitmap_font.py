"""Bitmap typefaces: a folder of glyph images a region spec can name like a font.

Plate typefaces (FE-Schrift, GA 36, the US states' dies) are not openly licensed, and glyph shape
is what a recogniser trained on open stand-ins gets wrong on real plates. A bitmap typeface holds
glyphs cut from real plates (`python -m plateaug.glyphs`) or drawn by hand: `typeface.toml`
(`fallback`, the font drawing characters it has no image for; `source`, `license`) and one
`<codepoint in hex>.png` per character (white ink on black, cropped to the ink).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image, UnidentifiedImageError

TYPEFACE_FILE = "typeface.toml"
MAX_GLYPHS = 4096  # images one typeface may hold
MAX_GLYPH_BYTES = 2_000_000  # per image file
MAX_GLYPH_SIDE = 1024  # px per side of one glyph image
GLYPH_NAME = re.compile(r"^[0-9a-f]{4,6}\.png$")


def is_bitmap_typeface(path: Path) -> bool:
    """True for a folder holding a `typeface.toml`."""
    return path.is_dir() and (path / TYPEFACE_FILE).is_file()


def glyph_file(ch: str) -> str:
    """File name of the image of character `ch`: `0041.png` for A."""
    if len(ch) != 1:
        raise ValueError(f"a bitmap glyph is one character, got {ch!r}")
    return f"{ord(ch):04x}.png"


@dataclass(frozen=True, eq=False)
class BitmapTypeface:
    """A loaded bitmap typeface: its glyph images (mode L) by character and its fallback font."""

    path: Path
    glyphs: dict[str, Image.Image]
    fallback: Path | None
    source: str = ""
    license: str = ""


def _fail(path: Path, msg: str) -> ValueError:
    return ValueError(f"bitmap typeface {path}: {msg}")


@cache
def load_bitmap_typeface(path: Path) -> BitmapTypeface:
    """Read and check a bitmap typeface (untrusted input: names, counts and image sizes bounded,
    each image decoded once, a corrupt one named in the error)."""
    path = Path(path)
    meta_file = path / TYPEFACE_FILE
    if not meta_file.is_file():
        raise _fail(path, f"no {TYPEFACE_FILE} in the folder")
    try:
        meta = tomllib.loads(meta_file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise _fail(path, f"{TYPEFACE_FILE} is not valid TOML ({e})") from None
    unknown = set(meta) - {"fallback", "source", "license"}
    if unknown:
        raise _fail(path, f"unknown keys {sorted(unknown)} in {TYPEFACE_FILE} (allowed: fallback, source, license)")
    for key in ("fallback", "source", "license"):
        if key in meta and not isinstance(meta[key], str):
            raise _fail(path, f"{key} must be a string, got {meta[key]!r}")
    fallback = None
    if meta.get("fallback"):
        from .spec import FONTS_DIR  # the shipped fonts; a path is relative to the typeface

        cands = (FONTS_DIR / f"{meta['fallback']}.ttf", FONTS_DIR / f"{meta['fallback']}.otf", path / meta["fallback"])
        fallback = next((c.resolve() for c in cands if c.is_file()), None)
        if fallback is None:
            raise _fail(path, f"fallback font {meta['fallback']!r} not found (a shipped font name or a path "
                              f"relative to the typeface)")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png")
    if len(files) > MAX_GLYPHS:
        raise _fail(path, f"{len(files)} glyph images, at most {MAX_GLYPHS}")
    glyphs: dict[str, Image.Image] = {}
    for f in files:
        if not GLYPH_NAME.match(f.name):
            raise _fail(path, f"{f.name}: a glyph image is named by its codepoint in lower-case hex (0041.png for A)")
        if f.stat().st_size > MAX_GLYPH_BYTES:
            raise _fail(path, f"{f.name} is {f.stat().st_size} bytes, at most {MAX_GLYPH_BYTES}")
        try:
            with Image.open(f) as im:
                if max(im.size) > MAX_GLYPH_SIDE:
                    raise _fail(path, f"{f.name} is {im.width}x{im.height} px, at most {MAX_GLYPH_SIDE} per side")
                ink = im.convert("L")
                ink.load()
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise _fail(path, f"{f.name} is not a readable image ({e})") from None
        if ink.getbbox() is None:
            raise _fail(path, f"{f.name} has no ink (white on black expected)")
        glyphs[chr(int(f.stem, 16))] = ink.crop(ink.getbbox())
    if not glyphs:
        raise _fail(path, "no glyph images (<codepoint>.png)")
    return BitmapTypeface(path, glyphs, fallback, meta.get("source", ""), meta.get("license", ""))


def bitmap_missing(path: Path, chars: str, fallback_cmap) -> str:
    """Characters of `chars` neither drawn as an image nor by the fallback font
    (`fallback_cmap(font) -> set of codepoints`)."""
    tf = load_bitmap_typeface(path)
    cmap = fallback_cmap(tf.fallback) if tf.fallback is not None else frozenset()
    return "".join(ch for ch in chars if ch not in tf.glyphs and ord(ch) not in cmap)
