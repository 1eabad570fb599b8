"""Annotated real photos for scene mode: a COCO file or a YOLO folder -> photos with their plate boxes.

A file from outside is untrusted: every count and size is bounded, and what cannot be used follows
one documented rule, never a wrong label:
- a photo any of whose plate boxes is unusable (zero area, or wholly outside the image) is left out,
  with its other boxes: keeping it would leave a real plate unlabelled in a training image;
- a box partly outside its image is clipped to it;
- annotations of other categories are ignored (they are not plates);
- a photo whose file is missing, unreadable or truncated, or larger than MAX_PIXELS (JPEGs are
  decoded reduced instead), is left out;
- a photo whose recorded size differs from its file's has its boxes scaled when the aspect agrees,
  and is left out when it does not.
Each rule that left something out gives one warning that counts it. Greyscale, CMYK, palette,
alpha and 16-bit photos are converted to 8-bit RGB. Decoded photos are kept resized to at most
`max_side` pixels a side, in a cache bounded in bytes.
"""

from __future__ import annotations

import json
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..training.realdata import IMAGE_SUFFIXES

MAX_ANNOTATION_BYTES = 512 * 2**20  # a COCO file larger than this is refused before parsing
MAX_PHOTOS = 1_000_000
MAX_BOXES_PER_PHOTO = 64  # plates in one photo; a photo with more is left out
MAX_PIXELS = 80_000_000  # a photo with more pixels is decoded reduced (JPEG) or left out
MAX_SIDE = 1280  # decoded photos are kept at most this many pixels a side
CACHE_BYTES = 768 * 2**20  # decoded photos kept in memory
PLATE_NAMES = ("plate", "licence plate", "license plate", "licence_plate", "license_plate", "lp", "number plate")
REGION_OK = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ScenePhotosError(ValueError):
    """An annotation file or folder that cannot be read as annotated photos at all (names the file)."""


@dataclass(frozen=True)
class Photo:
    """One annotated photo: its file, its size as stored, and its plates."""

    path: Path
    width: int
    height: int
    boxes: tuple[tuple[float, float, float, float], ...]  # xyxy in the photo's stored pixels
    regions: tuple[str | None, ...]  # the annotation's region per box, where given
    source: str = ""
    image_id: object = None  # the COCO image id (the file's name for a YOLO folder)


class ScenePhotos:
    """Annotated photos from a COCO json file or a YOLO folder (images/ + labels/, optional
    data.yaml). `load(i)` -> (image (3, h, w) uint8, boxes (K, 4) float xyxy), resized so the
    longest side is at most `max_side`."""

    def __init__(self, path: str | Path, max_side: int = MAX_SIDE, cache_bytes: int = CACHE_BYTES):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"scenes {self.path} does not exist (a COCO .json file or a YOLO folder)")
        if not isinstance(max_side, int) or max_side < 32:
            raise ValueError(f"max_side must be an int >= 32, got {max_side!r}")
        self.max_side, self.cache_bytes = max_side, cache_bytes
        self.left_out: dict[str, int] = {}
        photos = _read_yolo(self.path, self._leave_out) if self.path.is_dir() else _read_coco(self.path,
                                                                                            self._leave_out)
        photos = [p for p in photos if self._exists(p)]
        self.photos: list[Photo] = photos
        self._cache: OrderedDict[int, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._cached_bytes = 0
        self._warned: set[str] = set()
        self._warn_left_out()
        if not self.photos:
            raise ScenePhotosError(f"{self.path}: no usable annotated photos ({self._summary() or 'none listed'})")

    def __len__(self) -> int:
        return len(self.photos)

    # -- rules ------------------------------------------------------------------------------------
    def _leave_out(self, rule: str, n: int = 1) -> None:
        self.left_out[rule] = self.left_out.get(rule, 0) + n

    def _summary(self) -> str:
        return ", ".join(f"{n} {rule}" for rule, n in self.left_out.items())

    def _warn_left_out(self) -> None:
        if self.left_out:
            warnings.warn(f"scenes {self.path}: left out {self._summary()} (plateaug.ScenePhotos rules)",
                          stacklevel=3)

    def _exists(self, p: Photo) -> bool:
        if p.path.is_file():
            return True
        self._leave_out("photos whose file is missing")
        return False

    # -- pixels -----------------------------------------------------------------------------------
    def load(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Photo i as (image (3, h, w) uint8, boxes (K, 4) float32 xyxy in its pixels), resized so
        its longest side is at most max_side; None (with one warning per photo) if it cannot be
        decoded."""
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        p = self.photos[i]
        try:
            arr, (w, h) = _decode(p.path, self.max_side)
        except ValueError as e:
            if str(p.path) not in self._warned:
                self._warned.add(str(p.path))
                warnings.warn(f"scenes: skipping photo {p.path}: {e}", stacklevel=2)
            return None
        boxes = np.asarray(p.boxes, dtype=np.float32).reshape(-1, 4)
        if (w, h) != (p.width, p.height):  # recorded for another size: same aspect was checked on reading
            if abs(w / h - p.width / p.height) > 0.01 * (p.width / p.height):
                if str(p.path) not in self._warned:
                    self._warned.add(str(p.path))
                    warnings.warn(f"scenes: skipping photo {p.path}: it is {w}x{h} but annotated as "
                                  f"{p.width}x{p.height} (another aspect: the boxes cannot be trusted)", stacklevel=2)
                return None
        boxes *= np.array([arr.shape[1] / p.width, arr.shape[0] / p.height] * 2, dtype=np.float32)
        out = (torch.from_numpy(arr).permute(2, 0, 1).contiguous(), torch.from_numpy(boxes))
        nbytes = out[0].numel()
        while self._cache and self._cached_bytes + nbytes > self.cache_bytes:
            _, (old, _) = self._cache.popitem(last=False)
            self._cached_bytes -= old.numel()
        if nbytes <= self.cache_bytes:
            self._cache[i] = out
            self._cached_bytes += nbytes
        return out


def _decode(path: Path, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(H, W, 3) uint8 RGB at most max_side a side, and the file's own (width, height)."""
    try:
        with Image.open(path) as im:
            size = im.size
            if im.width * im.height > MAX_PIXELS:
                if im.format != "JPEG":
                    raise ValueError(f"{im.width}x{im.height} pixels, more than {MAX_PIXELS:,} "
                                     f"(only JPEGs that large are decoded, reduced)")
                im.draft("RGB", (max_side, max_side))  # the JPEG decoder scales by 1/2, 1/4 or 1/8
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(im, dtype=np.float64).clip(0, 65535)
                im = Image.fromarray((a / 257.0).round().astype(np.uint8))
            im = im.convert("RGB")
            scale = max_side / max(im.size)
            if scale < 1:
                im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR,
                               reducing_gap=2.0)
            return np.array(im, dtype=np.uint8), size  # a writable copy
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot decode image: {e}") from None


def _clip_boxes(boxes: list[list[float]], w: int, h: int) -> list[tuple[float, float, float, float]] | None:
    """xyxy boxes clipped to the image; None if any box is unusable (zero area, or outside)."""
    out = []
    for x0, y0, x1, y1 in boxes:
        if not all(np.isfinite([x0, y0, x1, y1])):
            return None
        cx0, cy0, cx1, cy1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
        if cx1 - cx0 < 1 or cy1 - cy0 < 1:
            return None
        out.append((cx0, cy0, cx1, cy1))
    return out


def _read_coco(path: Path, leave_out) -> list[Photo]:
    if path.stat().st_size > MAX_ANNOTATION_BYTES:
        raise ScenePhotosError(f"{path}: {path.stat().st_size:,} bytes, more than an annotation file may be "
                               f"({MAX_ANNOTATION_BYTES:,})")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ScenePhotosError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise ScenePhotosError(f"{path}: not COCO: needs 'images' and 'annotations' lists")
    if len(data["images"]) > MAX_PHOTOS:
        raise ScenePhotosError(f"{path}: {len(data['images']):,} images, at most {MAX_PHOTOS:,}")
    cats = data.get("categories") or []
    if not isinstance(cats, list) or not all(isinstance(c, dict) and "id" in c for c in cats):
        raise ScenePhotosError(f"{path}: 'categories' must be a list of {{'id', 'name'}} objects")
    plate_ids = {c["id"] for c in cats if str(c.get("name", "")).strip().lower() in PLATE_NAMES}
    if not plate_ids and len(cats) == 1:
        plate_ids = {cats[0]["id"]}  # one category: the plates
    if not plate_ids and cats:
        raise ScenePhotosError(f"{path}: no plate category (one named {' / '.join(PLATE_NAMES[:3])}, or a single "
                               f"category); categories: {[c.get('name') for c in cats][:20]}")
    images: dict = {}
    for im in data["images"]:
        ok = isinstance(im, dict) and isinstance(im.get("file_name"), str) and all(
            isinstance(im.get(k), int) and not isinstance(im.get(k), bool) and im[k] > 0 for k in ("width", "height"))
        if not ok or "id" not in im:
            raise ScenePhotosError(f"{path}: an image entry needs id, file_name and positive int width, height; "
                                   f"got {str(im)[:200]}")
        name = Path(im["file_name"])
        if name.is_absolute() or ".." in name.parts:
            raise ScenePhotosError(f"{path}: image file_name {im['file_name']!r} must be a path inside "
                                   f"{path.parent} (relative, no '..')")
        images[im["id"]] = im
    boxes: dict = {}
    other = 0
    for a in data["annotations"]:
        if not isinstance(a, dict) or a.get("image_id") not in images:
            raise ScenePhotosError(f"{path}: an annotation must name an image_id of 'images'; got {str(a)[:200]}")
        if plate_ids and a.get("category_id") not in plate_ids:
            other += 1
            continue
        b = a.get("bbox")
        if not (isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                             for v in b)):
            raise ScenePhotosError(f"{path}: annotation {a.get('id')}: bbox must be [x, y, w, h] numbers, got {b!r}")
        region = a.get("region")
        region = region if isinstance(region, str) and REGION_OK.match(region) else None
        boxes.setdefault(a["image_id"], []).append(([b[0], b[1], b[0] + b[2], b[1] + b[3]], region))
    if other:
        leave_out("annotations of other categories (ignored)", other)
    photos = []
    for iid, im in images.items():
        items = boxes.get(iid, [])
        if len(items) > MAX_BOXES_PER_PHOTO:
            leave_out(f"photos with more than {MAX_BOXES_PER_PHOTO} plates")
            continue
        clipped = _clip_boxes([b for b, _ in items], im["width"], im["height"])
        if clipped is None:
            leave_out("photos with an unusable box (zero area or outside the image)")
            continue
        photos.append(Photo(path.parent / im["file_name"], im["width"], im["height"], tuple(clipped),
                            tuple(r for _, r in items), str(im.get("source", ""))[:64], iid))
    return photos


def _yolo_plate_class(folder: Path) -> int:
    """The plate's class id of a YOLO folder: from data.yaml's names (the one named like a plate),
    else 0 (plateaug's own datasets write plates as class 0)."""
    yaml = folder / "data.yaml"
    if not yaml.is_file():
        return 0
    text = yaml.read_text(encoding="utf-8", errors="replace")[:1_000_000]
    names: dict[int, str] = {}
    inline = re.search(r"^names:\s*\[(.*)\]\s*$", text, re.M)
    if inline:
        names = {i: n.strip().strip("'\"") for i, n in enumerate(inline.group(1).split(","))}
    else:
        for m in re.finditer(r"^\s+(\d+):\s*(.+?)\s*$", text, re.M):
            names[int(m.group(1))] = m.group(2).strip().strip("'\"")
    for i, n in names.items():
        if n.lower() in PLATE_NAMES:
            return i
    return 0


def _read_yolo(folder: Path, leave_out) -> list[Photo]:
    images_dir = folder / "images" if (folder / "images").is_dir() else folder
    labels_dir = folder / "labels" if (folder / "labels").is_dir() else folder
    plate = _yolo_plate_class(folder)
    files = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) > MAX_PHOTOS:
        raise ScenePhotosError(f"{folder}: {len(files):,} images, at most {MAX_PHOTOS:,}")
    photos = []
    for f in files:
        label = labels_dir / f.relative_to(images_dir).with_suffix(".txt")
        if not label.is_file():
            leave_out("photos without a label file")
            continue
        try:
            with Image.open(f) as im:
                w, h = im.size
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
            leave_out("photos that cannot be read")
            continue
        rows = []
        for n, line in enumerate(label.read_text(encoding="utf-8", errors="replace").splitlines()[:10_000], 1):
            parts = line.split()
            if not parts:
                continue
            try:
                cls, cx, cy, bw, bh = int(parts[0]), *map(float, parts[1:5])
            except (ValueError, TypeError):
                raise ScenePhotosError(f"{label}:{n}: expected 'class cx cy w h' (normalised), got {line[:80]!r}") \
                    from None
            if cls == plate:
                rows.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
        if len(rows) > MAX_BOXES_PER_PHOTO:
            leave_out(f"photos with more than {MAX_BOXES_PER_PHOTO} plates")
            continue
        clipped = _clip_boxes(rows, w, h)
        if clipped is None:
            leave_out("photos with an unusable box (zero area or outside the image)")
            continue
        photos.append(Photo(f, w, h, tuple(clipped), (None,) * len(clipped), image_id=f.name))
    return photos
