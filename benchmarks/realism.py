"""Sim-to-real realism: does training on plateaug's synthetic plates transfer to real plates?

For each real region and each synthetic source, N synthetic crops (32x128) are generated once,
the same small CRNN (plateaug.models.crnn) is trained on them with CTC (same steps, lr, batch and
seeds for every source) and tested on the real crops of that region: exact-plate accuracy and
per-character accuracy (1 - CER from edit distance, clipped at 0), mean ± std over seeds.
A classifier two-sample test (C2ST) per region and source asks how well a small CNN tells real
from synthetic crops on held-out data (0.5 = indistinguishable, 1.0 = always told apart).

Sources (all rendered by PlateGANStream at image_size 32x128, same seed, so the same plate texts):
    clean    clean renders (generator=None, augment="none")
    classic  clean renders + a classic photometric kornia pipeline (`classic_augment`: motion and
             defocus blur, colour jitter, plasma shadow, Gaussian noise, JPEG; no geometry), the
             degradations the generator is meant to learn: classic vs gan compares appearance alone
    gan      the pix2pix generator (--onnx), no augmentation
    gan+aug  the generator + the stream's "light" preset (mild perspective/affine, blur, colour,
             noise): the stream's default configuration (--gan-aug heavy for the heavy preset)

Held-out real data: only crops in the generator's validation split (plateaug.training.realdata.
is_validation, 25 percent by file-name hash: the split the trainer used) are recognition test
crops and C2ST test crops. The C2ST classifier trains on the region's training-split real crops
(which the generator saw; the classifier's own test is still held out from both) against as
many synthetic crops, and is tested on the validation-split crops against as many other
synthetic crops, balanced.

    python benchmarks/realism.py [--real DIR] [--regions br,eu,us] [--n N] [--seeds K] [--steps S]
                                 [--quick] [--json OUT] [--onnx PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(ROOT))
from common import machine, write_json  # noqa: E402

from plateaug.generator.backends import DEFAULT_ONNX  # noqa: E402
from plateaug.models.crnn import CRNN, greedy_decode  # noqa: E402
from plateaug.renderer.spec_loader import load_region  # noqa: E402
from plateaug.stream.dataset import PlateGANStream  # noqa: E402
from plateaug.training.realdata import load_real  # noqa: E402

DEFAULT_REAL = ROOT.parent / "shared" / "data" / "real-plates"
SIZE = (32, 128)  # (H, W) of every crop, synthetic and real
SOURCES = ("clean", "classic", "gan", "gan+aug")
# real region (labels.csv) -> synthetic regions with weights
REGION_MAP: dict[str, dict[str, float]] = {
    "br": {"br_old": 1},
    "eu": {"eu_sk": 2, "eu_de": 1},  # the real eu crops are mostly Slovak "RK248AH" style, some German
    "us": {"us": 1},
}
DATA_SEED = 20240  # synthetic sets: the same seed for every source, so every source has the same plate texts
CHUNK = 250  # plates per make_batch call (bounds the generator's memory)


@dataclass(frozen=True)
class Settings:
    """Everything that defines one benchmark run (identical for every source)."""

    n: int = 2000  # synthetic training crops per (region, source)
    seeds: int = 3  # CRNN / C2ST training seeds
    steps: int = 400  # CRNN optimiser steps
    batch: int = 32
    lr: float = 3e-3  # peak of the one-cycle schedule (AdamW)
    n_check: int = 200  # extra synthetic crops (other seed) to check the CRNN learned its own source
    c2st_epochs: int = 10
    gan_aug: str = "light"


QUICK = dict(n=64, seeds=1, steps=10, batch=32, n_check=16, c2st_epochs=2)


# -- data -----------------------------------------------------------------------------------------

def classic_augment() -> nn.Module:
    """The classic source's kornia pipeline: photometric only (blur, noise, colour, shadow, JPEG),
    the degradations the generator is meant to learn, so classic and gan differ in appearance alone.
    Strengths follow the "heavy" preset, blur kernels scaled to 32x128 crops."""
    return K.AugmentationSequential(
        K.RandomMotionBlur((3, 5), angle=45.0, direction=0.5, p=0.35),
        K.RandomGaussianBlur((5, 5), (0.3, 1.0), p=0.3),  # defocus
        K.ColorJiggle(0.35, 0.35, 0.35, 0.05, p=0.7),
        K.RandomPlasmaShadow(roughness=(0.1, 0.5), shade_intensity=(-0.5, 0.0), shade_quantity=(0.0, 0.4), p=0.3),
        K.RandomGaussianNoise(std=0.04, p=0.5),
        K.RandomJPEG(jpeg_quality=(30.0, 90.0), p=0.4),
        data_keys=["input", "keypoints"])


def source_options(source: str, generator, gan_aug: str) -> dict:
    """PlateGANStream keyword arguments (generator, augment) of one source."""
    return {"clean": dict(generator=None, augment="none"), "classic": dict(generator=None, augment=classic_augment()),
            "gan": dict(generator=generator, augment="none"),
            "gan+aug": dict(generator=generator, augment=gan_aug)}[source]


def synthesize(region: str, source: str, n: int, seed: int, generator, gan_aug: str) -> tuple[torch.Tensor, list[str]]:
    """n synthetic crops of one source: images (n, 3, 32, 128) float in [0, 1] and their texts."""
    stream = PlateGANStream(regions=REGION_MAP[region], image_size=SIZE, seed=seed,
                            **source_options(source, generator, gan_aug))
    images, texts = [], []
    for i, start in enumerate(range(0, n, CHUNK)):
        batch = stream.make_batch(min(CHUNK, n - start), seed * 1000 + i)
        images.append(batch.images.cpu())
        texts += batch.texts
    return torch.cat(images), texts


def load_real_crops(folder: Path, regions: list[str]) -> dict[str, dict[str, tuple[torch.Tensor, list[str]]]]:
    """{region: {"train"|"val": (images (N, 3, 32, 128), texts)}}: the generator's split, at 32x128."""
    real = load_real(folder, canvases={r: SIZE for r in regions}, regions=regions)
    out = {}
    for r in regions:
        if r not in real.val or r not in real.train:
            have = {"train": sorted(real.train), "val": sorted(real.val)}
            raise SystemExit(f"error: {folder} has no {'validation' if r not in real.val else 'training'}-split "
                             f"crops of region {r!r} (regions found per split: {have})")
        out[r] = {split: (getattr(real, split)[r].images, getattr(real, split)[r].texts) for split in ("train", "val")}
    return out


# -- recognition --------------------------------------------------------------------------------

def train_crnn(images: torch.Tensor, texts: list[str], charset: str, s: Settings, seed: int) -> CRNN:
    """Train a fresh CRNN with CTC on (images (N, 3, 32, 128), texts): one-cycle AdamW, shuffled epochs."""
    torch.manual_seed(seed)
    model = CRNN(len(charset))
    index = {ch: i + 1 for i, ch in enumerate(charset)}
    labels = [torch.tensor([index[ch] for ch in t], dtype=torch.int64) for t in texts]
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=s.steps, pct_start=0.15)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    g = torch.Generator().manual_seed(seed)
    order = torch.empty(0, dtype=torch.int64)
    model.train()
    for _ in range(s.steps):
        if len(order) < min(s.batch, len(texts)):
            order = torch.cat([order, torch.randperm(len(texts), generator=g)])
        idx, order = order[: s.batch], order[s.batch:]
        log_probs = model(images[idx]).log_softmax(-1)  # (T, B, C + 1)
        target = torch.cat([labels[i] for i in idx.tolist()])  # (sum L,)
        target_len = torch.tensor([len(labels[i]) for i in idx.tolist()])
        input_len = torch.full((len(idx),), log_probs.shape[0], dtype=torch.int64)
        loss = ctc(log_probs, target, input_len, target_len)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
    return model.eval()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@torch.no_grad()
def recognise(model: CRNN, images: torch.Tensor, charset: str) -> list[str]:
    """Greedy CTC strings for images (N, 3, H, W)."""
    return [p for chunk in images.split(256) for p in greedy_decode(model(chunk), charset)]


def score(pred: list[str], truth: list[str]) -> tuple[float, float]:
    """(exact-plate accuracy, per-character accuracy = 1 - total edits / total characters, >= 0)."""
    exact = sum(p == t for p, t in zip(pred, truth)) / len(truth)
    edits = sum(edit_distance(p, t) for p, t in zip(pred, truth))
    return exact, max(0.0, 1.0 - edits / max(1, sum(len(t) for t in truth)))


# -- classifier two-sample test -----------------------------------------------------------------------

class C2STNet(nn.Module):
    """Small real-vs-synthetic CNN: (B, 3, 32, 128) -> (B,) logit (real = 1)."""

    def __init__(self, ch: int = 32):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(*block(3, ch), *block(ch, 2 * ch), *block(2 * ch, 2 * ch),
                                      *block(2 * ch, 4 * ch))  # (B, 4ch, 2, 8)
        self.head = nn.Linear(4 * ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x * 2 - 1).mean((2, 3))).squeeze(1)


def c2st(real_train: torch.Tensor, real_val: torch.Tensor, synth: torch.Tensor, epochs: int, seed: int) -> float:
    """Held-out accuracy of a CNN telling real from synthetic crops, balanced classes.

    Trains on real_train vs as many synthetic crops, tests on real_val vs as many *other*
    synthetic crops (classes subsampled to the smaller side when synth is short).
    """
    g = torch.Generator().manual_seed(seed)
    n_val = min(len(real_val), len(synth) // 2)
    n_tr = min(len(real_train), len(synth) - n_val)
    perm = torch.randperm(len(synth), generator=g)
    s_tr, s_val = synth[perm[:n_tr]], synth[perm[n_tr: n_tr + n_val]]
    r_tr = real_train[torch.randperm(len(real_train), generator=g)[:n_tr]]
    r_val = real_val[torch.randperm(len(real_val), generator=g)[:n_val]]
    x = torch.cat([r_tr, s_tr])  # (2 n_tr, 3, 32, 128)
    y = torch.cat([torch.ones(n_tr), torch.zeros(n_tr)])
    torch.manual_seed(seed)
    model = C2STNet()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(32):
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            loss = F.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(torch.cat([r_val, s_val])) > 0  # (2 n_val,)
    truth = torch.cat([torch.ones(n_val), torch.zeros(n_val)]).bool()
    return float((pred == truth).float().mean())


# -- the run ------------------------------------------------------------------------------------------

def run(real_dir: Path, regions: list[str], s: Settings, onnx: Path) -> dict:
    """All regions x sources: accuracy rows, C2ST rows and a printed table; returns the JSON payload."""
    from plateaug.generator.onnx_runtime import OnnxGenerator

    t0 = time.perf_counter()
    generator = OnnxGenerator(onnx, threads=torch.get_num_threads())  # one session shared by every stream
    real = load_real_crops(real_dir, regions)
    synthetic_chars = {ch for r in regions for name in REGION_MAP[r] for ch in load_region(name).charset}
    real_chars = {ch for r in regions for _, texts in real[r].values() for t in texts for ch in t}
    charset = "".join(sorted(synthetic_chars | real_chars))  # real-only characters are never trained: errors
    seeds = list(range(s.seeds))
    print(f"real crops: {real_dir} (" + ", ".join(f"{r}: train {len(real[r]['train'][1])} / test "
                                                 f"{len(real[r]['val'][1])}" for r in regions) + ")")
    print(f"generator: {onnx}; N={s.n} synthetic crops per source, CRNN {s.steps} steps x batch {s.batch}, "
          f"lr {s.lr:g}, seeds {seeds}, gan+aug preset {s.gan_aug!r}; {len(charset)} classes + blank")
    accuracy, c2st_rows, table = [], [], []
    for region in regions:
        (r_train, _), (r_val, r_texts) = real[region]["train"], real[region]["val"]
        for source in SOURCES:
            t = time.perf_counter()
            images, texts = synthesize(region, source, s.n, DATA_SEED, generator, s.gan_aug)
            check_images, check_texts = synthesize(region, source, s.n_check, DATA_SEED + 1, generator, s.gan_aug)
            t_data = time.perf_counter() - t
            exact, char, own = [], [], []
            for seed in seeds:
                model = train_crnn(images, texts, charset, s, seed)
                e, c = score(recognise(model, r_val, charset), r_texts)
                exact.append(e)
                char.append(c)
                own.append(score(recognise(model, check_images, charset), check_texts)[0])
            acc = statistics.mean(c2st(r_train, r_val, torch.cat([images, check_images]), s.c2st_epochs, seed)
                                  for seed in seeds)
            row = {"source": source, "region": region, "exact_mean": statistics.mean(exact),
                   "exact_std": statistics.stdev(exact) if len(exact) > 1 else 0.0,
                   "char_mean": statistics.mean(char), "char_std": statistics.stdev(char) if len(char) > 1 else 0.0,
                   "seeds": len(seeds)}
            accuracy.append(row)
            c2st_rows.append({"source": source, "region": region, "accuracy": acc})
            table.append((row, acc, statistics.mean(own), time.perf_counter() - t, t_data))
            print(f"  {region}/{source}: exact {row['exact_mean']:.3f}, char {row['char_mean']:.3f}, C2ST {acc:.3f} "
                  f"({time.perf_counter() - t:.0f} s, data {t_data:.0f} s)", flush=True)
    print_table(table)
    print(f"total {time.perf_counter() - t0:.0f} s")
    return {"accuracy": accuracy, "c2st": c2st_rows, "machine": machine(),
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def print_table(table: list[tuple[dict, float, float, float, float]]) -> None:
    """Readable results: one line per (region, source)."""
    print(f"\n{'region':<7}{'source':<9}{'exact (real)':>16}{'char (real)':>16}{'C2ST':>7}{'own exact':>11}"
          f"{'time s':>8}")
    for row, acc, own, seconds, _ in table:
        print(f"{row['region']:<7}{row['source']:<9}{row['exact_mean']:>9.3f} ± {row['exact_std']:.3f}"
              f"{row['char_mean']:>9.3f} ± {row['char_std']:.3f}{acc:>7.3f}{own:>11.3f}{seconds:>8.0f}")
    print("exact/char: mean ± std over seeds on held-out real crops; C2ST: held-out real-vs-synthetic accuracy "
          "(0.5 = indistinguishable); own exact: CRNN on fresh crops of its own training source")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default=str(DEFAULT_REAL), help="crops + labels.csv (file,region,text,source)")
    ap.add_argument("--regions", default="br,eu,us", help=f"comma list of {sorted(REGION_MAP)}")
    ap.add_argument("--n", type=int, help=f"synthetic training crops per region and source (default {Settings.n})")
    ap.add_argument("--seeds", type=int, help=f"training seeds (default {Settings.seeds})")
    ap.add_argument("--steps", type=int, help=f"CRNN training steps (default {Settings.steps})")
    ap.add_argument("--gan-aug", choices=("light", "heavy"), default=Settings.gan_aug,
                    help="augmentation preset of the gan+aug source")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny N, one seed, few steps (< 90 s)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch / ORT CPU threads")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--onnx", default=str(DEFAULT_ONNX), help="generator for the gan sources")
    args = ap.parse_args(argv)
    regions = [r for r in args.regions.split(",") if r]
    unknown = [r for r in regions if r not in REGION_MAP]
    if unknown or not regions:
        ap.error(f"--regions: unknown {unknown}; choose from {sorted(REGION_MAP)}")
    onnx = Path(args.onnx)
    if not onnx.is_file():
        ap.error(f"generator model {onnx} does not exist: export one with `python -m plateaug.export` "
                 f"or pass --onnx PATH")
    real_dir = Path(args.real)
    if not (real_dir / "labels.csv").is_file():
        ap.error(f"--real {real_dir} must be a folder with labels.csv (file,region,text,source)")
    given = {k: v for k in ("n", "seeds", "steps") if (v := getattr(args, k)) is not None}
    for k, v in given.items():
        if v < 1:
            ap.error(f"--{k} must be >= 1, got {v}")
    s = Settings(**{**(QUICK if args.quick else {}), **given, "gan_aug": args.gan_aug})
    torch.set_num_threads(max(1, args.threads))
    payload = run(real_dir, regions, s, onnx)
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
