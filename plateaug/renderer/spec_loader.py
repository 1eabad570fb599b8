"""Region spec loading: TOML file (shipped name or user path) -> validated `RegionSpec`.

Every check happens here, up front, and a failure raises one `RegionSpecError(file, key, reason)`.
"""

from __future__ import annotations

import math
import tomllib
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from fontTools.ttLib import TTFont
from PIL import ImageFont

from .bitmap_font import bitmap_missing, is_bitmap_typeface, load_bitmap_typeface
from .font_packs import installed_font_dirs
from .graphics import SHAPES
from .layout import layout_pattern
from .spec import (
    CANVAS_MULTIPLE,
    EMBLEMS,
    FIT_MODES,
    FONTS_DIR,
    MAX_SEPARATOR_VARIANTS,
    REGIONS_DIR,
    SEPARATOR_SHAPES,
    STACK_CHARS,
    VARIED_SEPARATORS,
    Band,
    CharClass,
    Graphics,
    Pattern,
    RegionSpec,
    RegionSpecError,
    Row,
    Separator,
)

MAX_FONTS = 16  # typefaces a class may vary over

# What one spec may ask for: generous for real plates (the shipped specs use a small fraction),
# tight enough that a malformed or hostile file fails with a RegionSpecError naming the key
# instead of a MemoryError or RecursionError later.
MAX_SPEC_BYTES = 256 * 1024  # file size, checked before parsing
MAX_NESTING = 8  # arrays / tables inside each other (the shipped specs use 4)
MAX_CANVAS_SIDE = 1024  # px, each of H and W
MAX_CANVAS_PIXELS = 256 * 1024  # px, H * W (e.g. 256x1024 or 512x512)
MAX_CLASSES = 32
MAX_CLASS_CHARS = 1024  # characters in one class
MAX_CHARS = 4096  # characters over all classes
MAX_SEPARATORS = 16
MAX_STACK_CHARS = 64  # characters a stack separator draws from
MAX_ROWS = 8
MAX_BANDS = 8
MAX_BAND_TEXTS = 256  # texts per band
MAX_BAND_TEXT_LEN = 64  # characters per band text
MAX_PATTERNS = 256
MAX_TOKENS = 32  # tokens per pattern, separators and "/" included
MAX_COLORS = 64  # background colours, text colours
MAX_STROKE_PX = 4.0  # |stroke weight change| in canvas pixels
MAX_GRAPHICS = 32  # pictorial background variants per colour
MAX_BACKGROUND_PIXELS = 64 * MAX_CANVAS_PIXELS  # all background layers (colours x variants) together
MAX_WEIGHT = 1e6  # pattern and character weights are relative; bounded so their sum stays finite


def builtin_regions() -> list[str]:
    """Names of the regions shipped in `plateaug/regions/`."""
    return sorted(p.stem for p in REGIONS_DIR.glob("*.toml"))


def load_region(name_or_path: str | Path | RegionSpec) -> RegionSpec:
    """Load a shipped region by name (`"eu_de"`) or a user spec by path; validates it fully."""
    if isinstance(name_or_path, RegionSpec):
        return name_or_path
    path = Path(name_or_path)
    if path.suffix != ".toml":
        candidate = REGIONS_DIR / f"{name_or_path}.toml"
        if not candidate.exists():
            raise ValueError(
                f"unknown region {str(name_or_path)!r}: not a shipped region "
                f"({', '.join(builtin_regions())}) and not a path to a .toml spec"
            )
        path = candidate
    path = path.resolve()
    if not path.is_file():
        raise RegionSpecError(path, "-", "file not found")
    st = path.stat()
    # an edited spec is parsed again, and so is every spec when the installed font packs change
    return _load_path(path, st.st_mtime_ns, st.st_size, installed_font_dirs())


@lru_cache(maxsize=64)
def _load_path(path: Path, mtime_ns: int = 0, size: int = 0, font_packs: tuple[Path, ...] = ()) -> RegionSpec:
    too_big = f"the file is larger than {MAX_SPEC_BYTES // 1024} KiB, the most a region spec may be"
    if size > MAX_SPEC_BYTES:
        raise RegionSpecError(path, "-", f"{too_big} ({size:,} bytes)")
    with open(path, "rb") as f:
        raw = f.read(MAX_SPEC_BYTES + 1)  # the file may have grown since it was measured
    if len(raw) > MAX_SPEC_BYTES:
        raise RegionSpecError(path, "-", too_big)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RegionSpecError(path, "-", f"not valid TOML: {e}") from None
    except RecursionError:
        raise RegionSpecError(path, "-", f"arrays or tables are nested too deeply (at most {MAX_NESTING} "
                                         f"levels)") from None
    key = _too_deep(data)
    if key is not None:
        raise RegionSpecError(path, key, f"arrays or tables are nested more than {MAX_NESTING} levels deep")
    return _Parser(path, data).parse()


def _too_deep(data: dict) -> str | None:
    """The top-level key under which tables/arrays nest more than MAX_NESTING deep, else None
    (an explicit stack: no recursion, and it stops at the limit)."""
    for top, value in data.items():
        stack = [(value, 2)]  # the document itself is level 1
        while stack:
            v, depth = stack.pop()
            if isinstance(v, (dict, list)):
                if depth > MAX_NESTING:
                    return top
                stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, dict) else v))
    return None


_TOP_KEYS = {"name", "description", "size_mm", "canvas_px", "background", "text", "classes",
             "separators", "rows", "bands", "patterns"}


class _Parser:
    """Validating TOML -> RegionSpec conversion; every error names file and key."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path, self.data = path, data

    def fail(self, key: str, reason: str) -> RegionSpecError:
        return RegionSpecError(self.path, key, reason)

    def at_most(self, items: Any, limit: int, key: str, what: str) -> None:
        """Refuse more than `limit` items (the MAX_* bounds of this module)."""
        if len(items) > limit:
            raise self.fail(key, f"{len(items):,} {what}; a region spec may have at most {limit:,}")

    # -- typed getters -------------------------------------------------------------------
    def get(self, table: dict, key: str, where: str, typ: type | tuple, default: Any = ...) -> Any:
        full = f"{where}.{key}" if where else key
        if key not in table:
            if default is ...:
                raise self.fail(full, "missing required field")
            return default
        value = table[key]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, typ) or isinstance(value, bool) and typ is not bool:
            names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
            raise self.fail(full, f"expected {names}, got {type(value).__name__} {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            if value == -math.inf:
                raise self.fail(full, f"must be > 0, got {value}")
            raise self.fail(full, f"must be a finite number, got {value}")
        return value

    def positive(self, table: dict, key: str, where: str, default: Any = ...) -> float:
        v = self.get(table, key, where, float, default)
        if v is not None and v <= 0:
            raise self.fail(f"{where}.{key}" if where else key, f"must be > 0, got {v}")
        return v

    def weight(self, table: dict, key: str, where: str) -> float:
        """A relative weight in (0, MAX_WEIGHT], 1 when absent."""
        v = self.positive(table, key, where, 1.0)
        if v > MAX_WEIGHT:
            raise self.fail(f"{where}.{key}", f"must be <= {MAX_WEIGHT:g} (weights are relative), got {v:g}")
        return v

    def numbers(self, table: dict, key: str, where: str, n: int, default: Any = ...) -> tuple:
        full = f"{where}.{key}" if where else key
        v = self.get(table, key, where, list, default)
        if v is None:
            return None
        if len(v) != n or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                                  for x in v):
            raise self.fail(full, f"expected a list of {n} numbers (finite), got {v!r}")
        return tuple(float(x) for x in v)

    def color(self, value: Any, key: str) -> str:
        ok = isinstance(value, str) and value.startswith("#") and len(value) == 7
        if ok:
            try:
                int(value[1:], 16)
            except ValueError:
                ok = False
        if not ok:
            raise self.fail(key, f"expected a colour '#rrggbb', got {value!r}")
        return value

    def unknown(self, table: dict, allowed: set[str], where: str) -> None:
        for k in table:
            if k not in allowed:
                full = f"{where}.{k}" if where else k
                raise self.fail(full, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def font(self, value: Any, key: str, optional: bool = False) -> Path | None:
        """A font by name (the shipped fonts, then installed font packs) or by a path relative to the
        spec: a font file or a bitmap typeface folder. optional: None when it is nowhere to be found."""
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a font name or path, got {value!r}")
        dirs = (FONTS_DIR, *installed_font_dirs())
        for cand in (*(d / value for d in dirs), self.path.parent / value):  # a bitmap typeface (folder)
            if is_bitmap_typeface(cand):
                try:
                    load_bitmap_typeface(cand.resolve())
                except ValueError as e:
                    raise self.fail(key, str(e)) from None
                return cand.resolve()
        for cand in (*(d / f"{value}{ext}" for d in dirs for ext in (".ttf", ".otf")), self.path.parent / value):
            if cand.is_file():
                try:
                    ImageFont.truetype(str(cand), 16)
                except OSError as e:
                    raise self.fail(key, f"font {cand} cannot be read: {e}") from None
                return cand.resolve()
        if optional:
            return None
        known = sorted(p.stem for d in dirs for p in d.iterdir() if p.suffix in (".ttf", ".otf"))
        known += sorted(p.name for d in dirs for p in d.iterdir() if is_bitmap_typeface(p))
        raise self.fail(key, f"font {value!r} not found (shipped or installed: {', '.join(known)}; "
                             f"or a path relative to the spec: a font file or a bitmap typeface folder)")

    def fonts(self, value: Any, key: str, extra: Any = None, extra_key: str = "") -> tuple[Path, ...]:
        """One font, or a list of fonts of which each plate draws one (typeface variety); then those
        of `extra` (a list of optional fonts, e.g. an installed font pack's) that are installed."""
        names = value if isinstance(value, list) else [value]
        if not names or len(names) > MAX_FONTS:
            raise self.fail(key, f"expected a font or a list of 1 to {MAX_FONTS} fonts, got {value!r}")
        fonts = [self.font(v, key) for v in names]
        if extra is not None:
            if not isinstance(extra, list) or len(names) + len(extra) > MAX_FONTS:
                raise self.fail(extra_key, f"expected a list of fonts, at most {MAX_FONTS} with {key}, "
                                           f"got {extra!r}")
            fonts += [f for f in (self.font(v, extra_key, optional=True) for v in extra) if f is not None]
        return tuple(fonts)

    # -- sections -------------------------------------------------------------------------
    def parse(self) -> RegionSpec:
        d = self.data
        self.unknown(d, _TOP_KEYS, "")
        name = self.get(d, "name", "", str)
        if not name.isidentifier():
            raise self.fail("name", f"must be an identifier like 'eu_de', got {name!r}")
        size = self.numbers(d, "size_mm", "", 2)
        if min(size) <= 0:
            raise self.fail("size_mm", f"plate size must be positive, got {list(size)}")
        canvas = self.get(d, "canvas_px", "", list)
        if (len(canvas) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in canvas)
                or min(canvas) < CANVAS_MULTIPLE or any(x % CANVAS_MULTIPLE for x in canvas)):
            raise self.fail("canvas_px", f"expected [H, W], positive multiples of {CANVAS_MULTIPLE}, "
                                         f"got {canvas!r}")
        if max(canvas) > MAX_CANVAS_SIDE or canvas[0] * canvas[1] > MAX_CANVAS_PIXELS:
            raise self.fail("canvas_px", f"{canvas[0]}x{canvas[1]} px is too large for a plate canvas: at most "
                                         f"{MAX_CANVAS_SIDE} px a side and {MAX_CANVAS_PIXELS:,} px in all")
        text = self.get(d, "text", "", dict)
        self.unknown(text, {"colors", "font", "extra_fonts", "stroke_px"}, "text")
        text_colors = self.get(text, "colors", "text", list)
        if not text_colors:
            raise self.fail("text.colors", "needs at least one colour")
        self.at_most(text_colors, MAX_COLORS, "text.colors", "colours")
        text_colors = tuple(self.color(c, "text.colors") for c in text_colors)
        default_fonts = self.fonts(self.get(text, "font", "text", (str, list)), "text.font",
                                   text.get("extra_fonts"), "text.extra_fonts")
        stroke = self.numbers(text, "stroke_px", "text", 2, (0.0, 0.0))
        if not -MAX_STROKE_PX <= stroke[0] <= stroke[1] <= MAX_STROKE_PX:
            raise self.fail("text.stroke_px", f"expected [low, high] with -{MAX_STROKE_PX} <= low <= high <= "
                                              f"{MAX_STROKE_PX} (canvas pixels), got {list(stroke)}")
        classes = self.parse_classes(default_fonts)
        separators = self.parse_separators(default_fonts[0])
        clash = {c.key for c in classes} & {s.key for s in separators}
        if clash:
            raise self.fail("separators", f"keys also used as classes: {sorted(clash)}")
        rows = self.parse_rows(size)
        backgrounds, border_color, border_mm, graphics = self.parse_background(canvas)
        bands = self.parse_bands(size, default_fonts[0])
        spec = RegionSpec(
            name=name, description=self.get(d, "description", "", str, ""), source=self.path,
            size_mm=size, canvas=(canvas[0], canvas[1]), backgrounds=backgrounds,
            border_color=border_color, border_mm=border_mm, text_colors=text_colors,
            classes=classes, separators=separators, rows=rows, bands=bands,
            patterns=self.parse_patterns(classes, separators, rows), stroke_px=stroke, graphics=graphics,
        )
        self.check_layouts(spec)
        return spec

    def parse_classes(self, default_fonts: tuple[Path, ...]) -> tuple[CharClass, ...]:
        table = self.get(self.data, "classes", "", dict)
        if not table:
            raise self.fail("classes", "needs at least one character class")
        self.at_most(table, MAX_CLASSES, "classes", "character classes")
        out, total = [], 0
        for key, value in table.items():
            where = f"classes.{key}"
            if key == "/" or any(ch.isspace() for ch in key):
                raise self.fail(where, "class keys may not contain spaces or be '/'")
            if isinstance(value, str):
                value = {"chars": value}
            if not isinstance(value, dict):
                raise self.fail(where, f"expected a string of characters or a table, got {value!r}")
            self.unknown(value, {"chars", "font", "fit", "width_mm", "draw_as", "weights"}, where)
            chars = self.get(value, "chars", where, str)
            self.at_most(chars, MAX_CLASS_CHARS, f"{where}.chars", "characters")
            if not chars or any(ch.isspace() for ch in chars) or len(set(chars)) != len(chars):
                raise self.fail(f"{where}.chars", f"needs distinct non-space characters, got {chars!r}")
            total += len(chars)
            if total > MAX_CHARS:
                raise self.fail(f"{where}.chars", f"the classes hold more than {MAX_CHARS:,} characters in all, "
                                                  f"the most a region spec may have")
            fonts = self.fonts(value["font"], f"{where}.font") if "font" in value else default_fonts
            fit = self.get(value, "fit", where, str, "height")
            if fit not in FIT_MODES:
                raise self.fail(f"{where}.fit", f"expected one of {FIT_MODES}, got {fit!r}")
            width = self.positive(value, "width_mm", where, None)
            draw_as = self.parse_draw_as(value, chars, where)
            weights = self.parse_char_weights(value, chars, where)
            for font in fonts:
                missing = missing_glyphs(font, chars)
                if missing:
                    raise self.fail(f"{where}.chars", f"characters {missing!r} are not in font {font.name}")
                missing = missing_glyphs(font, "".join(g for _, g in draw_as))
                if missing:
                    raise self.fail(f"{where}.draw_as", f"glyphs {missing!r} are not in font {font.name}")
            out.append(CharClass(key=key, chars=chars, font=fonts[0], fit=fit, width_mm=width, fonts=fonts,
                                 draw_as=draw_as, weights=weights))
        return tuple(out)

    def parse_char_weights(self, value: dict, chars: str, where: str) -> tuple[float, ...]:
        """`weights = { "皖" = 20 }`: relative frequencies of some characters of the class (the rest
        weigh 1). () when absent: every character alike."""
        table = self.get(value, "weights", where, dict, {})
        if not table:
            return ()
        out = dict.fromkeys(chars, 1.0)
        for ch in table:
            if len(ch) != 1 or ch not in chars:
                raise self.fail(f"{where}.weights", f"{ch!r} is not a character of the class ({chars!r})")
            out[ch] = self.weight(table, ch, f"{where}.weights")
        return tuple(out.values())

    def parse_draw_as(self, value: dict, chars: str, where: str) -> tuple[tuple[str, str], ...]:
        """`draw_as = { "1" = "l" }`: characters of the class drawn with another glyph of its typefaces."""
        table = self.get(value, "draw_as", where, dict, {})
        out = []
        for ch, glyph in table.items():
            if len(ch) != 1 or ch not in chars:
                raise self.fail(f"{where}.draw_as", f"{ch!r} is not a character of the class ({chars!r})")
            if not isinstance(glyph, str) or len(glyph) != 1 or glyph.isspace():
                raise self.fail(f"{where}.draw_as.{ch}", f"expected one non-space character, got {glyph!r}")
            out.append((ch, glyph))
        return tuple(out)

    def parse_separators(self, font: Path) -> tuple[Separator, ...]:
        table = self.get(self.data, "separators", "", dict, {})
        self.at_most(table, MAX_SEPARATORS, "separators", "separators")
        out = []
        for key, value in table.items():
            where = f"separators.{key}"
            if not isinstance(value, dict):
                raise self.fail(where, f"expected a table with shape and width_mm, got {value!r}")
            self.unknown(value, {"shape", "width_mm", "size_mm", "variants", "chars"}, where)
            shape = self.get(value, "shape", where, str)
            if shape not in SEPARATOR_SHAPES:
                raise self.fail(f"{where}.shape", f"expected one of {SEPARATOR_SHAPES}, got {shape!r}")
            width = self.positive(value, "width_mm", where)
            size = self.positive(value, "size_mm", where, width * 0.5)
            variants = self.get(value, "variants", where, int, 1)
            if "variants" in value and shape not in VARIED_SEPARATORS:
                raise self.fail(f"{where}.variants", f"only {' and '.join(VARIED_SEPARATORS)} separators have "
                                                     f"variants (shape is {shape!r})")
            if not 1 <= variants <= MAX_SEPARATOR_VARIANTS:
                raise self.fail(f"{where}.variants", f"expected 1..{MAX_SEPARATOR_VARIANTS}, got {variants}")
            stack = shape == "stack"
            if "chars" in value and not stack:
                raise self.fail(f"{where}.chars", f"only a stack separator draws characters (shape is {shape!r})")
            chars = self.get(value, "chars", where, str, STACK_CHARS) if stack else ""
            if stack and (not 1 <= len(chars) <= MAX_STACK_CHARS or any(ch.isspace() for ch in chars)):
                raise self.fail(f"{where}.chars", f"expected 1-{MAX_STACK_CHARS} characters without spaces, got "
                                                  f"{chars!r}")
            missing = missing_glyphs(font, chars)
            if missing:
                raise self.fail(f"{where}.chars", f"characters {missing!r} are not in font {font.name}")
            out.append(Separator(key=key, shape=shape, width_mm=width, size_mm=size, variants=variants,
                                 chars=chars, font=font if stack else None))
        return tuple(out)

    def parse_rows(self, size: tuple[float, float]) -> tuple[Row, ...]:
        rows = self.get(self.data, "rows", "", list)
        if not rows:
            raise self.fail("rows", "needs at least one text row")
        self.at_most(rows, MAX_ROWS, "rows", "text rows")
        out = []
        for i, r in enumerate(rows):
            where = f"rows[{i}]"
            if not isinstance(r, dict):
                raise self.fail(where, "expected a table")
            self.unknown(r, {"y_mm", "height_mm", "x_mm", "char_width_mm", "gap_mm", "align"}, where)
            y = self.get(r, "y_mm", where, float)
            h = self.positive(r, "height_mm", where)
            x0, x1 = self.numbers(r, "x_mm", where, 2, (0.0, size[0]))
            align = self.get(r, "align", where, str, "center")
            if align not in ("center", "left"):
                raise self.fail(f"{where}.align", f"expected 'center' or 'left', got {align!r}")
            if y < 0 or y + h > size[1] or x0 < 0 or x1 > size[0] or x1 <= x0:
                raise self.fail(where, f"row (x {x0}..{x1}, y {y}..{y + h} mm) is not inside the "
                                       f"{size[0]}x{size[1]} mm plate")
            gap = self.get(r, "gap_mm", where, float, 0.0)
            if gap < 0:
                raise self.fail(f"{where}.gap_mm", f"must be >= 0, got {gap}")
            out.append(Row(y_mm=y, height_mm=h, x0_mm=x0, x1_mm=x1,
                           char_width_mm=self.positive(r, "char_width_mm", where),
                           gap_mm=gap, align=align))
        return tuple(out)

    def parse_background(self, canvas: list[int]) -> tuple[tuple[tuple[str, str], ...], str | None, float,
                                                           Graphics | None]:
        bg = self.get(self.data, "background", "", dict)
        self.unknown(bg, {"colors", "border_color", "border_mm", "graphics"}, "background")
        colors = self.get(bg, "colors", "background", list)
        if not colors:
            raise self.fail("background.colors", "needs at least one colour or [top, bottom] pair")
        self.at_most(colors, MAX_COLORS, "background.colors", "colours")
        pairs = []
        for c in colors:
            pair = [c, c] if isinstance(c, str) else c
            if not isinstance(pair, list) or len(pair) != 2:
                raise self.fail("background.colors", f"expected '#rrggbb' or [top, bottom], got {c!r}")
            pairs.append((self.color(pair[0], "background.colors"), self.color(pair[1], "background.colors")))
        border_color = bg.get("border_color")
        if border_color is not None:
            border_color = self.color(border_color, "background.border_color")
        border = self.get(bg, "border_mm", "background", float, 0.0)
        if border < 0:
            raise self.fail("background.border_mm", f"must be >= 0, got {border}")
        graphics = self.parse_graphics(bg)
        if graphics is not None:
            layers = len(pairs) * (1 + graphics.variants)
            if layers * canvas[0] * canvas[1] > MAX_BACKGROUND_PIXELS:
                raise self.fail("background.graphics.variants",
                                f"{len(pairs)} colours x (1 + {graphics.variants} variants) = {layers} background "
                                f"layers of {canvas[0]}x{canvas[1]} px; at most {MAX_BACKGROUND_PIXELS:,} px in all")
        return tuple(pairs), border_color, border, graphics

    def parse_graphics(self, bg: dict) -> Graphics | None:
        """[background] graphics = { variants, colors, share, opacity, shapes, max_shapes }, or None."""
        g = self.get(bg, "graphics", "background", dict, None)
        if g is None:
            return None
        where = "background.graphics"
        self.unknown(g, {"variants", "colors", "share", "opacity", "shapes", "max_shapes"}, where)
        variants = self.get(g, "variants", where, int)
        if not 1 <= variants <= MAX_GRAPHICS:
            raise self.fail(f"{where}.variants", f"must be 1..{MAX_GRAPHICS}, got {variants}")
        colors = self.get(g, "colors", where, list)
        if not colors:
            raise self.fail(f"{where}.colors", "needs at least one colour")
        self.at_most(colors, MAX_COLORS, f"{where}.colors", "colours")
        share = self.get(g, "share", where, float, 0.5)
        if not 0.05 <= share <= 1:
            raise self.fail(f"{where}.share", f"must be in [0.05, 1] (fraction of plates with graphics), got {share}")
        opacity = self.numbers(g, "opacity", where, 2, (0.3, 0.8))
        if not 0 <= opacity[0] <= opacity[1] <= 1:
            raise self.fail(f"{where}.opacity", f"expected [low, high] with 0 <= low <= high <= 1, got {list(opacity)}")
        shapes = self.get(g, "shapes", where, list, list(SHAPES))
        bad = [x for x in shapes if x not in SHAPES]
        if not shapes or bad:
            raise self.fail(f"{where}.shapes", f"expected a non-empty list of {', '.join(SHAPES)}; got {shapes!r}")
        max_shapes = self.get(g, "max_shapes", where, int, 2)
        if not 1 <= max_shapes <= 8:
            raise self.fail(f"{where}.max_shapes", f"must be 1..8, got {max_shapes}")
        return Graphics(variants=variants, share=share, colors=tuple(self.color(c, f"{where}.colors") for c in colors),
                        opacity=opacity, shapes=tuple(shapes), max_shapes=max_shapes)

    def parse_bands(self, size: tuple[float, float], default_font: Path) -> tuple[Band, ...]:
        out = []
        bands = self.get(self.data, "bands", "", list, [])
        self.at_most(bands, MAX_BANDS, "bands", "bands")
        for i, b in enumerate(bands):
            where = f"bands[{i}]"
            if not isinstance(b, dict):
                raise self.fail(where, "expected a table")
            self.unknown(b, {"rect_mm", "color", "texts", "text_color", "text_rect_mm", "font", "emblem"}, where)
            rect = self.numbers(b, "rect_mm", where, 4)
            _check_rect(self, rect, size, f"{where}.rect_mm")
            color = self.color(b["color"], f"{where}.color") if "color" in b else None
            texts = self.get(b, "texts", where, list, [])
            if not all(isinstance(t, str) for t in texts):
                raise self.fail(f"{where}.texts", "expected a list of strings")
            self.at_most(texts, MAX_BAND_TEXTS, f"{where}.texts", "texts")
            long = [t for t in texts if len(t) > MAX_BAND_TEXT_LEN]
            if long:
                raise self.fail(f"{where}.texts", f"a text of {len(long[0]):,} characters; band texts may have at "
                                                  f"most {MAX_BAND_TEXT_LEN}")
            font = self.font(b["font"], f"{where}.font") if "font" in b else default_font
            missing = missing_glyphs(font, "".join(texts).replace(" ", ""))
            if missing:
                raise self.fail(f"{where}.texts", f"characters {missing!r} are not in font {font.name}")
            text_rect = self.numbers(b, "text_rect_mm", where, 4, rect)
            _check_rect(self, text_rect, size, f"{where}.text_rect_mm")
            emblem = self.get(b, "emblem", where, str, None)
            if emblem not in (None, *EMBLEMS):
                raise self.fail(f"{where}.emblem", f"expected one of {EMBLEMS}, got {emblem!r}")
            out.append(Band(rect_mm=rect, color=color, texts=tuple(texts),
                            text_color=self.color(b.get("text_color", "#000000"), f"{where}.text_color"),
                            text_rect_mm=text_rect, font=font, emblem=emblem))
        return tuple(out)

    def parse_patterns(self, classes, separators, rows) -> tuple[Pattern, ...]:
        pats = self.get(self.data, "patterns", "", list)
        if not pats:
            raise self.fail("patterns", "needs at least one pattern")
        self.at_most(pats, MAX_PATTERNS, "patterns", "patterns")
        known = {c.key for c in classes} | {s.key for s in separators}
        out = []
        for i, p in enumerate(pats):
            where = f"patterns[{i}]"
            if isinstance(p, str):
                p = {"pattern": p}
            if not isinstance(p, dict):
                raise self.fail(where, "expected a pattern string or a table {pattern, weight}")
            self.unknown(p, {"pattern", "weight"}, where)
            tokens = tuple(self.get(p, "pattern", where, str).split())
            self.at_most(tokens, MAX_TOKENS, f"{where}.pattern", "tokens")
            weight = self.weight(p, "weight", where)
            bad = [t for t in tokens if t != "/" and t not in known]
            if bad:
                raise self.fail(f"{where}.pattern", f"unknown tokens {bad} (classes and separators: "
                                                    f"{sorted(known)})")
            if not any(t in {c.key for c in classes} for t in tokens):
                raise self.fail(f"{where}.pattern", "pattern has no character slot")
            if tokens.count("/") + 1 > len(rows):
                raise self.fail(f"{where}.pattern", f"uses {tokens.count('/') + 1} rows but the spec "
                                                    f"defines {len(rows)}")
            # a pattern with emblem or stack separators is repeated once per drawing, sharing its weight
            copies = max([s.variants for s in separators if s.key in tokens and s.shape in VARIED_SEPARATORS],
                         default=1)
            out += [Pattern(tokens=tokens, weight=weight / copies, variant=v) for v in range(copies)]
        if len(out) > MAX_PATTERNS:
            raise self.fail("patterns", f"{len(out)} patterns with their emblem variants, at most {MAX_PATTERNS}")
        return tuple(out)

    def check_layouts(self, spec: RegionSpec) -> None:
        # one per pattern as written (its emblem variants have the same layout)
        for i, p in enumerate(p for p in spec.patterns if p.variant == 0):
            try:
                layout_pattern(spec, p)
            except ValueError as e:
                raise self.fail(f"patterns[{i}].pattern", f"impossible layout: {e}") from None


def _check_rect(parser: _Parser, rect: tuple, size: tuple[float, float], key: str) -> None:
    x, y, w, h = rect
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > size[0] + 1e-6 or y + h > size[1] + 1e-6:
        raise parser.fail(key, f"rectangle {list(rect)} is not inside the {size[0]}x{size[1]} mm plate")


@cache
def _cmap(font: Path) -> frozenset[int]:
    with TTFont(str(font), lazy=True, fontNumber=0) as f:
        return frozenset(f.getBestCmap() or {})


def missing_glyphs(font: Path, chars: str) -> str:
    """Characters of `chars` that the font has no glyph for (read from its cmap; a bitmap typeface:
    neither an image nor a glyph of its fallback)."""
    if font.is_dir():
        return bitmap_missing(font, chars, _cmap)
    cmap = _cmap(font)
    return "".join(ch for ch in chars if ord(ch) not in cmap)
