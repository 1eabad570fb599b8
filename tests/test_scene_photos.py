"""Annotated photos for scene mode (plateaug.stream.photos): COCO and YOLO, and every bad-input rule:
a clear error naming the file, or a documented rule with one warning that counts what it left out;
never a wrong label, memory bounded."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import plateaug.stream.photos as photos_mod
from plateaug.stream.photos import ScenePhotos, ScenePhotosError


def photo(path: Path, size=(120, 200), mode="RGB", fmt=None, box=(60, 70, 40, 16), seed=0) -> Path:
    """A noisy photo with a red 'plate' at box (x, y, w, h) (in RGB terms), saved in `mode`."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(60, 140, (*size, 3), dtype=np.uint8)
    x, y, w, h = box
    arr[y: y + h, x: x + w] = (230, 20, 20)
    im = Image.fromarray(arr)
    if mode == "I;16":
        im = Image.fromarray(np.asarray(im.convert("L"), dtype=np.uint16) * 257)  # a 16-bit grey image
    elif mode != "RGB":
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt)
    return path


def coco(folder: Path, images: list[dict], annotations: list[dict], categories=None, name="annotations.json") -> Path:
    out = folder / name
    out.write_text(json.dumps({"images": images, "annotations": annotations,
                               "categories": categories or [{"id": 1, "name": "plate"}]}))
    return out


def entry(i: int, file: str, w=200, h=120, **kw) -> dict:
    return {"id": i, "file_name": file, "width": w, "height": h, **kw}


def ann(i: int, image: int, bbox, cat=1, **kw) -> dict:
    return {"id": i, "image_id": image, "category_id": cat, "bbox": list(bbox), **kw}


def test_coco_photos_load_with_boxes_regions_and_sources(tmp_path) -> None:
    photo(tmp_path / "images" / "a.jpg")
    photo(tmp_path / "images" / "b.png", size=(240, 400), box=(100, 200, 80, 30))
    path = coco(tmp_path, [entry(1, "images/a.jpg", source="dash"), entry(2, "images/b.png", w=400, h=240)],
                [ann(1, 1, (60, 70, 40, 16), region="eu"), ann(2, 2, (100, 200, 80, 30))])
    sp = ScenePhotos(path, max_side=200)
    assert len(sp) == 2 and sp.left_out == {}
    assert sp.photos[0].regions == ("eu",) and sp.photos[0].source == "dash"
    img, boxes = sp.load(1)  # 400 x 240 kept at most 200 a side: halved, boxes with it
    assert img.dtype == torch.uint8 and img.shape == (3, 120, 200)
    assert torch.allclose(boxes, torch.tensor([[50.0, 100.0, 90.0, 115.0]]))
    red = (img[0] > 180) & (img[1] < 80)  # the plate's pixels are where its box says
    ys, xs = red.nonzero().T
    assert abs(xs.min().item() - 50) <= 1 and abs(xs.max().item() - 89) <= 1
    assert abs(ys.min().item() - 100) <= 1 and abs(ys.max().item() - 114) <= 1


@pytest.mark.parametrize("mode", ["L", "CMYK", "I;16", "P", "RGBA"])
def test_odd_modes_are_converted_to_rgb(tmp_path, mode) -> None:
    fmt = {"CMYK": "JPEG", "I;16": "PNG"}.get(mode)
    name = "p.jpg" if fmt == "JPEG" else "p.png"
    photo(tmp_path / name, mode=mode, fmt=fmt)
    sp = ScenePhotos(coco(tmp_path, [entry(1, name)], [ann(1, 1, (60, 70, 40, 16))]))
    img, boxes = sp.load(0)
    assert img.shape == (3, 120, 200) and img.dtype == torch.uint8 and len(boxes) == 1


def test_rules_leave_out_what_would_give_a_wrong_label_with_one_counting_warning(tmp_path) -> None:
    for k in range(5):
        photo(tmp_path / f"{k}.jpg", seed=k)
    images = [entry(k + 1, f"{k}.jpg") for k in range(5)] + [entry(6, "missing.jpg"), entry(7, "gone.jpg")]
    anns = [ann(1, 1, (60, 70, 40, 16)),
            ann(2, 2, (60, 70, 0, 16)),  # zero width: photo 2 is left out (its plate could not be covered)
            ann(3, 3, (500, 70, 40, 16)),  # wholly outside: photo 3 is left out
            ann(4, 4, (180, 100, 40, 40)),  # partly outside: clipped
            ann(5, 5, (10, 10, 30, 30), cat=2), ann(6, 5, (60, 70, 40, 16))]  # a car: ignored
    path = coco(tmp_path, images, anns, [{"id": 1, "name": "plate"}, {"id": 2, "name": "car"}])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sp = ScenePhotos(path)
    assert [p.path.name for p in sp.photos] == ["0.jpg", "3.jpg", "4.jpg"]
    assert sp.left_out == {"annotations of other categories (ignored)": 1,
                           "photos with an unusable box (zero area or outside the image)": 2,
                           "photos whose file is missing": 2}
    assert len(caught) == 1 and "left out" in str(caught[0].message) and "2 photos whose file is missing" in \
        str(caught[0].message)
    assert sp.photos[1].boxes == ((180.0, 100.0, 200.0, 120.0),)  # clipped to the 200 x 120 image
    assert len(sp.photos[2].boxes) == 1  # the car box is not a plate


def test_truncated_photo_is_skipped_at_load_with_one_warning(tmp_path) -> None:
    good = photo(tmp_path / "good.jpg")
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    sp = ScenePhotos(coco(tmp_path, [entry(1, "good.jpg"), entry(2, "cut.jpg")],
                          [ann(1, 1, (60, 70, 40, 16)), ann(2, 2, (60, 70, 40, 16))]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sp.load(1) is None and sp.load(1) is None
    assert len(caught) == 1 and "cut.jpg" in str(caught[0].message)
    assert sp.load(0) is not None


def test_huge_photos_decode_reduced_or_are_left_out(tmp_path, monkeypatch) -> None:
    """(With the pixel bound lowered for the test: a 20,000 x 20,000 photo behaves the same way.)"""
    monkeypatch.setattr(photos_mod, "MAX_PIXELS", 10_000)
    photo(tmp_path / "big.jpg", size=(300, 500), box=(200, 150, 100, 40))
    photo(tmp_path / "big.png", size=(300, 500), box=(200, 150, 100, 40))
    sp = ScenePhotos(coco(tmp_path, [entry(1, "big.jpg", 500, 300), entry(2, "big.png", 500, 300)],
                          [ann(1, 1, (200, 150, 100, 40)), ann(2, 2, (200, 150, 100, 40))]), max_side=128)
    img, boxes = sp.load(0)  # a JPEG: decoded at a reduced scale, then to 128 a side
    assert max(img.shape[1:]) == 128
    assert torch.allclose(boxes, torch.tensor([[200.0, 150.0, 300.0, 190.0]]) * 128 / 500, atol=0.5)
    with pytest.warns(UserWarning, match="big.png.*pixels"):
        assert sp.load(1) is None


def test_recorded_size_of_another_aspect_is_refused_same_aspect_scaled(tmp_path) -> None:
    photo(tmp_path / "a.jpg", size=(120, 200))
    path = coco(tmp_path, [entry(1, "a.jpg", w=400, h=240), entry(2, "a.jpg", w=300, h=300)],
                [ann(1, 1, (120, 140, 80, 32)), ann(2, 2, (10, 10, 20, 10))])
    sp = ScenePhotos(path)
    img, boxes = sp.load(0)  # annotated at twice the size: boxes halved
    assert torch.allclose(boxes, torch.tensor([[60.0, 70.0, 100.0, 86.0]]))
    with pytest.warns(UserWarning, match="another aspect"):
        assert sp.load(1) is None


@pytest.mark.parametrize("content, match", [
    ("{not json", "not a JSON file"),
    ('{"images": []}', "needs 'images' and 'annotations'"),
    ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": []}', "positive int width, height"),
    ('{"images": [{"id": 1, "file_name": "../a.jpg", "width": 5, "height": 5}], "annotations": []}',
     "relative, no '..'"),
    ('{"images": [{"id": 1, "file_name": "a.jpg", "width": 5, "height": 5}], '
     '"annotations": [{"image_id": 9, "bbox": [0, 0, 1, 1]}]}', "image_id"),
    ('{"images": [{"id": 1, "file_name": "a.jpg", "width": 5, "height": 5}], '
     '"annotations": [{"image_id": 1, "category_id": 1, "bbox": "0,0,1,1"}]}', "bbox must be"),
    ('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "bus"}]}',
     "no plate category"),
])
def test_malformed_annotation_files_name_the_file_and_the_problem(tmp_path, content, match) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ScenePhotosError, match=match) as err:
        ScenePhotos(path)
    assert "bad.json" in str(err.value)


def test_missing_path_and_no_usable_photo_are_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        ScenePhotos(tmp_path / "nowhere.json")
    path = coco(tmp_path, [entry(1, "missing.jpg")], [])
    with pytest.raises(ScenePhotosError, match="no usable annotated photos.*missing"), pytest.warns(UserWarning):
        ScenePhotos(path)


def test_oversized_annotation_file_is_refused_before_parsing(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(photos_mod, "MAX_ANNOTATION_BYTES", 100)
    path = coco(tmp_path, [entry(k, f"{k}.jpg") for k in range(10)], [])
    with pytest.raises(ScenePhotosError, match="bytes, more than"):
        ScenePhotos(path)


def test_decoded_photos_stay_within_the_cache_bound(tmp_path) -> None:
    for k in range(6):
        photo(tmp_path / f"{k}.jpg", seed=k)
    path = coco(tmp_path, [entry(k + 1, f"{k}.jpg") for k in range(6)], [ann(k + 1, k + 1, (60, 70, 40, 16))
                                                                        for k in range(6)])
    one = 3 * 120 * 200
    sp = ScenePhotos(path, cache_bytes=2 * one)
    for i in range(6):
        sp.load(i)
        assert sp._cached_bytes <= 2 * one
    assert len(sp._cache) == 2


def test_yolo_folder_takes_the_plate_class_from_data_yaml(tmp_path) -> None:
    photo(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels").mkdir()
    # plateaug's own YOLO datasets: plate = 0, characters after it; here another tool's: plate = 2
    (tmp_path / "labels" / "a.txt").write_text("0 0.1 0.1 0.05 0.05\n2 0.4 0.65 0.2 0.1333\n")
    (tmp_path / "data.yaml").write_text("nc: 3\nnames:\n  0: car\n  1: person\n  2: plate\n")
    photo(tmp_path / "images" / "b.jpg")  # no label file: left out
    with pytest.warns(UserWarning, match="1 photos without a label file"):
        sp = ScenePhotos(tmp_path)
    assert len(sp) == 1
    (x0, y0, x1, y1), = sp.photos[0].boxes
    assert (round(x0), round(y0), round(x1), round(y1)) == (60, 70, 100, 86)
    (tmp_path / "labels" / "a.txt").write_text("2 0.4 oops\n")
    with pytest.raises(ScenePhotosError, match=r"a.txt:1: expected 'class cx cy w h'"):
        ScenePhotos(tmp_path)
