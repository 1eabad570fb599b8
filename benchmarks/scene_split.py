"""The training / validation split of the real scene photos (../shared/data/real-scenes), shared by the
detection benchmark, the shipped scene frames and the permissive generator's training crops.

- `ro_dashcam` frames follow each other in time (`origin` ends in `video.mp4#t=SECONDS`), so they are
  split by time, never at random: in every video the frames from its 75th-percentile time on are
  validation, and training stops GAP seconds before that (near-duplicates never straddle the split).
- every other photo: md5(file name) % 100 < 25 -> validation (the realism benchmark's rule).
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from pathlib import Path

VAL_PERCENT = 25
GAP = 10  # seconds of dashcam video left out of training before each video's validation block
TIME = re.compile(r"^(?P<video>.+)#t=(?P<t>\d+(?:\.\d+)?)")


def _hash_val(name: str) -> bool:
    return int(hashlib.md5(Path(name).name.encode()).hexdigest(), 16) % 100 < VAL_PERCENT


def video_time(origin: str) -> tuple[str, float] | None:
    """(video, seconds) of a frame's `origin` ('.../video.mp4#t=12.jpg'), None for a still photo."""
    m = TIME.match(origin or "")
    if m is None:
        return None
    return m.group("video"), float(re.match(r"\d+(?:\.\d+)?", m.group("t")).group())


def split_images(images: list[dict]) -> dict[int, str]:
    """COCO image records -> {image id: "train" | "val" | "gap"} ("gap": dashcam frames just before a
    video's validation block, used for neither)."""
    frames: dict[str, list[tuple[float, int]]] = defaultdict(list)
    out: dict[int, str] = {}
    for im in images:
        vt = video_time(im.get("origin", ""))
        if vt is None:
            out[im["id"]] = "val" if _hash_val(im["file_name"]) else "train"
        else:
            frames[vt[0]].append((vt[1], im["id"]))
    for items in frames.values():
        times = sorted(t for t, _ in items)
        cut = times[min(len(times) - 1, int(len(times) * (100 - VAL_PERCENT) / 100))]
        for t, i in items:
            out[i] = "val" if t >= cut else "gap" if t >= cut - GAP else "train"
    return out
