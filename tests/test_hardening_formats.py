"""Issue #13: stable class ids and an absolute data.yaml path (YOLO, COCO), a polygon on every COCO
annotation, and scene plates kept whole inside the image (so their full text and character boxes
are true)."""

from __future__ import annotations

import json
from pathlib import Path

import kornia.augmentation as K
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plateaug import PlateGANStream, Scene
from plateaug.generate import main
from plateaug.renderer.spec_loader import builtin_regions, load_region
from plateaug.stream.scene import place_plates
from plateaug.writers.formats import CHAR_CLASSES, DatasetWriter, class_names

FAST = ["--generator", "none", "--no-progress", "--batch-size", "4"]
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _data_yaml(path: Path) -> dict:
    """data.yaml as written (path, names), read without a YAML dependency; cross-checked with
    PyYAML where it is installed."""
    text = path.read_text(encoding="utf-8")
    out: dict = {"names": {}}
    for line in text.splitlines():
        if line.startswith("  "):
            k, v = line.strip().split(": ", 1)
            out["names"][int(k)] = json.loads(v)
        elif ": " in line:
            k, v = line.split(": ", 1)
            out[k] = json.loads(v) if v.startswith('"') else v
    try:
        import yaml
    except ImportError:
        return out
    assert yaml.safe_load(text)["names"] == out["names"] and yaml.safe_load(text)["path"] == out["path"]
    return out


# ---- item 7: YOLO/COCO class ids do not depend on --regions; data.yaml path is absolute ----------------

def test_shipped_characters_have_fixed_ids():
    for r in builtin_regions():
        assert set(load_region(r).charset) <= set(CHAR_CLASSES), r
    assert len(set(CHAR_CLASSES)) == len(CHAR_CLASSES)
    # whatever subset of the shipped characters a dataset uses, the class list is the same
    assert class_names(load_region("eu_de").charset) == class_names(load_region("us").charset) == \
        class_names("") == ["plate", *CHAR_CLASSES]
    # a user region's extra characters come after every shipped one, in code-point order,
    # whatever order they arrive in
    assert class_names("ÖA9Ä") == class_names("ÄÖ") == ["plate", *CHAR_CLASSES, "Ä", "Ö"]


def test_yolo_ids_are_the_same_for_different_regions(tmp_path):
    per_char: dict[str, set[int]] = {}
    names_seen = []
    for regions in ("eu_de", "us", "cn_blue,eu_sk"):
        out = tmp_path / regions.replace(",", "_")
        assert main(["--n", "4", "--out", str(out), "--format", "yolo", "--mode", "crop", "--regions", regions,
                     *FAST]) == 0
        data = _data_yaml(out / "data.yaml")
        assert Path(data["path"]).is_absolute() and Path(data["path"]) == out.resolve()
        assert (Path(data["path"]) / data["train"]).is_dir()
        names = [data["names"][i] for i in range(len(data["names"]))]
        assert int(data["nc"]) == len(names)
        names_seen.append(names)
        for meta in sorted((out / "meta").glob("*.json")):
            text = json.loads(meta.read_text(encoding="utf-8"))["plates"][0]["text"]
            rows = (out / "labels" / f"{meta.stem}.txt").read_text().splitlines()
            ids = [int(r.split()[0]) for r in rows]
            assert names[ids[0]] == "plate" and "".join(names[i] for i in ids[1:]) == text
            for ch, i in zip(text, ids[1:]):
                per_char.setdefault(ch, set()).add(i)
    assert names_seen[0] == names_seen[1] == names_seen[2]
    assert all(len(ids) == 1 for ids in per_char.values()), per_char
    assert names_seen[0].index("R") == 1 + CHAR_CLASSES.index("R")


def test_data_yaml_path_works_from_another_directory(tmp_path, monkeypatch):
    out = tmp_path / "rel"
    monkeypatch.chdir(tmp_path)
    assert main(["--n", "2", "--out", "rel", "--format", "yolo", "--mode", "crop", "--regions", "us", *FAST]) == 0
    monkeypatch.chdir("/")
    data = _data_yaml(out / "data.yaml")
    assert Path(data["path"]) == out.resolve() and (Path(data["path"]) / data["val"]).is_dir()


def test_coco_categories_are_the_same_for_different_regions(tmp_path):
    cats = []
    for regions in ("eu_de", "us"):
        out = tmp_path / regions
        assert main(["--n", "3", "--out", str(out), "--format", "coco", "--mode", "crop", "--regions", regions,
                     *FAST]) == 0
        coco = json.loads((out / "annotations.json").read_text(encoding="utf-8"))
        cats.append(coco["categories"])
        names = {c["id"]: c["name"] for c in coco["categories"]}
        plates = [a for a in coco["annotations"] if a["category_id"] == 1]
        chars = "".join(names[a["category_id"]] for a in coco["annotations"] if a["category_id"] != 1)
        assert chars == "".join(a["text"] for a in plates)
    assert cats[0] == cats[1]
    assert [c["name"] for c in cats[0]] == ["plate", *CHAR_CLASSES]


# ---- item 9: every COCO annotation has a polygon ----------------------------------------------------------

def _coco(tmp_path: Path, *extra: str) -> tuple[Path, dict]:
    out = tmp_path / "coco"
    assert main(["--n", "4", "--out", str(out), "--format", "coco", "--image-size", "128x192",
                 "--regions", "us,br_mercosur", *FAST, *extra]) == 0
    return out, json.loads((out / "annotations.json").read_text(encoding="utf-8"))


def _polygon_area(poly: list[float]) -> float:
    xs, ys = poly[0::2], poly[1::2]
    return abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))) / 2


@pytest.mark.parametrize("extra", [("--box-margin", "0"), (), ("--mode", "crop", "--augment", "heavy", "--seed", "5")])
def test_every_coco_annotation_has_segmentation_area_bbox(tmp_path, extra):
    """Scenes with exact boxes and with the default margin round the plate, and augmented crops (whose plate
    corners may leave the image: the polygon is clipped)."""
    _, coco = _coco(tmp_path, *extra)
    images = {im["id"]: im for im in coco["images"]}
    assert coco["annotations"]
    for a in coco["annotations"]:
        assert {"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd"} <= set(a)
        assert a["iscrowd"] == 0
        seg = a["segmentation"]
        assert isinstance(seg, list) and len(seg) == 1 and len(seg[0]) >= 6 and len(seg[0]) % 2 == 0
        assert all(isinstance(v, (int, float)) for v in seg[0])
        x, y, w, h = a["bbox"]
        xs, ys = seg[0][0::2], seg[0][1::2]
        im = images[a["image_id"]]
        assert w > 0 and h > 0 and 0 <= x and 0 <= y and x + w <= im["width"] + 1e-3 and y + h <= im["height"] + 1e-3
        # the polygon lies in its bbox (the bbox is the polygon's extent where nothing was clipped)
        assert min(xs) >= x - 0.02 and max(xs) <= x + w + 0.02 and min(ys) >= y - 0.02 and max(ys) <= y + h + 0.02
        if extra == ("--box-margin", "0"):
            assert min(xs) == pytest.approx(x, abs=0.02) and max(xs) == pytest.approx(x + w, abs=0.02)
            assert min(ys) == pytest.approx(y, abs=0.02) and max(ys) == pytest.approx(y + h, abs=0.02)
        assert a["area"] == pytest.approx(_polygon_area(seg[0]), rel=1e-3, abs=0.05) and a["area"] > 0


def test_pycocotools_evaluates_masks_over_all_categories(tmp_path):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out, coco = _coco(tmp_path)
    gt = COCO(str(out / "annotations.json"))
    # detections = the ground-truth boxes (pycocotools gives them box-shaped masks)
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in coco["annotations"]]
    for iou_type, at_least in (("segm", 0.5), ("bbox", 0.99)):
        ev = COCOeval(gt, gt.loadRes(dets), iou_type)  # every category, characters included
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        assert ev.stats[0] > at_least, (iou_type, ev.stats)


# ---- item 8: scene plates lie wholly inside the image --------------------------------------------------

@PROPERTY
@given(counts=st.lists(st.integers(1, 8), min_size=1, max_size=6), aspect=st.floats(0.8, 6.0),
       H=st.integers(8, 400), W=st.integers(8, 700), seed=st.integers(0, 2**31 - 1))
def test_place_plates_keeps_every_corner_inside(counts, aspect, H, W, seed):
    counts_t = torch.tensor(counts)
    aspects = torch.full((int(counts_t.sum()),), aspect)
    quads = place_plates(counts_t, aspects, (H, W), torch.Generator().manual_seed(seed))
    assert quads.shape == (len(aspects), 4, 2) and torch.isfinite(quads).all()
    assert (quads[..., 0] >= 0).all() and (quads[..., 0] <= W).all(), quads
    assert (quads[..., 1] >= 0).all() and (quads[..., 1] <= H).all(), quads
    # non-degenerate: a real quadrilateral with some area
    x, y = quads[..., 0], quads[..., 1]
    area = 0.5 * (x * y.roll(1, -1) - x.roll(1, -1) * y).sum(-1).abs()
    assert (area > 0).all()


def _check_scene_targets(targets, H, W):
    eps = 1e-3
    n = 0
    for t in targets:
        corners = t["corners"]
        assert (corners[..., 0] >= -eps).all() and (corners[..., 0] <= W + eps).all(), corners
        assert (corners[..., 1] >= -eps).all() and (corners[..., 1] <= H + eps).all(), corners
        for text, cb, q in zip(t["text"], t["char_boxes"], corners):
            assert cb.shape == (len(text), 4)
            # the character boxes lie inside the image and inside the plate's (unclipped) extent
            lo, hi = q.amin(0), q.amax(0)
            assert (cb[:, :2] >= lo - eps).all() and (cb[:, 2:] <= hi + eps).all(), (cb, q)
            assert (cb[:, 2] > cb[:, 0]).all() and (cb[:, 3] > cb[:, 1]).all()
            n += 1
    return n


@pytest.mark.parametrize("augment", ["none", "light", "heavy"])
def test_scene_plates_and_characters_inside_the_image(augment):
    H, W = 96, 160
    seen = 0
    for seed in range(6):
        stream = PlateGANStream(regions=["eu_de", "us"], mode="scene", generator=None, augment=augment, seed=seed,
                                image_size=(H, W), batch_size=8, plates_per_scene=(1, 4),
                                scene={"as_taken": False})  # the photo scenes augmented too
        images, targets = next(iter(stream))
        seen += _check_scene_targets(targets, H, W)
    assert seen >= 6 * 8


def test_scene_plates_inside_even_with_a_wild_augmentation():
    """A user augmentation that throws plates off the image: such scenes are re-augmented, and
    left unaugmented if no try keeps every plate inside."""
    wild = K.AugmentationSequential(K.RandomAffine(degrees=0, translate=(0.45, 0.45), p=1.0),
                                    data_keys=["input", "keypoints"])
    H, W = 96, 160
    stream = PlateGANStream(regions="us", mode="scene", generator=None, augment=wild, seed=3,
                            image_size=(H, W), batch_size=8, scene=Scene(extra_plates=(2, 2), as_taken=False))
    images, targets = next(iter(stream))
    assert _check_scene_targets(targets, H, W) >= 16
    assert images.shape == (8, 3, H, W)
    again, _ = next(iter(stream))
    assert torch.equal(images, again)  # still the same seed, same batch


def test_dataset_writer_classes_ignore_the_charset_order(tmp_path):
    a = DatasetWriter(tmp_path / "a", "yolo", "ZYX0")
    b = DatasetWriter(tmp_path / "b", "yolo", "".join(sorted(CHAR_CLASSES)))
    assert a.classes() == b.classes()
