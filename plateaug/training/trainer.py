"""pix2pix training on real plate crops: LSGAN + lambda * L1, Adam, stateless per-step
randomness (so a resumed run repeats the uninterrupted one exactly), atomic checkpoints,
hash-split validation, and a contact sheet per epoch."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..generator.checkpoint import FORMAT, TRAINING_KEYS, atomic_save, load_checkpoint, plain, require_keys
from ..generator.torch_generator import generator_from_checkpoint
from ..models import PatchDiscriminator, create_generator, generator_input, n_params
from ..renderer.outline import outline
from ..writers.sheet import contact_sheet
from .pairs import Pairs, build_pairs, paired_input
from .realdata import RealGroup, RealSet, load_real
from .text_reader import READER_MIN_ACCURACY, Reader, read_accuracy, script_of, train_readers
from .unpaired import RENDER_SPECS, judge_image, render_batch, structure_loss

# Real-data region -> shipped spec whose renders go on the sample sheet next to the real crops.
PREVIEW_SPECS = RENDER_SPECS


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run; saved in every checkpoint."""

    real: str
    out: str
    labels: str | None = None
    generator: str = "unet_s"
    epochs: int = 100
    batch_size: int = 16
    lr: float = 2e-4
    l1_weight: float = 100.0  # lambda of pix2pix
    seed: int = 0
    val_percent: int = 25
    min_per_group: int = 128  # small regions are repeated up to this many crops per epoch
    jitter: int = 4  # random translation of real crops, pixels
    ema: float = 0.999  # exponential moving average of generator weights (what ships)
    regions: tuple[str, ...] | None = None
    canvases: dict = field(default_factory=dict)  # region -> [H, W] overrides
    render_weight: float = 0.0  # unpaired term on renders (training/unpaired.py); 0 = pix2pix on real crops only
    structure_weight: float = 10.0  # keeps the characters of translated renders where the render put them
    init: str | None = None  # start the generator (and its EMA) from this checkpoint's EMA weights
    text_weight: float = 0.0  # with render_weight: CTC loss of a frozen reader on translated renders (0 = off)
    reader_steps: int = 1000  # training steps of each frozen reader (text_reader.py), once per run
    reader_real: bool = False  # the readers also learn the real training crops (half of each batch)
    paired_weight: float = 0.0  # L1 on pairs (training/pairs.py): outline(render of a real crop's text) -> the crop
    paired_any_layout: bool = False  # pairs also for texts no pattern accepts, drawn in a plain row (pairs.free_spec)


def _seed(*parts: int) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") & (2**63 - 1)


def epoch_plan(sizes: dict[str, int], epoch: int, cfg: TrainConfig) -> list[tuple[str, torch.Tensor]]:
    """The batches of one epoch as (region, indices), a pure function of (seed, epoch)."""
    g = torch.Generator().manual_seed(_seed(cfg.seed, epoch))
    batches = []
    for region in sorted(sizes):
        n = sizes[region]
        reps = math.ceil(max(n, cfg.min_per_group) / n)
        idx = torch.cat([torch.randperm(n, generator=g) for _ in range(reps)])[: max(n, cfg.min_per_group)]
        batches += [(region, b) for b in idx.split(cfg.batch_size) if len(b) >= 2]  # BatchNorm needs 2
    order = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in order]


def augment_real(images: torch.Tensor, jitter: int, g: torch.Generator) -> torch.Tensor:
    """Random translation (replicate padding) and mild brightness/contrast: (B,3,H,W) -> same."""
    B, _, H, W = images.shape
    if jitter:
        padded = F.pad(images, (jitter,) * 4, mode="replicate")
        off = torch.randint(0, 2 * jitter + 1, (B, 2), generator=g).tolist()
        images = torch.stack([padded[i, :, y: y + H, x: x + W] for i, (y, x) in enumerate(off)])
    gain = 1 + (torch.rand(B, 1, 1, 1, generator=g) - 0.5) * 0.2
    bias = (torch.rand(B, 1, 1, 1, generator=g) - 0.5) * 0.1
    return (images * gain + bias).clamp(0, 1)


class Trainer:
    def __init__(self, cfg: TrainConfig, device: str = "cpu", max_minutes: float | None = None,
                 progress: bool = True):
        self.cfg, self.device, self.max_minutes, self.progress = cfg, torch.device(device), max_minutes, progress
        self.out = Path(cfg.out)
        torch.manual_seed(cfg.seed)
        self.G = create_generator(cfg.generator).to(self.device)
        if cfg.init:  # fine-tune: same architecture, weights from a trained generator
            start = generator_from_checkpoint(cfg.init)
            if start.config != self.G.config:
                raise ValueError(f"--init {cfg.init} is a {start.config} generator, not {cfg.generator} "
                                 f"({self.G.config}); pass --generator to match")
            self.G.load_state_dict(start.state_dict())
        self.D = PatchDiscriminator().to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval()
        for p in self.G_ema.parameters():
            p.requires_grad_(False)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        # image-only discriminator for translated renders vs real crops (the unpaired term)
        self.D_r = PatchDiscriminator(in_ch=3).to(self.device) if cfg.render_weight > 0 else None
        self.opt_dr = (torch.optim.Adam(self.D_r.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
                       if self.D_r is not None else None)
        if cfg.text_weight > 0 and cfg.render_weight <= 0:
            raise ValueError("text_weight needs the unpaired term (render_weight > 0): it reads translated renders")
        self.readers: dict[str, Reader] | None = None  # frozen readers of the text loss, built in run()
        self.reader_accuracy: dict[str, float] = {}  # their exact accuracy on clean renders
        self.epoch, self.step_in_epoch, self.global_step, self.elapsed = 0, 0, 0, 0.0
        self.val_history: list[dict] = []
        canvases = {k: tuple(v) for k, v in cfg.canvases.items()}
        self.data: RealSet = load_real(cfg.real, cfg.labels, canvases, cfg.val_percent,
                                       list(cfg.regions) if cfg.regions else None)
        if not self.data.train:
            raise ValueError(f"no training images left in {cfg.real} after the validation split")
        self.pairs: dict[str, Pairs] = {}  # region -> paired renders of its training crops (deterministic)
        if cfg.paired_weight > 0:
            for region, grp in sorted(self.data.train.items()):
                pairs = build_pairs(grp, seed=_seed(cfg.seed, 4271) % 2**31, any_layout=cfg.paired_any_layout)
                if pairs is not None and len(pairs.renders):
                    self.pairs[region] = pairs
            if not self.pairs:
                raise ValueError(f"paired_weight needs training crops whose text a shipped spec can render "
                                 f"(labels.csv with a text column; regions {sorted(RENDER_SPECS)}); none in {cfg.real}")

    # -- state -----------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "format": FORMAT, "config": plain(asdict(self.cfg)),  # plain types: loads with weights_only=True
            "generator": {"name": self.cfg.generator, "config": self.G.config, "state_dict": self.G.state_dict(),
                          "ema_state_dict": self.G_ema.state_dict()},
            "discriminator": {"config": self.D.config, "state_dict": self.D.state_dict()},
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            **({"render_discriminator": {"config": self.D_r.config, "state_dict": self.D_r.state_dict()},
                "opt_dr": self.opt_dr.state_dict()} if self.D_r is not None else {}),
            **({"text_readers": {k: r.state() for k, r in self.readers.items()},
                "reader_accuracy": self.reader_accuracy} if self.readers else {}),
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "elapsed_s": self.elapsed, "val_history": self.val_history,
            "canvases": {k: list(v.images.shape[-2:]) for k, v in self.data.train.items()},
            "training_data": {"folder": str(self.cfg.real),
                              "train": {k: len(v.files) for k, v in self.data.train.items()},
                              "val": {k: len(v.files) for k, v in self.data.val.items()},
                              "skipped": len(self.data.skipped)},
        }

    def load_state(self, ckpt: dict) -> None:
        self.G.load_state_dict(ckpt["generator"]["state_dict"])
        self.G_ema.load_state_dict(ckpt["generator"]["ema_state_dict"])
        self.D.load_state_dict(ckpt["discriminator"]["state_dict"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        self.opt_d.load_state_dict(ckpt["opt_d"])
        if self.D_r is not None:
            self.D_r.load_state_dict(ckpt["render_discriminator"]["state_dict"])
            self.opt_dr.load_state_dict(ckpt["opt_dr"])
        if self.cfg.text_weight > 0 and "text_readers" in ckpt:  # the run's readers, not new ones
            self.readers = {k: Reader.from_state(v, self.device) for k, v in ckpt["text_readers"].items()}
            self.reader_accuracy = dict(ckpt.get("reader_accuracy", {}))
        self.epoch, self.step_in_epoch = ckpt["epoch"], ckpt["step_in_epoch"]
        self.global_step, self.elapsed = ckpt["global_step"], ckpt["elapsed_s"]
        self.val_history = ckpt["val_history"]
        self._truncate_log()

    def save(self) -> Path:
        return atomic_save(self.state(), self.out / "last.pt")

    def _truncate_log(self) -> None:
        """Drop log lines written after the checkpoint we resume from (the run was killed)."""
        log = self.out / "log.jsonl"
        if log.exists():
            keep = [ln for ln in log.read_text().splitlines() if _step_of(ln) <= self.global_step]
            tmp = log.with_suffix(".tmp")
            tmp.write_text("".join(ln + "\n" for ln in keep))
            os.replace(tmp, log)

    # -- training ----------------------------------------------------------------------------
    def lr_at(self, progress: float) -> float:
        """Constant for the first half, then linear decay to 0 (pix2pix schedule)."""
        return self.cfg.lr * min(1.0, 2.0 * (1.0 - progress))

    def train_step(self, real: torch.Tensor, g: torch.Generator, lr: float, region: str = "",
                   pairs: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, float]:
        """One step of D, D_r and G. `pairs`: (renders, aligned real crops), each (P, 3, H, W), for
        the paired term."""
        cfg = self.cfg
        for opt in (self.opt_g, self.opt_d, self.opt_dr):
            if opt is None:
                continue
            for grp in opt.param_groups:
                grp["lr"] = lr
        real = augment_real(real, cfg.jitter, g).to(self.device)  # (B, 3, H, W)
        cond = generator_input(real)  # (B, 4, H, W)
        fake = self.G(cond)
        # discriminator: LSGAN targets 1 (real) / 0 (fake)
        d_real, d_fake = self.D(cond, real), self.D(cond, fake.detach())
        loss_d = 0.5 * (F.mse_loss(d_real, torch.ones_like(d_real)) + F.mse_loss(d_fake, torch.zeros_like(d_fake)))
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        # generator: fool D + stay close to the real photo
        d_fake = self.D(cond, fake)
        loss_gan = F.mse_loss(d_fake, torch.ones_like(d_fake))
        loss_l1 = F.l1_loss(fake, real)
        loss_g = loss_gan + cfg.l1_weight * loss_l1
        extra = {}
        rendered = (render_batch(region, len(real), tuple(real.shape[-2:]), g, self.device)
                    if self.D_r is not None else None)
        if rendered is not None:  # the unpaired term: translated renders must look like this region's real crops
            rendered, texts = rendered
            fake_r = self.G(generator_input(rendered))
            dr_real, dr_fake = judge_image(self.D_r, real), judge_image(self.D_r, fake_r.detach())
            loss_dr = 0.5 * (F.mse_loss(dr_real, torch.ones_like(dr_real))
                             + F.mse_loss(dr_fake, torch.zeros_like(dr_fake)))
            self.opt_dr.zero_grad(set_to_none=True)
            loss_dr.backward()
            self.opt_dr.step()
            dr_fake = judge_image(self.D_r, fake_r)
            loss_render = F.mse_loss(dr_fake, torch.ones_like(dr_fake))
            loss_structure = structure_loss(fake_r, rendered)
            loss_g = loss_g + cfg.render_weight * loss_render + cfg.structure_weight * loss_structure
            extra = {"loss_dr": loss_dr.item(), "loss_render": loss_render.item(),
                     "loss_structure": loss_structure.item()}
            reader = self.readers.get(script_of(region)) if self.readers else None
            if reader is not None:  # text preservation: the frozen reader must still read the render's text
                loss_text = reader.loss(fake_r, texts)
                loss_g = loss_g + cfg.text_weight * loss_text
                extra["loss_text"] = loss_text.item()
        if pairs is not None and len(pairs[0]):  # the paired term: the render's crisp outline -> its real crop
            renders, target = (x.to(self.device) for x in pairs)
            fake_p = self.G(paired_input(renders, target))
            loss_pair = F.l1_loss(fake_p, target)
            loss_g = loss_g + cfg.paired_weight * loss_pair
            extra["loss_pair"] = loss_pair.item()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        with torch.no_grad():
            for pe, p in zip(self.G_ema.parameters(), self.G.parameters()):
                pe.lerp_(p, 1 - cfg.ema)
            for be, b in zip(self.G_ema.buffers(), self.G.buffers()):
                be.copy_(b)
        return {"loss_d": loss_d.item(), "loss_gan": loss_gan.item(), "loss_l1": loss_l1.item(), **extra}

    def pair_batch(self, region: str, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The pairs of the batch's crops that have one: (renders, aligned reals), or None."""
        pairs = self.pairs.get(region)
        if pairs is None:
            return None
        k = pairs.of(idx)
        return (pairs.renders[k], pairs.reals[k]) if len(k) else None

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean L1 between the EMA generator's output and the real crop, per region and overall."""
        out, total, count = {}, 0.0, 0
        for region, grp in sorted(self.data.val.items()):
            err = 0.0
            for chunk in grp.images.split(32):
                chunk = chunk.to(self.device)
                err += (self.G_ema(generator_input(chunk)) - chunk).abs().mean(dim=(1, 2, 3)).sum().item()
            out[region] = err / len(grp.images)
            total, count = total + err, count + len(grp.images)
        out["all"] = total / count if count else float("nan")
        return out

    @torch.no_grad()
    def sample_sheet(self, path: Path) -> Path:
        """Rows of outline | generated | real for validation crops, then outline | generated |
        clean render for renders of the matching shipped region."""
        from ..renderer.draw import render
        from ..renderer.text import sample_text

        rows, caps = [], []
        groups: dict[str, RealGroup] = self.data.val or self.data.train
        for region, grp in sorted(groups.items()):
            real = grp.images[:3].to(self.device)
            cond = generator_input(real)
            fake = self.G_ema(cond)
            for i in range(len(real)):
                rows.append([cond[i, :1], fake[i], real[i]])
                caps.append(f"real {region} {grp.texts[i]}")
        for region, pairs in sorted(self.pairs.items()):  # outline of the render | generated | its real crop
            renders, target = (x[:2].to(self.device) for x in (pairs.renders, pairs.reals))
            fake = self.G_ema(paired_input(renders, target))
            for i in range(len(renders)):
                rows.append([outline(renders[i: i + 1])[0], fake[i], target[i]])
                caps.append(f"pair {region}")
        for region in sorted({*groups, "cn"}):
            spec = PREVIEW_SPECS.get(region)
            if spec is None:
                continue
            plates = render(spec, sample_text(spec, 2, torch.Generator().manual_seed(self.epoch)), self.device)
            cond = generator_input(plates.images)
            fake = self.G_ema(cond)
            for i in range(2):
                rows.append([cond[i, :1], fake[i], plates.images[i]])
                caps.append(f"render {spec} {plates.texts[i]}")
        return contact_sheet(rows, path, captions=caps)

    def run(self) -> dict:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(plain(asdict(cfg)), indent=1))
        if cfg.text_weight > 0 and self.readers is None:  # once per run; the checkpoint keeps them
            self.readers = train_readers(cfg.reader_steps, _seed(cfg.seed, 7919) % 2**31, self.device,
                                         real=self.data.train if cfg.reader_real else None)
            self.reader_accuracy = {k: read_accuracy(r, k, 192, _seed(cfg.seed, 7920) % 2**31)
                                    for k, r in self.readers.items()}
            bar_note = " ".join(f"{k}={v:.3f}" for k, v in self.reader_accuracy.items())
            print(f"text readers, exact on fresh clean renders: {bar_note}", flush=True)
            weak = [k for k, v in self.reader_accuracy.items() if v < READER_MIN_ACCURACY]
            if weak:
                warnings.warn(f"text reader(s) {', '.join(weak)} read under {READER_MIN_ACCURACY:.0%} of clean "
                              f"renders ({bar_note}): their loss is noise; raise --reader-steps", stacklevel=2)
        sizes = {k: len(v.images) for k, v in self.data.train.items()}
        steps_per_epoch = len(epoch_plan(sizes, 0, cfg))
        total_steps = steps_per_epoch * cfg.epochs
        start = time.perf_counter() - self.elapsed  # total time over resumes
        invoked = time.perf_counter()  # the --max-minutes budget is per invocation
        stopped = "finished"
        bar = tqdm(total=total_steps, initial=self.global_step, disable=not self.progress, unit="step",
                   desc="train", dynamic_ncols=True)
        log = open(self.out / "log.jsonl", "a")
        try:
            while self.epoch < cfg.epochs:
                plan = epoch_plan(sizes, self.epoch, cfg)
                t_epoch, n_imgs = time.perf_counter(), 0
                while self.step_in_epoch < len(plan):
                    region, idx = plan[self.step_in_epoch]
                    g = torch.Generator().manual_seed(_seed(cfg.seed, self.epoch, self.step_in_epoch))
                    losses = self.train_step(self.data.train[region].images[idx], g,
                                             self.lr_at(self.global_step / total_steps), region,
                                             self.pair_batch(region, idx))
                    self.step_in_epoch += 1
                    self.global_step += 1
                    n_imgs += len(idx)
                    log.write(json.dumps({"global_step": self.global_step, "epoch": self.epoch,
                                          "region": region, **losses}) + "\n")
                    rate = n_imgs / max(time.perf_counter() - t_epoch, 1e-9)
                    bar.update(1)
                    bar.set_postfix(ep=self.epoch, d=f"{losses['loss_d']:.3f}", gan=f"{losses['loss_gan']:.3f}",
                                    l1=f"{losses['loss_l1']:.4f}", img_s=f"{rate:.1f}")
                    self.elapsed = time.perf_counter() - start
                    if self.max_minutes is not None and time.perf_counter() - invoked > self.max_minutes * 60:
                        stopped = "time budget"
                        break
                if stopped != "finished":
                    break
                val = self.validate()
                self.val_history.append({"epoch": self.epoch, "global_step": self.global_step, **val})
                self.sample_sheet(self.out / "samples" / f"epoch_{self.epoch:03d}.png")
                bar.write(f"epoch {self.epoch}: val L1 " + " ".join(f"{k}={v:.4f}" for k, v in val.items()))
                self.epoch += 1
                self.step_in_epoch = 0
                log.flush()
                os.fsync(log.fileno())  # the log holds every step up to the checkpoint
                self.save()
        finally:
            log.close()
            bar.close()
        self.elapsed = time.perf_counter() - start
        self.save()
        summary = {
            "stopped": stopped, "epochs_done": self.epoch, "global_step": self.global_step,
            "elapsed_s": round(self.elapsed, 1), "val_l1": self.val_history[-1] if self.val_history else None,
            "train_images": sizes, "val_images": {k: len(v.images) for k, v in self.data.val.items()},
            "skipped": len(self.data.skipped), "skipped_files": self.data.skipped,
            "generator": {"name": cfg.generator, "parameters": n_params(self.G)},
            **({"text_reader_accuracy": self.reader_accuracy} if self.reader_accuracy else {}),
            **({"pairs": {k: {"pairs": len(p.renders), "crops": len(p.index),
                              "text_not_renderable": p.skipped_text, "plain_row": p.free_layout,
                              "fit_mean": round(p.score.mean().item(), 3)} for k, p in self.pairs.items()}}
               if self.pairs else {}),
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary


def _step_of(line: str) -> float:
    """The global step of a log line; a torn or foreign line (a kill mid-write) counts as after
    every checkpoint, so resume drops it."""
    try:
        return json.loads(line)["global_step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def resume(run_dir: str | Path, device: str = "cpu", max_minutes: float | None = None,
           progress: bool = True, epochs: int | None = None) -> Trainer:
    """Rebuild a Trainer from RUN_DIR/last.pt, exactly where it stopped. It writes to RUN_DIR
    only (not to the `out` stored in the checkpoint: RUN_DIR may be a copy, or the run may have
    been started from another directory).

    `epochs` changes the run's total (longer or shorter, but not below the epochs already
    started). The LR schedule is a function of (step, total steps), so from here on each step
    gets the learning rate a run started with `epochs` would have had; steps already taken keep
    theirs. Extending a run still in its constant-LR first half therefore equals a run started
    with `epochs`; extending a run whose LR has decayed raises it again (lr * min(1, 2(1 - step/total)))."""
    path = Path(run_dir) / "last.pt"
    ckpt = require_keys(load_checkpoint(path), TRAINING_KEYS, f"checkpoint {path}",
                         "cannot be used to resume training")
    c = dict(ckpt["config"])
    c["regions"] = tuple(c["regions"]) if c.get("regions") else None
    c["out"] = str(run_dir)
    if epochs is not None:
        started = ckpt["epoch"] + (1 if ckpt["step_in_epoch"] else 0)
        if epochs < max(started, 1):
            raise ValueError(f"--epochs {epochs} is below the {started} epoch(s) {run_dir} has already started; "
                             f"use --epochs {max(started, 1)} or more")
        c["epochs"] = epochs
    try:
        cfg = TrainConfig(**c)
    except TypeError as e:  # fields of another version
        raise ValueError(f"checkpoint {path} has a config this version cannot use ({e})") from None
    t = Trainer(cfg, device=device, max_minutes=max_minutes, progress=progress)
    try:
        t.load_state(ckpt)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:  # weights or optimiser state of another model
        raise ValueError(f"checkpoint {path} does not fit its own config ({type(e).__name__}: {e})") from None
    return t
