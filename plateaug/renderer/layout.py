"""Where each character and separator of a pattern sits on the canvas (integer pixel boxes)."""

from __future__ import annotations

from dataclasses import dataclass

from .spec import Pattern, RegionSpec


@dataclass(frozen=True)
class Slot:
    """A box on the canvas in pixels; `key` is the class key (character) or separator key."""

    key: str
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Layout:
    """One pattern laid out: character slots in label order, then the separators."""

    chars: tuple[Slot, ...]
    separators: tuple[Slot, ...]


def layout_pattern(spec: RegionSpec, pattern: Pattern) -> Layout:
    """Place the pattern's tokens row by row; raises ValueError if a row overflows."""
    classes, seps = spec.class_map, spec.separator_map
    sx = spec.canvas[1] / spec.size_mm[0]
    sy = spec.canvas[0] / spec.size_mm[1]
    rows: list[list[str]] = [[]]
    for t in pattern.tokens:
        if t == "/":
            rows.append([])
        else:
            rows[-1].append(t)
    chars: list[Slot] = []
    separators: list[Slot] = []
    for r, tokens in enumerate(rows):
        row = spec.rows[r]
        widths = [seps[t].width_mm if t in seps else (classes[t].width_mm or row.char_width_mm)
                  for t in tokens]
        total = sum(widths) + row.gap_mm * max(len(tokens) - 1, 0)
        room = row.x1_mm - row.x0_mm
        if total > room + 1e-6:
            raise ValueError(f"row {r} needs {total:g} mm for {' '.join(tokens)!r} but has {room:g} mm")
        x = row.x0_mm + ((room - total) / 2 if row.align == "center" else 0.0)
        # sizes are rounded on their own (not from rounded edges) so equal tokens get equal cells
        y0, h = round(row.y_mm * sy), round(row.height_mm * sy)
        for t, w in zip(tokens, widths):
            x0, wp = round(x * sx), round(w * sx)
            if wp < 2 or h < 4:
                raise ValueError(f"token {t!r} is {wp}x{h} px on the {spec.canvas} canvas: too small to draw")
            slot = Slot(t, x0, y0, min(wp, spec.canvas[1] - x0), min(h, spec.canvas[0] - y0))
            (separators if t in seps else chars).append(slot)
            x += w + row.gap_mm
    return Layout(tuple(chars), tuple(separators))
