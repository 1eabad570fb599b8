"""Where plates go in a scene: real photos framed to the scene size without cutting a plate, real
plates erased, and new plates placed by a ScenePrior where they overlap nothing."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .composite import composite
from .scene_prior import ScenePrior

CANDIDATES = 8  # placements tried per new plate before it is left out
MAX_SHARE = 0.6  # widest plate, share of the scene width
ERASE_DILATE = 0.12  # an erased box grows by this share of its height on every side (annotation slack)
TILT_MAX_DEG = 30.0  # Scene.p_tilt: the most a replacing plate is turned in its box
FILL = (24, 72)  # resolution the erasing fill is computed at


def frame_photo(image: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], zoom: float,
                g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A photo (3, h, w) uint8 and its plate boxes (K, 4) -> a scene (3, H, W) float in [0, 1] and
    the boxes in it. The photo is scaled to fit the scene times `zoom` (>= 1) and cropped at a
    random place that cuts no box (zoom is lowered until one exists); where it does not fill the
    scene it is centred on its mean colour (no mirrored content: a mirrored plate would be unlabelled)."""
    H, W = size
    _, h, w = image.shape
    fit = min(H / h, W / w)
    lo, hi = boxes.amin(0) if len(boxes) else None, boxes.amax(0) if len(boxes) else None
    z = max(1.0, zoom)
    while True:
        s = fit * z
        sh, sw = max(1, round(h * s)), max(1, round(w * s))
        ox_range = _window(sw, W, None if lo is None else (lo[0] * s, hi[2] * s))
        oy_range = _window(sh, H, None if lo is None else (lo[1] * s, hi[3] * s))
        if (ox_range and oy_range) or z == 1.0:
            break
        z = max(1.0, z / 1.15)
    ox = _pick(ox_range or (0.0, 0.0), g)
    oy = _pick(oy_range or (0.0, 0.0), g)
    img = F.interpolate(image[None].float() / 255, size=(sh, sw), mode="bilinear", align_corners=False,
                        antialias=s < 1)[0]
    out = img.mean((1, 2), keepdim=True).expand(3, H, W).clone()
    # paste the (cropped) photo: offset ox, oy >= 0 crops it; a photo smaller than the scene is centred
    px, py = (W - sw) // 2 if sw < W else 0, (H - sh) // 2 if sh < H else 0
    cw, ch = min(W, sw), min(H, sh)
    x0, y0 = (int(ox) if sw > W else 0), (int(oy) if sh > H else 0)
    out[:, py: py + ch, px: px + cw] = img[:, y0: y0 + ch, x0: x0 + cw]
    shift = torch.tensor([px - x0, py - y0, px - x0, py - y0], dtype=torch.float32)
    return out.clamp_(0, 1), boxes.float() * s + shift


def _window(scaled: int, frame: int, span: tuple[float, float] | None) -> tuple[float, float] | None:
    """Offsets o in [0, scaled - frame] for which [span] lies inside [o, o + frame]; None if none.
    A photo no larger than the frame has the one offset 0."""
    if scaled <= frame:
        return (0.0, 0.0)
    lo, hi = 0.0, float(scaled - frame)
    if span is not None:
        lo, hi = max(lo, math.ceil(span[1]) - frame), min(hi, math.floor(span[0]))
    return (lo, hi) if lo <= hi else None


def _pick(r: tuple[float, float], g: torch.Generator) -> float:
    return r[0] + (r[1] - r[0]) * float(torch.rand(1, generator=g))


def box_quads(boxes: torch.Tensor, dilate: float = 0.0) -> torch.Tensor:
    """(N, 4) xyxy -> (N, 4, 2) TL, TR, BR, BL corners, grown by `dilate` x box height per side."""
    d = dilate * (boxes[:, 3] - boxes[:, 1])
    x0, y0, x1, y1 = boxes[:, 0] - d, boxes[:, 1] - d, boxes[:, 2] + d, boxes[:, 3] + d
    return torch.stack([torch.stack([x0, y0], -1), torch.stack([x1, y0], -1), torch.stack([x1, y1], -1),
                        torch.stack([x0, y1], -1)], 1)


def tilt_quads(boxes: torch.Tensor, aspects: torch.Tensor, p: float, max_deg: float, g: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Replacing plates turned in their boxes: boxes (N, 4) xyxy, aspects (N,) each plate's width / height ->
    (quads (N, 4, 2) TL, TR, BR, BL, tilted (N,) bool). A box narrower than its plate's aspect (a real plate
    seen turned, or from the side) gets, with probability p, a rectangle turned by a random angle up to the
    one at which the plate fits it undistorted (at most max_deg) that touches all four sides of the box:
    a turned plate instead of one squeezed to fill it (the rest of the squeeze stays). Every other box is
    its own quad (the plate fills it, as without tilting). A tilted plate leaves corners of its box
    uncovered: erase the real plate under it first."""
    N = len(boxes)
    quads = box_quads(boxes)
    w, h = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-3), (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-3)
    r, a = h / w, aspects.float()  # box height / width; plate width / height
    # the plate's corners touch the box's sides when turned by theta with tan(theta) = (r a - 1) / (a - r)
    full = torch.atan(((r * a - 1) / (a - r).clamp(min=1e-6)).clamp(min=0)).clamp(max=math.radians(max_deg))
    u = torch.rand(N, 3, generator=g)
    tilted = (u[:, 0] < p) & (r * a > 1.02) & (r < a)
    if not bool(tilted.any()):
        return quads, tilted
    theta = full * u[:, 1]  # a random share of the full turn
    t, cos, sin = torch.tan(theta), torch.cos(theta), torch.sin(theta)
    sign = torch.where(u[:, 2] < 0.5, -1.0, 1.0)
    ratio = ((1 - r * t) / (r - t).clamp(min=1e-6)).clamp(min=1.0)  # the rectangle's width / height at that turn
    length = w / (cos + sin / ratio)  # its width: the turned rectangle spans the box's width
    c = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], -1)  # (N, 2)
    along = torch.stack([cos, sign * sin], -1) * (length / 2)[:, None]  # half the plate's width, turned
    up = torch.stack([-sign * sin, cos], -1) * (length / ratio / 2)[:, None]  # half its height, turned
    turned = torch.stack([c - along - up, c + along - up, c + along + up, c - along + up], 1)
    return torch.where(tilted[:, None, None], turned, quads), tilted


def erase(scenes: torch.Tensor, boxes: torch.Tensor, owner: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Cover every box (N, 4) of scene owner[i] with a fill from its surroundings (normalised
    convolution of a tile twice the box's size, at low resolution, plus grain like the surroundings'),
    feathered in: the real plate is gone and nothing of it is left unlabelled. In place; returns scenes."""
    N = len(boxes)
    if N == 0:
        return scenes
    B, _, H, W = scenes.shape
    dev = scenes.device
    quads = box_quads(boxes, ERASE_DILATE)
    lo, hi = quads.amin(1), quads.amax(1)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    # a tile of twice the (dilated) box around it, sampled at FILL resolution x 2
    th, tw = FILL[0] * 2, FILL[1] * 2
    ys = torch.linspace(-1, 1, th)[:, None].expand(th, tw)
    xs = torch.linspace(-1, 1, tw)[None, :].expand(th, tw)
    px = centre[:, 0, None, None] + xs * 2 * half[:, 0, None, None]  # (N, th, tw) scene pixels
    py = centre[:, 1, None, None] + ys * 2 * half[:, 1, None, None]
    # every scene stacked into one tall image: one grid_sample for all tiles (coordinates clamped to
    # their own scene, which is what border padding would do)
    rows = py.clamp(0, H - 1) + owner.cpu().float()[:, None, None] * H
    grid = torch.stack([(2 * px.clamp(0, W - 1) + 1) / W - 1, (2 * rows + 1) / (B * H) - 1], -1)
    tall = scenes.permute(1, 0, 2, 3).reshape(1, 3, B * H, W)
    tile = F.grid_sample(tall, grid.view(1, N * th, tw, 2).to(dev), mode="bilinear", padding_mode="border",
                         align_corners=False).view(3, N, th, tw).transpose(0, 1)  # (N, 3, th, tw)
    known = ((xs.abs() > 0.5) | (ys.abs() > 0.5)).to(tile.dtype).expand(N, 1, th, tw).to(dev)
    k = 2 * (tw // 6) + 1
    sigma = tw / 10
    num = _blur(tile * known, k, sigma)
    den = _blur(known, k, sigma).clamp(min=1e-4)
    fill = num / den
    # grain: the surroundings' own high-frequency texture, shuffled from the ring into the hole
    detail = (tile - _blur(tile, 5, 1.2)) * known
    flip = torch.flip(detail, dims=[-1, -2])
    fill = fill + flip
    inner = fill[:, :, th // 4: th - th // 4, tw // 4: tw - tw // 4]  # the dilated box itself
    scenes, _ = composite(scenes, inner.clamp(0, 1), quads, owner, g, harmonise=None, feather=True)
    return scenes


def _blur(x: torch.Tensor, k: int, sigma: float) -> torch.Tensor:
    from kornia.filters import gaussian_blur2d

    return gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="replicate")


def prior_boxes(prior: ScenePrior, n: int, g: torch.Generator) -> torch.Tensor:
    """(n, CANDIDATES, 4) candidate (width share, x, y, box aspect) draws."""
    return prior.sample_boxes(n * CANDIDATES, g).view(n, CANDIDATES, 4)


def place_new(prior: ScenePrior, owner: torch.Tensor, aspects: torch.Tensor, occupied: list[torch.Tensor],
              size: tuple[int, int], g: torch.Generator, min_px: float, scale: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Quads (n, 4, 2) for new plates of the given aspects (width / height as made) in scenes owner
    (n,), placed by the prior where they overlap none of the scene's occupied boxes (a list of
    (k, 4) xyxy per scene, extended in place) nor each other; `scale` (n,) enlarges the prior's
    sizes (hard negatives). Returns (quads (m, 4, 2), kept (n,) bool): a plate with no free
    candidate place is left out."""
    H, W = size
    n = len(owner)
    cands = prior_boxes(prior, n, g)  # (n, C, 4)
    u = torch.rand(n, 6, generator=g)
    quads, kept = [], torch.zeros(n, dtype=torch.bool)
    for i in range(n):  # a handful per batch; the candidates are drawn above in one go
        b = int(owner[i])
        share, cx, cy, box_aspect = cands[i].unbind(-1)  # (C,) each
        a = float(aspects[i])
        pw = (share * W * (1.0 if scale is None else float(scale[i]))).clamp(min_px, MAX_SHARE * W)
        ph = pw / box_aspect.clamp(min=0.5 * a, max=a)  # foreshortened by a yaw: box aspect <= the plate's
        ph = ph.clamp(max=0.45 * H)
        pw = pw.clamp(max=ph * a)
        x0 = (cx * W - pw / 2).clamp(min=1.0).minimum(W - 1 - pw)
        y0 = (cy * H - ph / 2).clamp(min=1.0).minimum(H - 1 - ph)
        boxes = torch.stack([x0, y0, x0 + pw, y0 + ph], 1)  # (C, 4)
        occ = occupied[b]
        free = torch.ones(CANDIDATES, dtype=torch.bool) if len(occ) == 0 else ~boxes_near(boxes, occ).any(1)
        free &= (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] <= W) & (boxes[:, 3] <= H)
        if not bool(free.any()):
            continue
        c = int(free.nonzero()[0, 0])
        occupied[b] = torch.cat([occ, boxes[c: c + 1]])
        kept[i] = True
        quads.append(_plate_quad(boxes[c], u[i]))
    return (torch.stack(quads) if quads else torch.zeros(0, 4, 2)), kept


def boxes_near(a: torch.Tensor, b: torch.Tensor, gap: float = 2.0) -> torch.Tensor:
    """(n, m) whether box a_i comes within `gap` px of box b_j."""
    return ((a[:, None, 0] < b[None, :, 2] + gap) & (b[None, :, 0] < a[:, None, 2] + gap)
            & (a[:, None, 1] < b[None, :, 3] + gap) & (b[None, :, 1] < a[:, None, 3] + gap))


def _plate_quad(box: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """A plate quad inside box (4,) xyxy: tilted up to 4 degrees, one side nearer (yaw), corners
    jittered by up to 4 % of the height, then fitted back into the box."""
    x0, y0, x1, y1 = box.tolist()
    w, h = x1 - x0, y1 - y0
    ang = (float(u[0]) * 2 - 1) * math.radians(4)
    near = (float(u[1]) * 2 - 1) * 0.12  # one vertical side up to 12 % taller than the other
    q = torch.tensor([[-w / 2, -h / 2 * (1 - near)], [w / 2, -h / 2 * (1 + near)], [w / 2, h / 2 * (1 + near)],
                      [-w / 2, h / 2 * (1 - near)]])
    rot = torch.tensor([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    q = q @ rot.T + (u[2:].view(2, 2).repeat(2, 1) * 2 - 1) * 0.04 * h
    lo, hi = q.amin(0), q.amax(0)
    q = (q - lo) / (hi - lo).clamp(min=1e-6) * torch.tensor([w, h])  # fit the box exactly
    return q + torch.tensor([x0, y0])
