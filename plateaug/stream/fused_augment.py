"""The "light" augmentation preset as a few batched tensor ops instead of four kornia modules.

`FusedLight` draws the same transforms, from the same distributions, as the kornia preset
("light_kornia" in augment.py):

    BorderPerspective(0.12, p=0.5, sampling_method="area_preserving")   (kornia RandomPerspective)
    RandomAffine(degrees=3, translate=(0.02, 0.04), scale=(0.92, 1.05), shear=(-4, 4), p=0.5,
                 padding_mode="border")
    RandomMotionBlur(3, angle=30.0, direction=0.5, p=0.2)
    ColorJiggle(0.2, 0.2, 0.0, 0.0, p=0.5)

but (on small plate crops kornia's per-op, per-call overhead is most of the time):
- every parameter of a batch is drawn in one go on the CPU (no per-module parameter dicts, checks
  or per-op host syncs);
- perspective and affine are composed into ONE 3x3 matrix per image (affine @ perspective, the
  order kornia applies them in) and the image is resampled ONCE (bilinear, border padding, kornia's
  pixel convention with align_corners=False); keypoints move with the same matrix. One resampling
  instead of two is also slightly sharper than kornia's two warps;
- images drawn for no geometric transform are not resampled at all (bit-exact), and motion blur
  and colour run only on the images drawn for them;
- ColorJiggle's order of brightness and contrast is drawn per image (kornia draws one order per
  call): the same per-image distribution.

Randomness comes from `generator` when given, else from torch's global CPU generator, which
`augment()` seeds per batch inside fork_rng: same seed, same output, the caller's RNG untouched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.filters import get_motion_kernel2d
from kornia.geometry.transform import get_affine_matrix2d, get_perspective_transform
from torch import nn

from ..renderer.device import to_device
from .warp import warp_border


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None) -> torch.Tensor:
    """(n,) float32 uniform in [lo, hi) (kornia's Uniform(lo, hi).rsample, from `g`)."""
    return lo + (hi - lo) * torch.rand(n, generator=g)


class FusedLight(nn.Module):
    """forward(images (B, C, H, W), points (B, N, 2)) -> (images, points): a drop-in for the kornia
    AugmentationSequential(..., data_keys=["input", "keypoints"]) of the light preset. Arguments
    are those of the kornia modules it replaces; p_* are the per-image probabilities."""

    def __init__(self, perspective: float = 0.12, p_perspective: float = 0.5, degrees: float = 3.0,
                 translate: tuple[float, float] = (0.02, 0.04), scale: tuple[float, float] = (0.92, 1.05),
                 shear: tuple[float, float] = (-4.0, 4.0), p_affine: float = 0.5, motion_kernel: int = 3,
                 motion_angle: float = 30.0, motion_direction: float = 0.5, p_motion: float = 0.2,
                 brightness: float = 0.2, contrast: float = 0.2, p_color: float = 0.5):
        super().__init__()
        if motion_kernel < 3 or motion_kernel % 2 == 0:
            raise ValueError(f"motion_kernel must be odd and >= 3, got {motion_kernel}")
        for name, p in (("p_perspective", p_perspective), ("p_affine", p_affine), ("p_motion", p_motion),
                        ("p_color", p_color)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.perspective, self.p_perspective = float(perspective), float(p_perspective)
        self.degrees, self.translate, self.scale = float(degrees), tuple(translate), tuple(scale)
        self.shear, self.p_affine = tuple(shear), float(p_affine)
        self.motion_kernel, self.motion_angle = int(motion_kernel), float(motion_angle)
        self.motion_direction, self.p_motion = float(motion_direction), float(p_motion)
        # kornia's ColorJiggle: brightness factor in [1 - b, 1 + b] (clamped to [0, 2]), contrast in
        # [max(0, 1 - c), 1 + c]
        self.brightness = (max(0.0, 1 - brightness), min(2.0, 1 + brightness))
        self.contrast = (max(0.0, 1 - contrast), 1 + contrast)
        self.p_color = float(p_color)

    def extra_repr(self) -> str:
        return (f"perspective={self.perspective}, p_perspective={self.p_perspective}, degrees={self.degrees}, "
                f"translate={self.translate}, scale={self.scale}, shear={self.shear}, p_affine={self.p_affine}, "
                f"motion_kernel={self.motion_kernel}, motion_angle={self.motion_angle}, "
                f"motion_direction={self.motion_direction}, p_motion={self.p_motion}, brightness={self.brightness}, "
                f"contrast={self.contrast}, p_color={self.p_color}")

    # ---- parameters ---------------------------------------------------------------------------------

    def sample(self, B: int, H: int, W: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Every random parameter of a batch, on the CPU, in kornia's units: a fixed number of draws
        whatever is selected, so a seed gives the same parameters for the same B."""
        g = generator
        # RandomPerspective(area_preserving): corners (0,0), (W-1,0), (W-1,H-1), (0,H-1) each moved by
        # U(-d*W/2, d*W/2) in x and U(-d*H/2, d*H/2) in y
        start = torch.tensor([[0.0, 0.0], [W - 1.0, 0.0], [W - 1.0, H - 1.0], [0.0, H - 1.0]]).expand(B, 4, 2)
        factor = torch.tensor([self.perspective * W / 2, self.perspective * H / 2])
        end = start + 2 * factor * (torch.rand(B, 4, 2, generator=g) - 0.5)
        # RandomAffine: angle U(-deg, deg), isotropic scale, translation fractions of W and H, x shear
        # in degrees (a 2-tuple shear is x only), about the centre (W/2 - 0.5, H/2 - 0.5)
        angle = _uniform(B, -self.degrees, self.degrees, g)
        scale = _uniform(B, *self.scale, g)
        tx = _uniform(B, -self.translate[0], self.translate[0], g) * W
        ty = _uniform(B, -self.translate[1], self.translate[1], g) * H
        shear_x = _uniform(B, *self.shear, g)
        # RandomMotionBlur: angle U(-a, a), direction U(-d, d), fixed kernel size
        motion_angle = _uniform(B, -self.motion_angle, self.motion_angle, g)
        motion_direction = _uniform(B, -self.motion_direction, self.motion_direction, g)
        # ColorJiggle: factors and which of brightness / contrast goes first
        brightness = _uniform(B, *self.brightness, g)
        contrast = _uniform(B, *self.contrast, g)
        brightness_first = torch.rand(B, generator=g) < 0.5
        gates = torch.rand(4, B, generator=g)  # per-image "applied" draws, one row per op
        return {"start": start, "end": end, "angle": angle, "scale": scale, "translations": torch.stack([tx, ty], 1),
                "shear_x": shear_x, "motion_angle": motion_angle, "motion_direction": motion_direction,
                "brightness": brightness, "contrast": contrast, "brightness_first": brightness_first,
                "perspective_on": gates[0] < self.p_perspective, "affine_on": gates[1] < self.p_affine,
                "motion_on": gates[2] < self.p_motion, "color_on": gates[3] < self.p_color}

    def matrices(self, params: dict[str, torch.Tensor], H: int, W: int) -> torch.Tensor:
        """(B, 3, 3) float64 source -> destination pixel homographies: affine @ perspective, the
        identity for an op not drawn."""
        B = len(params["angle"])
        eye = torch.eye(3, dtype=torch.float64).expand(B, 3, 3)
        persp = get_perspective_transform(params["start"].double(), params["end"].double())
        center = torch.tensor([[W / 2 - 0.5, H / 2 - 0.5]], dtype=torch.float64).expand(B, 2)
        affine = get_affine_matrix2d(params["translations"].double(), center,
                                     params["scale"].double()[:, None].expand(B, 2), params["angle"].double(),
                                     params["shear_x"].double() * (math.pi / 180), torch.zeros(B, dtype=torch.float64))
        persp = torch.where(params["perspective_on"][:, None, None], persp, eye)
        affine = torch.where(params["affine_on"][:, None, None], affine, eye)
        return affine @ persp

    # ---- applying -----------------------------------------------------------------------------------

    def forward(self, images: torch.Tensor, points: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or points.ndim != 3 or points.shape[-1] != 2 or len(points) != len(images):
            raise ValueError(f"expected images (B, C, H, W) and points (B, N, 2), got {tuple(images.shape)} and "
                             f"{tuple(points.shape)}")
        B, _, H, W = images.shape
        params = self.sample(B, H, W, generator)
        return self.apply(images, points, params)

    def apply(self, images: torch.Tensor, points: torch.Tensor,
              params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply drawn `params` (from `sample`) to images and points; the inputs are not modified."""
        B, C, H, W = images.shape
        dev = images.device
        points = points.clone()
        if B == 0:
            return images.clone(), points
        warp = params["perspective_on"] | params["affine_on"]
        idx = warp.nonzero().squeeze(1)  # on the CPU: no device sync to find the selected images
        if len(idx) == 0:
            out = images.clone()
        else:
            M = self.matrices({k: v[idx] for k, v in params.items()}, H, W)  # (b, 3, 3) float64, CPU
            d_idx = to_device(idx, dev)
            if len(idx) == B:
                out = warp_border(images, M)
            else:  # the others are copied as they are (bit-exact): one plain copy, then the warped ones
                out = images.clone()
                out[d_idx] = warp_border(images[d_idx], M)
            Mf = to_device(M.to(torch.float32), dev)
            pts = points[d_idx]
            moved = pts @ Mf[:, :2, :2].transpose(1, 2) + Mf[:, None, :2, 2]
            z = pts @ Mf[:, 2:, :2].transpose(1, 2) + Mf[:, None, 2:, 2]
            points[d_idx] = (moved / z).to(points.dtype)
        idx = params["motion_on"].nonzero().squeeze(1)
        if len(idx):
            k = get_motion_kernel2d(self.motion_kernel, params["motion_angle"][idx], params["motion_direction"][idx],
                                    "nearest")  # (b, k, k), kornia's kernel
            d_idx = to_device(idx, dev)
            out[d_idx] = _per_image_filter(out[d_idx], to_device(k.to(images.dtype), dev))
        idx = params["color_on"].nonzero().squeeze(1)
        if len(idx):
            first = params["brightness_first"][idx]
            b, c = params["brightness"][idx] - 1, params["contrast"][idx]
            one, zero = torch.ones_like(c), torch.zeros_like(c)
            # brightness x + b, contrast x * c, each clipped to [0, 1]: y = clip(clip(x * a1 + b1) * a2 + b2)
            coef = torch.stack([torch.where(first, one, c), torch.where(first, b, zero),
                                torch.where(first, c, one), torch.where(first, zero, b)])  # (4, b)
            a1, b1, a2, b2 = to_device(coef.to(images.dtype), dev)[:, :, None, None, None]
            d_idx = to_device(idx, dev)
            x = out[d_idx].clamp_(0, 1)  # kornia clamps the input of ColorJiggle first
            x.mul_(a1).add_(b1).clamp_(0, 1).mul_(a2).add_(b2).clamp_(0, 1)
            out[d_idx] = x
        return out, points


def _per_image_filter(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Correlate each image (B, C, H, W) with its own kernel (B, k, k), zero padding ('same' size),
    every channel alike: kornia.filters.filter2d(images, kernels, border_type="constant")."""
    B, C, H, W = images.shape
    k = kernels.shape[-1]
    weight = kernels.repeat_interleave(C, 0)[:, None]  # (B*C, 1, k, k)
    return F.conv2d(images.reshape(1, B * C, H, W), weight, padding=k // 2, groups=B * C).view(B, C, H, W)
