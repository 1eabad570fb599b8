"""Make the scene assets that ship in plateaug/stream/scenes/: real dashcam frames whose plates the
stream replaces at run time (`PlateGANStream(mode="scene")` with no set-up), and the default
ScenePrior. Both from the MIT Romanian dashcam set only (RobertLucian/license-plate-dataset), its
frames of the detection benchmark's training split (benchmarks/scene_split.py); nothing AGPL-3.0 or
CC BY goes in.

    python benchmarks/shipped_frames.py            # writes plateaug/stream/scenes/{frames/, frames.json, prior.toml}
    python benchmarks/shipped_frames.py --frames 400 --out /tmp/frames   # a screen: every training frame elsewhere
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_dir, missing_data  # noqa: E402
from scene_split import split_images, video_time  # noqa: E402

from plateaug.stream.scene_prior import ScenePrior  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "plateaug" / "stream" / "scenes"
FRAMES = 96
SIZE = (640, 360)  # stored frame size (the 1280x720 frames halved)
QUALITY = 88


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", default=str(data_dir("real-scenes")))
    ap.add_argument("--frames", type=int, default=FRAMES, help="how many frames (at most every training frame)")
    ap.add_argument("--out", default=str(OUT), help="folder written (default: the package's scenes folder)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    scenes = Path(args.scenes)
    if problem := missing_data("--scenes", scenes, "annotations.json"):
        ap.error(problem)
    coco = json.loads((scenes / "annotations.json").read_text(encoding="utf-8"))
    split = split_images(coco["images"])
    boxes = defaultdict(list)
    for a in coco["annotations"]:
        boxes[a["image_id"]].append(a["bbox"])
    frames = [im for im in coco["images"] if im["source"] == "ro_dashcam" and split[im["id"]] == "train"
              and boxes[im["id"]]]
    # spread over every video and its time line: every k-th frame in (video, time) order
    frames.sort(key=lambda im: video_time(im["origin"]))
    step = max(1, len(frames) // args.frames)
    picks = frames[::step][: args.frames]
    (out / "frames").mkdir(parents=True, exist_ok=True)
    for old in (out / "frames").glob("*.jpg"):
        old.unlink()
    images, annotations = [], []
    for k, im in enumerate(picks):
        name = f"frames/ro_{k:03d}.jpg"
        with Image.open(scenes / im["file_name"]) as photo:
            sx, sy = SIZE[0] / photo.width, SIZE[1] / photo.height
            photo.convert("RGB").resize(SIZE, Image.BICUBIC).save(out / name, quality=QUALITY)
        images.append({"id": k + 1, "file_name": name, "width": SIZE[0], "height": SIZE[1], "source": "ro_dashcam",
                       "licence": "MIT (RobertLucian/license-plate-dataset)", "origin": im["origin"]})
        for x, y, w, h in boxes[im["id"]]:
            annotations.append({"id": len(annotations) + 1, "image_id": k + 1, "category_id": 1, "iscrowd": 0,
                                "bbox": [round(x * sx, 2), round(y * sy, 2), round(w * sx, 2), round(h * sy, 2)],
                                "area": round(w * sx * h * sy, 2), "region": "eu"})
    info = {"description": "Romanian dashcam frames (day and night) of RobertLucian/license-plate-dataset (MIT), "
                           "halved to 640x360; plateaug replaces every annotated plate at run time",
            "licence": "MIT, Copyright (c) 2020 Robert Lucian Chiriac: plateaug/licences/license-plate-dataset-MIT.txt"}
    (out / "frames.json").write_text(json.dumps({"info": info, "categories": [{"id": 1, "name": "plate"}],
                                                 "images": images, "annotations": annotations}, indent=0),
                                     encoding="utf-8")
    train_ids = [im["id"] for im in coco["images"] if im["source"] == "ro_dashcam" and split[im["id"]] == "train"]
    prior = ScenePrior.from_coco(scenes / "annotations.json", components=4, image_ids=train_ids)
    prior = ScenePrior(prior.weights, prior.means, prior.covariances, prior.plates_per_image,
                       source=f"fitted (EM, 4 components) to the {prior.source.split(' of ')[0]} of the "
                              f"{len(train_ids)} Romanian dashcam training frames (MIT, RobertLucian/"
                              f"license-plate-dataset) by benchmarks/shipped_frames.py")
    prior.save(out / "prior.toml")
    print(f"{len(images)} frames, {len(annotations)} plates -> {out}; prior: {prior.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
