"""Plate strings from a region's pattern grammar, sampled in one vectorised step per batch."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .spec import RegionSpec
from .spec_loader import MAX_STROKE_PX, load_region


@dataclass(frozen=True)
class TextBatch:
    """B plate strings plus what the renderer needs to draw them.

    `local[b, s]` is the index of character s inside its slot's class; `style` picks the
    background, text colour, one text per variable band and, for specs with several fonts, the
    typeface: (B, 2 + n_bands [+ 1]).
    """

    texts: list[str]
    pattern: torch.Tensor  # (B,) int64 index into spec.patterns
    local: torch.Tensor  # (B, S) int64, 0 for padding
    lengths: torch.Tensor  # (B,) int64
    style: torch.Tensor  # (B, 2 + n_bands [+ 1 typeface]) int64
    stroke: torch.Tensor | None = None  # (B,) float32 stroke weight change in canvas px (> 0 thins); None = 0

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: slice | int) -> TextBatch:
        """A sub-batch (slice or single index), e.g. to render plates one by one."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return TextBatch(self.texts[index], self.pattern[index], self.local[index], self.lengths[index],
                         self.style[index], None if self.stroke is None else self.stroke[index])


@dataclass(frozen=True)
class _Grammar:
    """Per-pattern tables: class size and code points of every character slot."""

    weights: torch.Tensor  # (A,) float
    n_chars: torch.Tensor  # (A, S) int64, 1 for padding
    codes: np.ndarray  # (A, S, C) uint32 code points, 0 padded
    lengths: torch.Tensor  # (A,) int64
    slot_classes: tuple[tuple[str, ...], ...]  # class key per slot, per pattern
    style_sizes: tuple[int, ...]  # choices per style column
    # classes with character weights: (A, S) int64 row of `cdf` per slot (-1: drawn alike), (K, C) float64
    # cumulative weights of each weighted class (1 beyond its characters); None when no class has weights
    cdf_row: torch.Tensor | None = None
    cdf: torch.Tensor | None = None


@lru_cache(maxsize=64)
def grammar(spec: RegionSpec) -> _Grammar:
    classes = spec.class_map
    slot_classes = tuple(tuple(t for t in p.tokens if t in classes) for p in spec.patterns)
    A, S = len(spec.patterns), spec.max_len
    C = max(len(c.chars) for c in spec.classes)
    n_chars = torch.ones(A, S, dtype=torch.int64)
    codes = np.zeros((A, S, C), dtype=np.uint32)
    for a, keys in enumerate(slot_classes):
        for s, k in enumerate(keys):
            chars = classes[k].chars
            n_chars[a, s] = len(chars)
            codes[a, s, : len(chars)] = [ord(ch) for ch in chars]
    cdf_row, cdf = None, None
    rows = {c.key: i for i, c in enumerate(c for c in spec.classes if c.weights)}
    if rows:
        cdf = torch.ones(len(rows), C, dtype=torch.float64)
        for k, i in rows.items():
            w = torch.tensor(classes[k].weights, dtype=torch.float64).cumsum(0)
            cdf[i, : len(w)] = w / w[-1]
        cdf_row = torch.full((A, S), -1, dtype=torch.int64)
        for a, keys in enumerate(slot_classes):
            cdf_row[a, : len(keys)] = torch.tensor([rows.get(k, -1) for k in keys], dtype=torch.int64)
    style_sizes = (spec.n_background_slots, len(spec.text_colors)) + tuple(
        max(len(b.texts), 1) for b in spec.bands)
    if spec.n_fonts > 1:  # a last column picks the typeface (absent for one font: those streams are unchanged)
        style_sizes += (spec.n_fonts,)
    return _Grammar(
        weights=torch.tensor([p.weight for p in spec.patterns], dtype=torch.float64),
        n_chars=n_chars, codes=codes,
        lengths=torch.tensor([len(k) for k in slot_classes], dtype=torch.int64),
        slot_classes=slot_classes, style_sizes=style_sizes, cdf_row=cdf_row, cdf=cdf,
    )


def sample_text(spec: RegionSpec | str, n: int, generator: torch.Generator | None = None) -> TextBatch:
    """Sample `n` plates (text and style) from the spec; same generator state => same plates.

    Runs on the CPU (the generator must be a CPU generator); the renderer moves indices.
    """
    spec = load_region(spec)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    g = grammar(spec)
    pattern = torch.multinomial(g.weights, n, replacement=True, generator=generator)  # (n,)
    u = torch.rand(n, g.n_chars.shape[1], generator=generator, dtype=torch.float64)
    n_chars = g.n_chars[pattern]  # (n, S)
    local = (u * n_chars).long().clamp_max_(n_chars - 1)  # (n, S)
    if g.cdf is not None:  # weighted classes: the first character whose cumulative weight exceeds u
        row = g.cdf_row[pattern]  # (n, S)
        mask = row >= 0
        pick = torch.searchsorted(g.cdf[row[mask]], u[mask][:, None], right=True)[:, 0]  # (m,)
        local[mask] = torch.minimum(pick, n_chars[mask] - 1)
    lengths = g.lengths[pattern]
    local = local * (torch.arange(local.shape[1]) < lengths[:, None])  # padding -> 0
    sizes = torch.tensor(g.style_sizes, dtype=torch.float64)
    style = (torch.rand(n, len(sizes), generator=generator, dtype=torch.float64) * sizes).long()
    style = torch.minimum(style, sizes.long() - 1)
    stroke = None
    if spec.stroke_px != (0.0, 0.0):  # drawn last: specs without stroke variety keep their plates per seed
        lo, hi = spec.stroke_px
        stroke = (lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)).float()
    return TextBatch(_strings(g, pattern, local, lengths), pattern, local, lengths, style, stroke)


def _strings(g: _Grammar, pattern: torch.Tensor, local: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """Code-point table lookup, then numpy's fixed-width unicode view: no per-plate loop."""
    p, loc = pattern.numpy(), local.numpy()
    S = loc.shape[1]
    codes = g.codes[p[:, None], np.arange(S)[None, :], loc]  # (n, S) uint32
    codes = codes * (np.arange(S)[None, :] < lengths.numpy()[:, None])
    return np.ascontiguousarray(codes).view(f"<U{S}")[:, 0].tolist()


def _match(spec: RegionSpec, tokens: tuple[str, ...], text: str) -> str | None:
    """The label (characters only) if `text` fits the pattern: either its characters alone, or
    characters and separators written out ('-', '·', and ' ' for space-shaped separators)."""
    classes, seps = spec.class_map, spec.separator_map
    slots = [t for t in tokens if t != "/"]
    keys = [t for t in slots if t in classes]
    if len(text) == len(keys) and all(ch in classes[k].chars for ch, k in zip(text, keys)):
        return text
    if len(text) == len(slots):
        label = []
        for ch, t in zip(text, slots):
            if t in seps:
                if ch != t and not (ch == " " and seps[t].shape == "space"):
                    return None
            elif ch in classes[t].chars:
                label.append(ch)
            else:
                return None
        return "".join(label)
    return None


def encode_texts(spec: RegionSpec | str, texts: list[str], style: torch.Tensor | None = None,
                 pattern: torch.Tensor | None = None, stroke: torch.Tensor | None = None) -> TextBatch:
    """Turn given strings into a TextBatch. Each string takes the first pattern that accepts it
    (written with or without its separators: "ABC-1234" or "ABC1234"), or `pattern[i]` when
    given (patterns can differ only in separator positions). Labels hold characters only.
    `stroke` (B,) sets each plate's stroke weight change in canvas px (default: none).

    Raises ValueError naming the string when no (or not the given) pattern accepts it.
    """
    spec = load_region(spec)
    g = grammar(spec)
    classes = spec.class_map
    S = spec.max_len
    wanted = None if pattern is None else [int(p) for p in pattern]
    pattern = torch.zeros(len(texts), dtype=torch.int64)
    local = torch.zeros(len(texts), S, dtype=torch.int64)
    labels = []
    for i, t in enumerate(texts):
        for a, (pat, keys) in enumerate(zip(spec.patterns, g.slot_classes)):
            if wanted is not None and a != wanted[i]:
                continue
            label = _match(spec, pat.tokens, t)
            if label is not None:
                pattern[i] = a
                local[i, : len(label)] = torch.tensor([classes[k].chars.index(ch) for ch, k in zip(label, keys)])
                labels.append(label)
                break
        else:
            raise ValueError(f"text {t!r} matches no pattern of region {spec.name!r} "
                             f"({[' '.join(p.tokens) for p in spec.patterns]})")
    if style is None:
        style = torch.zeros(len(texts), len(g.style_sizes), dtype=torch.int64)
    elif style.shape != (len(texts), len(g.style_sizes)):
        raise ValueError(f"style must have shape {(len(texts), len(g.style_sizes))}, got {tuple(style.shape)}")
    if stroke is not None and (stroke.shape != (len(texts),) or stroke.device.type != "cpu"
                               or not bool((stroke.abs() <= MAX_STROKE_PX).all())):  # NaN fails too
        raise ValueError(f"stroke must be a CPU tensor of shape ({len(texts)},) with |values| <= {MAX_STROKE_PX} px "
                         f"(each pixel is one erosion/dilation pass), got {tuple(stroke.shape)} on {stroke.device}")
    return TextBatch(labels, pattern, local, g.lengths[pattern], style,
                     None if stroke is None else stroke.float())
