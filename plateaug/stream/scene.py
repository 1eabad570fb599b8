"""Scene mode: plates warped by random homographies into backgrounds (procedural or a folder
of images), with boxes, corners and character boxes in scene coordinates."""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from kornia.geometry.transform import get_perspective_transform
from PIL import Image, UnidentifiedImageError

from ..renderer.device import to_device
from ..training.realdata import IMAGE_SUFFIXES
from . import seeding
from .augment import augment as apply_augment
from .augment import boxes_to_corners, corners_to_boxes
from .warp import warp_with_coverage

AUGMENT_TRIES = 4  # augmentations tried per scene before it is left unaugmented (see augment_scenes)


@lru_cache(maxsize=64)
def _upsample_matrix(n_in: int, n_out: int, mode: str, device: str) -> torch.Tensor:
    """(n_out, n_in) matrix R with R @ v == F.interpolate(v, n_out, mode, align_corners=False) along
    one axis (torch's bilinear and bicubic upsampling are separable), built by upsampling the identity."""
    eye = torch.eye(n_in).view(n_in, 1, n_in, 1)
    return F.interpolate(eye, size=(n_out, 1), mode=mode, align_corners=False)[:, 0, :, 0].T.contiguous().to(device)


def smooth_field(coarse: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """(n, C, h, w) -> (n, C, H, W): F.interpolate(coarse, size, mode, align_corners=False) as two
    small matmuls (at 64x256 on a 2-core CPU: 7x faster for the bicubic field, ~2x for the bilinear
    ones; equal within 1e-6)."""
    n, c, h, w = coarse.shape
    H, W = size
    dev = str(coarse.device)
    rows = (coarse.reshape(n * c * h, w) @ _upsample_matrix(w, W, mode, dev).T).view(n * c, h, W)
    return torch.matmul(_upsample_matrix(h, H, mode, dev), rows).view(n, c, H, W)


NOISE_BANK = 1 << 22  # Gaussian values in the CPU fine-noise bank (16 MiB)
NOISE_BANK_SEED = 7919


@lru_cache(maxsize=1)
def _noise_bank() -> torch.Tensor:
    """(NOISE_BANK,) float32 standard normal values, drawn once per process from a fixed seed."""
    return torch.randn(NOISE_BANK, generator=torch.Generator().manual_seed(NOISE_BANK_SEED))


def add_fine_noise(img: torch.Tensor, std: float | torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """In place: img (n, C, H, W) += std * one grey N(0, 1) field per image, drawn from g; std a
    number or (n,) one per image. On a CUDA generator the field is drawn there (randn). On the CPU
    each image takes a window at a random offset (from g) of a fixed bank of Gaussian values: within
    an image the values are i.i.d. standard normal as before, and the draw costs n offsets instead of
    n * H * W values (the CPU generator makes 100-170 M values/s: 2 M per batch of 128 crops at 64x256
    were 12-20 ms, ~5 % of the stream's time per batch; the windows are 3 ms)."""
    n, _, H, W = img.shape
    scale = std if isinstance(std, (int, float)) else to_device(std, img.device).view(n, 1, 1, 1)
    if g.device.type != "cpu" or H * W > NOISE_BANK // 4:
        return img.add_(torch.randn(n, 1, H, W, generator=g, device=g.device) * scale)
    bank = _noise_bank()
    starts = torch.randint(0, NOISE_BANK - H * W + 1, (n,), generator=g)  # (n,)
    windows = bank.as_strided((NOISE_BANK - H * W + 1, H * W), (1, 1))  # row i = bank[i: i + H * W], no copy
    field = windows[starts].view(n, 1, H, W)
    return img.add_(field, alpha=scale) if isinstance(scale, (int, float)) else img.add_(field * scale)


def procedural_backgrounds(n: int, size: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    """(n, 3, H, W) street-like clutter: smooth colour fields, blocks and fine noise, in [0, 1],
    drawn on g's device (a CUDA generator draws them on the GPU; a CPU one as before).
    In place where it can be: on the CPU this is memory-bound, and in crop mode it runs per crop."""
    H, W = size
    dev = g.device
    grey = torch.rand(n, 1, 1, 1, generator=g, device=dev) * 0.6 + 0.2
    base = grey + (torch.rand(n, 3, 1, 1, generator=g, device=dev) - 0.5) * 0.25  # mostly grey, a little colour
    low = smooth_field(torch.rand(n, 1, 6, 10, generator=g, device=dev), size, "bicubic")  # (n, 1, H, W)
    tint = smooth_field(torch.rand(n, 3, 3, 5, generator=g, device=dev), size, "bilinear")  # (n, 3, H, W)
    mid = smooth_field(torch.rand(n, 1, 24, 40, generator=g, device=dev), size, "bilinear")  # (n, 1, H, W)
    # base + (low - 0.5) * 0.4 + (tint - 0.5) * 0.15 + (mid - 0.5) * 0.12, one-channel fields summed first
    img = tint.mul_(0.15).add_(base - 0.5 * (0.4 + 0.15 + 0.12)).add_(low.mul_(0.4).add_(mid, alpha=0.12))
    # a few axis-aligned blocks (car body parts, walls, signs): 80 % block colour, 20 % what is below
    xs, ys = torch.arange(W, device=dev), torch.arange(H, device=dev)
    for _ in range(4):
        x0 = (torch.rand(n, generator=g, device=dev) * W).long()
        y0 = (torch.rand(n, generator=g, device=dev) * H).long()
        bw = (torch.rand(n, generator=g, device=dev) * W * 0.5).long() + 8
        bh = (torch.rand(n, generator=g, device=dev) * H * 0.4).long() + 8
        col = torch.rand(n, 1, generator=g, device=dev) * 0.8 + (torch.rand(n, 3, generator=g, device=dev) - 0.5) * 0.3
        in_x = ((xs[None] >= x0[:, None]) & (xs[None] < x0[:, None] + bw[:, None])).float()  # (n, W)
        in_y = ((ys[None] >= y0[:, None]) & (ys[None] < y0[:, None] + bh[:, None])).float()  # (n, H)
        weight = (in_y[:, :, None] * in_x.mul_(0.8)[:, None, :])[:, None]  # (n, 1, H, W): 0.8 in the block
        img.lerp_(col[:, :, None, None].expand_as(img), weight)
    return add_fine_noise(img, 0.02, g).clamp_(0, 1)


class FolderBackgrounds:
    """Random crops of images from a folder, decoded on demand (an LRU of decoded files)."""

    def __init__(self, folder: str | Path, cache: int = 64):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"backgrounds folder {self.folder} does not exist")
        self.files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"backgrounds folder {self.folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.cache: dict[Path, torch.Tensor] = {}
        self.cache_size = cache
        self.bad: set[Path] = set()

    def _load(self, path: Path) -> torch.Tensor | None:
        if path in self.cache:
            return self.cache[path]
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
            if path not in self.bad:
                warnings.warn(f"skipping background {path}: {e}", stacklevel=3)
                self.bad.add(path)
            return None
        t = torch.from_numpy(arr.copy()).permute(2, 0, 1)  # (3, h, w) uint8
        if len(self.cache) >= self.cache_size:
            self.cache.pop(next(iter(self.cache)))
        self.cache[path] = t
        return t

    def __call__(self, n: int, size: tuple[int, int], g: torch.Generator) -> torch.Tensor:
        """(n, 3, H, W) in [0, 1]: each a random file, random crop at scene aspect, resized."""
        H, W = size
        out = []
        picks = torch.randint(len(self.files), (n * 4,), generator=g).tolist()
        for i in picks:
            if len(out) == n:
                break
            t = self._load(self.files[i])
            if t is None:
                continue
            h, w = t.shape[-2:]
            scale = min(h / H, w / W) * float(0.6 + 0.4 * torch.rand(1, generator=g))
            ch, cw = max(1, int(H * scale)), max(1, int(W * scale))
            y = int(torch.randint(h - ch + 1, (1,), generator=g))
            x = int(torch.randint(w - cw + 1, (1,), generator=g))
            crop = t[:, y: y + ch, x: x + cw][None].float() / 255
            out.append(F.interpolate(crop, size=size, mode="bilinear", align_corners=False, antialias=True)[0])
        if len(out) < n:
            raise ValueError(f"could not read enough background images from {self.folder} "
                             f"({len(self.bad)} unreadable of {len(self.files)})")
        return torch.stack(out)


def place_plates(counts: torch.Tensor, aspects: torch.Tensor, size: tuple[int, int],
                 g: torch.Generator) -> torch.Tensor:
    """Destination quads (N, 4, 2) for plates in scenes: scene b gets counts[b] plates side by
    side in its own vertical strips (no overlaps), each with random size, position, tilt and
    perspective. aspects: (N,) width / height of each plate, in scene order.

    Every corner lies inside the image (by a margin of up to a pixel): a tilted, perspective-
    jittered quad that would not fit its strip or the image height is shrunk until it does, so a
    plate is never cut off and its full text and character boxes are true. (Plates partly outside
    the image are not offered.)"""
    H, W = size
    strips = torch.repeat_interleave(counts, counts).float()  # (N,) plates in the plate's scene
    k = torch.cat([torch.arange(int(c)) for c in counts]).float()  # (N,) position in its scene
    N = len(aspects)
    strip_w = W / strips
    pw = strip_w * (0.45 + 0.45 * torch.rand(N, generator=g))
    pw = torch.minimum(pw, torch.full_like(pw, W * 0.6))
    ph = pw / aspects
    ph = torch.minimum(ph, torch.full_like(ph, H * 0.5))
    pw = ph * aspects
    ux, uy = torch.rand(N, generator=g), torch.rand(N, generator=g)  # where in the room left
    half = torch.stack([-pw / 2, -ph / 2, pw / 2, -ph / 2, pw / 2, ph / 2, -pw / 2, ph / 2], 1).view(N, 4, 2)
    ang = (torch.rand(N, generator=g) - 0.5) * 0.25  # radians, about +-7 degrees
    rot = torch.stack([torch.cos(ang), -torch.sin(ang), torch.sin(ang), torch.cos(ang)], 1).view(N, 2, 2)
    quad = half @ rot.transpose(1, 2)
    quad = quad + (torch.rand(N, 4, 2, generator=g) - 0.5) * 0.12 * pw[:, None, None]  # perspective
    # fit the quad's extent into its strip and the image height, less a margin, then place it
    margin = (torch.minimum(strip_w, torch.full_like(strip_w, float(H))) / 16).clamp(max=1.0)
    lo, hi = quad.amin(1), quad.amax(1)  # (N, 2) extent around the centre
    room = torch.stack([strip_w - 2 * margin, H - 2 * margin], 1)
    shrink = (room / (hi - lo)).amin(1).clamp(max=1.0)
    quad, lo, hi = quad * shrink[:, None, None], lo * shrink[:, None], hi * shrink[:, None]
    x0, x1 = k * strip_w + margin - lo[:, 0], (k + 1) * strip_w - margin - hi[:, 0]
    y0, y1 = margin - lo[:, 1], H - margin - hi[:, 1]
    cx = x0 + ux * (x1 - x0).clamp(min=0)
    cy = y0 + uy * (y1 - y0).clamp(min=0)
    return quad + torch.stack([cx, cy], 1)[:, None, :]


def compose(backgrounds: torch.Tensor, plates: torch.Tensor, src_size: tuple[int, int], char_boxes: torch.Tensor,
            counts: torch.Tensor, quads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Warp plates into their scenes.

    backgrounds (B, 3, Hs, Ws); plates (N, 3, h, w) in scene order (scene b owns counts[b]
    consecutive plates); src_size: the (H, W) pixel frame char_boxes are given in; char_boxes
    (N, S, 4); quads (N, 4, 2) destinations. Returns scenes (B, 3, Hs, Ws), scene char boxes
    (N, S, 4) (enclosing boxes of the warped characters, zero rows stay zero) and corners
    (N, 4, 2).
    """
    B, _, Hs, Ws = backgrounds.shape
    N, _, h, w = plates.shape
    dev = plates.device
    src = to_device(torch.tensor([[0, 0], [w, 0], [w, h], [0, h]], dtype=torch.float32), dev).expand(N, 4, 2)
    quads = to_device(quads, dev)
    M = get_perspective_transform(src, quads)  # (N, 3, 3) plate texture -> scene
    counts = counts.cpu()
    if B == N and bool((counts == 1).all()):  # crop framing: plate b in scene b, no gather or scatter
        rgb, alpha = warp_with_coverage(plates, M, (Hs, Ws))
        out = torch.lerp(backgrounds, rgb, alpha)  # background * (1 - alpha) + rgb * alpha
    else:
        # which plates fill which slot, and their scenes: index work on the CPU (counts are there), one
        # non-blocking copy to the device (nonzero or repeat_interleave there would sync the host per slot)
        scene_of = torch.repeat_interleave(torch.arange(B), counts)
        k = torch.cat([torch.arange(int(c)) for c in counts])
        sels = [(k == slot).nonzero().squeeze(1) for slot in range(int(counts.max()))]
        sizes = [len(sel) for sel in sels]
        order = torch.cat(sels) if sels else k
        slots = to_device(torch.stack([order, scene_of[order]]), dev).split(sizes, 1)  # (2, plates in slot) each
        out = backgrounds.clone()
        for sel, idx in slots:  # a few slots, each a batched warp of all scenes' k-th plates
            rgb, alpha = warp_with_coverage(plates[sel], M[sel], (Hs, Ws))
            out[idx] = torch.lerp(out[idx], rgb, alpha)
    S = char_boxes.shape[1]
    scale = to_device(torch.tensor([w / src_size[1], h / src_size[0]]), dev)
    pts = boxes_to_corners(char_boxes.to(dev)).reshape(N, S * 4, 2) * scale
    pts = torch.cat([pts, torch.ones_like(pts[..., :1])], -1) @ M.transpose(1, 2)
    pts = pts[..., :2] / pts[..., 2:]
    valid = (char_boxes.to(dev).abs().sum(-1, keepdim=True) > 0)
    boxes = corners_to_boxes(pts.view(N, S, 4, 2), Ws, Hs) * valid
    return out, boxes, quads


def augment_scenes(aug, scenes: torch.Tensor, char_boxes: torch.Tensor, corners: torch.Tensor, valid: torch.Tensor,
                   seed: int, tries: int = AUGMENT_TRIES) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`augment` for whole scenes, keeping every plate inside the image: a scene in which the
    augmentation moved a plate corner out of the image is augmented again with another seed
    (derived from `seed`, so still reproducible), and left unaugmented if none of `tries` keeps
    all its plates whole. Arguments as for `augment`; corners (B, 4K, 2) hold K plate
    quadrilaterals per scene, all-zero rows for absent plates."""
    if aug is None:
        return scenes, char_boxes, corners
    B, _, H, W = scenes.shape
    present = corners.view(B, -1, 4, 2).abs().sum((-1, -2)) > 0  # (B, K) plates that exist

    def whole(c: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:  # (b, 4K, 2) -> (b,): all plates inside
        x, y = c[..., 0], c[..., 1]
        inside = ((x >= 0) & (x <= W) & (y >= 0) & (y <= H)).view(len(c), -1, 4).all(-1)
        return (inside | ~present[rows]).all(-1)

    out, cb, co = scenes.clone(), char_boxes.clone(), corners.clone()
    idx = torch.arange(B, device=scenes.device)  # scenes still to augment
    for attempt in range(tries):
        a_img, a_cb, a_co = apply_augment(aug, scenes[idx], char_boxes[idx], corners[idx], valid[idx],
                                          seed if attempt == 0 else seeding.mix(seed, attempt))
        ok = whole(a_co, idx)
        done = idx[ok]
        out[done], cb[done], co[done] = a_img[ok], a_cb[ok], a_co[ok]
        idx = idx[~ok]
        if len(idx) == 0:
            break
    return out, cb, co  # scenes left in idx keep their unaugmented pixels and labels
