"""Region spec types: a plate layout as frozen dataclasses (parsed from TOML by `spec_loader`).

A spec describes the physical plate (mm), the canvas it is rendered to (px), the background,
bands (EU strip, US state name, BR city line), character classes with their fonts, separators,
text rows and a weighted pattern grammar. `spec_loader.load_region` validates everything up
front and raises `RegionSpecError(file, key, reason)` so a user sees one clear message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REGIONS_DIR = Path(__file__).parent / "regions"
FONTS_DIR = Path(__file__).parent / "fonts"
CANVAS_MULTIPLE = 16  # the U-Net halves H and W four times
FIT_MODES = ("height", "stretch")
SEPARATOR_SHAPES = ("dot", "hyphen", "seal", "space", "emblem", "stack", "arms")
VARIED_SEPARATORS = ("emblem", "stack")  # shapes drawn anew for each of their `variants`
MAX_SEPARATOR_VARIANTS = 16  # drawings a varied separator may vary over
STACK_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # what a stack draws unless its spec says
EMBLEMS = ("eu_stars", "sk_arms")  # what a band's emblem may draw


class RegionSpecError(ValueError):
    """A region spec is malformed: names the file, the key and the reason."""

    def __init__(self, file: str | Path, key: str, reason: str):
        self.file, self.key, self.reason = str(file), key, reason
        super().__init__(f"{file}: [{key}] {reason}")


@dataclass(frozen=True)
class CharClass:
    """A character class of the pattern grammar (e.g. `D` = digits) and how it is drawn."""

    key: str
    chars: str
    font: Path
    fit: str  # "height": keep aspect, fill the slot height; "stretch": fill the slot
    width_mm: float | None  # None: the row's char_width_mm
    fonts: tuple[Path, ...] = ()  # every typeface of the class (font is fonts[0]); each plate draws one
    # (character, glyph drawn for it): the label keeps the character, the pixels show the typeface's
    # glyph for the other one (a plate face whose "1" is a plain bar: ("1", "l"))
    draw_as: tuple[tuple[str, str], ...] = ()
    # relative frequency of each character of `chars`, in order; () = all alike (a deployment that
    # sees mostly one province's plates weighs its character up)
    weights: tuple[float, ...] = ()

    def __post_init__(self):
        if not self.fonts:
            object.__setattr__(self, "fonts", (self.font,))

    def glyph(self, ch: str) -> str:
        """The typeface character drawn for label character `ch`."""
        return dict(self.draw_as).get(ch, ch)


@dataclass(frozen=True)
class Separator:
    """A non-label mark between characters (dot, hyphen, German seal, a plain gap, a state
    emblem: a silhouette between the character groups, as on most US state plates; or a stack: two
    small characters one above the other, like the "US", "MC" or month of US specialty plates; or the
    Slovak coat of arms between district and digits: a half-tone shield, its double cross cut out)."""

    key: str
    shape: str
    width_mm: float
    size_mm: float  # dot diameter / hyphen length / seal diameter / emblem, stack or arms height
    variants: int = 1  # emblem, stack: drawings, one per copy of each pattern using it
    chars: str = ""  # stack: the characters it draws two of (not part of the label)
    font: Path | None = None  # stack: the typeface (the spec's first text font)


@dataclass(frozen=True)
class Row:
    """A horizontal text line: vertical position, glyph height, horizontal extent, spacing."""

    y_mm: float
    height_mm: float
    x0_mm: float
    x1_mm: float
    char_width_mm: float
    gap_mm: float
    align: str  # "center" | "left"


@dataclass(frozen=True)
class Band:
    """A coloured rectangle with optional text chosen per plate (e.g. US state names)."""

    rect_mm: tuple[float, float, float, float]  # x, y, w, h
    color: str | None
    texts: tuple[str, ...]
    text_color: str
    text_rect_mm: tuple[float, float, float, float]
    font: Path
    emblem: str | None  # one of EMBLEMS or None


@dataclass(frozen=True)
class Graphics:
    """Pictorial background variants (scenery, emblems, stripes, stickers) behind the characters:
    `variants` static layers per background colour, shown on a `share` of the plates."""

    variants: int
    share: float  # fraction of plates drawn with one of the variants; the rest are plain
    colors: tuple[str, ...]
    opacity: tuple[float, float]  # coverage of a shape, drawn per shape in (low, high)
    shapes: tuple[str, ...]  # names from graphics.SHAPES
    max_shapes: int  # shapes per variant, 1..max_shapes

    @property
    def plain_slots(self) -> int:
        """Plain background slots per colour next to the `variants` pictorial ones, so that a
        uniformly drawn slot is pictorial with probability `share`."""
        return round(self.variants * (1 - self.share) / self.share)


@dataclass(frozen=True)
class Pattern:
    """One weighted alternative of the grammar: tokens are class keys, separator keys or '/'."""

    tokens: tuple[str, ...]
    weight: float
    # which drawing its emblem / stack separators make (the loader repeats a pattern with them once per
    # variant, the weight shared between the copies)
    variant: int = 0


@dataclass(frozen=True)
class RegionSpec:
    """A complete, validated plate layout."""

    name: str
    description: str
    source: Path
    size_mm: tuple[float, float]  # (width, height)
    canvas: tuple[int, int]  # (H, W) pixels
    backgrounds: tuple[tuple[str, str], ...]  # (top, bottom) gradient colours, one per plate
    border_color: str | None
    border_mm: float
    text_colors: tuple[str, ...]
    classes: tuple[CharClass, ...]
    separators: tuple[Separator, ...]
    rows: tuple[Row, ...]
    bands: tuple[Band, ...]
    patterns: tuple[Pattern, ...]
    # per-plate stroke weight change of the characters, drawn uniformly in (low, high) canvas pixels:
    # > 0 thins the strokes (erosion), < 0 thickens them; real plates' strokes vary with font,
    # wear, exposure and blur, a single weight per typeface teaches a recogniser one look
    stroke_px: tuple[float, float] = (0.0, 0.0)
    graphics: Graphics | None = None  # pictorial backgrounds; None = plain gradients only

    @property
    def n_background_slots(self) -> int:
        """Choices of the background style column: one per colour without graphics; with them,
        per colour `plain_slots` plain and `variants` pictorial slots (see `background_slots`)."""
        if self.graphics is None:
            return len(self.backgrounds)
        return len(self.backgrounds) * (self.graphics.plain_slots + self.graphics.variants)

    @property
    def class_map(self) -> dict[str, CharClass]:
        return {c.key: c for c in self.classes}

    @property
    def separator_map(self) -> dict[str, Separator]:
        return {s.key: s for s in self.separators}

    @property
    def charset(self) -> str:
        """Every character a label of this region can contain, sorted, without repeats."""
        return "".join(sorted({ch for c in self.classes for ch in c.chars}))

    @property
    def n_fonts(self) -> int:
        """Typeface variants a plate chooses from (a class with fewer fonts cycles through its own)."""
        return max(len(c.fonts) for c in self.classes)

    @property
    def max_len(self) -> int:
        return max(sum(t in self.class_map for t in p.tokens) for p in self.patterns)
