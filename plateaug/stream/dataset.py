"""PlateGANStream: the drop-in torch IterableDataset. Per batch, on one device: sample texts ->
render -> outline + colour hint -> generator -> (scene composition) -> augmentation, with the
labels carried through every step."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import IterableDataset

from ..generator.backends import (
    GENERATOR_NAMES,
    Backend,
    GeneratorOutputError,
    check_output,
    describe_generator,
    resolve_generator,
)
from ..models.contract import generator_input
from ..renderer.device import resolve_device, to_device
from ..renderer.draw import render
from ..renderer.spec import RegionSpec
from ..renderer.spec_loader import builtin_regions, load_region
from ..renderer.text import sample_text
from . import allocator, seeding
from .augment import augment as apply_augment
from .augment import boxes_to_corners, corners_to_boxes, device_preset, inside_plates, resolve
from .collate import wrap_boxes
from .composite import composite
from .degrade import degrade
from .framing import Framing, frame, resolve_framing
from .lighting import Lighting, relight_hint, resolve_lighting
from .photos import ScenePhotos
from .placement import TILT_MAX_DEG, box_quads, boxes_near, erase, frame_photo, place_new, tilt_quads
from .recolour import recolour
from .scene import FolderBackgrounds, augment_scenes, procedural_backgrounds
from .scene_options import Scene, resolve_scene
from .scene_prior import default_prior

MODES = ("crop", "scene")
DEFAULT_SIZE = {"crop": (64, 256), "scene": (384, 640)}
TEXTURE = (96, 288)  # plates are resampled to this before being warped into scenes
PLATE_LABEL = 1  # detection class id of "licence plate" (0 is background)
CPU_CHUNK = 32  # plates per generator call on the CPU
DEVICE_TYPES = ("cpu", "cuda")  # the renderer, ONNX Runtime binding and augmentation run on these
MAX_REGION_WEIGHT = 1e6  # region weights are relative; bounded so their sum stays finite
BACKGROUND_STREAM = 1  # mixed into the batch seed for the device generator that draws backgrounds on a GPU
SCENES_DIR = Path(__file__).parent / "scenes"
SHIPPED_FRAMES = SCENES_DIR / "frames.json"  # MIT dashcam frames: the default scene photos
DECOY_TRIES = 8  # source windows tried per decoy (one touching a real plate is refused)
NEGATIVE_SPECS = tuple(sorted((SCENES_DIR / "negatives").glob("*.toml")))  # hard negatives (not plates)
PHOTO_TRIES = 8  # photos drawn for a scene before giving up on unreadable ones
# a photo annotation's region (real-data names) -> the shipped specs that draw such plates
REGION_ALIASES = {"br": ("br_old", "br_mercosur"), "eu": ("eu_de", "eu_sk", "eu_sk_old"), "us": ("us",),
                  "cn": ("cn_blue", "cn_green")}


class NonFiniteBatchError(RuntimeError):
    """A batch held a NaN or inf (pixels or labels): raised instead of yielding it, naming the stage
    that first produced it and the seeds that reproduce it."""


@dataclass
class Batch:
    """One generated batch before it is split into samples (all tensors on the stream device)."""

    images: torch.Tensor  # (B, 3, H, W) float in [0, 1]
    texts: list[str]  # (N,) one per plate
    regions: list[str]  # (N,)
    char_boxes: torch.Tensor  # (N, S, 4) xyxy in image pixels, invalid rows zero
    valid: torch.Tensor  # (N, S) bool
    corners: torch.Tensor  # (N, 4, 2)
    owner: torch.Tensor  # (N,) index of the image each plate is in


def _check_cuda_worker(device: torch.device) -> None:
    """A forked DataLoader worker cannot use CUDA once the parent has initialised it."""
    in_worker = torch.utils.data.get_worker_info() is not None
    if device.type == "cuda" and in_worker and torch.cuda._is_in_bad_fork():
        raise RuntimeError(
                "PlateGANStream(device='cuda') is running in a forked DataLoader worker after CUDA was initialised "
            "in the parent. Use num_workers=0 (on a GPU the stream keeps up on its own) or "
            "DataLoader(..., multiprocessing_context='spawn').")


def _check_pin_memory(device: torch.device) -> None:
    """DataLoader(pin_memory=True) pins every batch with Tensor.pin_memory(), which raises for the
    CUDA tensors a CUDA stream yields. In the main process (num_workers=0, the setting for a GPU
    stream) the loader iterator that is about to pin is a caller a few frames up: refuse early, with
    the fix. (Inside worker processes the loader is not visible; torch's own error says "cannot pin".)"""
    if device.type != "cuda" or torch.utils.data.get_worker_info() is not None:
        return
    caller = inspect.currentframe()
    for _ in range(8):
        caller = caller.f_back if caller is not None else None
        if caller is None:
            return
        owner = caller.f_locals.get("self")
        if type(owner).__name__.endswith("DataLoaderIter") and getattr(owner, "_pin_memory", False):
            raise RuntimeError(f"DataLoader(pin_memory=True) cannot pin PlateGANStream(device={str(device)!r}) "
                               f"batches: the images are already on the GPU. Use pin_memory=False.")


class PlateGANStream(IterableDataset):
    """Endless (or `length`-limited) stream of realistic, labelled synthetic plates.

    mode "crop": (image (3, H, W), target) with target = {"boxes" (1, 4), "labels" (1,),
    "corners" (1, 4, 2), "text" str, "label" (L,) int64 (1-based indices into `charset`, 0 is
    the CTC blank), "char_boxes" (L, 4), "region" str}.
    mode "scene": plates pasted into backgrounds; target = {"boxes" (N, 4), "labels" (N,),
    "corners" (N, 4, 2), "text" [N str], "char_boxes" [N x (L, 4)], "region" [N str]}; "boxes" carry the
    annotators' margin (Scene.box_margin, default 0.15 x the plate height per side), corners are exact.
    batch_size=None yields samples; an int yields (images (B, 3, H, W), [target] * B) batches
    for `DataLoader(stream, batch_size=None)`. `length` counts yielded items per epoch per
    process (samples or batches); None is endless. Call `set_epoch(e)` for fresh plates each
    epoch of a finite stream.
    """

    def __init__(self, regions: str | Path | list | dict | None = None, mode: str = "crop",
                 image_size: tuple[int, int] | None = None, batch_size: int | None = None,
                 device: str | torch.device = "cpu", seed: int | None = None,
                 generator: str | Path | Backend | None = "auto", augment: str | nn.Module | None = "light",
                 length: int | None = None, backgrounds: str | Path | None = None,
                 plates_per_scene: tuple[int, int] = (1, 3), chunk: int = 64,
                 framing: str | Framing | dict | None = "detector", generator_share: float = 0.5,
                 lighting: str | Lighting | dict | None = "none", scenes: str | Path | None = None,
                 scene: str | Scene | dict | None = "default"):
        super().__init__()
        self.specs, self.weights = _resolve_regions(regions)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        size = image_size if image_size is not None else DEFAULT_SIZE[mode]
        if not _int_pair(size) or min(size) < 8:
            raise ValueError(f"image_size must be (H, W) with ints >= 8, got {image_size!r}")
        self.image_size = tuple(size)
        for name, v in (("batch_size", batch_size), ("length", length)):
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"{name} must be a positive int or None, got {v!r}")
        if not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be a positive int, got {chunk!r}")
        if not _int_pair(plates_per_scene) or not 1 <= plates_per_scene[0] <= plates_per_scene[1] <= 8:
            raise ValueError(f"plates_per_scene must be (min, max) with 1 <= min <= max <= 8, got {plates_per_scene!r}")
        self.plates_per_scene = tuple(plates_per_scene)
        self.batch_size, self.length, self.chunk = batch_size, length, chunk
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device {device!r} is not a torch device ({e})") from None
        if self.device.type not in DEVICE_TYPES:
            raise ValueError(f"device {str(device)!r} is not supported: PlateGANStream runs on 'cpu' or 'cuda[:N]'")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        self.device = resolve_device(self.device)  # "cuda" -> cuda:{LOCAL_RANK} under DDP; cuda:N checked
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.seed = seeding.fresh_seed() if seed is None else seed
        self.generator = _check_generator(generator)
        if isinstance(generator_share, bool) or not isinstance(generator_share, (int, float)) \
                or not 0.0 <= generator_share <= 1.0:
            raise ValueError(f"generator_share must be a number in [0, 1] (the fraction of plates the generator "
                             f"translates), got {generator_share!r}")
        self.generator_share = float(generator_share)
        self.augment = resolve(augment)
        if isinstance(augment, str) and self.device.type == "cuda":
            self.augment = device_preset(augment, str(self.device))  # noise drawn on the GPU
        self.framing = resolve_framing(framing)
        self.lighting = resolve_lighting(lighting)
        self.scene = resolve_scene(scene)
        self.backgrounds, self.photos = None, None
        if backgrounds is not None and scenes is not None:
            raise ValueError("pass either scenes= (annotated photos whose plates are replaced) or backgrounds= "
                             "(plain backgrounds, or 'procedural'), not both")
        if isinstance(backgrounds, str) and backgrounds == "procedural":
            pass
        elif backgrounds is not None:
            self.backgrounds = FolderBackgrounds(_check_backgrounds(backgrounds))
        elif mode == "scene":  # real photos: the user's annotated ones, else the shipped dashcam frames
            self.photos = ScenePhotos(scenes if scenes is not None else SHIPPED_FRAMES)
        elif scenes is not None:
            raise ValueError("scenes= (annotated photos) is for mode='scene'")
        # (augment, degrade) for the whole scene: photos as Scene.as_taken says, other backgrounds always both
        self._scene_look = (True, self.scene.degrade is not None) if self.photos is None else \
            self.scene.photo_look(shipped=scenes is None)
        if self.photos is not None and not self._scene_look[0] and augment not in (None, "none", "light"):
            warnings.warn("augment= is not applied to these photo scenes: they are taken as they are (Scene.as_taken, "
                          "by default for scenes=); pass scene={'as_taken': False} (generate: --as-taken no) to "
                          "augment (and degrade) them",
                          stacklevel=2)
        self.prior = self.scene.prior or default_prior()
        self.charset = "".join(sorted({ch for s in self.specs for ch in s.charset}))
        self._index = {ch: i + 1 for i, ch in enumerate(self.charset)}
        self.epoch = 0
        self._backend: Backend | None = None
        self._backend_ready = False
        self._trace: list[str] | None = None  # stages with non-finite output, while a bad batch is replayed

    # -- configuration -----------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Mix the epoch into the seed (like DistributedSampler.set_epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("an endless PlateGANStream has no length; pass length=N for finite epochs")
        return self.length

    def __getstate__(self) -> dict:  # sessions and modules are rebuilt in each worker
        state = self.__dict__.copy()
        state["_backend"], state["_backend_ready"] = None, False
        return state

    def backend(self) -> Backend | None:
        if not self._backend_ready:
            self._backend = resolve_generator(self.generator, self.device)
            self._backend_ready = True
        return self._backend

    def encode(self, text: str) -> torch.Tensor:
        """Text -> (L,) int64 label indices (1-based into `charset`)."""
        return torch.tensor([self._index[ch] for ch in text], dtype=torch.int64)

    # -- iteration -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator:
        _check_cuda_worker(self.device)
        _check_pin_memory(self.device)
        if self.device.type == "cpu":
            allocator.tune_for_stream()  # keep each batch's freed intermediates for the next one
        wid, nw = seeding.worker()
        rank, _ = seeding.rank_and_world()
        remaining = None if self.length is None else seeding.share(self.length, wid, nw)
        per_batch = self.batch_size or self.chunk
        j = 0
        while remaining is None or remaining > 0:
            seed = seeding.mix(self.seed, self.epoch, rank, wid, j)
            j += 1
            n = per_batch if self.batch_size or remaining is None else min(per_batch, remaining)
            try:
                batch = self.make_batch(n, seed)
            except NonFiniteBatchError as e:
                raise NonFiniteBatchError(f"{e} It was batch {j - 1} of PlateGANStream(seed={self.seed}) in epoch "
                                          f"{self.epoch}, rank {rank}, DataLoader worker {wid}.") from None
            if self.batch_size:
                yield batch.images, self.targets(batch)
                if remaining is not None:
                    remaining -= 1
            else:
                for image, target in zip(batch.images.unbind(0), self.targets(batch)):
                    yield image.clone(), target
                if remaining is not None:
                    remaining -= n

    @torch.no_grad()
    def make_batch(self, n: int, seed: int) -> Batch:
        """Generate `n` images (crops or scenes) from one seed: same seed, same batch. A batch with a
        NaN or inf in its images or labels is never returned: one reduction per batch checks it, and a
        bad batch is made again from its seed with every stage checked, to name the stage in the
        NonFiniteBatchError."""
        batch = self._make(n, seed)
        if _finite(batch.images, batch.char_boxes, batch.corners):
            return batch
        self._trace = []
        try:
            self._make(n, seed)
            stages = self._trace
        finally:
            self._trace = None
        where = f"first at the {stages[0]} stage" if stages else "no stage of a replay showed it (not reproducible)"
        raise NonFiniteBatchError(
            f"PlateGANStream(mode={self.mode!r}) produced non-finite values (NaN or inf) in a batch of {n}, {where}; "
            f"the batch was not yielded. Reproduce it with stream.make_batch({n}, {seed}) and please report it "
            f"with these numbers.")

    def _make(self, n: int, seed: int) -> Batch:
        g = torch.Generator().manual_seed(seed)
        if self.mode == "crop":
            return self._crops(n, g, seed)
        return self._scenes(n, g, seed)

    def _stage(self, name: str, *tensors: torch.Tensor) -> None:
        """While a non-finite batch is replayed: record `name` if any of its outputs is not finite."""
        if self._trace is not None and not _finite(*tensors):
            self._trace.append(name)

    def _plates(self, n: int, g: torch.Generator, size: tuple[int, int], which: torch.Tensor | None = None):
        """n plates over the weighted regions, generated and resized to `size`, shuffled; or, with
        `which` (n,) region indices, plate i of region which[i], in that order."""
        given = which is not None
        if not given:
            which = torch.multinomial(self.weights, n, replacement=True, generator=g)
        counts = torch.bincount(which, minlength=len(self.specs)).tolist()
        S = max(s.max_len for s in self.specs)
        images, boxes, texts, regions, aspects = [], [], [], [], []  # images: parts in region order
        backend = self.backend()
        ranges: list[torch.Tensor] = []  # (min, max) of every generator call, read back once below
        for spec, k in zip(self.specs, counts):
            if k == 0:
                continue
            plates = render(spec, sample_text(spec, k, g), self.device)
            self._stage(f"render ({spec.name})", plates.images, plates.char_boxes)
            h, w = plates.images.shape[-2:]
            translated = self._n_translated(k, g) if backend is not None else k
            parts = [self._translate(c, backend, size, ranges, g)
                     for c in plates.images[:translated].split(self._step)] if translated else []
            if translated < k:  # the rest: clean renders, resized like the generated ones
                parts.append(self._translate(plates.images[translated:], None, size))
            scale = to_device(torch.tensor([size[1] / w, size[0] / h] * 2), self.device)
            cb = F.pad(plates.char_boxes * scale, (0, 0, 0, S - plates.char_boxes.shape[1]))
            self._stage(f"generator and resize ({spec.name})", *parts)
            images += [part.clamp_(0, 1) for part in parts]  # each part is a fresh resize output
            boxes.append(cb)
            texts += plates.texts
            regions += [spec.name] * k
            aspects += [spec.size_mm[0] / spec.size_mm[1]] * k
        if ranges:
            self._check_finite(torch.stack(ranges), backend)
        if given:  # the parts are in region order: plate i is row inverse[i] of their concatenation
            order = torch.sort(which, stable=True).indices
            perm = torch.empty_like(order)
            perm[order] = torch.arange(n)
        else:
            perm = torch.randperm(n, generator=g)
        dev_perm = to_device(perm, self.device)  # no host sync: pinned, non-blocking
        images = _scatter_parts(images, perm, self.device)  # == torch.cat(images)[perm], one copy instead of two
        boxes = torch.cat(boxes)[dev_perm]
        p = perm.tolist()
        return (images, boxes, [texts[i] for i in p], [regions[i] for i in p],
                torch.tensor(aspects)[perm])

    def _n_translated(self, k: int, g: torch.Generator) -> int:
        """How many of a region's k plates (drawn i.i.d., so the first ones are a random subset) the
        generator translates: Binomial(k, generator_share); the others stay clean renders. At 0 and
        1 no draw is made: the stream is exactly the one without a generator / with it on every plate."""
        if self.generator_share in (0.0, 1.0):
            return round(k * self.generator_share)
        return int(torch.binomial(torch.tensor(float(k)), torch.tensor(self.generator_share), generator=g))

    @property
    def _step(self) -> int:
        """Plates per generator call: cache-sized chunks on the CPU (measured faster at B >= 128),
        the whole region batch on a GPU."""
        return CPU_CHUNK if self.device.type == "cpu" else 1 << 30

    def _translate(self, clean: torch.Tensor, backend: Backend | None, size: tuple[int, int],
                   ranges: list[torch.Tensor] | None = None, g: torch.Generator | None = None) -> torch.Tensor:
        """Clean renders (k, 3, h, w) -> generated plates resized to `size`, (k, 3, *size). The
        generator's output type, shape and dtype are checked here (metadata only); its (min, max)
        is appended to `ranges` on the device, for one finiteness check per batch. With `lighting`
        each plate's colour hint is relit first (lighting parameters drawn from `g`)."""
        img = clean
        if backend is not None:
            condition = generator_input(clean)
            if self.lighting is not None:
                condition = relight_hint(condition, self.lighting, g)
            out = backend(condition)
            check_output(out, condition, describe_generator(self.generator, backend))
            img = out.to(self.device, torch.float32)
            if ranges is not None:
                ranges.append(torch.stack(torch.aminmax(img)))  # NaN and inf propagate to min/max
        return resize(img, size)

    def _check_finite(self, ranges: torch.Tensor, backend: Backend) -> None:
        """(calls, 2) generator output (min, max) on the device: one host sync per batch."""
        if not bool(torch.isfinite(ranges).all()):
            lo, hi = ranges[:, 0].min().item(), ranges[:, 1].max().item()
            bad = ranges[~torch.isfinite(ranges).all(1)]
            raise GeneratorOutputError(
                f"{describe_generator(self.generator, backend)} returned non-finite values (NaN or inf) in "
                f"{len(bad)} of {len(ranges)} calls (min {lo}, max {hi}); expected RGB in [0, 1]. Nothing "
                f"of this batch was kept.")

    def _crops(self, n: int, g: torch.Generator, seed: int) -> Batch:
        H, W = self.image_size
        images, boxes, texts, regions, aspects = self._plates(n, g, self.image_size)
        valid = boxes.abs().sum(-1) > 0  # (n, S)
        if self.framing is None:  # "tight": the plate is the whole crop
            corners = to_device(torch.tensor([[0, 0], [W, 0], [W, H], [0, H]], dtype=torch.float32),
                                self.device).expand(n, 4, 2)
        else:
            images, boxes, corners = frame(images, boxes, aspects, self.framing, g, self._background_rng(seed))
            self._stage("framing", images, boxes, corners)
        images, boxes, corners = apply_augment(self.augment, images, boxes, corners, valid, seed)
        self._stage("augmentation", images, boxes, corners)
        boxes = inside_plates(boxes, corners, valid, W, H)
        return Batch(images, texts, regions, boxes, valid, corners, torch.arange(n, device=self.device))

    def _scenes(self, n: int, g: torch.Generator, seed: int) -> Batch:
        """n scenes: real photos (their plates replaced, or erased and new ones placed by the prior),
        or procedural / folder backgrounds with plates placed by the prior; hard negatives; the plates
        harmonised into their place; then augmentation and degradation of the whole scene (as Scene.as_taken
        says for photos)."""
        H, W = self.image_size
        opts = self.scene
        bg, real, real_regions = self._scene_backgrounds(n, g, seed)
        self._stage("backgrounds", bg)
        replace = self.photos is not None and opts.real_plates == "replace"
        # plates that replace real ones (photos, "replace"): their boxes, their regions where annotated
        old_owner = torch.cat([torch.full((len(b),), i) for i, b in enumerate(real)]).long()
        old_boxes = torch.cat(real) if real else torch.zeros(0, 4)
        if self.photos is not None and not replace:  # "erase": the real plates go, new ones come
            bg = erase(bg, old_boxes, old_owner, g)
        # new plates: counts per scene, regions, then places from the prior (a plate with no free place is left out)
        if self.photos is None:
            lo, hi = self.plates_per_scene
            counts = self.prior.sample_counts(n, g, lo, hi)
        elif replace:
            counts = torch.randint(opts.extra_plates[0], opts.extra_plates[1] + 1, (n,), generator=g)
        else:
            counts = self.prior.sample_counts(n, g, 1, len(self.prior.plates_per_image))
        new_owner = torch.repeat_interleave(torch.arange(n), counts)
        which_old = self._photo_regions(real_regions, g, old_boxes) if replace else torch.zeros(0, dtype=torch.long)
        which_new = torch.multinomial(self.weights, len(new_owner), replacement=True, generator=g) \
            if len(new_owner) else torch.zeros(0, dtype=torch.long)
        occupied = [box_quads(b, opts.cover).flatten(1)[:, [0, 1, 4, 5]] if replace else torch.zeros(0, 4)
                    for b in real]
        aspects = plate_aspects(self.specs)
        new_quads, kept = place_new(self.prior, new_owner, aspects[which_new], occupied, (H, W), g,
                                    opts.min_plate_px)
        # hard negatives: text that is not a plate, larger than plates, where no plate is
        neg = self._negatives(n, occupied, g)
        decoys = self._decoys(bg, old_boxes, old_owner, occupied, g) if opts.p_patch > 0 else None
        covers = box_quads(old_boxes, opts.cover) if replace else torch.zeros(0, 4, 2)
        tilted = torch.zeros(len(which_old), dtype=torch.bool)
        if replace and opts.p_tilt > 0 and len(covers):  # (no draw at 0: the default stream stays as it was)
            grown = torch.cat([covers.amin(1), covers.amax(1)], -1)  # (M, 4) the covered boxes, xyxy
            covers, tilted = tilt_quads(grown, aspects[which_old], opts.p_tilt, TILT_MAX_DEG, g)
            if bool(tilted.any()):  # a turned plate leaves its box's corners open: the real plate goes first
                bg = erase(bg, grown[tilted], old_owner[tilted], g)
        covers = torch.stack([covers[..., 0].clamp(0, W), covers[..., 1].clamp(0, H)], -1)  # inside the scene
        quads = torch.cat([covers, new_quads])
        owner = torch.cat([old_owner if replace else torch.zeros(0, dtype=torch.long), new_owner[kept]])
        which = torch.cat([which_old, which_new[kept]])
        # a replacing plate matches the real plate's light under it; a turned one (erased under) its surroundings'
        reference = torch.cat([~tilted, torch.zeros(int(kept.sum()), dtype=torch.bool)])
        order = torch.sort(owner, stable=True).indices  # plates in scene order
        quads, owner, which, reference = quads[order], owner[order], which[order], reference[order]
        N = len(owner)
        plates, boxes, texts, regions, _ = self._plates(N, g, TEXTURE, which) if N else \
            (torch.zeros(0, 3, *TEXTURE, device=self.device), torch.zeros(0, 1, 4, device=self.device), [], [], None)
        if opts.p_recolour > 0:  # (no draw at 0: the default stream stays as it was)
            plates = recolour(plates, opts.p_recolour, g)
        if neg is not None:  # negatives first: plates are never under one
            bg, _ = composite(bg, neg[0], neg[1], neg[2], g, opts.harmonise)
        if decoys is not None:
            bg, _ = composite(bg, *decoys, g, opts.harmonise)
        scenes, M = composite(bg, plates, quads, owner, g, opts.harmonise, reference)
        cb, corners = _scene_labels(boxes, M.to(self.device), TEXTURE, quads.to(self.device), (H, W))
        self._stage("scene composition", scenes, cb, corners)
        counts = torch.bincount(owner, minlength=n)
        valid = cb.abs().sum(-1) > 0  # (N, S)
        # augment whole scenes: pack each scene's plates into padded rows of keypoints
        K, S = int(counts.max()), cb.shape[1]
        owner = torch.repeat_interleave(torch.arange(n), counts)
        k = torch.cat([torch.arange(int(c)) for c in counts])
        owner, k = to_device(torch.stack([owner, k]), self.device)  # one copy, no host sync
        packed_cb = cb.new_zeros(n, K, S, 4)
        packed_cb[owner, k] = cb
        packed_valid = valid.new_zeros(n, K, S)
        packed_valid[owner, k] = valid
        packed_corners = corners.new_zeros(n, K, 4, 2)
        packed_corners[owner, k] = corners
        # (re-augmenting a scene whose plates the augmentation moved off the image: plates stay whole)
        augment, degraded = self._scene_look  # a photo may keep its own look (Scene.as_taken)
        scenes, pcb, pcorners = augment_scenes(self.augment if augment else None, scenes, packed_cb.view(n, K * S, 4),
                                               packed_corners.view(n, K * 4, 2), packed_valid.view(n, K * S), seed)
        self._stage("augmentation", scenes, pcb, pcorners)
        cb = pcb.view(n, K, S, 4)[owner, k]
        corners = pcorners.view(n, K, 4, 2)[owner, k]
        cb = inside_plates(cb, corners, valid, self.image_size[1], self.image_size[0])
        if degraded:
            scenes = degrade(scenes, opts.degrade, g)
            self._stage("degradation", scenes)
        return Batch(scenes, texts, regions, cb, valid, corners, owner)

    def _scene_backgrounds(self, n: int, g: torch.Generator, seed: int
                           ) -> tuple[torch.Tensor, list[torch.Tensor], list[tuple]]:
        """(backgrounds (n, 3, H, W) on the device, real plate boxes per scene (k, 4), their annotated
        regions): framed photos, or procedural / folder backgrounds (no real plates)."""
        size = self.image_size
        if self.photos is None:
            bg = self.backgrounds(n, size, g) if self.backgrounds is not None \
                else procedural_backgrounds(n, size, self._background_rng(seed) or g)
            return to_device(bg, self.device), [torch.zeros(0, 4)] * n, [()] * n
        zoom = self.scene.zoom
        frames, boxes, regions = [], [], []
        picks = torch.randint(len(self.photos), (n * PHOTO_TRIES,), generator=g).tolist()
        zooms = (zoom[0] + (zoom[1] - zoom[0]) * torch.rand(n, generator=g)).tolist()
        for i in picks:
            if len(frames) == n:
                break
            loaded = self.photos.load(i)
            if loaded is None:
                continue
            frame, b = frame_photo(*loaded, size, zooms[len(frames)], g)
            frames.append(frame)
            boxes.append(b)
            regions.append(self.photos.photos[i].regions)
        if len(frames) < n:
            raise ValueError(f"scenes {self.photos.path}: could not read enough photos ({len(frames)} of {n} after "
                             f"{len(picks)} tries); see the warnings for which")
        return to_device(torch.stack(frames), self.device), boxes, regions

    def _photo_regions(self, regions: list[tuple], g: torch.Generator, boxes: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """Region index per real plate: the annotation's region where it names one of the stream's
        (a spec name, or br/eu/us/cn for their shipped specs), else drawn from the stream's weights
        (times, with Scene.aspect_match, how well each region's aspect fits the plate's box (K, 4))."""
        names = [s.name for s in self.specs]
        flat = [r for rs in regions for r in rs]
        sigma = self.scene.aspect_match
        if sigma is not None and boxes is not None and len(flat):
            drawn = torch.multinomial(self.weights * aspect_fit(self.specs, boxes, sigma), 1, generator=g)[:, 0]
        else:
            drawn = torch.multinomial(self.weights, max(1, len(flat)), replacement=True, generator=g)[: len(flat)]
        u = torch.rand(len(flat), generator=g)
        out = []
        for r, d, x in zip(flat, drawn.tolist(), u.tolist()):
            options = [i for i, nm in enumerate(names) if r is not None and nm in (r, *REGION_ALIASES.get(r, ()))]
            out.append(options[int(x * len(options))] if options else d)
        return torch.tensor(out, dtype=torch.long)

    def _negatives(self, n: int, occupied: list[torch.Tensor], g: torch.Generator):
        """Hard negatives for some scenes: (textures (m, 3, h, w), quads (m, 4, 2), owner (m,)) or None."""
        opts = self.scene
        counts = torch.randint(opts.negatives[0], opts.negatives[1] + 1, (n,), generator=g) \
            * (torch.rand(n, generator=g) < opts.p_negative)
        if not NEGATIVE_SPECS or int(counts.sum()) == 0:
            return None
        owner = torch.repeat_interleave(torch.arange(n), counts)
        kind = torch.randint(len(NEGATIVE_SPECS), (len(owner),), generator=g)
        specs = [load_region(p) for p in NEGATIVE_SPECS]
        aspects = plate_aspects(specs)[kind]
        scale = 1.5 + 1.5 * torch.rand(len(owner), generator=g)  # signs are larger than plates
        quads, kept = place_new(self.prior, owner, aspects, occupied, self.image_size, g, self.scene.min_plate_px,
                                scale)
        if not bool(kept.any()):
            return None
        owner, kind = owner[kept], kind[kept]
        textures = torch.zeros(len(owner), 3, *TEXTURE, device=self.device)
        for k, spec in enumerate(specs):
            sel = (kind == k).nonzero().squeeze(1)
            if len(sel):
                made = render(spec, sample_text(spec, len(sel), g), self.device).images
                textures[to_device(sel, self.device)] = resize(made, TEXTURE).clamp(0, 1)
        return textures, quads, owner

    def _decoys(self, bg: torch.Tensor, real_boxes: torch.Tensor, real_owner: torch.Tensor,
                occupied: list[torch.Tensor], g: torch.Generator):
        """Decoys for Scene.p_patch of the scenes: (textures (m, 3, h, w), quads (m, 4, 2), owner (m,)) or
        None. Each is a plate-shaped piece of its own scene (bg (n, 3, H, W)), never one touching a
        real plate's box, pasted where no plate is, with a plate's warp, harmonisation and edge but no
        label: so that "pasted into the photo" is no cue for "plate" (cut-and-paste shortcuts)."""
        n, _, H, W = bg.shape
        counts = torch.randint(1, 3, (n,), generator=g) * (torch.rand(n, generator=g) < self.scene.p_patch)
        if int(counts.sum()) == 0:
            return None
        owner = torch.repeat_interleave(torch.arange(n), counts)
        aspects = 2.0 + 3.0 * torch.rand(len(owner), generator=g)  # plate-like shapes
        quads, kept = place_new(self.prior, owner, aspects, occupied, (H, W), g, self.scene.min_plate_px)
        owner, aspects = owner[kept], aspects[kept]
        u = torch.rand(len(owner), DECOY_TRIES, 3, generator=g)
        textures, keep = [], []
        for i in range(len(owner)):
            b = int(owner[i])
            w = float((quads[i, :, 0].amax() - quads[i, :, 0].amin()).clamp(min=8)) * (0.7 + 0.7 * float(u[i, 0, 2]))
            w = min(w, W - 2.0)
            h = max(4.0, min(w / float(aspects[i]), H - 2.0))
            x0, y0 = u[i, :, 0] * (W - w), u[i, :, 1] * (H - h)  # (DECOY_TRIES,) candidate windows
            wins = torch.stack([x0, y0, x0 + w, y0 + h], 1)
            real = real_boxes[real_owner == b]
            free = ~boxes_near(wins, real, gap=4.0).any(1) if len(real) else torch.ones(DECOY_TRIES, dtype=torch.bool)
            if not bool(free.any()):
                continue
            a0, b0, a1, b1 = (int(round(float(v))) for v in wins[int(free.nonzero()[0, 0])])
            piece = bg[b: b + 1, :, b0: max(b1, b0 + 1), a0: max(a1, a0 + 1)]
            textures.append(F.interpolate(piece, size=TEXTURE, mode="bilinear", align_corners=False))
            keep.append(i)
        if not keep:
            return None
        keep_t = torch.tensor(keep)
        return torch.cat(textures).clamp(0, 1), quads[keep_t], owner[keep_t]

    def _background_rng(self, seed: int) -> torch.Generator | None:
        """On a GPU, backgrounds are drawn there, from a device generator seeded from the batch seed
        (same seed, same backgrounds; nothing drawn on the CPU and copied). None on the CPU: they come
        from the batch generator, as they always have (CPU batches are unchanged)."""
        if self.device.type == "cpu":
            return None
        return torch.Generator(device=self.device).manual_seed(seeding.mix(seed, BACKGROUND_STREAM))

    # -- targets ---------------------------------------------------------------------------------
    def targets(self, batch: Batch) -> list[dict]:
        """Per-image target dicts (torchvision detection keys plus text, characters, corners)."""
        H, W = batch.images.shape[-2:]
        cpu = lambda t: t.detach().to("cpu")  # noqa: E731 - targets live on the CPU
        plate_boxes = cpu(corners_to_boxes(batch.corners, W, H))  # (N, 4)
        corners, char_boxes, valid = cpu(batch.corners), cpu(batch.char_boxes), cpu(batch.valid)
        lengths = valid.sum(1).tolist()
        out = []
        if self.mode == "crop":
            for i, text in enumerate(batch.texts):
                out.append(wrap_boxes({
                    "boxes": plate_boxes[i: i + 1].clone(), "labels": torch.tensor([PLATE_LABEL]),
                    "corners": corners[i: i + 1].clone(), "text": text, "label": self.encode(text),
                    "char_boxes": char_boxes[i, : lengths[i]].clone(), "region": batch.regions[i]}, (H, W)))
            return out
        plate_boxes = grow_boxes(plate_boxes, self.scene.box_margin, W, H)
        counts = torch.bincount(cpu(batch.owner), minlength=len(batch.images))  # plates per scene
        starts = [0] + counts.cumsum(0).tolist()
        for b in range(len(batch.images)):
            s, e = starts[b], starts[b + 1]
            out.append(wrap_boxes({
                "boxes": plate_boxes[s:e].clone(), "labels": torch.full((e - s,), PLATE_LABEL, dtype=torch.int64),
                "corners": corners[s:e].clone(), "text": batch.texts[s:e],
                "char_boxes": [char_boxes[i, : lengths[i]].clone() for i in range(s, e)],
                "region": batch.regions[s:e]}, (H, W)))
        return out


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(k, C, h, w) -> (k, C, *size): bilinear, antialiased where an axis shrinks. Where neither axis
    shrinks (cn_blue's 208 and br's 192 px wide canvases -> 256 crops, plates -> scene textures)
    antialiasing changes nothing (equal within 1e-5, 6e-8 for the crops) and torch's plain
    bilinear kernel is ~1.5x faster on the CPU (4.2 vs 6.5 ms for 64 cn plates)."""
    shrinks = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrinks)


def _scatter_parts(parts: list[torch.Tensor], perm: torch.Tensor, device: torch.device) -> torch.Tensor:
    """torch.cat(parts)[perm] with each part copied once, straight to its shuffled rows: parts
    (k_i, C, H, W) on `device`, perm (n,) a CPU permutation of n = sum k_i."""
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(len(perm))  # row j of the concatenation goes to row inverse[j]
    rows = to_device(inverse, device).split([len(p) for p in parts])
    out = parts[0].new_empty((len(perm), *parts[0].shape[1:]))
    for part, idx in zip(parts, rows):
        out.index_copy_(0, idx, part)
    return out


def plate_aspects(specs: list) -> torch.Tensor:
    """(R,) each region's plate width / height."""
    return torch.tensor([s.size_mm[0] / s.size_mm[1] for s in specs])


def aspect_fit(specs: list, boxes: torch.Tensor, sigma: float) -> torch.Tensor:
    """(K, R) how well each region's plate aspect (width / height) fits each box (K, 4) xyxy: a Gaussian
    in log aspect with spread sigma, floored so that every region stays possible."""
    aspect = plate_aspects(specs).log()  # (R,)
    wh = (boxes[:, 2:] - boxes[:, :2]).float().clamp(min=1e-3)
    box = (wh[:, 0] / wh[:, 1]).log()  # (K,)
    return torch.exp(-((aspect[None] - box[:, None]) ** 2) / (2 * sigma**2)).clamp(min=1e-3)


def grow_boxes(boxes: torch.Tensor, margin: float | tuple[float, float], W: int, H: int) -> torch.Tensor:
    """Boxes (N, 4) xyxy grown by margin x their height on every side (or by (left/right, top/bottom)
    shares of it), clipped to the W x H image (the margin annotators leave round a plate; Scene.box_margin)."""
    mx, my = margin if isinstance(margin, tuple) else (margin, margin)
    if (mx == 0 and my == 0) or len(boxes) == 0:
        return boxes
    grown = boxes + (boxes[:, 3] - boxes[:, 1])[:, None] * boxes.new_tensor([-mx, -my, mx, my])
    return corners_to_boxes(grown.view(-1, 2, 2), W, H)  # its two corners' box, clipped to the image


def _scene_labels(char_boxes: torch.Tensor, M: torch.Tensor, texture: tuple[int, int], quads: torch.Tensor,
                  size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Character boxes (N, S, 4) given in texture pixels -> enclosing boxes of the warped characters in
    the scene (zero rows stay zero), and the plate corners (N, 4, 2) (= the quads)."""
    N, S = char_boxes.shape[:2]
    H, W = size
    pts = boxes_to_corners(char_boxes).reshape(N, S * 4, 2)
    pts = torch.cat([pts, torch.ones_like(pts[..., :1])], -1) @ M.transpose(1, 2)
    pts = pts[..., :2] / pts[..., 2:]
    valid = char_boxes.abs().sum(-1, keepdim=True) > 0
    return corners_to_boxes(pts.view(N, S, 4, 2), W, H) * valid, quads.float()


def _finite(*tensors: torch.Tensor) -> bool:
    """Whether every value of the tensors is finite: one sum each (NaN and inf propagate; pixels and
    coordinates are far too small to overflow), one host read for all."""
    if not tensors:
        return True
    sums = torch.stack([t.sum(dtype=torch.float32).to(tensors[0].device) for t in tensors])
    return bool(torch.isfinite(sums).all())


def _int_pair(v) -> bool:
    return isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                                 for x in v)


def _check_generator(generator):
    """Validate the generator argument up front (the backend itself is built lazily, per worker)."""
    if generator is None or callable(generator) or generator in GENERATOR_NAMES:
        return generator
    if not isinstance(generator, (str, Path)):
        raise TypeError(f"generator must be one of {GENERATOR_NAMES}, a model path or a callable, "
                        f"got {type(generator).__name__}")
    if not Path(generator).is_file():
        raise FileNotFoundError(f"generator model {generator} does not exist")
    if Path(generator).suffix not in (".onnx", ".pt", ".pth"):
        raise ValueError(f"generator must be one of {GENERATOR_NAMES}, a path to an .onnx or .pt file, or a "
                         f"callable; got {generator!r}")
    return generator


def _check_backgrounds(backgrounds) -> Path:
    """`backgrounds` must name a folder of images (the folder's contents are checked by FolderBackgrounds)."""
    if not isinstance(backgrounds, (str, Path)):
        raise TypeError(f"backgrounds must be a path to a folder of images or None, got {type(backgrounds).__name__}")
    path = Path(backgrounds)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"backgrounds must be a folder of images, but {path} is a file; put your background "
                                 f"images in a folder and pass backgrounds=FOLDER")
    return path


def _resolve_regions(regions) -> tuple[list[RegionSpec], torch.Tensor]:
    """None -> every shipped region, equal weights; a name/path; a list; or {name: weight}."""
    if regions is None:
        regions = builtin_regions()
    if isinstance(regions, (str, Path, RegionSpec)):
        regions = [regions]
    if not isinstance(regions, (list, tuple, dict)):
        raise TypeError(f"regions must be a name, a path, a list or a {{name: weight}} dict, got {regions!r}")
    if isinstance(regions, dict):
        items = list(regions.items())
    else:
        items = [(r, 1.0) for r in regions]
    if not items:
        raise ValueError("regions is empty: name at least one region")
    specs, weights = [], []
    for i, (r, w) in enumerate(items):
        if not isinstance(r, (str, Path, RegionSpec)):
            where = f"regions key {r!r}" if isinstance(regions, dict) else f"regions[{i}]"
            raise TypeError(f"{where} must be a shipped region name, a path to a .toml spec or a RegionSpec, "
                            f"got {type(r).__name__} {r!r}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise ValueError(f"region weight for {r!r} must be > 0, got {w!r}")
        if w > MAX_REGION_WEIGHT:
            raise ValueError(f"region weight for {r!r} must be <= {MAX_REGION_WEIGHT:g} (weights are relative), "
                             f"got {w!r}")
        specs.append(load_region(r))
        weights.append(float(w))
    return specs, torch.tensor(weights, dtype=torch.float64)
