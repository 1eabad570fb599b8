"""Detection realism: does a plate detector trained on plateaug's scenes find plates in real photos?

The same small detector (plateaug.models.centernet.PlateDetector: CenterNet-style heatmap + box size
+ offset at stride 4 on a residual trunk, ~0.6 M parameters; TTFNet's elliptical peaks and dense size
samples as its targets), trained from scratch for the same steps on each source, is tested on the real
validation photos (each also mirrored, the two outputs averaged: the flip test): AP50, AP (IoU
0.50:0.95) and recall at IoU 0.5 from pycocotools (the reference COCO evaluator), per test source
(`openalpr`, `ro_dashcam`, `openimages_lp`, any other `source` the test photos name) and overall
(`all`), mean ± std over seeds.

Sources (each differs from its control in one thing; the same detector, steps and crop sampling):
    procedural       PlateGANStream(mode="scene", backgrounds="procedural"): plates on procedural
                     backgrounds (the scenes before 2026-12-04, now placed by the shipped prior)
    default          PlateGANStream(mode="scene"), nothing else: the shipped MIT dashcam frames with
                     their plates replaced and harmonised into them (augmented, not degraded: Scene.as_taken)
    paste            the real training photos with their plates erased, stream plates placed by a
                     ScenePrior measured on the training boxes (Scene(real_plates="erase"))
    replace          the real training photos, every annotated plate replaced by a stream plate
                     warped over it (Scene(real_plates="replace"))
    real             the real training photos and their boxes
    real+stream      real photos mixed with the best synthetic source (by AP50 `all` of this run, or
                     --mix-source): --mix-share of every batch synthetic (default an eighth), and one
                     plate of its scenes pasted into --paste of all crops (plateaug.paste_plates; default half)
    real@10%, real+stream@10%    the same with 10 % of the real training photos (the user who has
                     labelled only a few); the stream part then replaces plates in those photos only
Synthetic sources train on a pool of `--pool` scenes per source, drawn once per run (the stream at
its default 384x640) and shared by the seeds, each seed's detector drawing its own crops (so the
spread over seeds is the detector's and its crops', not the pool's); every source is sampled
alike: a random photo or scene, scaled by 0.6-1.6, a crop of `crop` px (70 % of crops around a
plate), flipped half the time, brightness/contrast +-20 %; half the crops are mosaics of four such
crops of half the side (`--mosaic`).

Data: --real DIR (annotations.json, COCO; default ../shared/data/real-scenes or $PLATEAUG_DATA):
its photos are split by benchmarks/scene_split.py (dashcam frames by time, others by file-name
hash): the training split trains, the validation split tests. --holdout DIR: every photo of DIR's
annotations.json is a test photo instead. Photos are used at `side` px on their longest side.

    python benchmarks/detection.py                     # every source, 3 seeds (< 45 min on 2 CPU cores)
    python benchmarks/detection.py --sources real,replace --seeds 1 --json out.json
    python benchmarks/detection.py --quick             # seconds: the CI smoke test
    python benchmarks/detection.py --device cuda --jobs 8 --steps 3000   # detectors on the GPU, 8 at a time
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import data_dir, executor, in_fresh_process, machine, missing_data, write_outputs  # noqa: E402
from scene_split import split_images  # noqa: E402

from plateaug import Harmonise, PlateGANStream, paste_plates  # noqa: E402
from plateaug.generator.backends import cpu_has_bf16  # noqa: E402
from plateaug.models.centernet import PlateDetector, decode, detection_loss, encode_targets, flip_merge  # noqa: E402
from plateaug.stream.photos import ScenePhotos  # noqa: E402
from plateaug.stream.scene_options import Scene  # noqa: E402
from plateaug.stream.scene_prior import ScenePrior  # noqa: E402

SYNTHETIC = ("procedural", "default", "paste", "replace")
SOURCES = (*SYNTHETIC, "real", "real+stream", "real@10%", "real+stream@10%")
LOW_SHARE = 0.10
DATA_SEED = 20261204
FIGURE = Path(__file__).resolve().parent / "figures" / "detections.png"
SCORE_SHOWN = 0.3  # detections drawn in the figure
FIGURE_LICENCES = ("MIT", "CC0")  # the figure shows only test photos whose COCO image field `licence` starts with
#   one of these: it is committed, and the AGPL and Open Images photos (authors not credited) may not ship
FIGURE_PHOTOS = 6


@dataclass(frozen=True)
class Settings:
    steps: int = 1000  # detector training steps per source and seed (the 45-minute budget on 2 CPU cores; 600
    #                     until 2026-12-07: real AP50 0.530 vs 0.579 in channels-last, 3 seeds)
    batch: int = 16
    crop: int = 192  # 192-px crops: about half the time of 256 px a step; real AP50 0.50 vs 0.53 (1 seed, 2026-12-05)
    lr: float = 3e-3
    seeds: int = 3
    pool: int = 1500  # synthetic scenes per source, drawn once and shared by the seeds
    pool_seed: int = 0  # the pools' stream seed is DATA_SEED + this: another number draws other scenes (the seeds
    #                     vary only the detectors, so a screen's pool is one draw; this varies that draw too)
    mix_share: float = 0.125  # real+stream: synthetic share of every batch (whole runs 2026-12-06, TTFNet targets:
    #                            an eighth -0.3 / +2.0 at 10 %, a quarter -1.4 / -0.1; CenterNet targets: 0.5 -3.4)
    paste: float = 0.5  # real+stream: share of its crops into which one plate of the mixed-in pool is pasted
    #   (plateaug.paste_plates: copy-paste); 84 photos +4.3 / +4.5 on two pools against the eighth alone's +2.6 /
    #   +2.3, all 839 -0.8 against -1.3 (3 seeds, Xeon, 2026-12-07)
    mix_schedule: str = "constant"  # real+stream: "constant", or "decay": the share falls linearly from twice
    #                                 mix_share to 0 over the steps (synthetic first, the last steps real only)
    side: int = 640  # longest side of every training photo
    test_side: int = 640  # longest side of every test photo (larger: smaller photos are scaled up)
    scale: tuple[float, float] = (0.6, 1.6)  # training crops' scale range (log-uniform)
    bf16: bool = field(default_factory=lambda: cpu_has_bf16())  # autocast where the CPU has bf16 units (~1.6x faster
    #   there); without them torch emulates bf16: 8.3 s a step against 1.43 s in fp32 (AVX2 EPYC, 1 thread, 2026-12-06)
    p_around_plate: float = 0.7  # share of crops centred near a plate
    p_mosaic: float = 0.5  # share of crops that are 2x2 mosaics of half-side crops (YOLOv4's): more plates and places
    #   a crop; real AP50 0.646 at 0.5, 0.641 at 0.25, 0.619 at 0.75 against 0.583 without (3 seeds, Xeon, 2026-12-07)
    paste_harmonise: bool = False  # real+stream: pasted plates take the light, colour and focus of their place
    #   (plateaug.Harmonise, the stream's compositing) instead of a brightness pull
    paste_context: float = 0.0  # real+stream: each pasted plate comes with this x its width of its scene on every
    #   side (its car), not its box alone
    scene_size: tuple[int, int] = (384, 640)  # synthetic scenes (the stream's default)
    heat_spread: float | None = 0.54  # heatmap peaks: TTFNet's elliptical ones (sigma 0.54 x box side / 6), None
    #                                    CenterNet's round ones (before 2026-12-06: real AP50 0.479 vs 0.518, 3 seeds)
    dense: bool = True  # box size and offset learnt at every cell of a box's peak, not its centre only
    coarse_from: int | None = None  # with a number: detections at least this wide (px at test_side) come from a
    #   second test pass at half the size, the narrower ones from the first, merged by NMS at IoU 0.5 (plates wider
    #   than half a training crop are never seen whole in training). None (one pass) by default: 96 read real AP50
    #   +0.8 at 1,000 steps, within the spread (openalpr -6.7, openimages_lp +2.9; probe 2026-12-07, 3 seeds)
    flip_test: bool = True  # test each photo also mirrored, the outputs averaged (CenterNet's flip test): real AP50
    #   +0.9 on three 1,000-step detectors (+1.1 / +2.4 / -0.8), +0.7 on three 600-step weight-averaged ones (5 of
    #   6 up; probe 2026-12-07, Xeon), for a few seconds more a detector
    device: str = "cpu"  # where the detectors train and test ("cuda", "cuda:N"); the training crops, their targets and
    #   the synthetic pools are made on the CPU either way


QUICK = dict(steps=3, batch=2, crop=96, seeds=1, pool=4, side=192, test_side=192, scene_size=(96, 160))


# ---- data -----------------------------------------------------------------------------------------

@dataclass
class Photos:
    """Photos in memory at `side` px: images (3, h, w) uint8, boxes (K, 4) xyxy in those pixels."""

    images: list[torch.Tensor]
    boxes: list[torch.Tensor]
    ids: list = None  # COCO image ids (test photos)
    sources: list[str] = None
    scale: list[float] = None  # stored px per original px

    def subset(self, keep: list[int]) -> Photos:
        pick = lambda xs: None if xs is None else [xs[i] for i in keep]  # noqa: E731
        return Photos(pick(self.images), pick(self.boxes), pick(self.ids), pick(self.sources), pick(self.scale))

    def __len__(self) -> int:
        return len(self.images)


def load_photos(annotations: Path, side: int, which: set | None = None, upscale: bool = False) -> Photos:
    """The annotated photos of a COCO file (the plateaug.ScenePhotos rules), those with ids in `which`,
    scaled down to `side` px on their longest side (and smaller ones up to it with `upscale`)."""
    sp = ScenePhotos(annotations, max_side=side, cache_bytes=0)
    out = Photos([], [], [], [], [])
    for i, p in enumerate(sp.photos):
        if which is not None and p.image_id not in which:
            continue
        loaded = sp.load(i)
        if loaded is None:
            continue
        img, boxes = loaded
        if upscale and max(img.shape[1:]) < side:  # smaller photos are scaled up to `side` too (bilinear)
            f = side / max(img.shape[1:])
            size = (round(img.shape[1] * f), round(img.shape[2] * f))
            img = F.interpolate(img[None].float(), size=size, mode="bilinear", align_corners=False)[0]
            img = img.round().clamp(0, 255).to(torch.uint8)
            boxes = boxes * torch.tensor([size[1] / loaded[0].shape[2], size[0] / loaded[0].shape[1]] * 2)
        out.images.append(img)
        out.boxes.append(boxes)
        out.ids.append(p.image_id)
        out.sources.append(p.source or "photos")
        out.scale.append(img.shape[-1] / p.width)
    return out


def split_ids(annotations: Path) -> tuple[set, set]:
    coco = json.loads(annotations.read_text(encoding="utf-8"))
    split = split_images(coco["images"])
    return {i for i, s in split.items() if s == "train"}, {i for i, s in split.items() if s == "val"}


def low_data_ids(train: Photos) -> list[int]:
    """The LOW_SHARE of training photos the low-data arm keeps: by a hash of the image id (fixed)."""
    key = lambda i: hashlib.md5(str(train.ids[i]).encode()).hexdigest()  # noqa: E731
    order = sorted(range(len(train)), key=key)
    return sorted(order[: max(1, round(LOW_SHARE * len(train)))])


def subset_coco(annotations: Path, ids: set, folder: Path) -> Path:
    """A COCO file in `folder` holding only images `ids` (their files reached through a link to the
    original images folder): the stream's `scenes=` for a split."""
    coco = json.loads(annotations.read_text(encoding="utf-8"))
    tops = {Path(im["file_name"]).parts[0] for im in coco["images"] if im["id"] in ids}
    for top in tops:
        link = folder / top
        if not link.exists():
            link.symlink_to((annotations.parent / top).resolve(), target_is_directory=True)
    keep = [im for im in coco["images"] if im["id"] in ids]
    anns = [a for a in coco["annotations"] if a["image_id"] in ids]
    out = folder / f"subset_{len(keep)}.json"
    out.write_text(json.dumps({**coco, "images": keep, "annotations": anns}), encoding="utf-8")
    return out


# ---- training samples ------------------------------------------------------------------------------

def sample_batch(photos: Photos, n: int, s: Settings, g: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """n training crops (n, 3, crop, crop) in [0, 1] and their boxes: a random photo, scaled by
    s.scale, cropped around a plate (or anywhere), maybe flipped, brightness / contrast jittered.
    A plate cut by the crop keeps its visible part when at least 40 % of it is inside; else it is dropped.
    With s.p_mosaic, that share of the crops are mosaics: four half-side crops side by side (YOLOv4's mosaic)."""
    if s.p_mosaic <= 0:
        return _sample_crops(photos, n, s, g)
    mosaic = (torch.rand(n, generator=g) < s.p_mosaic).tolist()
    m = sum(mosaic)
    whole, wb = _sample_crops(photos, n - m, s, g) if n - m else (torch.empty(0, 3, s.crop, s.crop), [])
    if not m:
        return whole, wb
    H = s.crop // 2
    parts, pb = _sample_crops(photos, 4 * m, replace(s, crop=H, p_mosaic=0.0), g)  # (4m, 3, H, H)
    tiles = parts.view(m, 2, 2, 3, H, H).permute(0, 3, 1, 4, 2, 5).reshape(m, 3, 2 * H, 2 * H)
    shift = torch.tensor([[0, 0], [H, 0], [0, H], [H, H]], dtype=torch.float32).repeat(1, 2)  # tile k's (x, y, x, y)
    tb = [torch.cat([pb[4 * j + k] + shift[k] for k in range(4)]) for j in range(m)]
    out = torch.empty(n, 3, s.crop, s.crop)
    boxes: list[torch.Tensor] = []
    iw, it = iter(range(n - m)), iter(range(m))
    for k, is_mosaic in enumerate(mosaic):
        j = next(it) if is_mosaic else next(iw)
        out[k] = tiles[j] if is_mosaic else whole[j]
        boxes.append(tb[j] if is_mosaic else wb[j])
    return out, boxes


def _sample_crops(photos: Photos, n: int, s: Settings, g: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """sample_batch's plain crops (no mosaic)."""
    C = s.crop
    out = torch.empty(n, 3, C, C)
    boxes = []
    u = torch.rand(n, 8, generator=g)
    picks = torch.randint(len(photos), (n,), generator=g).tolist()
    for k, i in enumerate(picks):
        img, bx = photos.images[i], photos.boxes[i].float()
        _, h, w = img.shape
        lo, hi = math.log(s.scale[0]), math.log(s.scale[1])
        scale = math.exp(lo + (hi - lo) * float(u[k, 0]))
        win = C / scale  # crop side in photo pixels
        if len(bx) and float(u[k, 1]) < s.p_around_plate:
            b = bx[int(float(u[k, 2]) * len(bx)) % len(bx)]
            cx = float(b[0] + b[2]) / 2 + (float(u[k, 3]) - 0.5) * 0.8 * win
            cy = float(b[1] + b[3]) / 2 + (float(u[k, 4]) - 0.5) * 0.8 * win
        else:
            cx, cy = float(u[k, 3]) * w, float(u[k, 4]) * h
        x0, y0 = cx - win / 2, cy - win / 2
        f = max(1, int(1 / scale))  # shrinking by 2 or more: filter first
        # only the photo pixels the window reads (and one more each side, for the bilinear taps), as floats; never
        # none: the window holds (cx, cy), a point of the photo or within 0.4 x win of a plate's centre
        xa, ya = (0, 0) if f > 1 else (max(0, math.floor(x0) - 1), max(0, math.floor(y0) - 1))
        xb, yb = (w, h) if f > 1 else (min(w, math.ceil(x0 + win) + 1), min(h, math.ceil(y0 + win) + 1))
        src = img[None, :, ya:yb, xa:xb].float() / 255
        src = (F.avg_pool2d(src, f, ceil_mode=True) if f > 1 else src) - 0.5
        sw, sh, wx, wy = xb - xa, yb - ya, x0 - xa, y0 - ya
        # the window in those pixels -> crop pixels (an affine grid; outside the photo is grey)
        theta = torch.tensor([[win / sw, 0, (2 * wx + win) / sw - 1], [0, win / sh, (2 * wy + win) / sh - 1]])
        grid = F.affine_grid(theta[None], (1, 3, C, C), align_corners=False)
        out[k] = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0] + 0.5
        b = (bx - torch.tensor([x0, y0, x0, y0])) * scale
        if len(b):
            clipped = b.clamp(0, C)
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            kept = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1]) >= 0.4 * area
            b = clipped[kept & ((clipped[:, 2] - clipped[:, 0]) >= 2) & ((clipped[:, 3] - clipped[:, 1]) >= 2)]
        if float(u[k, 5]) < 0.5:
            out[k] = out[k].flip(-1)
            b = torch.stack([C - b[:, 2], b[:, 1], C - b[:, 0], b[:, 3]], 1) if len(b) else b
        boxes.append(b)
    bright = (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.4
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.4
    mean = out.mean((1, 2, 3), keepdim=True)
    return ((out - mean) * contrast + mean + bright).clamp_(0, 1), boxes


Share = float | Callable[[float], float]  # a part's share of every batch, or its share at training progress t


def train_detector(parts: list[tuple[Photos, Share]], s: Settings, seed: int, name: str = "",
                   paste_from: Photos | None = None) -> PlateDetector:
    """Train a fresh detector on a mix of photo sets (each (photos, share of every batch)), with plates of
    `paste_from` pasted into s.paste of every batch's crops; with a name, its loss is printed at every quarter
    of the steps."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(DATA_SEED + seed)
    dev = torch.device(s.device)
    # initial weights drawn on the CPU (the same detector on every device); channels-last: oneDNN's fast layout
    #   (~25 % less a step on the CPU), and cuDNN's for bf16 convolutions
    model = PlateDetector().to(dev, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=1e-4)
    warm = max(1, s.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, k / max(1, s.steps)))))
    model.train()
    t0, seen = time.perf_counter(), []
    for step in range(s.steps):
        xs, bs = [], []
        counts = _split(s.batch, [share(step / s.steps) if callable(share) else share for _, share in parts])
        for (photos, _), k in zip(parts, counts):
            if k:
                x, b = sample_batch(photos, k, s, g)
                xs.append(x)
                bs += b
        x = torch.cat(xs)  # (B, 3, crop, crop) in [0, 1]
        if paste_from is not None and s.paste > 0:  # (no draw at 0: the mixes stay as they were)
            x, bs = paste_plates(x, bs, paste_from.images, paste_from.boxes, s.paste, generator=g,
                                 harmonise=Harmonise() if s.paste_harmonise else None, context=s.paste_context)
        x = x.to(dev).contiguous(memory_format=torch.channels_last)  # (B, 3, crop, crop) in [0, 1]
        targets = encode_targets(bs, x.shape[-2:], s.heat_spread, s.dense)  # on the CPU; the loss moves them
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=s.bf16):
            out = model(x)
        loss, _ = detection_loss(out, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        seen.append(loss.detach())  # read only when printed: no wait for the device every step
        if name and (step + 1) % max(1, s.steps // 4) == 0:
            print(f"    {name}: step {step + 1}/{s.steps}, loss {statistics.mean(map(float, seen[-50:])):.3f}, "
                  f"{(time.perf_counter() - t0) / (step + 1):.2f} s/step", flush=True)
    return model.eval()


def mix_share(s: Settings, t: float) -> float:
    """real+stream's synthetic share of the batch at training progress t in [0, 1)."""
    return s.mix_share if s.mix_schedule == "constant" else 2 * s.mix_share * (1 - t)


def mix_parts(real: Photos, synthetic: Photos, s: Settings) -> list[tuple[Photos, Share]]:
    """real+stream's training parts: the real photos and the synthetic pool, shared by s.mix_schedule."""
    return [(real, lambda t: 1 - mix_share(s, t)), (synthetic, lambda t: mix_share(s, t))]


def _split(total: int, shares: list[float]) -> list[int]:
    raw = [total * x / sum(shares) for x in shares]
    out = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: out[i] - raw[i])[: total - sum(out)]:
        out[i] += 1
    return out


def half_size(photos: Photos) -> Photos:
    """The photos at half their size (area-averaged), for the coarse test pass."""
    images = [F.interpolate(im[None].float(), scale_factor=0.5, mode="area")[0].round().to(torch.uint8)
              for im in photos.images]
    scale = [sc * new.shape[-1] / old.shape[-1] for sc, new, old in zip(photos.scale, images, photos.images)]
    return Photos(images, [b * (sc / old) for b, sc, old in zip(photos.boxes, scale, photos.scale)], photos.ids,
                  photos.sources, scale)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.5, keep: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Greedy non-maximum suppression: boxes (k, 4) xyxy and scores (k,) -> the kept ones, best first."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    alive, kept = np.ones(len(boxes), bool), []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        kept.append(i)
        if len(kept) == keep:
            break
        lo, hi = np.maximum(boxes[i, :2], boxes[:, :2]), np.minimum(boxes[i, 2:], boxes[:, 2:])
        inter = np.clip(hi - lo, 0, None).prod(1)
        alive &= inter <= iou * (area[i] + area - inter)
    return boxes[kept], scores[kept]


def detect_two_scale(model: PlateDetector, photos: Photos, s: Settings, coarse: Photos | None = None
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
    """detect() at the photos' size, and with s.coarse_from also at half it (`coarse`: half_size(photos), made
    here when not given): the detections at least s.coarse_from px wide at the photos' size come from the half-size
    pass, the narrower ones from the full-size pass, merged by NMS at IoU 0.5."""
    fine = detect(model, photos, s.bf16, flip=s.flip_test)
    if s.coarse_from is None:
        return fine
    wide = detect(model, coarse if coarse is not None else half_size(photos), s.bf16, flip=s.flip_test)
    out = []
    for (fb, fs), (wb, ws), sc in zip(fine, wide, photos.scale):
        a, b = (fb[:, 2] - fb[:, 0]) * sc < s.coarse_from, (wb[:, 2] - wb[:, 0]) * sc >= s.coarse_from
        out.append(nms(np.concatenate([fb[a], wb[b]]), np.concatenate([fs[a], ws[b]])))
    return out


@torch.no_grad()
def detect(model: PlateDetector, photos: Photos, bf16: bool, batch: int = 8, flip: bool = False
           ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per test photo (boxes (k, 4) xyxy in its original pixels, scores (k,)), the top 100; with `flip`, the
    outputs on the photos and on their mirror images merged (flip_merge) before decoding. Runs on the model's
    device."""
    dev = next(model.parameters(), torch.empty(0)).device  # a module without parameters: the CPU
    order = sorted(range(len(photos)), key=lambda i: tuple(photos.images[i].shape))
    out: list = [None] * len(photos)
    for start in range(0, len(order), batch):
        idx = order[start: start + batch]
        h = max(photos.images[i].shape[1] for i in idx)
        w = max(photos.images[i].shape[2] for i in idx)
        H, W = -(-h // 32) * 32, -(-w // 32) * 32
        x = torch.full((len(idx), 3, H, W), 0.5)
        for k, i in enumerate(idx):
            img = photos.images[i]
            x[k, :, : img.shape[1], : img.shape[2]] = img.float() / 255
        x = x.to(dev).contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            outputs = model(x)
            if flip:  # the padding is mirrored too: it is uniform grey, and the cells line up (W % 32 == 0)
                outputs = flip_merge(outputs, model(x.flip(-1)))
        for k, (boxes, scores) in enumerate(decode(*outputs)):
            i = idx[k]
            out[i] = ((boxes / photos.scale[i]).cpu().numpy(), scores.cpu().numpy())
    return out


# ---- metrics ---------------------------------------------------------------------------------------

def coco_metrics(gt: dict, dets: dict, ids: list) -> dict[str, float]:
    """AP50, AP (0.50:0.95) and recall at IoU 0.5 (100 detections) of `dets` {image id: (boxes xyxy,
    scores)} on the ground truth images `ids` (pycocotools)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        results = [{"image_id": i, "category_id": 1, "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]),
                                                              float(b[3] - b[1])], "score": float(sc)}
                   for i in ids for b, sc in zip(*dets[i])]
        if not results:
            return {"ap50": 0.0, "ap": 0.0, "recall": 0.0}
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.params.imgIds = list(ids)
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    recall = ev.eval["recall"][0, 0, 0, -1]  # IoU 0.5, class, area all, 100 detections
    return {"ap50": max(0.0, float(ev.stats[1])), "ap": max(0.0, float(ev.stats[0])), "recall": max(0.0, float(recall))}


def plate_gt(annotations: Path, ids: set) -> dict:
    """The COCO ground truth of the test photos: plate boxes only (category 1), as the photos hold them."""
    coco = json.loads(annotations.read_text(encoding="utf-8"))
    sp = ScenePhotos(annotations, max_side=64, cache_bytes=0)
    anns, images = [], []
    for p in sp.photos:
        if p.image_id not in ids:
            continue
        images.append({"id": p.image_id, "width": p.width, "height": p.height})
        for x0, y0, x1, y1 in p.boxes:
            anns.append({"id": len(anns) + 1, "image_id": p.image_id, "category_id": 1, "iscrowd": 0,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)})
    return {"info": coco.get("info", {}), "images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "plate"}]}


# ---- jobs ------------------------------------------------------------------------------------------

@dataclass
class Context:
    real: Path  # annotations.json of the real photos
    holdout: Path | None
    s: Settings
    workdir: Path
    base: dict  # --stream-options: PlateGANStream keyword arguments for every synthetic source


_CTX: Context | None = None
_THREADS = 1
_DATA: dict = {}


def _init_worker(ctx: Context, threads: int) -> None:
    global _CTX, _THREADS
    _CTX, _THREADS = ctx, threads
    torch.set_num_threads(max(1, threads))
    _DATA.clear()


def load_test(real: Path, holdout: Path | None, s: Settings) -> Photos:
    """The test photos: every photo of `holdout`, else the validation split of `real`, at `s.test_side` px."""
    up = s.test_side > s.side
    return (load_photos(holdout, s.test_side, upscale=up) if holdout
            else load_photos(real, s.test_side, split_ids(real)[1], upscale=up))


def _data() -> dict:
    """This process's photos, loaded once: train, test, and the low-data subset of train."""
    if not _DATA:
        ctx = _CTX
        _DATA["train"] = load_photos(ctx.real, ctx.s.side, split_ids(ctx.real)[0])
        _DATA["test"] = load_test(ctx.real, ctx.holdout, ctx.s)
        _DATA["coarse"] = half_size(_DATA["test"]) if ctx.s.coarse_from else None
        _DATA["low"] = low_data_ids(_DATA["train"])
    return _DATA


def source_options(source: str, ctx: Context, low: bool = False) -> dict:
    """PlateGANStream keyword arguments of a synthetic source (low: its photos are the low-data subset),
    with --stream-options on top (a "scene" dict there changes single Scene fields of the source's)."""
    base = dict(ctx.base)
    scene_fields = base.pop("scene", {})
    if source == "procedural":
        return {**base, "backgrounds": "procedural", "scene": Scene(**scene_fields)}
    if source == "default":
        return {**base, **({"scene": Scene(**scene_fields)} if scene_fields else {})}
    d = _data()
    ids = [d["train"].ids[i] for i in d["low"]] if low else d["train"].ids
    folder = ctx.workdir
    coco = subset_coco(ctx.real, set(ids), folder)
    prior_file = folder / f"prior_{len(ids)}.toml"
    if not prior_file.exists():
        ScenePrior.from_coco(coco, components=min(4, max(1, sum(len(d["train"].boxes[i]) for i in range(
            len(d["train"])) if not low or i in d["low"]) // 16))).save(prior_file)
    real_plates = "erase" if source == "paste" else "replace"
    scene = Scene(**{"prior": ScenePrior.load(prior_file), "real_plates": real_plates, **scene_fields})
    return {**base, "scenes": str(coco), "scene": scene}


def synthetic_pool(source: str, n: int, low: bool = False) -> Photos:
    """n scenes of a synthetic source (stream seed DATA_SEED + Settings.pool_seed), kept as uint8."""
    ctx = _CTX
    stream = PlateGANStream(mode="scene", seed=DATA_SEED + ctx.s.pool_seed, batch_size=min(16, n),
                            length=-(-n // min(16, n)), image_size=ctx.s.scene_size, **source_options(source, ctx, low))
    images, boxes = [], []
    for x, targets in stream:
        for img, t in zip(x, targets):
            images.append((img * 255).round().to(torch.uint8))
            boxes.append(t["boxes"].as_subclass(torch.Tensor).float())
    return Photos(images[:n], boxes[:n])


def pool_file(source: str, low: bool) -> Path:
    return _CTX.workdir / f"pool_{source}{'_low' if low else ''}.pt"


def _draw_pool(source: str, low: bool) -> None:
    pool = synthetic_pool(source, _CTX.s.pool, low)
    torch.save({"images": pool.images, "boxes": pool.boxes}, pool_file(source, low))


def pool_job(source: str, low: bool) -> dict:
    """Draw a synthetic source's pool once per run (every seed's detector trains on it, drawing its
    own crops) and save it in the run's folder for the detector jobs. It is drawn in a short-lived
    process of its own: a process that has drawn a pool of 1,500 scenes trains detectors about a fifth
    slower ever after (2-core Xeon, 2026-12-06: 0.25-0.26 -> 0.29-0.32 s a step, also with glibc's
    own malloc settings, after malloc_trim and gc.freeze; loading a saved pool costs nothing)."""
    t0 = time.perf_counter()
    in_fresh_process(_draw_pool, source, low, init=_init_worker, initargs=(_CTX, _THREADS))
    return {"source": source, "low": low, "time_s": time.perf_counter() - t0}


def load_pool(source: str, low: bool) -> Photos:
    """The pool pool_job saved (this process keeps the last one loaded)."""
    key = ("pool", source, low)
    if key not in _DATA:
        for k in [k for k in _DATA if isinstance(k, tuple)]:
            del _DATA[k]
        saved = torch.load(pool_file(source, low), weights_only=True)
        _DATA[key] = Photos(saved["images"], saved["boxes"])
    return _DATA[key]


def source_job(source: str, seed: int, mix: str | None) -> dict:
    """Train one detector for (source, seed) and detect on every test photo."""
    ctx = _CTX
    s = ctx.s
    t0 = time.perf_counter()
    d = _data()
    low = source.endswith("@10%")
    real = d["train"].subset(d["low"]) if low else d["train"]
    pasted = None
    if source in SYNTHETIC:
        parts = [(load_pool(source, False), 1.0)]
    elif source.startswith("real+stream"):
        pasted = load_pool(mix, low)
        parts = mix_parts(real, pasted, s)
    else:
        parts = [(real, 1.0)]
    data_s = time.perf_counter() - t0
    model = train_detector(parts, s, seed, f"{source} seed {seed}", pasted)
    train_s = time.perf_counter() - t0 - data_s
    dets = detect_two_scale(model, d["test"], s, d["coarse"])
    return {"source": source, "seed": seed, "dets": {i: dets[k] for k, i in enumerate(d["test"].ids)},
            "data_s": data_s, "train_s": train_s, "time_s": time.perf_counter() - t0}


# ---- the run ----------------------------------------------------------------------------------------

def save_dets(path: Path, by_source: dict[str, dict[int, dict]]) -> None:
    """Every detector's detections on the test photos, for analysis after the run: one (n, 6) array
    [image id, x0, y0, x1, y1, score] (original photo pixels) per "source|seed" key, compressed."""
    arrays = {}
    for source, seeds in by_source.items():
        for seed, dets in seeds.items():
            rows = [np.concatenate([np.full((len(b), 1), i), b.reshape(-1, 4), sc.reshape(-1, 1)], 1)
                    for i, (b, sc) in dets.items()]
            arrays[f"{source}|{seed}"] = (np.concatenate(rows) if rows else np.zeros((0, 6))).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def run(real: Path, holdout: Path | None, sources: list[str], s: Settings, jobs: int, threads: int,
        mix: str | None, figure: Path | None, base: dict | None = None, dets_path: Path | None = None) -> dict:
    """The whole benchmark; its working folder (split COCO files, priors, the pools: ~1 GB each at
    1,500 scenes) is removed at the end, also when the run fails."""
    workdir = Path(tempfile.mkdtemp(prefix="plateaug-detection-"))
    try:
        return _run(Context(real, holdout, s, workdir, base or {}), sources, jobs, threads, mix, figure, dets_path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(ctx: Context, sources: list[str], jobs: int, threads: int, mix: str | None, figure: Path | None,
         dets_path: Path | None) -> dict:
    t0 = time.perf_counter()
    real, holdout, s, base = ctx.real, ctx.holdout, ctx.s, ctx.base
    _init_worker(ctx, threads)
    d = _data()
    test = d["test"]
    gt = plate_gt(holdout or real, set(test.ids))
    test_sources = sorted(set(test.sources))
    print(f"real: {real} (train {len(d['train'])} photos, {sum(len(b) for b in d['train'].boxes)} plates; low-data "
          f"arm {len(d['low'])}); test: {holdout or 'validation split'} ({len(test)} photos, "
          + ", ".join(f"{x} {test.sources.count(x)}" for x in test_sources) + f"); {s.steps} steps of {s.batch} "
          f"crops of {s.crop} px, photos at {s.side} px, pool {s.pool} scenes per synthetic source, "
          f"{s.seeds} seeds, {'bf16 autocast' if s.bf16 else 'fp32'} on {s.device}, {jobs} job(s) x {threads} "
          "thread(s)", flush=True)
    seeds = list(range(s.seeds))
    by_source: dict[str, dict[int, dict]] = {}
    times: dict[str, float] = {}

    def collect(futures):
        for f in as_completed(futures):
            out = f.result()
            by_source.setdefault(out["source"], {})[out["seed"]] = out["dets"]
            times[out["source"]] = times.get(out["source"], 0.0) + out["time_s"]
            m = coco_metrics(gt, out["dets"], test.ids)
            print(f"  {out['source']} seed {out['seed']}: AP50 {m['ap50']:.3f}, AP {m['ap']:.3f}, recall "
                  f"{m['recall']:.3f} ({out['time_s']:.0f} s: data {out['data_s']:.0f}, train {out['train_s']:.0f})",
                  flush=True)

    def after_pools(jobs_by_pool: dict[tuple[str, bool] | None, list[tuple]]) -> list:
        """Submit the pools still to draw first, then the jobs needing no pool (key None) or a drawn one, and
        every other job as soon as its pool is drawn: no worker idles while a pool is drawn."""
        waiting = {ex.submit(pool_job, *key): key for key in jobs_by_pool
                   if key is not None and not pool_file(*key).exists()}
        futures = [ex.submit(source_job, *a) for key, args in jobs_by_pool.items()
                   if key not in waiting.values() for a in args]
        for f in as_completed(waiting):
            out = f.result()
            times[out["source"]] = times.get(out["source"], 0.0) + out["time_s"]
            print(f"  pool of {s.pool} `{out['source']}` scenes{' (low-data photos)' if out['low'] else ''}: "
                  f"{out['time_s']:.0f} s", flush=True)
            futures += [ex.submit(source_job, *a) for a in jobs_by_pool[waiting[f]]]
        return futures

    first = [x for x in SOURCES if x in sources and not x.startswith("real+stream")]
    with executor(jobs, _init_worker, (ctx, threads)) as ex:
        by_pool: dict = {}  # the first phase's jobs by the pool they train on (None: the real photos)
        for x in first:
            by_pool.setdefault((x, False) if x in SYNTHETIC else None, []).extend((x, k, None) for k in seeds)
        collect(after_pools(by_pool))
        if any(x.startswith("real+stream") for x in sources):
            if mix is None:
                done = [x for x in SYNTHETIC if x in by_source]
                if not done:
                    raise SystemExit("error: real+stream needs a synthetic source in --sources or --mix-source")
                mix = max(done, key=lambda x: statistics.mean(coco_metrics(gt, by_source[x][k], test.ids)["ap50"]
                                                              for k in by_source[x]))
            pct = f"{100 * s.mix_share:g}%"
            share = (f"{pct} of every batch" if s.mix_schedule == "constant"
                     else f"{200 * s.mix_share:g}% of the first batch falling to none, {pct} in all")
            how = ((", harmonised" if s.paste_harmonise else "")
                   + (f", with {s.paste_context:g}x its width round it" if s.paste_context else ""))
            pasted = f", one of its plates pasted into {100 * s.paste:g}% of the crops{how}" if s.paste > 0 else ""
            print(f"  real+stream mixes in `{mix}` ({share}{pasted})", flush=True)
            collect(after_pools({(mix, x.endswith("@10%")): [(x, k, mix) for k in seeds]
                                 for x in sources if x.startswith("real+stream")}))
    rows = []
    groups = {"all": test.ids, **{x: [i for i, src in zip(test.ids, test.sources) if src == x] for x in test_sources}}
    for source in [x for x in SOURCES if x in by_source]:
        for name, ids in groups.items():
            ms = [coco_metrics(gt, by_source[source][k], ids) for k in sorted(by_source[source])]
            ap50 = [m["ap50"] for m in ms]
            rows.append({"source": source, "test_source": name, "ap50_mean": statistics.mean(ap50),
                         "ap50_std": statistics.pstdev(ap50), "ap_mean": statistics.mean(m["ap"] for m in ms),
                         "recall_mean": statistics.mean(m["recall"] for m in ms), "seeds": len(ms),
                         "n_test": len(ids)})
    text = table(rows, mix, time.perf_counter() - t0)
    print(text)
    if dets_path is not None:
        save_dets(dets_path, by_source)
        print(f"detections: {dets_path}")
    if figure is not None and draw_figure(figure, test, {x: by_source[x][min(by_source[x])] for x in SOURCES
                                                         if x in by_source}, shippable_ids(holdout or real)):
        print(f"figure: {figure}")
    return {"rows": rows, "mix_source": mix, "settings": asdict(s), "sources": sources, "stream_options": base or {},
            "real": str(real), "holdout": str(holdout) if holdout else None, "jobs": jobs, "threads_per_job": threads,
            "time_per_source_s": times, "runtime_s": round(time.perf_counter() - t0, 1), "machine": machine(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "text": text}


def table(rows: list[dict], mix: str | None, total: float) -> str:
    tests = list(dict.fromkeys(r["test_source"] for r in rows))
    lines = ["", f"{'source':<18}" + "".join(f"{t:>22}" for t in tests)]
    for source in dict.fromkeys(r["source"] for r in rows):
        cells = {r["test_source"]: r for r in rows if r["source"] == source}
        lines.append(f"{source:<18}" + "".join(
            f"{cells[t]['ap50_mean']:>10.3f} ± {cells[t]['ap50_std']:.3f} ({cells[t]['recall_mean']:.2f})"
            if t in cells else f"{'':>22}" for t in tests))
    lines.append("AP50 mean ± std over seeds (recall at IoU 0.5 in brackets) on the real test photos"
                 + (f"; real+stream mixes in `{mix}`" if mix else "") + f"; total {total:.0f} s")
    return "\n".join(lines)


def shippable_ids(annotations: Path) -> set:
    """Ids of the photos whose licence lets a picture of them ship (FIGURE_LICENCES; none without the field)."""
    coco = json.loads(annotations.read_text(encoding="utf-8"))
    return {im["id"] for im in coco["images"] if str(im.get("licence", "")).startswith(FIGURE_LICENCES)}


def figure_picks(test: Photos, shippable: set, n: int = FIGURE_PHOTOS) -> list[int]:
    """Indices of up to n test photos with plates, spread evenly over the shippable ones."""
    cand = [i for i, iid in enumerate(test.ids) if iid in shippable and len(test.boxes[i])]
    return cand[:: max(1, len(cand) // n)][:n]


def draw_figure(path: Path, test: Photos, dets: dict, shippable: set) -> bool:
    """Detections (red, score >= SCORE_SHOWN) of each source's seed-0 detector on the same test photos,
    ground truth in green: one row per source, on shippable photos only; False (nothing drawn) if none is."""
    from PIL import Image, ImageDraw

    picks = figure_picks(test, shippable)
    if not picks:
        print(f"figure not drawn: no test photo has a licence starting with {' or '.join(FIGURE_LICENCES)} "
              f"(the image field `licence`), and only those may be shown", flush=True)
        return False
    cw, ch = 256, 160
    sheet = Image.new("RGB", (cw * len(picks) + 110, ch * len(dets)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (source, det) in enumerate(dets.items()):
        draw.text((4, r * ch + ch // 2), source, fill=(0, 0, 0))
        for c, i in enumerate(picks):
            img = test.images[i]
            pil = Image.fromarray(img.permute(1, 2, 0).numpy())
            s = min(cw / pil.width, ch / pil.height)
            pil = pil.resize((max(1, int(pil.width * s)), max(1, int(pil.height * s))))
            d = ImageDraw.Draw(pil)
            k = s * test.scale[i]  # original px -> thumbnail px
            for b in test.boxes[i]:
                d.rectangle([float(v) * s for v in b], outline=(0, 220, 0), width=2)
            boxes, scores = det[test.ids[i]]
            for b, sc in zip(boxes, scores):
                if sc >= SCORE_SHOWN:
                    d.rectangle([float(v) * k for v in b], outline=(255, 0, 0), width=1)
            sheet.paste(pil, (110 + c * cw, r * ch))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return True


def load_dets(path: Path, test_ids: list) -> dict[str, dict]:
    """A --save-dets file back as {source: {image id: (boxes (n, 4), scores (n,))}} for each source's lowest
    seed (the figure's detector), in SOURCES order."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    out = {}
    for source in SOURCES:
        seeds = [int(k.split("|")[1]) for k in arrays if k.split("|")[0] == source]
        if seeds:
            a = arrays[f"{source}|{min(seeds)}"]
            out[source] = {i: (a[a[:, 0] == i, 1:5], a[a[:, 0] == i, 5]) for i in test_ids}
    return out


def redraw_figure(dets_path: Path, real: Path, holdout: Path | None, figure: Path, s: Settings) -> None:
    """The figure from a run's saved detections (--save-dets), on the same test photos, without training."""
    test = load_test(real, holdout, s)
    if draw_figure(figure, test, load_dets(dets_path, test.ids), shippable_ids(holdout or real)):
        print(f"figure: {figure}")


def default_figure(sources: list[str], quick: bool, changed: object) -> Path | None:
    """The README's figure only for the run its table shows (every source, the benchmark's settings): a screen
    or a --quick run does not overwrite it."""
    return FIGURE if list(sources) == list(SOURCES) and not quick and not changed else None


def resolve_device(name: str) -> str:
    """--device -> the torch device string the detectors use: "cpu", "cuda" / "cuda:N" where torch sees that
    GPU, "auto" -> "cuda" where torch sees one, else "cpu". ValueError naming the problem otherwise."""
    name = name.strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: torch sees no CUDA device here (torch {torch.__version__}, "
                             f"CUDA build {torch.version.cuda or 'none'}); use --device cpu or auto")
        if name != "cuda" and int(name[5:]) >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: torch sees {torch.cuda.device_count()} CUDA device(s)")
        return name
    raise ValueError(f"--device must be cpu, cuda, cuda:N or auto, got {name!r}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default=str(data_dir("real-scenes")),
                    help="folder with annotations.json (COCO, plate boxes; image field `source`)")
    ap.add_argument("--holdout", help="folder with annotations.json: every photo is a test photo")
    ap.add_argument("--sources", default=",".join(SOURCES),
                    help="comma list of " + ", ".join(SOURCES).replace("%", "%%"))  # argparse formats % in help
    ap.add_argument("--stream-options", default="{}", help="JSON PlateGANStream keyword arguments for every synthetic "
                    "source; a \"scene\" object there sets Scene fields (e.g. '{\"generator_share\": 0}', "
                    "'{\"scene\": {\"harmonise\": null}}')")
    ap.add_argument("--mix-source", choices=SYNTHETIC, help="the synthetic source real+stream mixes in "
                    "(default: the best by AP50 in this run)")
    for name in ("steps", "batch", "crop", "seeds", "pool", "side"):
        ap.add_argument(f"--{name}", type=int)
    ap.add_argument("--pool-seed", type=int, help="draw the synthetic pools with stream seed DATA_SEED + this "
                    "(default 0): other scenes of the same sources")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--heat-spread", type=float, help="elliptical heatmap peaks, sigma = this x box side / 6 "
                    f"(TTFNet; default {Settings.heat_spread}); 0: CenterNet's round peaks")
    ap.add_argument("--dense", action=argparse.BooleanOptionalAction, help="learn box size and offset at every "
                    f"cell of a box's peak (default), or at its centre only (--no-dense; default {Settings.dense})")
    ap.add_argument("--coarse-from", type=int, help="detections at least this many px wide come from a second test "
                    "pass at half the size (default: none, one pass)")
    ap.add_argument("--flip-test", action=argparse.BooleanOptionalAction, help="test each photo also mirrored, the "
                    f"outputs averaged (CenterNet's flip test; default {Settings.flip_test}), or not (--no-flip-test)")
    ap.add_argument("--mosaic", type=float, help="share of training crops that are 2x2 mosaics of half-side crops "
                    f"(YOLOv4's mosaic; default {Settings.p_mosaic})")
    ap.add_argument("--around-plate", type=float, help="share of training crops centred near a plate (the rest "
                    f"anywhere; default {Settings.p_around_plate})")
    ap.add_argument("--mix-share", type=float, help="real+stream: the synthetic share of every batch (default 0.125)")
    ap.add_argument("--paste", type=float, help="real+stream: share of its crops into which one plate of the "
                    f"mixed-in scenes is pasted (copy-paste; default {Settings.paste}; 0: none)")
    ap.add_argument("--paste-harmonise", action=argparse.BooleanOptionalAction, help="real+stream: pasted plates "
                    "take the light, colour and focus of their place (plateaug.Harmonise) instead of a brightness pull "
                    f"(default {Settings.paste_harmonise})")
    ap.add_argument("--paste-context", type=float, help="real+stream: each pasted plate comes with this x its width "
                    f"of its scene on every side (its car; default {Settings.paste_context}: the box alone)")
    ap.add_argument("--mix-schedule", choices=("constant", "decay"), help="real+stream: the share constant "
                    "(default), or falling linearly from twice --mix-share to none (synthetic first, then real)")
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast "
                    "(the default on CUDA, and on a CPU only where it has bf16 units)")
    ap.add_argument("--device", default="cpu", help="where the detectors train and test: cpu (default), cuda, "
                    "cuda:N, or auto (cuda where there is one); the crops and synthetic pools are made on the CPU")
    ap.add_argument("--quick", action="store_true", help="a few steps on tiny inputs: seconds (smoke test)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="detectors trained at a time")
    ap.add_argument("--threads", type=int, help="torch threads per job (default: cores / jobs)")
    ap.add_argument("--json")
    ap.add_argument("--txt")
    ap.add_argument("--save-dets", help="write every detector's test detections to this .npz (for analysis)")
    ap.add_argument("--figure", default=None, help=f"detections figure (default {FIGURE.relative_to(FIGURE.parents[2])}"
                    " for a whole run with the benchmark's settings; none for a screen or --quick)")
    ap.add_argument("--figure-from", help="redraw the figure (the README's, or --figure) from a run's --save-dets "
                    "file, on the same test photos, and stop (no training)")
    args = ap.parse_args(argv)
    sources = [x.strip() for x in args.sources.split(",") if x.strip()]
    if unknown := [x for x in sources if x not in SOURCES]:
        ap.error(f"--sources: unknown {unknown}; choose from {list(SOURCES)}")
    real = Path(args.real)
    if problem := missing_data("--real", real, "annotations.json"):
        ap.error(problem)
    holdout = Path(args.holdout) if args.holdout else None
    if holdout is not None and (problem := missing_data("--holdout", holdout, "annotations.json")):
        ap.error(problem)
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        ap.error(f"--jobs and --threads must be >= 1, got {args.jobs} and {args.threads}")
    numbers = ("steps", "batch", "crop", "seeds", "pool", "side", "lr", "mix_share", "heat_spread", "coarse_from")
    given = {k: v for k in numbers if (v := getattr(args, k)) is not None}
    if "mix_share" in given and not 0 < given["mix_share"] < 1:
        ap.error(f"--mix-share must be between 0 and 1, got {given['mix_share']}")
    for flag, key in (("paste", "paste"), ("mosaic", "p_mosaic"), ("around_plate", "p_around_plate")):  # shares
        if (v := getattr(args, flag)) is not None:
            if not 0 <= v <= 1:
                ap.error(f"--{flag.replace('_', '-')} must be between 0 and 1, got {v}")
            given[key] = v
    if args.paste_context is not None:
        if not 0 <= args.paste_context <= 4:
            ap.error(f"--paste-context must be between 0 and 4, got {args.paste_context}")
        given["paste_context"] = args.paste_context
    if args.paste_harmonise is not None:
        given["paste_harmonise"] = args.paste_harmonise
    if args.pool_seed is not None:
        if args.pool_seed < 0:
            ap.error(f"--pool-seed must be >= 0, got {args.pool_seed}")
        given["pool_seed"] = args.pool_seed
    schedule = {"mix_schedule": args.mix_schedule} if args.mix_schedule else {}
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        ap.error(str(e))
    on_gpu = {"device": device, **({} if args.fp32 else {"bf16": True})} if device != "cpu" else {}
    if args.mix_schedule == "decay" and given.get("mix_share", Settings.mix_share) > 0.5:
        ap.error(f"--mix-schedule decay starts at twice --mix-share: it must be <= 0.5, got {given['mix_share']}")
    for k, v in given.items():
        if k not in numbers:  # the shares, switches and the pool seed: checked above
            continue
        if k in ("heat_spread", "coarse_from") and v == 0:
            given[k] = None  # CenterNet's round peaks; one test pass
        elif v <= 0 or (k == "crop" and v % 32) or (k == "side" and v < 64):
            ap.error(f"--{k.replace('_', '-')} must be > 0" + (" and a multiple of 32" if k == "crop" else "") +
                     (" and >= 64" if k == "side" else "") + f", got {v}")
    s = Settings(**{**(QUICK if args.quick else {}), **given, **schedule, **on_gpu,
                    **({"bf16": False} if args.fp32 else {}),
                 **({"dense": args.dense} if args.dense is not None else {}),
                 **({"flip_test": args.flip_test} if args.flip_test is not None else {})})
    try:
        base = json.loads(args.stream_options)
        if not isinstance(base, dict) or {"mode", "seed", "batch_size", "length", "image_size"} & set(base):
            raise ValueError("a JSON object without mode, seed, batch_size, length, image_size")
        Scene(**base.get("scene", {}))
    except (ValueError, TypeError) as e:
        ap.error(f"--stream-options: {e}")
    if args.figure_from:
        if not Path(args.figure_from).is_file():
            ap.error(f"--figure-from {args.figure_from} is not a file (a run's --save-dets .npz)")
        redraw_figure(Path(args.figure_from), real / "annotations.json",
                      holdout / "annotations.json" if holdout else None, Path(args.figure or FIGURE), s)
        return {}
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    torch.set_num_threads(threads)
    figure = Path(args.figure) if args.figure else default_figure(sources, args.quick, given or schedule or on_gpu
                                                                  or base
                                                                  or args.fp32 or args.dense is not None
                                                                  or args.mix_source or args.flip_test is not None)
    payload = run(real / "annotations.json", holdout / "annotations.json" if holdout else None, sources, s, args.jobs,
                  threads, args.mix_source, figure, base, Path(args.save_dets) if args.save_dets else None)
    write_outputs(payload, args.json, args.txt)
    return payload


if __name__ == "__main__":
    main()
