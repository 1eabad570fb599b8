"""Sim-to-real realism: does training a recogniser on plateaug's plates make it read real plates?

One recogniser per script (plateaug.models.crnn.CRNN + CTC, 32x128 input) is trained per
(source, seed): one for the Latin regions br/eu/us together, one for cn (its own charset with the
province characters); each is tested per region on real crops it never saw: exact-plate accuracy
and per-character accuracy (1 - edit distance / characters, clipped at 0), mean ± std over seeds.
Next to it, its accuracy on held-out crops of its own source ("own"): a recogniser that cannot
read its own source has not finished training.

Sources (each differs from its control in one thing; every synthetic source uses the same
PlateGANStream configuration, the same seed and so the same plate texts):
    clean         renders: generator=None, augment="none"
    aug           renders + the stream's default augmentation, no generator (the generator's control)
    gan           the generator, augment="none" (control: clean)
    default       exactly what PlateGANStream() yields with its shipped defaults, only regions and
                  seed set (controls: aug for the generator, gan for the augmentation)
    real          the real training split only (what a user with real crops alone gets)
    real+default  `default`, then fine-tuned on the real training split (the common user case;
                  control: real)
`--stream-options JSON` overrides the stream's keyword arguments for the synthetic sources: the
options define `default`; `aug` drops the generator, `gan` the augmentation, `clean` both, so the
one-thing differences hold for an ablation too (e.g. '{"augment": "heavy"}'). `--onnx PATH`
replaces the default generator.

Regions (real -> synthetic, equal weight per real region): br -> br_old, eu -> eu_sk 2 : eu_de 1
(the real eu crops are mostly Slovak, some German), us -> us, cn -> cn_blue.

Design decisions, and why:
- One recogniser per script (GROUPS), as plates are read in practice: a Latin one for br/eu/us
  (half the training of one per region, and the us region with hundreds of real crops carries the
  glyphs for br/eu with ~55 training crops each) and a cn one. Until 2026-12-01 one recogniser read
  all four regions; at 1200 steps it never learned the 31 province characters (own synthetic cn
  plates 10-37 % exact, `default` 11 %; one seed's error analysis: the province right on 10 %, the
  six characters after it on 95 %), so cn measured 0.02-0.04 for every source whatever the plates;
  the same steps on cn alone read 95-97 % of its own plates (results/screening/recogniser_groups.txt).
  Training batches are balanced over the group's regions (each crop drawn with probability 1 / its
  region's count). The cn recogniser starts from the Latin one of the same source and seed
  (plateaug.models.with_charset: every layer, head rows of the shared digits and letters): trained
  from scratch it spent most of its steps on the provinces and, at 1,200 steps, left one of three
  seeds at 55-61 % of its own plates (a lower peak LR was worse, a higher one only moved the slow
  seed to another); warm-started, 900 steps read 99 % of them in every seed
  (results/screening/cn_warm_start.txt). A run without Latin regions trains cn from scratch, for
  4/3 of the steps (1,200 at the defaults; it may not plateau: the own column says).
  `real` is the exception: one recogniser for every region's real crops, as before. From scratch on
  its 420 real crops alone a cn recogniser stayed on CTC's all-blank plateau in 2 of 3 seeds at
  2,000 steps (and in all 3 at 800; results/screening/cn_real_alone.txt); sharing the Latin crops
  it reads 87 %. The strongest real-only recogniser is the fair control for `real+default`, which
  fine-tunes each script's `default` recogniser on that script's real crops.
- A pool per synthetic source and seed: `--pool` crops (default 6,000: three seeds' pools of 6,000
  read level with 12,000, `results/screening/per_seed_pools_*`; at the stream's own size,
  downsampled to 32x128 like the real crops; seed k's pool from stream seed DATA_SEED + 1000 k,
  the same for every source) plus one check set of other plates (other seed). Each seed is a whole
  replicate, so the spread over seeds includes the pool's own variation: with one pool shared by
  the seeds (`--shared-pool`, how runs before 2026-12-01 were made) the `default` br exact of one
  tree measured 0.292 ± 0.036 in one run and 0.125 ± 0.062 in another with a pool differing only
  in `us` stickers — the shared-pool spread understated the noise of br and eu (16 and 15 plates).
  The generator costs ~4 ms/plate on this CPU, so fresh stream plates for every step of every seed
  would dominate the run. The recogniser's own light augmentation (random scale, shift, small
  rotation/shear, brightness/contrast, grey, no horizontal flip: flips mirror characters) is applied
  to every training batch of every source, real crops included: it is part of the recogniser's
  training recipe, identical for every source, not part of a source.
- Steps (batch 64, AdamW, one-cycle LR), sized so each kind of source plateaus; `--steps` and
  `--finetune-steps` are the Latin recogniser's, scaled per group (GROUPS: cn x1 on synthetic
  pools after its warm start, x0.5 fine-tuning): `--steps` 1400 on a synthetic pool (the own-source
  column says whether it plateaued: it reads its own held-out crops. 900 until 2026-12-04 (commit 8fca9e8), when
  the real-glyph typefaces had made the pools harder to read: own us 0.79 at 900, 0.84 at 1,400, 0.86 at
  2,000; real cn 0.490 / 0.573 / 0.545 and us 0.549 / 0.568 / 0.565, 6 seeds of `default`,
  results/screening/eu_sk_arms_separator_6seeds.txt (900), default_steps1400_6seeds.txt,
  default_steps2000_6seeds.txt; cn from scratch needed more:
  previous CRNN 800 steps read 61-63 %, 1200 95 %; this CRNN at 1,200 steps 68-99 %,
  screening/cn_patterns_poolfirst.txt; with the stride-2 CRNN a whole run at 720 / 960 steps left
  `aug` at 63-86 % of its own plates and `default` cn at 62 %, with seed spreads up to 0.15: not plateaued,
  results/screening/realism_720_steps.txt), `--real-steps` 2000 for `real` from scratch (at 700
  steps it read 0-4 % of the validation plates exactly, at 2500 37-87 %, measured 2026-11-25; with
  the stride-2 CRNN, one seed, 1800 steps read br 0.06 / eu 0.27 and 2500 steps 0.81 / 0.53: a
  recogniser stopped early hides every difference between sources; with the 200 plain first steps,
  2,000 read level with 2,500, 3 seeds, results/screening/real_2000_steps.txt), `--finetune-steps` 2000 for
  `real+default`, which starts from the `default` recogniser of the same seed at a lower LR: as many
  real-crop steps as `real` trains (cn half), so the comparison differs mostly in the start (450
  until 2026-12-02: 900 read us 0.817 ± 0.023 instead of 0.757 ± 0.026, the rest level, 3 seeds,
  results/screening/finetune_450.txt vs finetune_900.txt; 900 until commit e304509 (2026-12-02, AMD
  EPYC): with 2,000 the whole run on an AMD EPYC read br 0.938 / eu 0.667 / us 0.832 / cn 0.951 against `real`'s 0.833 /
  0.578 / 0.820 / 0.880, results/screening/realism_whole_2026-12-02e_epyc.txt; with 900 on the
  same CPU and seeds 0.958 / 0.644 / 0.791 / 0.938, results/screening/finetune_900_epyc.txt:
  us +4.1 beyond the spread, the rest level).
  `--finetune-mix F` draws a share F of each fine-tune batch from the seed's `default` pool instead
  (replay); 0.5 read br 0.896 / eu 0.711 / us 0.814 / cn 0.942 against the pure fine-tune's 0.938 /
  0.667 / 0.832 / 0.951, level or lower (results/screening/finetune_mix50.txt), so the default is 0.
  Training runs under CPU bfloat16
  autocast with channels-last tensors (2.4x faster per step on this AVX-512 BF16 CPU; `--fp32`
  for CPUs without bf16 units, where emulated bf16 is slower).
- Jobs: each (source, seed) is one job (its pool, its recognisers, their scores; `default` also does
  the real+default fine-tunes, the first seed of a listed synthetic source the C2ST), `--jobs` at a
  time (default one per CPU core) in spawned processes of `--threads` torch threads (default cores /
  jobs). This recogniser's ops are too small to fill two cores: one step took 73.5 ms with two
  threads, 85 ms with one, and 95 ms each with two one-thread trainings side by side (1.55x the
  steps per second; 2026-12-02, 2-core Xeon). A job's result depends only on its source, seed,
  settings and threads, not on the worker or the order: `--jobs 1` (in this process) and `--jobs 2`
  at one thread each give identical tables. `time_s` in the JSON is the seconds a source's jobs took,
  summed; `runtime_s` the wall time of the run.
- The seed noise: every recogniser from scratch spends its first 300-550 steps on CTC's plateau (loss
  ~3.4, no characters; the peak LR does not change that, results/screening/ctc_plateau_lr.txt), and
  when it escapes decides where it ends; one that never does reads nothing and is named under the
  table ("not learned", JSON `stalled`). `--plain-steps N` (default 200; 0 turns it off) trains a recogniser from
  scratch on its crops without its own augmentation for its first N steps (a curriculum): in
  one-seed traces 200 such steps left the plateau at 200-250 instead of 350-550
  (results/screening/plain_steps.txt).
- C2ST (classifier two-sample test): per synthetic source and region, a small CNN learns real
  (training split) vs synthetic crops and is tested on held-out real crops vs other synthetic
  crops, balanced (0.5 = indistinguishable). One seed: it is a weak signal (real datasets are
  themselves >95 % separable) and recognition is the measure; it must stay cheap.

Held-out real data: with `--real DIR` only DIR's validation split (plateaug.training.realdata.
is_validation, 25 % by file-name hash: the split the generator trainer uses) is tested; its
training split trains `real`, `real+default` and the C2ST classifier. With `--holdout DIR` every
crop in DIR is a test crop (a folder the generator never saw); `--real`'s training split still
trains `real`/`real+default`/C2ST. Tune only on the validation split.

    python benchmarks/realism.py [--real DIR] [--holdout DIR] [--regions br,eu,us,cn]
        [--sources clean,aug,gan,default,real,real+default] [--stream-options JSON] [--onnx PATH]
        [--pool N] [--seeds K] [--steps S] [--real-steps S] [--finetune-steps S] [--finetune-mix F]
        [--shared-pool] [--fp32] [--quick] [--plain-steps N] [--jobs J] [--threads T] [--json OUT] [--txt OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(ROOT))
from common import data_dir, executor, machine, missing_data, write_outputs  # noqa: E402

import plateaug.generator.onnx_runtime  # noqa: E402, F401 - loaded now, not mid-run (a tree edited during a run)
from plateaug.generator.backends import cpu_has_bf16  # noqa: E402
from plateaug.models.crnn import CRNN, greedy_decode, with_charset  # noqa: E402
from plateaug.renderer.spec_loader import load_region  # noqa: E402
from plateaug.stream.dataset import PlateGANStream  # noqa: E402
from plateaug.training.realdata import load_real  # noqa: E402
from plateaug.training.text_reader import encode  # noqa: E402  (CTC targets: class i + 1 = charset[i])

SIZE = (32, 128)  # (H, W) of every crop the recogniser sees, synthetic and real
SYNTHETIC = ("clean", "aug", "gan", "default")
SOURCES = (*SYNTHETIC, "real", "real+default")
# real region (labels.csv) -> synthetic regions with weights (normalised per real region)
REGION_MAP: dict[str, dict[str, float]] = {
    "br": {"br_old": 1},
    "eu": {"eu_sk": 2, "eu_de": 1},
    "us": {"us": 1},
    "cn": {"cn_blue": 1},
}
SYNTH_TO_REAL = {s: r for r, m in REGION_MAP.items() for s in m}
DATA_SEED = 20240  # every synthetic source: the same seed, so the same plate texts
CHUNK = 256  # plates per stream batch while filling a pool
STALLED = 0.5  # own-source exact accuracy below which a recogniser is reported as not learned
RESERVED = {"regions", "seed", "mode", "batch_size", "length"}  # set by the benchmark, not by --stream-options


@dataclass(frozen=True)
class Group:
    """Regions read by one recogniser (one script, one charset), its step multipliers (of
    Settings.steps / finetune_steps; `real` is one recogniser for every region, see the docstring) and
    the group whose recogniser of the same source and seed it starts from (`init`, when in the run)."""

    regions: tuple[str, ...]
    steps: float = 1.0
    finetune_steps: float = 1.0
    init: str | None = None
    scratch_steps: float = 1.0  # the steps multiplier when `init` is not in the run (from scratch)

    def synthetic_steps(self, steps: int, warm: bool) -> int:
        """Optimiser steps on a synthetic pool: warm-started from `init`, or from scratch."""
        return group_steps(steps, self.steps if warm or self.init is None else self.scratch_steps)


# cn starts from the Latin recogniser of its source and seed (digits and letters already read, only
# the 31 provinces new): from scratch, 1,200 steps left 1 of 3 seeds at 55-61 % of its own `default`
# plates (still learning the provinces; a lower peak LR worse, a higher one moved the slow seed);
# warm-started, 900 steps read 99 % in all three and more real plates (0.28 vs 0.19 exact, one pool
# per seed; results/screening/cn_warm_start.txt).
GROUPS: dict[str, Group] = {"latin": Group(("br", "eu", "us")),
                             "cn": Group(("cn",), 1.0, 0.5, init="latin", scratch_steps=4 / 3)}


def group_steps(steps: int, factor: float) -> int:
    return max(1, round(steps * factor))


@dataclass(frozen=True)
class Settings:
    """Everything that defines one benchmark run (identical for every source)."""

    pool: int = 6000  # synthetic crops per source and seed (all regions); 6,000 read level with 12,000 (3 seeds)
    n_check: int = 600  # other synthetic crops per source (other seed): own-source accuracy, C2ST test
    seeds: int = 3  # recogniser seeds
    steps: int = 1400  # recogniser optimiser steps on a synthetic pool (Latin from scratch, cn warm-started); 900
    # until 2026-12-04 (commit 8fca9e8; 6 seeds of `default`: 900 / 1,400 / 2,000 read cn 0.490 / 0.573 / 0.545,
    # us 0.549 / 0.568 / 0.565, own us 0.79 / 0.84 / 0.86: the real plates plateau by 1,400;
    # results/screening/default_steps*_6seeds.txt)
    real_steps: int = 2000  # `real`: steps on the real training split of every region (from scratch); with the
    # plain first steps 2,000 read level with 2,500 (results/screening/real_2000_steps.txt)
    finetune_steps: int = 2000  # real+default: Latin steps on the real training split after `default` (cn: half)
    batch: int = 64
    lr: float = 3e-3  # peak of the one-cycle schedule (AdamW)
    finetune_lr: float = 1e-3
    finetune_mix: float = 0.0  # real+default: share of each fine-tune batch drawn from the `default` pool (replay)
    c2st_epochs: int = 8
    c2st_seeds: int = 1
    pool_per_seed: bool = True  # a fresh pool per seed (DATA_SEED + 1000 seed); False: one pool for every seed
    plain_steps: int = 200  # a recogniser from scratch: first steps without its own augmentation (--plain-steps;
    # a curriculum: leaves CTC's plateau at 200-250 steps instead of 350-550, results/screening/plain_steps.txt)
    bf16: bool = field(default_factory=lambda: cpu_has_bf16())  # recogniser training under CPU bfloat16 autocast,
    # channels-last (2.4x faster per step on an AVX-512 BF16 CPU, measured; CTC and the loss stay float32) where
    # the CPU has bf16 units (elsewhere torch emulates bf16: the detection benchmark's step 5.8x slower than fp32 on
    # an AVX2 EPYC; the recogniser's not measured); --fp32 turns it off


QUICK = dict(pool=96, n_check=32, seeds=1, steps=6, real_steps=6, finetune_steps=3, batch=16, c2st_epochs=1,
             plain_steps=2)


# -- data -----------------------------------------------------------------------------------------

@dataclass
class Crops:
    """Crops at SIZE: images (N, 3, H, W) uint8, their texts and real regions (br/eu/us/cn)."""

    images: torch.Tensor
    texts: list[str]
    regions: list[str]

    def region(self, *regions: str) -> Crops:
        """The crops of these regions, in order."""
        idx = [i for i, x in enumerate(self.regions) if x in regions]
        return Crops(self.images[idx], [self.texts[i] for i in idx], [self.regions[i] for i in idx])

    @staticmethod
    def cat(parts: list[Crops]) -> Crops:
        return Crops(torch.cat([p.images for p in parts]), [t for p in parts for t in p.texts],
                     [r for p in parts for r in p.regions])


def to_u8(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, h, w) float in [0, 1] at any size -> (N, 3, *SIZE) uint8 (antialiased, like the real crops)."""
    if tuple(images.shape[-2:]) != SIZE:
        images = F.interpolate(images, size=SIZE, mode="bilinear", align_corners=False, antialias=True)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def stream_weights(regions: list[str]) -> dict[str, float]:
    """{synthetic region: weight}, each real region weighing 1 in total."""
    return {s: w / sum(m.values()) for r in regions for m in [REGION_MAP[r]] for s, w in m.items()}


def source_options(source: str, base: dict) -> dict:
    """PlateGANStream keyword arguments of a synthetic source: `base` (the stream's defaults plus
    --onnx / --stream-options) is `default`; the controls drop the generator and/or augmentation; `gan`
    translates every plate (generator_share 1)."""
    drop = {"clean": dict(generator=None, augment="none"), "aug": dict(generator=None),
            "gan": dict(augment="none", generator_share=1.0), "default": {}}[source]
    return {**base, **drop}


def synthesize(regions: list[str], options: dict, n: int, seed: int) -> Crops:
    """n crops exactly as PlateGANStream(regions, seed, **options) yields them (batch mode), at SIZE."""
    stream = PlateGANStream(regions=stream_weights(regions), seed=seed, batch_size=min(CHUNK, n),
                            length=math.ceil(n / min(CHUNK, n)), **options)
    images, texts, regs = [], [], []
    for batch, targets in stream:
        images.append(to_u8(batch.cpu()))
        texts += [t["text"] for t in targets]
        regs += [SYNTH_TO_REAL[t["region"]] for t in targets]
    return Crops(torch.cat(images)[:n], texts[:n], regs[:n])


def pool_seed(seed: int, s: Settings) -> int:
    """Stream seed of the synthetic pool recogniser `seed` trains on (every source: the same one)."""
    return DATA_SEED + 1000 * seed if s.pool_per_seed else DATA_SEED


def load_crops(folder: Path, regions: list[str]) -> tuple[Crops, Crops]:
    """(training split, validation split) of a labelled real folder at SIZE (empty regions allowed)."""
    real = load_real(folder, canvases={r: SIZE for r in regions}, regions=regions)
    out = []
    for split in (real.train, real.val):
        parts = [Crops(to_u8(g.images), g.texts, [r] * len(g.texts)) for r, g in split.items()]
        out.append(Crops.cat(parts) if parts else Crops(torch.zeros(0, 3, *SIZE, dtype=torch.uint8), [], []))
    return out[0], out[1]


# -- the recogniser's training recipe ----------------------------------------------------------------

def light_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The recogniser's own augmentation, for every source: (B, 3, H, W) float in [0, 1].
    Random scale (0.85-1.1 per axis), shift (±6 % x, ±8 % y), rotation ±3°, shear ±0.08,
    brightness/contrast, 15 % grey; border pixels replicated. Never a flip (it mirrors characters)."""
    B = len(x)

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return torch.rand(B, *shape, generator=g) * (hi - lo) + lo

    sx, sy = u(0.9, 1.15), u(0.9, 1.18)  # >1 = zoom out (sampling grid spans more than the crop)
    rot = u(-3, 3) * math.pi / 180
    shear = u(-0.08, 0.08)
    tx, ty = u(-0.06, 0.06), u(-0.08, 0.08)
    aspect = SIZE[1] / SIZE[0]  # rotate in pixel space, not in normalised coordinates
    cos, sin = torch.cos(rot), torch.sin(rot)
    theta = torch.stack([torch.stack([sx * cos, -sx * sin * aspect + shear, tx], 1),
                         torch.stack([sy * sin / aspect, sy * cos, ty], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    grey = (torch.rand(B, 1, 1, generator=g) < 0.15).float()  # (B, 1, 1)
    contrast, brightness = u(0.7, 1.3, 1, 1), u(-0.15, 0.15, 1, 1)  # (B, 1, 1)
    # grey, then (x - mean) * contrast + mean + brightness, as one 3x3 colour matrix and offset per
    # crop (one batched matmul instead of six full-size passes; greying keeps the mean)
    mean = x.mean((1, 2, 3)).view(B, 1, 1)
    matrix = contrast * ((1 - grey) * torch.eye(3) + grey / 3)  # (B, 3, 3)
    offset = (1 - contrast) * mean + brightness  # (B, 1, 1)
    return torch.baddbmm(offset, matrix, x.reshape(B, 3, -1)).clamp_(0, 1).view_as(x)


def group_charset(regions: list[str], real_train: Crops, test: Crops) -> str:
    """Characters one recogniser reads: its regions' synthetic specs' plus those of their real crops
    (a real-only character is never trained: an error wherever it occurs)."""
    synth = {ch for r in regions for name in REGION_MAP[r] for ch in load_region(name).charset}
    real = {ch for c in (real_train.region(*regions), test.region(*regions)) for t in c.texts for ch in t}
    return "".join(sorted(synth | real))


def balanced_weights(regions: list[str]) -> torch.Tensor:
    """Per-crop sampling weights: every region equally likely, whatever its crop count."""
    counts: dict[str, int] = {}
    for r in regions:
        counts[r] = counts.get(r, 0) + 1
    return torch.tensor([1.0 / counts[r] for r in regions])


def mixed(real: Crops, synthetic: Crops, share: float) -> tuple[Crops, torch.Tensor | None]:
    """Fine-tune data: the real crops, and with share > 0 also the synthetic ones, drawn so that a
    `share` of each batch is synthetic (each part balanced over its regions). (crops, weights or None)."""
    if share <= 0 or not synthetic.texts:
        return real, None
    norm = lambda w: w / w.sum()  # noqa: E731
    weights = torch.cat([norm(balanced_weights(real.regions)) * (1 - share),
                         norm(balanced_weights(synthetic.regions)) * share])
    return Crops.cat([real, synthetic]), weights


def train_recogniser(crops: Crops, charset: str, steps: int, lr: float, batch: int, seed: int,
                     model: CRNN | None = None, balance: bool = True, bf16: bool = False,
                     plain_steps: int = 0, weights: torch.Tensor | None = None) -> CRNN:
    """CTC training on a pool with the recogniser's own augmentation: AdamW, one-cycle LR, batches
    drawn with replacement (balanced over regions when `balance`). A given model is fine-tuned.
    `bf16`: convolutions under CPU bfloat16 autocast with channels-last tensors; weights, optimiser,
    log-softmax and CTC stay float32. `plain_steps`: a model from scratch sees its crops without the
    augmentation for its first steps (a curriculum; a given model always gets the augmentation).
    `weights`: per-crop sampling weights, instead of `balance`'s."""
    torch.manual_seed(seed)
    plain = plain_steps if model is None else 0
    model = model if model is not None else CRNN(len(charset))
    layout = torch.channels_last if bf16 else torch.contiguous_format
    model = model.to(memory_format=layout)
    if weights is None:
        weights = balanced_weights(crops.regions) if balance else torch.ones(len(crops.texts))
    # fused: one kernel per step instead of a dozen per tensor (~2.5 ms less per step on this CPU)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2, fused=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        idx = torch.multinomial(weights, batch, replacement=True, generator=g)
        x = crops.images[idx].float() / 255
        x = (x if step < plain else light_augment(x, g)).contiguous(memory_format=layout)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        log_probs = logits.float().log_softmax(-1)  # (T, B, C + 1)
        target, target_len = encode([crops.texts[i] for i in idx.tolist()], charset)
        input_len = torch.full((batch,), log_probs.shape[0], dtype=torch.int64)
        loss = ctc(log_probs, target, input_len, target_len)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
    return model.to(memory_format=torch.contiguous_format).eval()


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
    """Greedy CTC strings for uint8 images (N, 3, H, W)."""
    return [p for chunk in images.split(256) for p in greedy_decode(model(chunk.float() / 255), charset)]


def score(pred: list[str], truth: list[str]) -> tuple[float, float]:
    """(exact-plate accuracy, per-character accuracy = 1 - total edits / total characters, >= 0)."""
    if not truth:
        return float("nan"), float("nan")
    exact = sum(p == t for p, t in zip(pred, truth)) / len(truth)
    edits = sum(edit_distance(p, t) for p, t in zip(pred, truth))
    return exact, max(0.0, 1.0 - edits / max(1, sum(len(t) for t in truth)))


def score_regions(model: CRNN, crops: Crops, charset: str, regions: list[str]) -> dict[str, tuple[float, float]]:
    pred = recognise(model, crops.images, charset)
    return {r: score([p for p, x in zip(pred, crops.regions) if x == r],
                     [t for t, x in zip(crops.texts, crops.regions) if x == r]) for r in regions}


# -- classifier two-sample test -----------------------------------------------------------------------

class C2STNet(nn.Module):
    """Small real-vs-synthetic CNN: (B, 3, 32, 128) -> (B,) logit (real = 1)."""

    def __init__(self, ch: int = 24):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(*block(3, ch), *block(ch, 2 * ch), *block(2 * ch, 2 * ch),
                                      *block(2 * ch, 4 * ch))  # (B, 4ch, 2, 8)
        self.head = nn.Linear(4 * ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x * 2 - 1).mean((2, 3))).squeeze(1)


def c2st(real_train: torch.Tensor, real_test: torch.Tensor, synth_train: torch.Tensor, synth_test: torch.Tensor,
         epochs: int, seed: int) -> float:
    """Held-out accuracy of a CNN telling real from synthetic uint8 crops, balanced classes: trains on
    real_train vs as many synth_train crops, tests on real_test vs as many synth_test crops."""
    g = torch.Generator().manual_seed(seed)
    n_tr, n_te = min(len(real_train), len(synth_train)), min(len(real_test), len(synth_test))
    if n_tr < 2 or n_te < 1:
        return float("nan")
    pick = lambda t, n: t[torch.randperm(len(t), generator=g)[:n]].float() / 255  # noqa: E731
    x = torch.cat([pick(real_train, n_tr), pick(synth_train, n_tr)])
    y = torch.cat([torch.ones(n_tr), torch.zeros(n_tr)])
    torch.manual_seed(seed)
    model = C2STNet()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
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
        pred = model(torch.cat([pick(real_test, n_te), pick(synth_test, n_te)])) > 0
    truth = torch.cat([torch.ones(n_te), torch.zeros(n_te)]).bool()
    return float((pred == truth).float().mean())


# -- the run ------------------------------------------------------------------------------------------

def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class Context:
    """What every job of a run needs; sent once to each worker process."""

    real_train: Crops
    test: Crops
    tested: list[str]
    regions: list[str]
    sources: list[str]
    groups: dict[str, list[str]]  # recogniser group -> its regions in this run
    charsets: dict[str, str]
    real_charset: str
    base: dict
    s: Settings


_CTX: Context | None = None  # this process's run context (set by _init_worker)


def _init_worker(ctx: Context, threads: int) -> None:
    global _CTX
    _CTX = ctx
    torch.set_num_threads(max(1, threads))


def check_job(source: str) -> Crops:
    """A synthetic source's check set: other plates (other seed) for own-source accuracy and C2ST."""
    ctx = _CTX
    return synthesize(ctx.regions, source_options(source, ctx.base), ctx.s.n_check, DATA_SEED + 1)


def source_job(source: str, seed: int, check: Crops | None) -> dict:
    """One source and seed, whole: its pool, its recognisers (one per group), their scores on the real
    test crops and on `check`; for `default` with real+default in the run also the fine-tunes
    ("plus"); for a listed synthetic source's first seed the C2ST rows. Deterministic given
    (source, seed, settings, threads): the same in any worker, in any order."""
    ctx, s = _CTX, _CTX.s
    t = time.perf_counter()
    out: dict = {"real": {}, "own": {}, "c2st": []}
    if source == "real":  # one recogniser for every region's real crops (see the docstring)
        model = train_recogniser(ctx.real_train, ctx.real_charset, s.real_steps, s.lr, s.batch, seed, bf16=s.bf16,
                                 plain_steps=s.plain_steps)
        out["real"] = out["own"] = score_regions(model, ctx.test, ctx.real_charset, ctx.tested)
        out["time_s"] = time.perf_counter() - t
        return out
    # with --shared-pool every seed's job draws the same pool again (jobs share no memory): more
    # seconds, the same crops
    pool = synthesize(ctx.regions, source_options(source, ctx.base), s.pool, pool_seed(seed, s))
    out["data_s"] = time.perf_counter() - t
    plus = "real+default" in ctx.sources and source == "default"
    trained: dict[str, CRNN] = {}  # this source and seed's recognisers, by group
    for g, rs in ctx.groups.items():
        grp, charset, on = GROUPS[g], ctx.charsets[g], [r for r in ctx.tested if r in rs]
        start = None
        if grp.init in trained:  # warm start from the init group's recogniser (GROUPS)
            start = with_charset(trained[grp.init], ctx.charsets[grp.init], charset)
        model = train_recogniser(pool.region(*rs), charset, grp.synthetic_steps(s.steps, start is not None), s.lr,
                                 s.batch, seed, model=start, bf16=s.bf16, plain_steps=s.plain_steps)
        trained[g] = model
        out["own"] |= score_regions(model, check.region(*rs), charset, on)
        out["real"] |= score_regions(model, ctx.test.region(*rs), charset, on)
    out["time_s"] = time.perf_counter() - t
    if plus:  # real+default: each `default` recogniser of this seed, fine-tuned on its group's real crops
        t = time.perf_counter()
        out["plus"] = {}
        for g, rs in ctx.groups.items():
            if not ctx.real_train.region(*rs).texts:
                continue  # no real training crops of this group (warned)
            grp, charset, on = GROUPS[g], ctx.charsets[g], [r for r in ctx.tested if r in rs]
            data, weights = mixed(ctx.real_train.region(*rs), pool.region(*rs), s.finetune_mix)
            model = train_recogniser(data, charset, group_steps(s.finetune_steps, grp.finetune_steps),
                                     s.finetune_lr, s.batch, seed, model=trained[g], bf16=s.bf16, weights=weights)
            out["plus"] |= score_regions(model, ctx.test.region(*rs), charset, on)
        out["plus_time_s"] = time.perf_counter() - t
    if source in ctx.sources and seed == 0:
        t = time.perf_counter()
        for r in ctx.tested:
            acc = _mean_std([c2st(ctx.real_train.region(r).images, ctx.test.region(r).images, pool.region(r).images,
                                  check.region(r).images, s.c2st_epochs, k) for k in range(s.c2st_seeds)])[0]
            out["c2st"].append({"source": source, "region": r, "accuracy": acc})
        out["time_s"] += time.perf_counter() - t
    return out


def _jobs(ctx: Context, jobs: int, threads: int):
    """An executor running jobs in `jobs` spawned worker processes of `threads` torch threads each,
    or in this process when jobs == 1 (a small CNN's ops do not fill two cores: two single-thread
    trainings side by side do 1.5x the steps per second of one two-thread training on this CPU)."""
    return executor(jobs, _init_worker, (ctx, threads))


def run(real_dir: Path, holdout: Path | None, regions: list[str], sources: list[str], base: dict,
        s: Settings, jobs: int = 1, threads: int = 1) -> dict:
    """Every source x seed: one job (its recognisers, scored per region; C2ST per synthetic source and
    region), `jobs` at a time, each with `threads` torch threads."""
    t0 = time.perf_counter()
    real_train, real_val = load_crops(real_dir, regions)
    test = real_val
    if holdout is not None:
        test = Crops.cat(load_crops(holdout, regions))
    tested = [r for r in regions if r in test.regions]
    if not tested:
        raise SystemExit(f"error: no test crops of regions {regions} in {holdout or real_dir}")
    needs_real = {"real", "real+default"} & set(sources)
    missing = [r for r in regions if r not in real_train.regions]
    if missing and (needs_real or any(x in SYNTHETIC for x in sources)):
        print(f"warning: no training-split real crops of {missing} in {real_dir} (real sources and C2ST skip them)")
    groups = {g: [r for r in grp.regions if r in regions] for g, grp in GROUPS.items()}
    groups = {g: rs for g, rs in groups.items() if rs}
    charsets = {g: group_charset(rs, real_train, test) for g, rs in groups.items()}
    real_charset = group_charset(regions, real_train, test)
    seeds = list(range(s.seeds))
    count = lambda c, r: sum(x == r for x in c.regions)  # noqa: E731
    print(f"real: {real_dir}" + (f", test: {holdout} (all crops)" if holdout else " (test: validation split)") + "; "
          + ", ".join(f"{r}: train {count(real_train, r)} / test {count(test, r)}" for r in regions))
    print(f"stream options of `default`: {base or '(shipped defaults)'}; pool {s.pool} + check {s.n_check} crops per "
          f"synthetic source{' and seed' if s.pool_per_seed else ' (one pool for every seed)'}; "
          f"batch {s.batch}, lr {s.lr:g} (fine-tune {s.finetune_lr:g}"
          f"{f', {s.finetune_mix:.0%} of each fine-tune batch from the default pool' if s.finetune_mix else ''})"
          f"{', bf16 autocast' if s.bf16 else ', fp32'}; "
          f"seeds {seeds}; {jobs} job(s) at a time, {threads} thread(s) each; recognisers: " + "; ".join(
              f"{g} {'/'.join(rs)} ({len(charsets[g])} classes + blank): steps "
              f"{GROUPS[g].synthetic_steps(s.steps, GROUPS[g].init in groups)} synthetic"
              f"{f' (starts from {GROUPS[g].init})' if GROUPS[g].init in groups else ' (from scratch)'}, "
              f"+{group_steps(s.finetune_steps, GROUPS[g].finetune_steps)} real+default"
              for g, rs in groups.items()) + f"; real: one for every region, {s.real_steps} steps",
          flush=True)

    todo = [x for x in SOURCES if x in sources or (x == "default" and "real+default" in sources)]
    if {"real", "real+default"} & set(todo) and not real_train.texts:
        print("  real, real+default: skipped, no real training crops")
        todo = [x for x in todo if x not in ("real", "real+default")]
    listed = [x for x in sources if x in todo or x == "real+default" and "default" in todo]
    ctx = Context(real_train, test, tested, regions, listed, groups, charsets, real_charset, base, s)
    results: dict[str, dict] = {x: {"real": {}, "own": {}, "time_s": 0.0} for x in todo}
    c2st_rows = []
    with _jobs(ctx, jobs, threads) as ex:
        checks = {x: ex.submit(check_job, x) for x in todo if x in SYNTHETIC}
        checks = {x: f.result() for x, f in checks.items()}
        # longest first, so the last jobs to finish are short ones
        order = [x for x in ("real", "default", "gan", "aug", "clean") if x in todo]
        futures = {ex.submit(source_job, x, seed, checks.get(x)): (x, seed) for x in order for seed in seeds}
        for future in as_completed(futures):
            source, seed = futures[future]
            out = future.result()
            results[source]["real"][seed], results[source]["own"][seed] = out["real"], out["own"]
            results[source]["time_s"] += out["time_s"]
            if "plus" in out:
                results["real+default"]["real"][seed] = results["real+default"]["own"][seed] = out["plus"]
                results["real+default"]["time_s"] += out["plus_time_s"]
            c2st_rows += out["c2st"]
            print(f"  {source} seed {seed}: exact/char on real "
                  + ", ".join(f"{r} {e:.3f}/{c:.3f}" for r, (e, c) in out["real"].items())
                  + (" | real+default " + ", ".join(f"{r} {e:.3f}/{c:.3f}" for r, (e, c) in out["plus"].items())
                     if "plus" in out else "") + f" ({out['time_s']:.0f} s"
                  + (f", data {out['data_s']:.0f} s" if "data_s" in out else "") + ")", flush=True)
    c2st_rows.sort(key=lambda row: (SOURCES.index(row["source"]), tested.index(row["region"])))

    accuracy = []
    for source in [x for x in SOURCES if x in sources and x in results and results[x]["real"]]:
        res = results[source]
        for r in [r for r in tested if r in res["real"][seeds[0]]]:
            e, es = _mean_std([res["real"][k][r][0] for k in seeds])
            c, cs = _mean_std([res["real"][k][r][1] for k in seeds])
            oe, oes = _mean_std([res["own"][k][r][0] for k in seeds])
            oc, _ = _mean_std([res["own"][k][r][1] for k in seeds])
            accuracy.append({"source": source, "region": r, "exact_mean": e, "exact_std": es, "char_mean": c,
                             "char_std": cs, "seeds": len(seeds), "own_exact_mean": oe, "own_exact_std": oes,
                             "own_char_mean": oc, "n_test": count(test, r), "time_s": res["time_s"]})
    # a synthetic recogniser that cannot read its own source's plates has not learned (e.g. still on
    # CTC's all-blank plateau when its steps ran out): named under the table, since it drags its mean down
    stalled = [{"source": x, "seed": k, "region": r, "own_exact": e} for x in SYNTHETIC if x in sources and x in results
               for k in seeds for r, (e, _) in results[x]["own"].get(k, {}).items() if e < STALLED]
    total = time.perf_counter() - t0
    text = table(accuracy, c2st_rows, total, stalled)
    print(text)
    return {"accuracy": accuracy, "c2st": c2st_rows, "settings": {
            **asdict(s), "recognisers": {g: {**asdict(GROUPS[g]), "regions": rs, "charset_size": len(charsets[g])}
                                         for g, rs in groups.items()}, "real_charset_size": len(real_charset),
            "stream_options": {k: str(v) for k, v in base.items()}, "real": str(real_dir),
            "holdout": str(holdout) if holdout else None, "regions": regions, "sources": sources,
            "jobs": jobs, "threads_per_job": threads},
            "stalled": stalled,
            "runtime_s": round(total, 1), "machine": machine(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "text": text}


def table(accuracy: list[dict], c2st_rows: list[dict], total: float, stalled: list[dict] = ()) -> str:
    """Readable results: one line per (region, source)."""
    c2 = {(r["source"], r["region"]): r["accuracy"] for r in c2st_rows}
    lines = [f"\n{'region':<7}{'source':<14}{'exact (real)':>16}{'char (real)':>16}{'own exact':>11}"
             f"{'own char':>10}{'C2ST':>7}{'n test':>8}"]
    for row in sorted(accuracy, key=lambda r: (r["region"], SOURCES.index(r["source"]))):
        acc = c2.get((row["source"], row["region"]))
        lines.append(f"{row['region']:<7}{row['source']:<14}{row['exact_mean']:>9.3f} ± {row['exact_std']:.3f}"
                     f"{row['char_mean']:>9.3f} ± {row['char_std']:.3f}{row['own_exact_mean']:>11.3f}"
                     f"{row['own_char_mean']:>10.3f}{'' if acc is None else f'{acc:.3f}':>7}{row['n_test']:>8}")
    lines.append("exact/char: mean ± std over seeds on held-out real crops; own: the same recogniser on held-out "
                 "crops of its own training source (real sources: the real test crops); C2ST: held-out "
                 "real-vs-synthetic accuracy (0.5 = indistinguishable)")
    if stalled:
        lines.append(f"not learned (own exact < {STALLED}, in the means above): " + ", ".join(
            f"{x['source']} seed {x['seed']} {x['region']} {x['own_exact']:.2f}" for x in stalled))
    lines.append(f"total {total:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default=str(data_dir("real-plates")),
                    help="crops + labels.csv (file,region,text,source): validation split tested, training split "
                    "trains real/real+default/C2ST")
    ap.add_argument("--holdout", help="crops + labels.csv: every crop is a test crop "
                    "(instead of --real's validation split)")
    ap.add_argument("--regions", default="br,eu,us,cn", help=f"comma list of {sorted(REGION_MAP)}")
    ap.add_argument("--sources", default=",".join(SOURCES), help=f"comma list of {list(SOURCES)}")
    ap.add_argument("--stream-options", default="{}", help="JSON PlateGANStream keyword arguments for the synthetic "
                    "sources (they define `default`; aug/gan/clean drop the generator/augmentation)")
    ap.add_argument("--onnx", help="generator model for gan/default (default: the stream's shipped generator)")
    for name, typ in (("pool", int), ("seeds", int), ("steps", int), ("real-steps", int), ("finetune-steps", int),
                      ("batch", int), ("plain-steps", int)):
        default = getattr(Settings, name.replace("-", "_"))
        ap.add_argument(f"--{name}", type=typ, help=f"default {default}")
    ap.add_argument("--finetune-mix", type=float, help="real+default: share of each fine-tune batch drawn from the "
                    f"`default` pool, in [0, 1) (replay; default {Settings.finetune_mix})")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny pools, one seed, a few steps (seconds)")
    ap.add_argument("--shared-pool", action="store_true", help="one synthetic pool for every seed (runs before "
                    "2026-12-01); default: a fresh pool per seed, so the spread includes the pool's variation")
    ap.add_argument("--fp32", action="store_true", help="train the recognisers in float32 (default: CPU bfloat16 "
                    "autocast, channels-last, where the CPU has bf16 units)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="(source, seed) jobs run at a time, each in "
                    "its own process (default: one per CPU core; 1 = in this process)")
    ap.add_argument("--threads", type=int, help="torch / ORT CPU threads per job (default: "
                    "CPU cores / jobs, at least 1)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--txt", help="write the text table here")
    args = ap.parse_args(argv)
    regions = [r for r in args.regions.split(",") if r]
    unknown = [r for r in regions if r not in REGION_MAP]
    if unknown or not regions:
        ap.error(f"--regions: unknown {unknown}; choose from {sorted(REGION_MAP)}")
    sources = [x for x in args.sources.split(",") if x]
    if not sources or set(sources) - set(SOURCES):
        ap.error(f"--sources: unknown {sorted(set(sources) - set(SOURCES))}; choose from {list(SOURCES)}")
    try:
        base = json.loads(args.stream_options)
    except json.JSONDecodeError as e:
        ap.error(f"--stream-options is not JSON: {e}")
    if not isinstance(base, dict) or set(base) & RESERVED:
        ap.error(f"--stream-options must be a JSON object without {sorted(RESERVED)}, got {args.stream_options}")
    if "image_size" in base:
        base["image_size"] = tuple(base["image_size"])
    if args.onnx is not None:
        if not Path(args.onnx).is_file():
            ap.error(f"generator model {args.onnx} does not exist: export one with `python -m plateaug.export` "
                     f"or leave --onnx out for the shipped generator")
        base["generator"] = args.onnx
    try:
        PlateGANStream(**source_options("default", base))  # fail fast on bad options, before any work
    except (TypeError, ValueError, FileNotFoundError) as e:
        ap.error(f"--stream-options / --onnx: {e}")
    real_dir = Path(args.real)
    holdout = Path(args.holdout) if args.holdout else None
    for option, path in (("--real", real_dir), ("--holdout", holdout)):
        if path is not None and (problem := missing_data(option, path, "labels.csv")):
            ap.error(f"{problem} (labels.csv: file,region,text,source)")
    given = {k.replace("-", "_"): v for k in ("pool", "seeds", "steps", "real-steps", "finetune-steps", "batch",
                                              "plain-steps") if (v := getattr(args, k.replace("-", "_"))) is not None}
    for k, v in given.items():
        if v < (least := 0 if k == "plain_steps" else 1):
            ap.error(f"--{k.replace('_', '-')} must be >= {least}, got {v}")
    if args.finetune_mix is not None:
        if not 0 <= args.finetune_mix < 1:
            ap.error(f"--finetune-mix must be in [0, 1), got {args.finetune_mix}")
        given["finetune_mix"] = args.finetune_mix
    s = Settings(**{**(QUICK if args.quick else {}), **given, **({"bf16": False} if args.fp32 else {}),
                    **({"pool_per_seed": False} if args.shared_pool else {})})
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        ap.error(f"--jobs and --threads must be >= 1, got {args.jobs} and {args.threads}")
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    torch.set_num_threads(threads)
    payload = run(real_dir, holdout, regions, sources, base, s, jobs=args.jobs, threads=threads)
    write_outputs(payload, args.json, args.txt)
    return payload


if __name__ == "__main__":
    main()
