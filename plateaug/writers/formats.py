"""Dataset writers: one image plus a JSON sidecar per item (written last, so its presence means
the item is complete), and the format's label files (YOLO txt, COCO JSON, OCR CSV). Indexes
that span the dataset (COCO JSON, OCR CSV) are rebuilt from the sidecars, so shards written by
different processes merge without coordination."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from .atomic import atomic_write_bytes, atomic_write_text
from .sheet import to_pil

FORMATS = ("yolo", "coco", "ocr")
PLATE_CLASS = "plate"
# The character classes of every dataset, whatever its regions: digits, Latin capitals, then the
# Chinese province characters of cn_blue/cn_green, in code-point order. Frozen: a shipped region
# that brings a new character appends it at the end (tests check every shipped character is here),
# so class ids never move and datasets made with different --regions merge as they are.
CHAR_CLASSES = ("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "云京冀吉宁川新晋桂沪津浙渝湘琼甘皖粤苏蒙藏豫贵赣辽鄂闽陕青鲁黑")


def class_names(charset: str = "") -> list[str]:
    """Dataset class names: 0 = plate, then CHAR_CLASSES, then the characters of `charset` (a user
    region's) that are not in CHAR_CLASSES, in code-point order. YOLO id = index; COCO id = index + 1."""
    extra = sorted(set(charset) - set(CHAR_CLASSES))
    return [PLATE_CLASS, *CHAR_CLASSES, *extra]


def item_name(index: int) -> str:
    return f"{index:08d}"


class DatasetWriter:
    """Writes items of one dataset folder: images/, meta/ (sidecars) and the format's labels."""

    def __init__(self, out: str | Path, fmt: str, charset: str, image_format: str = "jpg", tag: str = ""):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        if image_format not in ("jpg", "png"):
            raise ValueError(f"image format must be jpg or png, got {image_format!r}")
        self.out, self.fmt, self.charset, self.ext, self.tag = Path(out), fmt, charset, image_format, tag
        self._class_id = {name: i for i, name in enumerate(class_names(charset))}  # YOLO ids; COCO = + 1
        for sub in ("images", "meta") + (("labels",) if fmt == "yolo" else ()):
            (self.out / sub).mkdir(parents=True, exist_ok=True)

    def done(self, index: int) -> bool:
        return (self.out / "meta" / f"{item_name(index)}.json").exists()

    def classes(self) -> list[str]:
        """Class names (YOLO ids; COCO id - 1): see `class_names`; the same for every choice of shipped regions."""
        return list(self._class_id)

    def write(self, index: int, image: torch.Tensor, target: dict) -> None:
        """image: (3, H, W) float in [0, 1]; target: a PlateGANStream target dict."""
        name = item_name(index)
        H, W = image.shape[-2:]
        buf = io.BytesIO()
        pil = to_pil(image)
        if self.ext == "jpg":
            pil.save(buf, format="JPEG", quality=95)
        else:
            pil.save(buf, format="PNG")
        atomic_write_bytes(self.out / "images" / f"{name}.{self.ext}", buf.getvalue(), self.tag)
        plates = _plates(target)
        if self.fmt == "yolo":
            atomic_write_text(self.out / "labels" / f"{name}.txt", self._yolo(plates, W, H), self.tag)
        meta = {"file": f"images/{name}.{self.ext}", "width": W, "height": H, "plates": plates}
        atomic_write_text(self.out / "meta" / f"{name}.json", json.dumps(meta, ensure_ascii=False), self.tag)

    def _yolo(self, plates: list[dict], W: int, H: int) -> str:
        """One line per plate (class 0) and per character (its `classes()` index):
        `class cx cy w h`, normalised to [0, 1]."""
        lines = []
        for p in plates:
            boxes = [(0, p["box"])] + [(self._class_id[ch], b) for ch, b in zip(p["text"], p["char_boxes"])]
            for cls, (x0, y0, x1, y1) in boxes:
                lines.append(f"{cls} {(x0 + x1) / 2 / W:.6f} {(y0 + y1) / 2 / H:.6f} "
                             f"{(x1 - x0) / W:.6f} {(y1 - y0) / H:.6f}")
        return "".join(ln + "\n" for ln in lines)

    def finalize(self, total: int) -> list[Path]:
        """Write the dataset-wide index files once every item 0..total-1 is complete; returns
        what was written (nothing while other shards are still running)."""
        if not all(self.done(i) for i in range(total)):
            return []
        metas = [json.loads((self.out / "meta" / f"{item_name(i)}.json").read_text(encoding="utf-8"))
                 for i in range(total)]
        written = []
        if self.fmt == "coco":
            written.append(atomic_write_text(self.out / "annotations.json",
                                             json.dumps(self._coco(metas), ensure_ascii=False), self.tag))
        elif self.fmt == "yolo":
            names = "\n".join(f"  {i}: {json.dumps(n, ensure_ascii=False)}" for i, n in enumerate(self.classes()))
            # an absolute path: Ultralytics resolves a relative one against the current directory
            root = json.dumps(str(self.out.resolve()), ensure_ascii=False)
            written.append(atomic_write_text(self.out / "data.yaml",
                                             f"path: {root}\ntrain: images\nval: images\n"
                                             f"nc: {len(self.classes())}\nnames:\n{names}\n", self.tag))
        else:
            rows = io.StringIO()
            w = csv.writer(rows)
            w.writerow(["file", "text", "region"])
            for m in metas:
                w.writerow([m["file"], m["plates"][0]["text"], m["plates"][0]["region"]])
            written.append(atomic_write_text(self.out / "labels.csv", rows.getvalue(), self.tag))
        return written

    def _coco(self, metas: list[dict]) -> dict:
        images, anns = [], []
        for img_id, m in enumerate(metas, start=1):
            images.append({"id": img_id, "file_name": m["file"], "width": m["width"], "height": m["height"]})
            # every annotation has a polygon (pycocotools' mask evaluation needs one for each
            # category): the plate quadrilateral clipped to the image, a character's box
            for p in m["plates"]:
                x0, y0, x1, y1 = p["box"]
                quad = _clip_polygon(p["corners"], m["width"], m["height"]) or _box_polygon(p["box"])
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": 1, "iscrowd": 0,
                             "bbox": [x0, y0, x1 - x0, y1 - y0], "area": _area(quad),
                             "segmentation": [[round(c, 2) for pt in quad for c in pt]],
                             "text": p["text"], "region": p["region"]})
                for ch, box in zip(p["text"], p["char_boxes"]):
                    cx0, cy0, cx1, cy1 = box
                    anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": 1 + self._class_id[ch],
                                 "iscrowd": 0, "bbox": [cx0, cy0, cx1 - cx0, cy1 - cy0],
                                 "area": (cx1 - cx0) * (cy1 - cy0),
                                 "segmentation": [[c for pt in _box_polygon(box) for c in pt]]})
        cats = [{"id": i + 1, "name": n, "supercategory": "plate" if i == 0 else "character"}
                for i, n in enumerate(self.classes())]
        return {"info": {"description": "plateaug synthetic licence plates"}, "images": images,
                "annotations": anns, "categories": cats}


def _box_polygon(box: list[float]) -> list[list[float]]:
    x0, y0, x1, y1 = box
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _clip_polygon(points: list[list[float]], W: float, H: float) -> list[list[float]]:
    """A convex polygon clipped to the image [0, W] x [0, H] (Sutherland-Hodgman); [] if nothing is left."""
    for axis, limit, side in ((0, 0.0, 1), (0, W, -1), (1, 0.0, 1), (1, H, -1)):  # keep side * (v - limit) >= 0
        out = []
        for i, cur in enumerate(points):
            prev = points[i - 1]
            cur_in, prev_in = side * (cur[axis] - limit) >= 0, side * (prev[axis] - limit) >= 0
            if cur_in != prev_in:
                t = (limit - prev[axis]) / (cur[axis] - prev[axis])
                out.append([prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])])
                out[-1][axis] = limit
            if cur_in:
                out.append(list(cur))
        points = out
    return points if len(points) >= 3 else []


def _area(points: list[list[float]]) -> float:
    """Shoelace area of a simple polygon."""
    return abs(sum(p[0] * q[1] - q[0] * p[1] for p, q in zip(points, points[1:] + points[:1]))) / 2


def _plates(target: dict) -> list[dict]:
    """A stream target (crop or scene) as a list of plain per-plate dicts (lists, not tensors)."""
    texts = target["text"] if isinstance(target["text"], list) else [target["text"]]
    regions = target["region"] if isinstance(target["region"], list) else [target["region"]]
    chars = target["char_boxes"] if isinstance(target["char_boxes"], list) else [target["char_boxes"]]
    boxes = torch.as_tensor(target["boxes"]).tolist()
    corners = target["corners"].tolist()
    return [{"text": t, "region": r, "box": [round(v, 2) for v in b],
             "corners": [[round(v, 2) for v in pt] for pt in q],
             "char_boxes": [[round(v, 2) for v in cb] for cb in c.tolist()]}
            for t, r, b, q, c in zip(texts, regions, boxes, corners, chars)]

