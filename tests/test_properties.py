"""Property tests (hypothesis) over randomly drawn, valid region specs: the pattern grammar, the
renderer's character boxes and the stream's augmented labels.

Specs are drawn as data (classes, patterns, geometry that fits), written as TOML into a
module-level temp folder under a name derived from their content (load_region caches by path),
and checked against what was drawn, not against the library's own layout code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plateaug import PlateGANStream, encode_texts, load_region, render, sample_text

CHARSET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
FONTS = ("DejaVuSansCondensed-Bold", "DejaVuSans-Bold", "DejaVuSansMono-Bold")
BACKGROUND, INK = "#d8d8d8", "#101010"
SEPARATORS = {"-": "hyphen", "_": "space"}

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass(frozen=True)
class Drawn:
    """A drawn spec: its TOML text and the facts the checks compare against."""

    name: str
    toml: str
    classes: dict[str, str]  # class key -> characters
    patterns: tuple[tuple[str, ...], ...]  # tokens: class keys, "-", "_", "/"
    canvas: tuple[int, int]  # (H, W) px
    row_bands: tuple[tuple[int, int], ...]  # (y0, y1) px of each row's character cells

    def slots(self, p: int) -> list[str]:
        return [t for t in self.patterns[p] if t in self.classes]

    def slot_rows(self, p: int) -> list[int]:
        """Row index of each character slot of pattern p."""
        rows, r = [], 0
        for t in self.patterns[p]:
            if t == "/":
                r += 1
            elif t in self.classes:
                rows.append(r)
        return rows

    def written(self, text: str, p: int) -> str:
        """The text with the pattern's separators written out ('-' and ' ')."""
        chars, out = iter(text), []
        for t in self.patterns[p]:
            if t in self.classes:
                out.append(next(chars))
            elif t in SEPARATORS:
                out.append("-" if t == "-" else " ")
        return "".join(out)


def _f(v: float) -> str:
    return f"{v:.6f}"


@st.composite
def specs(draw) -> Drawn:
    classes = {}
    lines_classes = []
    for i in range(draw(st.integers(1, 3))):
        chars = "".join(sorted(draw(st.sets(st.sampled_from(CHARSET), min_size=1, max_size=len(CHARSET)))))
        key = f"C{i}"
        classes[key] = chars
        font, fit = draw(st.sampled_from(FONTS)), draw(st.sampled_from(["height", "stretch"]))
        lines_classes.append(f'{key} = {{ chars = "{chars}", font = "{font}", fit = "{fit}" }}')
    n_rows = draw(st.integers(1, 2))
    patterns, weights = [], []
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 8))
        keys = [draw(st.sampled_from(sorted(classes))) for _ in range(n)]
        split = draw(st.integers(1, n - 1)) if n_rows == 2 and n >= 2 and draw(st.booleans()) else None
        tokens = [keys[0]]
        for j in range(1, n):
            if j == split:
                tokens.append("/")
            else:
                sep = draw(st.sampled_from(["", "-", "_"]))
                if sep:
                    tokens.append(sep)
            tokens.append(keys[j])
        patterns.append(tuple(tokens))
        weights.append(draw(st.floats(0.1, 5.0)))
    # geometry: square pixels, the widest row of any pattern fits
    H, W = draw(st.sampled_from([48, 64, 80, 96])), draw(st.sampled_from([192, 224, 256, 288, 320]))
    px_per_mm = draw(st.floats(0.6, 1.2))
    w_mm, h_mm = W / px_per_mm, H / px_per_mm
    margin = draw(st.floats(0.0, 0.05))
    x0, x1 = w_mm * margin, w_mm * (1 - margin)
    room = x1 - x0
    gap = room * draw(st.floats(0.0, 0.01))
    sep_w = {k: room * draw(st.floats(0.02, 0.05)) for k in SEPARATORS}
    rows = [(0.15, 0.7)] if n_rows == 1 else [(0.06, 0.4), (0.52, 0.42)]  # (y, height) as parts of h_mm
    bound = room
    for tokens in patterns:
        for row in " ".join(tokens).split("/"):
            toks = row.split()
            n_chars = sum(t in classes for t in toks)
            fixed = sum(sep_w[t] for t in toks if t in sep_w) + gap * (len(toks) - 1)
            bound = min(bound, (room - fixed) / n_chars)
    char_w = bound * draw(st.floats(0.5, 0.99))
    row_bands, lines_rows = [], []
    sy = H / float(_f(h_mm))  # px per mm vertically, from the numbers as written
    for y, h in rows:
        y_mm, hh_mm = y * h_mm, h * h_mm
        y0 = round(float(_f(y_mm)) * sy)
        row_bands.append((y0, min(H, y0 + round(float(_f(hh_mm)) * sy))))
        lines_rows.append(f"[[rows]]\ny_mm = {_f(y_mm)}\nheight_mm = {_f(hh_mm)}\nx_mm = [{_f(x0)}, {_f(x1)}]\n"
                          f"char_width_mm = {_f(char_w)}\ngap_mm = {_f(gap)}\n")
    body = "\n".join([
        f"size_mm = [{_f(w_mm)}, {_f(h_mm)}]",
        f"canvas_px = [{H}, {W}]",
        "", "[background]", f'colors = ["{BACKGROUND}"]',
        "", "[text]", f'colors = ["{INK}"]', f'font = "{FONTS[0]}"',
        "", "[classes]", *lines_classes,
        "", "[separators]",
        *(f'"{k}" = {{ shape = "{shape}", width_mm = {_f(sep_w[k])} }}' for k, shape in SEPARATORS.items()),
        "", *lines_rows,
        *(f'[[patterns]]\npattern = "{" ".join(t)}"\nweight = {_f(w)}\n' for t, w in zip(patterns, weights)),
    ])
    name = "p_" + hashlib.sha1(body.encode()).hexdigest()[:16]
    return Drawn(name, f'name = "{name}"\n{body}', classes, tuple(patterns), (H, W), tuple(row_bands))


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("specs")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny batches gain nothing from a second thread, and kornia's ops slow down many times when
    their threads compete for busy cores; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write(folder: Path, d: Drawn) -> Path:
    """One file per distinct spec: load_region caches by path."""
    path = folder / f"{d.name}.toml"
    if not path.exists():
        path.write_text(d.toml, encoding="utf-8")
    return path


# ---- (a) the pattern grammar --------------------------------------------------------------------------

@PROPERTY
@given(d=specs(), seed=st.integers(0, 2**31 - 1))
def test_sampled_texts_follow_their_pattern_and_round_trip(spec_dir, d, seed):
    spec = load_region(write(spec_dir, d))
    batch = sample_text(spec, 24, torch.Generator().manual_seed(seed))
    assert len(batch) == 24 and batch.local.shape == (24, max(len(d.slots(p)) for p in range(len(d.patterns))))
    for text, p in zip(batch.texts, batch.pattern.tolist()):
        slots = d.slots(p)
        assert len(text) == len(slots), (text, d.patterns[p])
        assert all(ch in d.classes[k] for ch, k in zip(text, slots)), (text, d.patterns[p])
    assert batch.lengths.tolist() == [len(t) for t in batch.texts]
    # plain strings come back as the same labels (each takes the first pattern that accepts it)
    assert encode_texts(spec, batch.texts).texts == batch.texts
    # with the sampled pattern and style given, the whole TextBatch is reproduced
    again = encode_texts(spec, batch.texts, style=batch.style, pattern=batch.pattern)
    for field in ("pattern", "local", "lengths", "style"):
        assert torch.equal(getattr(again, field), getattr(batch, field)), field
    # written with separators ("ABC-123", "ABC 123"), the label still holds characters only
    written = [d.written(t, p) for t, p in zip(batch.texts, batch.pattern.tolist())]
    assert encode_texts(spec, written, pattern=batch.pattern).texts == batch.texts


# ---- (b) the renderer -------------------------------------------------------------------------------

@PROPERTY
@given(d=specs(), seed=st.integers(0, 2**31 - 1))
def test_render_boxes_inside_canvas_one_per_char_left_to_right(spec_dir, d, seed):
    spec = load_region(write(spec_dir, d))
    batch = sample_text(spec, 8, torch.Generator().manual_seed(seed))
    plates = render(spec, batch)
    H, W = d.canvas
    assert plates.images.shape == (8, 3, H, W)
    assert 0 <= plates.images.min() and plates.images.max() <= 1
    ink = (plates.images.mean(1) < 0.5)  # (B, H, W): the text is near black on light grey
    for i, (text, p) in enumerate(zip(plates.texts, batch.pattern.tolist())):
        n = len(text)
        assert int(plates.lengths[i]) == n
        boxes = plates.char_boxes[i]
        assert not boxes[n:].any(), "padding rows must be zero"
        b = boxes[:n]
        assert len(b) == n
        x0, y0, x1, y1 = b.unbind(-1)
        assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= W).all() and (y1 <= H).all(), b
        assert (x1 > x0).all() and (y1 > y0).all(), f"degenerate box in {b}"
        rows = d.slot_rows(p)
        for k in range(n):
            r0, r1 = d.row_bands[rows[k]]
            assert r0 - 1 <= y0[k] and y1[k] <= r1 + 1, f"char {k} of {text!r} leaves row {rows[k]}"
            xa, ya, xb, yb = (int(v) for v in b[k].tolist())
            assert ink[i, ya:yb, xa:xb].any(), f"char {k} of {text!r}: no ink in its box"
            if k + 1 < n and rows[k + 1] == rows[k]:
                assert x0[k] < x0[k + 1] and x1[k] < x1[k + 1], f"{text!r}: boxes {k}, {k + 1} out of order"
                assert x1[k] <= x0[k + 1] + 1, f"{text!r}: boxes {k}, {k + 1} overlap"


# ---- (c) the stream's augmentation ---------------------------------------------------------------------

@PROPERTY
@given(d=specs(), seed=st.integers(0, 2**31 - 1), mode=st.sampled_from(["crop", "scene"]),
       augment=st.sampled_from(["light", "heavy"]))
def test_augmented_boxes_stay_inside_image_and_plate(spec_dir, d, seed, mode, augment):
    path = write(spec_dir, d)
    size = (64, 192) if mode == "crop" else (128, 192)
    stream = PlateGANStream(regions=str(path), mode=mode, image_size=size, batch_size=6, seed=seed,
                            generator=None, augment=augment, plates_per_scene=(1, 3),
                            scene={"as_taken": False})  # photo scenes augmented too
    images, targets = next(iter(stream))
    H, W = size
    assert images.shape == (6, 3, H, W) and 0 <= images.min() and images.max() <= 1
    eps = 1e-3
    for t in targets:
        texts = t["text"] if isinstance(t["text"], list) else [t["text"]]
        char_boxes = t["char_boxes"] if isinstance(t["char_boxes"], list) else [t["char_boxes"]]
        plates = torch.as_tensor(t["boxes"])
        assert plates.shape == (len(texts), 4) and len(char_boxes) == len(texts)
        assert (plates[:, 0] >= 0).all() and (plates[:, 1] >= 0).all()
        assert (plates[:, 2] <= W).all() and (plates[:, 3] <= H).all()
        assert (plates[:, 2] > plates[:, 0]).all() and (plates[:, 3] > plates[:, 1]).all()
        for text, cb, pb in zip(texts, char_boxes, plates):
            cb = torch.as_tensor(cb)
            assert cb.shape == (len(text), 4)
            assert (cb[:, 0] >= pb[0] - eps).all() and (cb[:, 1] >= pb[1] - eps).all(), (cb, pb)
            assert (cb[:, 2] <= pb[2] + eps).all() and (cb[:, 3] <= pb[3] + eps).all(), (cb, pb)
            assert (cb[:, 2] >= cb[:, 0]).all() and (cb[:, 3] >= cb[:, 1]).all()
        if mode == "crop":
            assert "".join(stream.charset[i - 1] for i in t["label"]) == t["text"]
