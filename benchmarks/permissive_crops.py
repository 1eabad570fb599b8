"""The permissively licensed real plate crops the shipped generator is trained on: a folder in the
layout `python -m plateaug.train --real` reads (images + labels.csv: file,region,text,source).

- `cn`: every CCPD crop of real-plates (MIT; cropped and labelled in LPRNet_Pytorch, Apache-2.0);
- `eu`: plate crops (box + 6 % margin, like openalpr's crops) of the Romanian dashcam frames of
  real-scenes (MIT, RobertLucian/license-plate-dataset), training split of benchmarks/scene_split.py
  only (the detection benchmark's validation frames stay unseen), plates at least MIN_WIDTH px wide;
  no text (the dashcam set has none).
Nothing AGPL-3.0 (openalpr) or CC BY (Open Images) goes in.

    python benchmarks/permissive_crops.py --out runs/permissive-crops
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_dir, missing_data  # noqa: E402
from scene_split import split_images  # noqa: E402

MARGIN = 0.06
MIN_WIDTH = 48  # px in the stored frame


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plates", default=str(data_dir("real-plates")), help="real-plates folder (labels.csv)")
    ap.add_argument("--scenes", default=str(data_dir("real-scenes")), help="real-scenes folder (annotations.json)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    plates, scenes, out = Path(args.plates), Path(args.scenes), Path(args.out)
    for option, path, needs in (("--plates", plates, "labels.csv"), ("--scenes", scenes, "annotations.json")):
        if problem := missing_data(option, path, needs):
            ap.error(problem)
    rows = []
    with open(plates / "labels.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["region"] == "cn":  # CCPD, MIT
                (out / "cn").mkdir(parents=True, exist_ok=True)
                shutil.copy(plates / r["file"], out / "cn" / Path(r["file"]).name)
                rows.append({"file": f"cn/{Path(r['file']).name}", "region": "cn", "text": r["text"],
                             "source": f"CCPD (MIT) via LPRNet_Pytorch: {r['source']}"})
    coco = json.loads((scenes / "annotations.json").read_text(encoding="utf-8"))
    split = split_images(coco["images"])
    images = {im["id"]: im for im in coco["images"]}
    (out / "eu").mkdir(parents=True, exist_ok=True)
    for a in coco["annotations"]:
        im = images[a["image_id"]]
        if im["source"] != "ro_dashcam" or split[im["id"]] != "train":
            continue
        x, y, w, h = a["bbox"]
        if w < MIN_WIDTH:
            continue
        with Image.open(scenes / im["file_name"]) as photo:
            box = (max(0, round(x - MARGIN * w)), max(0, round(y - MARGIN * h)),
                   min(photo.width, round(x + w + MARGIN * w)), min(photo.height, round(y + h + MARGIN * h)))
            name = f"ro_{a['id']:05d}.png"
            photo.convert("RGB").crop(box).save(out / "eu" / name)
        rows.append({"file": f"eu/{name}", "region": "eu", "text": "",
                     "source": f"RobertLucian/license-plate-dataset (MIT): {im['origin']} box {a['bbox']}"})
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "region", "text", "source"])
        writer.writeheader()
        writer.writerows(rows)
    counts = {r: sum(1 for x in rows if x["region"] == r) for r in ("cn", "eu")}
    print(f"{len(rows)} crops in {out}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
