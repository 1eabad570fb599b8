"""How the plates of the scene stream compare with the real plates they stand for, at scene scale: width,
brightness, contrast, sharpness and brightness over their surroundings, as quartiles. A few minutes where
a detection screen takes tens: a first check of a scene setting before the detector is trained.

For every test source of the real photos' training split (`openalpr`, `ro_dashcam`, ...): the real plates
of those photos at 640 px, and the plates of `replace` scenes drawn from the same photos (every real plate
replaced by a stream plate); `default` (the shipped frames) is one row of its own. Columns per plate, from
the luma of its box: `width` (px), `mean` (in [0, 1]), `std` (contrast), `grad` (mean absolute difference of
neighbouring pixels: sharpness) and `lift` (mean minus the mean of a ring one box height wide around it).

    python benchmarks/scene_plates.py                       # real, replace and default, 128 scenes each
    python benchmarks/scene_plates.py --stream-options '{"scene": {"as_taken": false}}' --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_dir, machine, missing_data, write_outputs  # noqa: E402
from detection import load_photos, split_ids, subset_coco  # noqa: E402

from plateaug import PlateGANStream  # noqa: E402
from plateaug.stream.scene_options import Scene  # noqa: E402

COLUMNS = ("width", "mean", "std", "grad", "lift")
QUARTILES = (0.25, 0.5, 0.75)
SIDE = 640  # the detection benchmark's photos and scenes
SCENE_SIZE = (384, 640)
SEED = 20261206


def plate_stats(images: list[torch.Tensor], boxes: list[torch.Tensor], min_width: int = 6) -> torch.Tensor:
    """images: (3, H, W) in [0, 255] (any dtype); boxes: (n, 4) x0, y0, x1, y1 pixels. Returns (plates, 5)
    float: COLUMNS of every box at least min_width px wide and 4 high (smaller ones have too few pixels)."""
    rows = []
    for img, bx in zip(images, boxes):
        if img.ndim != 3 or img.shape[0] != 3:
            raise ValueError(f"plate_stats: an image must be (3, H, W), got {tuple(img.shape)}")
        luma = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]).float() / 255  # (H, W) in [0, 1]
        H, W = luma.shape
        for x0, y0, x1, y1 in bx.round().long().tolist():
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
            if x1 - x0 < min_width or y1 - y0 < 4:
                continue
            p = luma[y0:y1, x0:x1]
            grad = (p[:, 1:] - p[:, :-1]).abs().mean() + (p[1:] - p[:-1]).abs().mean()
            h = y1 - y0
            around = luma[max(0, y0 - h): y1 + h, max(0, x0 - h): x1 + h]
            ring_sum = around.sum() - p.sum()
            ring_n = around.numel() - p.numel()
            ring = ring_sum / ring_n if ring_n else p.mean()
            rows.append([x1 - x0, float(p.mean()), float(p.std()), float(grad), float(p.mean() - ring)])
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, len(COLUMNS))


def quartiles(stats: torch.Tensor) -> dict[str, list[float]]:
    """(n, 5) -> {column: [q25, median, q75]} (empty lists when n is 0)."""
    if len(stats) == 0:
        return {c: [] for c in COLUMNS}
    q = torch.quantile(stats, torch.tensor(QUARTILES), dim=0)  # (3, 5)
    return {c: [round(float(v), 4) for v in q[:, k]] for k, c in enumerate(COLUMNS)}


def stream_plates(n: int, options: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """n scenes of PlateGANStream(mode="scene", **options) at SCENE_SIZE: images in [0, 255], plate boxes."""
    batch = max(1, min(16, n))
    stream = PlateGANStream(mode="scene", seed=SEED, batch_size=batch, length=-(-n // batch), image_size=SCENE_SIZE,
                            **options)
    images, boxes = [], []
    for x, targets in stream:  # x (B, 3, H, W) in [0, 1]
        images.extend(x * 255)
        boxes.extend(t["boxes"].as_subclass(torch.Tensor) for t in targets)
    return images[:n], boxes[:n]


def run(annotations: Path, sources: list[str], n: int, base: dict) -> list[dict]:
    """Rows {source, test_source, plates, width, mean, std, grad, lift} for the real training photos of each
    test source and the stream's `replace` scenes of them, and the `default` stream."""
    coco = json.loads(annotations.read_text(encoding="utf-8"))
    train, _ = split_ids(annotations)
    scene_fields = dict(base.get("scene", {}))
    others = {k: v for k, v in base.items() if k != "scene"}
    rows = []

    def row(source: str, test_source: str, stats: torch.Tensor) -> None:
        rows.append({"source": source, "test_source": test_source, "plates": len(stats), **quartiles(stats)})
        print(table([rows[-1]], header=len(rows) == 1), flush=True)

    with tempfile.TemporaryDirectory(prefix="plateaug-scene-plates-") as tmp:
        for test_source in sorted({im.get("source") or "photos" for im in coco["images"] if im["id"] in train}):
            ids = {im["id"] for im in coco["images"]
                   if im["id"] in train and (im.get("source") or "photos") == test_source}
            folder = Path(tmp) / test_source
            folder.mkdir()
            subset = subset_coco(annotations, ids, folder)
            if "real" in sources:
                photos = load_photos(subset, SIDE)
                row("real", test_source, plate_stats(photos.images, photos.boxes))
            if "replace" in sources:
                images, boxes = stream_plates(n, {**others, "scenes": str(subset), "scene": Scene(**scene_fields)})
                row("replace", test_source, plate_stats(images, boxes))
    if "default" in sources:
        images, boxes = stream_plates(n, {**others, **({"scene": Scene(**scene_fields)} if scene_fields else {})})
        row("default", "shipped frames", plate_stats(images, boxes))
    return rows


def table(rows: list[dict], header: bool = True) -> str:
    """Quartiles (q25 / median / q75) per row and column."""
    head = f"{'source':8s} {'test_source':15s} {'plates':>6s}  " + "  ".join(f"{c:^20s}" for c in COLUMNS)
    lines = [head] if header else []
    for r in rows:
        cells = ["/".join(f"{v:.3g}" for v in r[c]) or "-" for c in COLUMNS]
        lines.append(f"{r['source']:8s} {r['test_source']:15s} {r['plates']:6d}  "
                     + "  ".join(f"{c:^20s}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default=str(data_dir("real-scenes")), help="folder with annotations.json (COCO)")
    ap.add_argument("--sources", default="real,replace,default", help="any of real, replace, default")
    ap.add_argument("--scenes", type=int, default=128, help="stream scenes per row (default 128)")
    ap.add_argument("--stream-options", default="{}", help="JSON PlateGANStream keyword arguments; a \"scene\" "
                    "dict there changes single Scene fields")
    ap.add_argument("--json")
    ap.add_argument("--txt")
    args = ap.parse_args(argv)
    real = Path(args.real)
    if (msg := missing_data("--real", real, "annotations.json")) is not None:
        ap.error(msg)
    sources = [s for s in args.sources.split(",") if s]
    if not sources or set(sources) - {"real", "replace", "default"}:
        ap.error(f"--sources must name some of real, replace, default, got {args.sources!r}")
    if not 1 <= args.scenes <= 4096:
        ap.error(f"--scenes must be in [1, 4096], got {args.scenes}")
    try:
        base = json.loads(args.stream_options)
        if not isinstance(base, dict) or {"mode", "seed", "batch_size", "length", "image_size", "scenes"} & set(base):
            raise ValueError("a JSON object without mode, seed, batch_size, length, image_size, scenes")
        Scene(**base.get("scene", {}))
    except (ValueError, TypeError) as e:
        ap.error(f"--stream-options: {e}")
    rows = run(real / "annotations.json", sources, args.scenes, base)
    payload = {"benchmark": "scene_plates", "machine": machine(), "real": str(real), "scenes": args.scenes,
               "stream_options": base, "columns": list(COLUMNS), "quartiles": list(QUARTILES), "rows": rows,
               "text": table(rows)}
    write_outputs(payload, args.json, args.txt)
    return payload


if __name__ == "__main__":
    main()
