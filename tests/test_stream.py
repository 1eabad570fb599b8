"""PlateGANStream: DataLoader use, targets vs pixels, seeding across workers/ranks, errors."""

from __future__ import annotations

import hashlib

import kornia.augmentation as K
import pytest
import torch
import torch.nn.functional as F
from fixtures import flat_spec
from torch.utils.data import DataLoader

from plateaug import PlateGANStream, collate, ctc_targets
from plateaug.stream.augment import BorderPerspective
from plateaug.stream.dataset import _check_cuda_worker, _scatter_parts, resize


def _digest(img: torch.Tensor) -> str:
    return hashlib.sha1(img.numpy().tobytes()).hexdigest()


def test_sample_mode_through_dataloader():
    stream = PlateGANStream(generator=None, seed=1, length=10)
    images, targets = next(iter(DataLoader(stream, batch_size=8, collate_fn=collate)))
    assert images.shape == (8, 3, 64, 256) and 0 <= images.min() and images.max() <= 1
    t = targets[0]
    assert set(t) == {"boxes", "labels", "corners", "text", "label", "char_boxes", "region"}
    assert t["boxes"].shape == (1, 4) and t["labels"].tolist() == [1] and t["corners"].shape == (1, 4, 2)
    assert t["char_boxes"].shape == (len(t["text"]), 4)
    assert "".join(stream.charset[i - 1] for i in t["label"]) == t["text"]
    labels, lengths = ctc_targets(targets)
    assert lengths.tolist() == [len(x["text"]) for x in targets] and len(labels) == sum(lengths)


def test_batch_mode_and_scene_mode():
    stream = PlateGANStream(generator=None, seed=2, batch_size=5, mode="scene", image_size=(192, 320))
    images, targets = next(iter(DataLoader(stream, batch_size=None)))
    assert images.shape == (5, 3, 192, 320) and len(targets) == 5
    for t in targets:
        n = len(t["text"])
        assert 1 <= n <= 3 and t["boxes"].shape == (n, 4) and t["labels"].tolist() == [1] * n
        assert len(t["char_boxes"]) == n and len(t["region"]) == n
        b = t["boxes"]
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= 320).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= 192).all()
        for cb, text in zip(t["char_boxes"], t["text"]):
            assert cb.shape == (len(text), 4)


NO_SEP_SPEC = flat_spec()


def test_boxes_enclose_ink_after_perspective_and_affine(write_spec):
    aug = K.AugmentationSequential(BorderPerspective(0.3, p=1.0), K.RandomAffine(10, translate=(0.05, 0.05),
                                   scale=(0.8, 1.0), p=1.0, padding_mode="border"),
                                   data_keys=["input", "keypoints"])
    stream = PlateGANStream(regions=write_spec(NO_SEP_SPEC), generator=None, augment=aug, seed=3, batch_size=16,
                            image_size=(64, 192), framing="tight")  # the plate fills the crop: test_framing.py frames
    images, targets = next(iter(stream))
    bg = 0xD0 / 255
    for img, t in zip(images, targets):
        ink = (bg - img.mean(0)) > 0.4  # (H, W) clearly dark pixels
        inside = torch.zeros_like(ink)
        for x0, y0, x1, y1 in t["char_boxes"].tolist():
            xa, ya, xb, yb = int(x0) - 1, int(y0) - 1, int(x1) + 2, int(y1) + 2  # 1 px for resampling
            inside[max(ya, 0): yb, max(xa, 0): xb] = True
            assert ink[max(ya, 0): yb, max(xa, 0): xb].any(), "a character box lost its glyph"
        assert not (ink & ~inside).any(), f"{t['text']}: ink outside the moved boxes"
        q = t["corners"][0]
        assert (t["boxes"][0] - torch.cat([q.amin(0), q.amax(0)]).clamp(0, 192)).abs().max() < 64


def test_same_seed_same_plates_and_epochs_differ():
    a = next(iter(PlateGANStream(generator=None, seed=5, batch_size=8, augment="heavy")))
    b = next(iter(PlateGANStream(generator=None, seed=5, batch_size=8, augment="heavy")))
    assert torch.equal(a[0], b[0]) and [t["text"] for t in a[1]] == [t["text"] for t in b[1]]
    s = PlateGANStream(generator=None, seed=5, batch_size=8, augment="heavy")
    s.set_epoch(1)
    c = next(iter(s))
    assert [t["text"] for t in c[1]] != [t["text"] for t in a[1]]


def test_two_workers_never_repeat_each_other():
    stream = PlateGANStream(regions="cn_blue", generator=None, seed=7, length=96, augment="light")
    loader = DataLoader(stream, batch_size=8, num_workers=2, collate_fn=collate)
    texts, digests = [], []
    for images, targets in loader:
        texts += [t["text"] for t in targets]
        digests += [_digest(im) for im in images]
    assert len(texts) == 96, "finite length is split across workers, not repeated"
    assert len(set(texts)) == 96 and len(set(digests)) == 96
    again = [t["text"] for _, ts in DataLoader(stream, batch_size=8, num_workers=2, collate_fn=collate) for t in ts]
    assert sorted(again) == sorted(texts), "same seed, same plates"


def test_ranks_get_distinct_streams(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    r0 = [t["text"] for _, t in PlateGANStream(regions="cn_blue", generator=None, seed=9, length=32)]
    monkeypatch.setenv("RANK", "1")
    r1 = [t["text"] for _, t in PlateGANStream(regions="cn_blue", generator=None, seed=9, length=32)]
    assert len(r0) == len(r1) == 32 and not set(r0) & set(r1)


def test_callable_generator_gets_the_contract_input():
    seen = []

    def fake(condition: torch.Tensor) -> torch.Tensor:
        seen.append(condition.shape)
        return condition[:, 1:]  # the colour hint, as RGB

    images, _ = next(iter(PlateGANStream(regions="us", generator=fake, augment="none", seed=0, batch_size=4,
                                         generator_share=1.0)))
    assert seen == [(4, 4, 96, 192)] and images.shape == (4, 3, 64, 256)


def test_region_weights_and_charset():
    s = PlateGANStream(regions={"us": 3, "br_mercosur": 1}, generator=None, seed=0, batch_size=64, augment="none")
    regions = [t["region"] for t in next(iter(s))[1]]
    assert set(regions) == {"us", "br_mercosur"} and regions.count("us") > regions.count("br_mercosur")
    assert s.charset == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@pytest.mark.parametrize("kwargs,error,match", [
    ({"regions": "atlantis"}, ValueError, "unknown region"),
    ({"regions": []}, ValueError, "regions is empty"),
    ({"regions": {"us": -1}}, ValueError, "weight"),
    ({"mode": "video"}, ValueError, "mode must be"),
    ({"length": -5}, ValueError, "length must be a positive int"),
    ({"batch_size": 0}, ValueError, "batch_size must be a positive int"),
    ({"image_size": (64,)}, ValueError, "image_size"),
    ({"backgrounds": "/nonexistent/backgrounds"}, FileNotFoundError, "backgrounds folder"),
    ({"generator": "/nonexistent/model.onnx"}, FileNotFoundError, "model.onnx"),
    ({"augment": "extreme"}, ValueError, "unknown augmentation preset"),
    ({"device": "cuda:0"} if not torch.cuda.is_available() else {"mode": "bad"}, ValueError, "CUDA|mode"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        PlateGANStream(**{"generator": None, **kwargs})


def test_empty_background_folder(tmp_path):
    with pytest.raises(ValueError, match="holds no images"):
        PlateGANStream(generator=None, mode="scene", backgrounds=tmp_path)


def test_folder_backgrounds_used_and_corrupt_skipped(tmp_path):
    from PIL import Image

    Image.new("RGB", (400, 300), (10, 200, 30)).save(tmp_path / "green.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    stream = PlateGANStream(generator=None, mode="scene", backgrounds=tmp_path, seed=0, batch_size=12,
                            augment="none", image_size=(96, 160), plates_per_scene=(1, 1),
                            scene="plain")  # no negatives or degradations over the background's colour
    with pytest.warns(UserWarning, match="broken.jpg"):
        images, _ = next(iter(stream))
    green = torch.tensor([10, 200, 30]) / 255
    assert torch.allclose(images[:, :, 0, 0], green.expand(12, 3), atol=0.02)
    (tmp_path / "green.png").unlink()
    only_broken = PlateGANStream(generator=None, mode="scene", backgrounds=tmp_path, seed=0, batch_size=2)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="could not read enough background images"):
        next(iter(only_broken))


def test_forked_cuda_worker_is_refused(monkeypatch):
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())
    monkeypatch.setattr(torch.cuda, "_is_in_bad_fork", lambda: True)
    with pytest.raises(RuntimeError, match="num_workers=0.*spawn"):
        _check_cuda_worker(torch.device("cuda"))
    _check_cuda_worker(torch.device("cpu"))  # CPU streams are fine in forked workers


def _black(condition: torch.Tensor) -> torch.Tensor:
    """A generator whose every plate is black: (B, 4, H, W) -> (B, 3, H, W) zeros."""
    return torch.zeros_like(condition[:, 1:])


def test_generator_share_translates_that_fraction_of_the_plates():
    kw = dict(regions={"us": 1, "br_old": 1}, augment="none", framing="tight", batch_size=400)
    images, targets = next(iter(PlateGANStream(generator=_black, generator_share=0.3, seed=4, **kw)))
    black = images.flatten(1).amax(1) == 0  # (400,) plates the generator translated
    assert 0.22 < black.float().mean().item() < 0.38
    for region in ("us", "br_old"):  # drawn per region
        mine = torch.tensor([t["region"] == region for t in targets])
        assert 0.15 < black[mine].float().mean().item() < 0.45
    again, again_targets = next(iter(PlateGANStream(generator=_black, generator_share=0.3, seed=4, **kw)))
    assert torch.equal(again, images) and [t["text"] for t in again_targets] == [t["text"] for t in targets]
    for img, t in zip(images[~black], [t for t, b in zip(targets, black.tolist()) if not b]):
        assert img.flatten(1).amax(1).min() > 0.5, f"{t['text']}: an untranslated plate is not a clean render"


def test_generator_share_at_the_ends():
    assert PlateGANStream(generator=None).generator_share == 0.5  # the shipped default: half the plates
    kw = dict(regions="us", augment="none", seed=2, batch_size=32)
    none, t_none = next(iter(PlateGANStream(generator=None, **kw)))
    zero, t_zero = next(iter(PlateGANStream(generator=_black, generator_share=0.0, **kw)))
    assert torch.equal(none, zero) and [t["text"] for t in t_none] == [t["text"] for t in t_zero]
    one, _ = next(iter(PlateGANStream(generator=_black, generator_share=1.0, framing="tight", **kw)))
    assert one.abs().max() == 0


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan"), "half", True, None])
def test_generator_share_must_be_a_fraction(share):
    with pytest.raises(ValueError, match="generator_share"):
        PlateGANStream(generator=None, generator_share=share)


@pytest.mark.parametrize("src, size", [((64, 208), (64, 256)), ((64, 192), (96, 288)), ((64, 304), (64, 256)),
                                       ((96, 192), (64, 256))])
def test_resize_is_the_antialiased_bilinear_resize(src, size):
    """Plates are resized with torch's plain bilinear kernel where no axis shrinks (faster), the
    antialiased one otherwise: either way the antialiased resize's pixels."""
    x = torch.rand(5, 3, *src, generator=torch.Generator().manual_seed(0))
    ref = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    out = resize(x, size)
    assert out.shape == (5, 3, *size) and (out - ref).abs().max().item() < 1e-5


def test_scattered_parts_are_the_shuffled_concatenation():
    g = torch.Generator().manual_seed(1)
    parts = [torch.rand(k, 3, 4, 5, generator=g) for k in (3, 1, 6)]
    perm = torch.randperm(10, generator=g)
    assert torch.equal(_scatter_parts(parts, perm, torch.device("cpu")), torch.cat(parts)[perm])
