"""A small single-class plate detector (after CenterNet, Zhou et al. 2019, "Objects as Points"):
a residual conv trunk to stride 32, a light feature pyramid back to stride 4, and three heads at
stride 4: a centre heatmap, the box size (log pixels) and the centre's sub-pixel offset. Trained
from scratch in a few minutes on 2 CPU cores, it is what benchmarks/detection.py measures scene
realism with; fully convolutional (any H, W that are multiples of 32). Its targets are CenterNet's
or, with `encode_targets(spread=..., dense=True)`, TTFNet's (Liu et al. 2020): elliptical peaks and
size samples at every cell of a peak, which learn faster in a short training.

    model = PlateDetector()
    heat, size, offset = model(images)                       # images (B, 3, H, W) in [0, 1]
    loss = detection_loss(model(images), encode_targets(boxes, images.shape[-2:]))
    boxes, scores = decode(*model(images))                   # per image: (K, 4) xyxy, (K,)
    boxes, scores = decode(*flip_merge(model(images), model(images.flip(-1))))  # the flip test
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 4
MEAN, STD = 0.45, 0.25
HEAT_BIAS = -4.6  # initial heatmap logit: sigmoid = 0.01 (the focal loss's usual prior)
DENSE_FLOOR = 0.2  # encode_targets(dense=True): the lowest peak value a regression sample is drawn at


def _cbr(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    """conv k x k + BatchNorm + ReLU."""
    conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Block(nn.Module):
    """Residual basic block: two 3x3 convs (the first may stride) and a shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.a = _cbr(cin, cout, stride)
        self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.b(self.a(x)) + (x if self.skip is None else self.skip(x)), inplace=True)


class PlateDetector(nn.Module):
    """forward(images (B, 3, H, W) in [0, 1]) -> (heat logits (B, 1, H/4, W/4), log size (B, 2, H/4,
    W/4) of the box in input pixels (w, h), offset (B, 2, H/4, W/4) of the centre within its cell)."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 48, 80, 112), fpn: int = 40, head: int = 40):
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        self.stem = _cbr(3, c1, 2)  # /2
        self.s4 = nn.Sequential(Block(c1, c2, 2), Block(c2, c2))  # /4
        self.s8 = nn.Sequential(Block(c2, c3, 2), Block(c3, c3))  # /8
        self.s16 = nn.Sequential(Block(c3, c4, 2), Block(c4, c4))  # /16
        self.s32 = nn.Sequential(Block(c4, c5, 2))  # /32
        self.lat = nn.ModuleList([nn.Conv2d(c, fpn, 1) for c in (c2, c3, c4, c5)])
        self.smooth = _cbr(fpn, head)
        self.heat = nn.Sequential(_cbr(head, head), nn.Conv2d(head, 1, 1))
        self.size = nn.Sequential(_cbr(head, head), nn.Conv2d(head, 2, 1))
        self.offset = nn.Conv2d(head, 2, 1)
        nn.init.constant_(self.heat[-1].bias, HEAT_BIAS)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stem((images - MEAN) / STD)
        f4 = self.s4(x)
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        f32 = self.s32(f16)
        p = self.lat[3](f32)
        for lat, f in ((self.lat[2], f16), (self.lat[1], f8), (self.lat[0], f4)):  # top-down to stride 4
            p = lat(f) + F.interpolate(p, size=f.shape[-2:], mode="nearest")
        p = self.smooth(p)
        return self.heat(p), self.size(p), self.offset(p)


def gaussian_radius(w: torch.Tensor, h: torch.Tensor, min_overlap: float = 0.7) -> torch.Tensor:
    """CenterNet's radius (in output cells) within which a shifted box keeps IoU >= min_overlap."""
    a1, b1, c1 = 1.0, h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + (b1**2 - 4 * a1 * c1).clamp(min=0).sqrt()) / 2
    a2, b2, c2 = 4.0, 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + (b2**2 - 4 * a2 * c2).clamp(min=0).sqrt()) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + (b3**2 - 4 * a3 * c3).clamp(min=0).sqrt()) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def encode_targets(boxes: list[torch.Tensor], size: tuple[int, int], spread: float | None = None,
                   dense: bool = False) -> dict[str, torch.Tensor]:
    """Per-image boxes [(K_i, 4) xyxy input pixels] -> training targets at stride 4: heat (B, 1, h, w)
    Gaussian peaks, and for each regression sample its cell index, log size, offset, image and weight
    (flat lists; each box's weights sum to 1).

    spread None: CenterNet's round peak (radius `gaussian_radius`); a number a: TTFNet's elliptical one,
    sigma = a x the box's side / 6 on each axis (a long plate gets a long peak). dense: the size and offset
    are learnt at every cell where the box's peak is >= DENSE_FLOOR, weighted by it (TTFNet: many samples
    a box, so a short training learns sizes faster); else at the centre cell only."""
    H, W = size[0] // STRIDE, size[1] // STRIDE
    B = len(boxes)
    heat = torch.zeros(B, 1, H, W)
    ys_, xs_ = torch.arange(H, dtype=torch.float32)[:, None], torch.arange(W, dtype=torch.float32)[None, :]
    index, logsize, offset, image, weight = [], [], [], [], []
    for b, bx in enumerate(boxes):
        if len(bx) == 0:
            continue
        bx = bx.float()
        w, h = (bx[:, 2] - bx[:, 0]).clamp(min=1), (bx[:, 3] - bx[:, 1]).clamp(min=1)
        cx, cy = (bx[:, 0] + bx[:, 2]) / 2 / STRIDE, (bx[:, 1] + bx[:, 3]) / 2 / STRIDE
        ix, iy = cx.floor().clamp(0, W - 1), cy.floor().clamp(0, H - 1)
        if spread is None:
            r = gaussian_radius(w / STRIDE, h / STRIDE).clamp(min=0).floor()
            sx = sy = ((2 * r + 1) / 6).clamp(min=0.5)
        else:
            sx, sy = (spread * w / STRIDE / 6).clamp(min=0.5), (spread * h / STRIDE / 6).clamp(min=0.5)
        for k in range(len(bx)):  # a few plates per image
            g = torch.exp(-(xs_ - ix[k]) ** 2 / (2 * sx[k] ** 2) - (ys_ - iy[k]) ** 2 / (2 * sy[k] ** 2))
            heat[b, 0] = torch.maximum(heat[b, 0], g)
            if dense:
                cells = (g >= DENSE_FLOOR).flatten().nonzero()[:, 0]  # the centre cell (g = 1) among them
                gy, gx = (cells // W).float(), (cells % W).float()
                wk = g.flatten()[cells]
            else:
                cells, gy, gx, wk = (iy[k] * W + ix[k]).long()[None], iy[k][None], ix[k][None], torch.ones(1)
            index.append(cells)
            logsize.append(torch.stack([w[k].log(), h[k].log()]).expand(len(cells), 2))
            offset.append(torch.stack([cx[k] - gx, cy[k] - gy], 1))
            image.append(torch.full((len(cells),), b, dtype=torch.long))
            weight.append(wk / wk.sum())
    cat = lambda xs, shape: torch.cat(xs) if xs else torch.zeros(shape)  # noqa: E731
    return {"heat": heat, "index": cat(index, (0,)).long(), "logsize": cat(logsize, (0, 2)),
            "offset": cat(offset, (0, 2)), "image": cat(image, (0,)).long(), "weight": cat(weight, (0,))}


def detection_loss(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], targets: dict[str, torch.Tensor],
                   size_weight: float = 1.0, offset_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """CenterNet's penalty-reduced focal loss on the heatmap (per object) + L1 on log size and offset
    at the targets' regression cells (weighted; each box counts once). Returns (loss, parts)."""
    heat, size, offset = (o.float() for o in outputs)
    t = targets["heat"].to(heat.device)
    p = heat.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = t.eq(1).float()
    neg_w = (1 - t) ** 4
    pos_loss = (torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = (torch.log(1 - p) * p**2 * neg_w * (1 - pos)).sum()
    n = max(1.0, float(pos.sum()))
    focal = -(pos_loss + neg_loss) / n
    if len(targets["index"]) == 0:
        return focal, {"heat": float(focal), "size": 0.0, "offset": 0.0}
    B, _, H, W = heat.shape
    img, idx = targets["image"].to(heat.device), targets["index"].to(heat.device)
    s = size.flatten(2)[img, :, idx]  # (K, 2)
    o = offset.flatten(2)[img, :, idx]
    wt = targets["weight"].to(heat.device)[:, None] / (2 * float(targets["weight"].sum()))  # a mean over boxes
    size_l = (wt * (s - targets["logsize"].to(heat.device)).abs()).sum()
    off_l = (wt * (o - targets["offset"].to(heat.device)).abs()).sum()
    loss = focal + size_weight * size_l + offset_weight * off_l
    return loss, {"heat": float(focal.detach()), "size": float(size_l.detach()), "offset": float(off_l.detach())}


@torch.no_grad()
def decode(heat: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, k: int = 100
           ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Outputs -> per image (boxes (k, 4) xyxy input pixels, scores (k,)), the k highest peaks (3x3
    max-pool suppression)."""
    p = heat.float().sigmoid()
    peaks = p * (F.max_pool2d(p, 3, 1, 1) == p)
    B, _, H, W = p.shape
    k = min(k, H * W)
    scores, idx = peaks.view(B, -1).topk(k)
    ys, xs = (idx // W).float(), (idx % W).float()
    s = size.float().flatten(2).gather(2, idx[:, None].expand(B, 2, k)).exp()  # (B, 2, k)
    o = offset.float().flatten(2).gather(2, idx[:, None].expand(B, 2, k))
    cx, cy = (xs + o[:, 0]) * STRIDE, (ys + o[:, 1]) * STRIDE
    boxes = torch.stack([cx - s[:, 0] / 2, cy - s[:, 1] / 2, cx + s[:, 0] / 2, cy + s[:, 1] / 2], -1)
    return [(boxes[b], scores[b]) for b in range(B)]


Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # heat logits, log size, offset


def flip_merge(outputs: Outputs, flipped: Outputs) -> Outputs:
    """Flip test (CenterNet's): the outputs on images and on the same images mirrored left-right -> one set
    of outputs: heat probabilities and log sizes averaged (the mirrored ones flipped back), as heat logits,
    log size, and the unmirrored offset (a mirrored offset points the other way within its cell).
    All (B, C, h, w); the images' width a multiple of 32, so the cells line up."""
    heat, size, offset = outputs
    heat_f, size_f, _ = flipped
    if heat.shape != heat_f.shape or size.shape != size_f.shape:
        raise ValueError(f"flip_merge: outputs of different shapes, {tuple(heat.shape)} and {tuple(heat_f.shape)}")
    p = ((heat.float().sigmoid() + heat_f.float().flip(-1).sigmoid()) / 2).clamp(1e-6, 1 - 1e-6)
    return torch.log(p / (1 - p)), (size.float() + size_f.float().flip(-1)) / 2, offset.float()


def n_flops(model: nn.Module, size: tuple[int, int]) -> float:
    """Multiply-adds x 2 of one forward pass at `size` (torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, *size))
    return float(counter.get_total_flops())


__all__ = ["PlateDetector", "decode", "detection_loss", "encode_targets", "flip_merge", "gaussian_radius",
           "n_flops"]
