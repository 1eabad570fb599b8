"""A frozen plate reader for the generator's text-preservation loss.

The unpaired term (unpaired.py) keeps the characters of a translated render *where* the render
put them, on 4x4 blocks: fine strokes are free, and the generator learned to blur the many thin
strokes of Chinese province characters into blobs that still carry a label but no longer its
glyph (README, realism). Here a small CRNN is trained once, on renders of the shipped specs with
photometric nuisance (blur, noise, light, colour) but the renders' own glyphs, and frozen; the
generator then pays its CTC loss on every translated render, so a translation must stay readable
as the characters the render drew (the OCR-consistency loss the GAN-for-text literature adds,
../shared/REALISM.md, lever 2).

One reader per script: a Latin one (us, br, eu renders) and a cn one that starts from it
(`with_charset`) and also learns the province characters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..models.crnn import CRNN, INPUT_SIZE, greedy_decode, with_charset
from ..renderer.spec_loader import load_region
from ..stream.seeding import share
from .realdata import RealGroup
from .unpaired import RENDER_SPECS, render_batch

SCRIPTS = {"latin": ("us", "br", "eu"), "cn": ("cn",)}  # script -> real-data regions it reads
READER_MIN_ACCURACY = 0.9  # a reader reading fewer clean renders exactly gives a noisy loss (warned)


def script_of(region: str) -> str | None:
    """The script whose reader reads `region`'s renders (None: no reader, no text loss)."""
    return next((s for s, regions in SCRIPTS.items() if region in regions), None)


def script_charset(script: str) -> str:
    """Every character the renders of a script's regions can contain, sorted."""
    return "".join(sorted({ch for r in SCRIPTS[script] for ch in load_region(RENDER_SPECS[r]).charset}))


def encode(texts: list[str], charset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """CTC targets: concatenated class indices (character i of charset = class i + 1) and lengths."""
    index = {ch: i + 1 for i, ch in enumerate(charset)}
    try:
        labels = [index[ch] for t in texts for ch in t]
    except KeyError as e:
        raise ValueError(f"character {e.args[0]!r} is not in the reader's charset") from None
    return torch.tensor(labels, dtype=torch.int64), torch.tensor([len(t) for t in texts], dtype=torch.int64)


def ctc(log_probs: torch.Tensor, texts: list[str], charset: str) -> torch.Tensor:
    """Mean CTC loss of log_probs (T, B, C + 1) against texts, every sequence T steps long; the
    targets go to the log_probs' device."""
    target, target_len = encode(texts, charset)
    input_len = torch.full((len(texts),), log_probs.shape[0], dtype=torch.int64)
    dev = log_probs.device
    return F.ctc_loss(log_probs, target.to(dev), input_len.to(dev), target_len.to(dev), blank=0, zero_infinity=True)


def nuisance(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Photometric and small geometric nuisance a photographed plate has and a render lacks, glyphs
    untouched: (B, 3, H, W) in [0, 1] -> same. Gaussian blur (sigma 0-1.5 px), shift/scale/rotation
    of a few per cent, per-channel gain, contrast, brightness, sensor noise."""
    B, _, H, W = images.shape

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return torch.rand(B, *shape, generator=g) * (hi - lo) + lo

    rot, s = u(-3, 3) * math.pi / 180, u(0.92, 1.1)
    aspect = W / H
    theta = torch.stack([torch.stack([s * torch.cos(rot), -s * torch.sin(rot) * aspect, u(-0.04, 0.04)], 1),
                         torch.stack([s * torch.sin(rot) / aspect, s * torch.cos(rot), u(-0.06, 0.06)], 1)], 1)
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    x = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    sigma = u(0.05, 1.5).to(images.device)  # (B,) one blur per image, separable 7-tap Gaussian
    taps = torch.arange(-3, 4, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (taps[None] / sigma[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(3, 0)  # (B*3, 7)
    x = x.reshape(1, B * 3, H, W)
    x = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="replicate"), k[:, None, None, :], groups=B * 3)
    x = F.conv2d(F.pad(x, (0, 0, 3, 3), mode="replicate"), k[:, None, :, None], groups=B * 3)
    x = x.reshape(B, 3, H, W) * u(0.85, 1.15, 3, 1, 1).to(x.device)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.6, 1.2, 1, 1, 1).to(x.device) + mean + u(-0.15, 0.15, 1, 1, 1).to(x.device)
    noise = torch.randn(x.shape, generator=g).to(x.device) * u(0.0, 0.04, 1, 1, 1).to(x.device)
    return (x + noise).clamp(0, 1)


@dataclass
class Reader:
    """A frozen CRNN and the charset it reads."""

    model: CRNN
    charset: str

    def loss(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """Mean CTC loss of reading `texts` from images (B, 3, H, W) in [0, 1]; differentiable in the
        images (the reader's weights are frozen, BatchNorm in eval mode)."""
        log_probs = self.model(images).float().log_softmax(-1)  # (T, B, C + 1)
        return ctc(log_probs, texts, self.charset)

    def state(self) -> dict:
        return {"charset": self.charset, "config": dict(self.model.config), "state_dict": self.model.state_dict()}

    @classmethod
    def from_state(cls, state: dict, device: torch.device | str = "cpu") -> Reader:
        model = CRNN(**state["config"])
        model.load_state_dict(state["state_dict"])
        return cls(freeze(model.to(device)), state["charset"])


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def mixed_batch(regions: tuple[str, ...], n: int, g: torch.Generator,
                device: torch.device | str = "cpu") -> tuple[torch.Tensor, list[str]]:
    """n renders shared out over `regions`, each with `nuisance` at its own canvas, then resized
    to the reader's input: (n, 3, 32, 128) in [0, 1] and their texts."""
    parts, texts = [], []
    for i, region in enumerate(regions):
        k = share(n, i, len(regions))
        if k:
            images, t = render_batch(region, k, None, g, device)
            parts.append(F.interpolate(nuisance(images, g), size=INPUT_SIZE, mode="bilinear",
                                       align_corners=False, antialias=True))
            texts += t
    return torch.cat(parts), texts


def real_crops(groups: dict[str, RealGroup], script: str, charset: str) -> tuple[torch.Tensor, list[str]] | None:
    """The real crops of a script's regions whose text the reader can spell, resized to its input:
    ((N, 3, 32, 128) in [0, 1], texts), or None if there are none."""
    parts, texts = [], []
    for region in SCRIPTS[script]:
        grp = groups.get(region)
        if grp is None:
            continue
        keep = [i for i, t in enumerate(grp.texts) if t and set(t) <= set(charset)]
        if keep:
            parts.append(F.interpolate(grp.images[keep], size=INPUT_SIZE, mode="bilinear", align_corners=False,
                                       antialias=True))
            texts += [grp.texts[i] for i in keep]
    return (torch.cat(parts), texts) if parts else None


def train_reader(script: str, steps: int, seed: int, batch: int = 64, lr: float = 3e-3,
                 start: Reader | None = None, device: torch.device | str = "cpu",
                 real: tuple[torch.Tensor, list[str]] | None = None) -> Reader:
    """Train a CRNN on fresh renders (with `nuisance`) of a script's regions, then freeze it.
    `start`: warm-start from another script's reader (shared characters and every layer).
    `real`: real crops (N, 3, 32, 128) and their texts (`real_crops`) that fill half of every batch,
    so the reader also knows the real plates' glyphs and a translation may take their shapes."""
    charset = script_charset(script)
    with torch.random.fork_rng(devices=[]):  # the new head rows' initialisation: seeded, caller's RNG untouched
        torch.manual_seed(seed)
        model = with_charset(start.model, start.charset, charset) if start is not None else CRNN(len(charset))
    model = model.to(device).train()
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    g = torch.Generator().manual_seed(seed)
    regions = SCRIPTS[script]
    n_real = batch // 2 if real is not None else 0
    for _ in range(steps):
        images, texts = mixed_batch(regions, batch - n_real, g, device)
        if n_real:
            pick = torch.randint(len(real[1]), (n_real,), generator=g)
            images = torch.cat([images, nuisance(real[0][pick].to(device), g)])
            texts = texts + [real[1][i] for i in pick.tolist()]
        loss = ctc(model(images).log_softmax(-1), texts, charset)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
    return Reader(freeze(model), charset)


def train_readers(steps: int, seed: int, device: torch.device | str = "cpu",
                  real: dict[str, RealGroup] | None = None) -> dict[str, Reader]:
    """The Latin reader from scratch, then the cn reader warm-started from it (`steps` each);
    `real` (region -> training crops with texts): half of every batch from them (`train_reader`)."""
    def crops(script: str) -> tuple[torch.Tensor, list[str]] | None:
        return real_crops(real, script, script_charset(script)) if real else None

    latin = train_reader("latin", steps, seed, device=device, real=crops("latin"))
    return {"latin": latin, "cn": train_reader("cn", steps, seed + 1, start=latin, device=device, real=crops("cn"))}


@torch.no_grad()
def read_accuracy(reader: Reader, script: str, n: int, seed: int, transform=None) -> float:
    """Exact-plate accuracy of `reader` on n fresh renders of its script (optionally transformed,
    e.g. by a generator): how well the reader, or a translation, keeps the text."""
    g = torch.Generator().manual_seed(seed)
    right = total = 0
    device = next(reader.model.parameters()).device
    for i, region in enumerate(SCRIPTS[script]):
        k = share(n, i, len(SCRIPTS[script]))
        if not k:
            continue
        images, texts = render_batch(region, k, None, g, device)
        if transform is not None:
            images = transform(images)
        pred = greedy_decode(reader.model(images), reader.charset)
        right += sum(p == t for p, t in zip(pred, texts))
        total += k
    return right / max(total, 1)
