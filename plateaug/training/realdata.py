"""Real plate crops for training and evaluation: folder (+ optional labels.csv) -> per-canvas
tensors, split by a hash of the file name, unreadable files skipped and counted."""

from __future__ import annotations

import csv
import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MAX_PIXELS = 40_000_000  # larger files are skipped: a plate crop is never this big
DEFAULT_CANVAS = {"us": (96, 192), "br": (64, 192), "eu": (64, 304), "cn": (64, 208)}  # region -> (H, W)
FALLBACK_CANVAS = (64, 256)


def is_validation(name: str, percent: int = 25) -> bool:
    """Stable split: a file belongs to validation iff md5(file name) % 100 < percent."""
    return int(hashlib.md5(Path(name).name.encode()).hexdigest(), 16) % 100 < percent


@dataclass
class RealGroup:
    """Crops of one region resized to one canvas: images (N, 3, H, W) float in [0, 1]."""

    region: str
    images: torch.Tensor
    files: list[str]
    texts: list[str]


@dataclass
class RealSet:
    train: dict[str, RealGroup] = field(default_factory=dict)
    val: dict[str, RealGroup] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)


def read_labels(folder: Path, labels: Path | None) -> list[tuple[str, str, str]]:
    """(file, region, text) rows: from labels.csv when present, else every image in the folder
    (recursively) with region = its parent folder name and no text."""
    labels = labels or (folder / "labels.csv" if (folder / "labels.csv").exists() else None)
    if labels is not None:
        if not labels.exists():
            raise FileNotFoundError(f"labels file {labels} does not exist")
        try:
            with open(labels, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's "CSV UTF-8" BOM
                reader = csv.DictReader(f)
                if not reader.fieldnames or "file" not in reader.fieldnames:
                    raise ValueError(f"{labels}: needs a header with at least a 'file' column "
                                     f"(file,region,text), got {reader.fieldnames}")
                return [(r["file"], r.get("region") or "", r.get("text") or "") for r in reader]
        except UnicodeDecodeError as e:
            raise ValueError(f"{labels} is not UTF-8 text ({e}); save it as UTF-8") from None
    rows = [(str(p.relative_to(folder)), p.parent.name if p.parent != folder else "", "")
            for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    return rows


def load_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Decode any Pillow-readable image (palette, CMYK, 16-bit, alpha) to (H, W, 3) uint8 RGB at
    `size` (H, W). Raises ValueError with the reason when the file is unusable."""
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ValueError(f"image is {im.width}x{im.height}, larger than {MAX_PIXELS} pixels")
            if min(im.width, im.height) < 4:
                raise ValueError(f"image is {im.width}x{im.height}, too small to be a plate crop")
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64).clip(0, 65535)  # 16-bit range -> 8 bits, brightness kept
                im = Image.fromarray((arr / 257.0).round().astype(np.uint8))
            im = im.convert("RGB").resize((size[1], size[0]), Image.BICUBIC)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot decode image: {e}") from None


def load_real(folder: str | Path, labels: str | Path | None = None, canvases: dict[str, tuple[int, int]] | None = None,
              val_percent: int = 25, regions: list[str] | None = None) -> RealSet:
    """Load and resize every crop once; warn about and count files that cannot be used."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"real-image folder {folder} does not exist")
    canvases = {**DEFAULT_CANVAS, **(canvases or {})}
    rows = read_labels(folder, Path(labels) if labels else None)
    buckets: dict[tuple[str, str], list[tuple[np.ndarray, str, str]]] = {}
    out = RealSet()
    for file, region, text in rows:
        if regions and region not in regions:
            continue
        size = canvases.get(region, FALLBACK_CANVAS)
        try:
            arr = load_image(folder / file, size)
        except (ValueError, FileNotFoundError) as e:
            warnings.warn(f"skipping {folder / file}: {e}", stacklevel=2)
            out.skipped.append((file, str(e)))
            continue
        split = "val" if is_validation(file, val_percent) else "train"
        buckets.setdefault((split, region), []).append((arr, file, text))
    for (split, region), items in sorted(buckets.items()):
        imgs = torch.from_numpy(np.stack([a for a, _, _ in items])).permute(0, 3, 1, 2).float() / 255.0
        group = RealGroup(region, imgs.contiguous(), [f for _, f, _ in items], [t for _, _, t in items])
        getattr(out, split)[region] = group
    if not out.train and not out.val:
        raise ValueError(f"no usable images in {folder} ({len(out.skipped)} skipped, {len(rows)} listed)")
    return out
