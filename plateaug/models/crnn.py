"""A small CRNN plate recogniser for CTC (after Shi et al. 2015, shrunk for 32x128 plate crops):
conv stack -> height collapsed -> 1-D conv sequence head -> per-column class logits, class 0 =
CTC blank. ~0.3M parameters, ~56 MFLOP (2 x multiply-adds) per 32x128 crop. The 1-D conv head
replaces the usual BiLSTM: it leaves CTC's all-blank plateau several times sooner (measured on
clean br_old crops with a wider conv stack: exact 0.97 after 75 steps of batch 64, where a
BiLSTM(128) head was still at 0 after 200), which a benchmark training dozens of recognisers on
2 CPU cores needs.
For the same reason every max-pool comes before its BatchNorm and ReLU: the same function for a
positive BatchNorm scale (both are monotone), on a quarter of the pixels, ~25 % less time per
training step on a 2-core CPU. (A stride-2 stem convolution instead of the first conv + pool cost
~35 % less and read as many or more real plates when trained on real ones, but fewer when trained
on synthetic ones: cn 0.152 ± 0.023 exact against 0.186 ± 0.038 with this CRNN,
benchmarks/results/screening/cn_baseline_*.txt.)"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = (32, 128)  # (H, W) the network is built for; other sizes are resized in forward
BLANK = 0  # CTC blank index; character i of the charset is class i + 1


def _conv(cin: int, cout: int, pool: tuple[int, int] | None = None) -> list[nn.Module]:
    """3x3 conv (same size) [+ max-pool] + BatchNorm + ReLU. Pooling before BatchNorm and ReLU: the
    same maxima (both are monotone for a positive scale), on fewer pixels."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, 1, 1, bias=False)]
    if pool is not None:
        layers.append(nn.MaxPool2d(pool))
    return layers + [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class CRNN(nn.Module):
    """Conv features (H/16 x W/4) -> 1-D convs over the W/4 = 32 columns -> (T, B, n_classes + 1).

    forward: images (B, 3, H, W) float in [0, 1] (resized to 32x128 when H, W differ)
    -> logits (T=32, B, n_classes + 1), unnormalised; apply log_softmax(-1) for nn.CTCLoss.
    """

    def __init__(self, n_classes: int, channels: tuple[int, int, int, int] = (16, 32, 48, 96), hidden: int = 192,
                 seq_layers: int = 2):
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        c1, c2, c3, c4 = channels
        self.config = dict(n_classes=n_classes, channels=tuple(channels), hidden=hidden, seq_layers=seq_layers)
        self.features = nn.Sequential(
            *_conv(3, c1, pool=(2, 2)),  # (B, c1, 16, 64)
            *_conv(c1, c2, pool=(2, 2)),  # (B, c2, 8, 32)
            *_conv(c2, c3), *_conv(c3, c3, pool=(2, 1)),  # (B, c3, 4, 32)
            *_conv(c3, c4, pool=(2, 1)),  # (B, c4, 2, 32)
        )
        seq: list[nn.Module] = []
        for i in range(seq_layers):  # k=3 per layer: +-1 column (4 input px) more context each
            seq += [nn.Conv1d(2 * c4 if i == 0 else hidden, hidden, 3, 1, 1, bias=False), nn.BatchNorm1d(hidden),
                    nn.ReLU(inplace=True)]
        self.sequence = nn.Sequential(*seq)
        self.head = nn.Conv1d(hidden if seq_layers else 2 * c4, n_classes + 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) float in [0, 1] -> logits (T, B, n_classes + 1), class 0 = blank."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"CRNN expects (B, 3, H, W) images, got shape {tuple(images.shape)}")
        if tuple(images.shape[-2:]) != INPUT_SIZE:
            images = F.interpolate(images, size=INPUT_SIZE, mode="bilinear", align_corners=False, antialias=True)
        x = self.features(images * 2 - 1)  # (B, C, 2, T)
        B, C, H, T = x.shape
        x = self.sequence(x.reshape(B, C * H, T))  # (B, hidden, T): height collapsed into features
        return self.head(x).permute(2, 0, 1)  # (T, B, n_classes + 1)


def with_charset(model: CRNN, charset: str, new_charset: str) -> CRNN:
    """A new CRNN for `new_charset` that starts from `model` (trained on `charset`): every layer but
    the head copied, head rows copied for the blank and every character both charsets hold, the
    other rows freshly initialised. Warm-starting a recogniser of a larger charset (e.g. cn plates'
    provinces + Latin letters and digits) from one that already reads the shared characters."""
    if model.head.out_channels != len(charset) + 1:
        raise ValueError(f"model has {model.head.out_channels - 1} classes, charset {len(charset)} characters")
    config = {**model.config, "n_classes": len(new_charset)}
    new = CRNN(**config)
    body = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    new.load_state_dict(body, strict=False)
    old_index = {ch: i + 1 for i, ch in enumerate(charset)}
    rows = [(j + 1, old_index[ch]) for j, ch in enumerate(new_charset) if ch in old_index] + [(BLANK, BLANK)]
    dst, src = torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])
    with torch.no_grad():
        new.head.weight[dst] = model.head.weight[src].to(new.head.weight.dtype)
        new.head.bias[dst] = model.head.bias[src].to(new.head.bias.dtype)
    return new.to(next(model.parameters()).device)


def greedy_decode(logits: torch.Tensor, charset: str) -> list[str]:
    """Best-path CTC decoding: argmax per step, repeats collapsed, blanks dropped.

    logits: (T, B, len(charset) + 1) with class 0 = blank -> B strings.
    """
    if logits.ndim != 3 or logits.shape[-1] != len(charset) + 1:
        raise ValueError(f"expected logits (T, B, {len(charset) + 1}), got shape {tuple(logits.shape)}")
    best = logits.argmax(-1).T.tolist()  # (B, T)
    out = []
    for seq in best:
        chars, prev = [], BLANK
        for k in seq:
            if k != prev and k != BLANK:
                chars.append(charset[k - 1])
            prev = k
        out.append("".join(chars))
    return out
