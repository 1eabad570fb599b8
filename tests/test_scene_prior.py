"""ScenePrior: measured from annotations, sampled, saved and loaded; malformed files rejected."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from plateaug import ScenePrior
from plateaug.stream.scene_prior import ASPECT_RANGE, WIDTH_RANGE, default_prior


def _fixture_boxes(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two kinds of plates: small (5 % of the width) low in the frame, large (25 %) in the middle."""
    rng = np.random.default_rng(seed)
    small = np.stack([np.exp(rng.normal(np.log(0.05), 0.15, n)), rng.normal(0.5, 0.1, n).clip(0, 1),
                      rng.normal(0.75, 0.05, n).clip(0, 1), np.exp(rng.normal(np.log(3.5), 0.1, n))], 1)
    large = np.stack([np.exp(rng.normal(np.log(0.25), 0.1, n // 2)), rng.normal(0.5, 0.05, n // 2).clip(0, 1),
                      rng.normal(0.5, 0.05, n // 2).clip(0, 1), np.exp(rng.normal(np.log(2.0), 0.1, n // 2))], 1)
    return np.concatenate([small, large]), np.array([1] * 300 + [2] * 80 + [3] * 20)


def test_fit_recovers_what_the_boxes_hold_and_sampling_matches() -> None:
    boxes, counts = _fixture_boxes()
    prior = ScenePrior.from_boxes(boxes, counts, components=2, source="fixture")
    assert sorted(np.round(prior.weights, 1)) == [0.3, 0.7]
    means = sorted(np.exp(m[0]) for m in prior.means)
    assert abs(means[0] - 0.05) < 0.01 and abs(means[1] - 0.25) < 0.03
    assert np.allclose(prior.plates_per_image, [0.75, 0.2, 0.05], atol=1e-6)
    g = torch.Generator().manual_seed(0)
    s = prior.sample_boxes(20000, g)
    assert s.shape == (20000, 4)
    assert WIDTH_RANGE[0] <= s[:, 0].min() and s[:, 0].max() <= WIDTH_RANGE[1]
    assert ASPECT_RANGE[0] <= s[:, 3].min() and s[:, 3].max() <= ASPECT_RANGE[1]
    assert 0 <= s[:, 1:3].min() and s[:, 1:3].max() <= 1
    small = s[:, 0] < 0.12
    assert abs(small.float().mean().item() - 400 / 600) < 0.03
    assert abs(s[small, 2].mean().item() - 0.75) < 0.02  # small plates low in the frame, as measured
    counts = prior.sample_counts(20000, g)
    assert abs((counts == 1).float().mean().item() - 0.75) < 0.02 and counts.max() <= 3
    limited = prior.sample_counts(1000, g, lo=2, hi=3)
    assert set(limited.tolist()) <= {2, 3}


def test_same_generator_seed_same_draws() -> None:
    prior = ScenePrior.from_boxes(*_fixture_boxes(), components=2)
    a = prior.sample_boxes(50, torch.Generator().manual_seed(4))
    b = prior.sample_boxes(50, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


def test_save_load_round_trip(tmp_path) -> None:
    prior = ScenePrior.from_boxes(*_fixture_boxes(), components=3, source='measured "here"')
    back = ScenePrior.load(prior.save(tmp_path / "p.toml"))
    assert back == prior and back.source == 'measured "here"'


def test_from_coco_measures_the_photos_boxes(tmp_path) -> None:
    images, anns = [], []
    rng = np.random.default_rng(1)
    for k in range(40):
        Image.fromarray(rng.integers(0, 255, (100, 200, 3), dtype=np.uint8)).save(tmp_path / f"{k}.jpg")
        images.append({"id": k, "file_name": f"{k}.jpg", "width": 200, "height": 100})
        for j in range(1 + k % 2):
            w = 20 + int(rng.integers(0, 5))
            anns.append({"id": len(anns), "image_id": k, "category_id": 1, "bbox": [20 + 100 * j, 60, w, w / 4]})
    (tmp_path / "a.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                 "categories": [{"id": 1, "name": "plate"}]}))
    prior = ScenePrior.from_coco(tmp_path / "a.json", components=2)
    assert prior.plates_per_image == (0.5, 0.5)
    s = prior.sample_boxes(2000, torch.Generator().manual_seed(0))
    assert abs(s[:, 0].median().item() - 0.11) < 0.01 and abs(s[:, 3].median().item() - 4.0) < 0.2
    assert abs(s[:, 2].median().item() - (60 + 2.75) / 100) < 0.02
    only = ScenePrior.from_coco(tmp_path / "a.json", components=1, image_ids=range(0, 40, 2))
    assert only.plates_per_image == (1.0,)  # the even images have one plate each


def test_the_shipped_prior_loads_and_says_what_it_was_measured_on() -> None:
    prior = default_prior()
    assert "dashcam" in prior.source and "MIT" in prior.source
    w = prior.sample_boxes(5000, torch.Generator().manual_seed(0))[:, 0]
    assert 0.02 < w.median().item() < 0.2  # plates a few percent of the width, as in the photos


@pytest.mark.parametrize("text, match", [
    ("not toml [", "TOMLDecodeError"),
    ("plates_per_image = [1.0]\n", "KeyError"),
    ("plates_per_image = [1.0]\n[[component]]\nweight = 1\nmean = [0, 0, 0]\ncovariance = [[1]]\n", "means must be"),
    ("plates_per_image = [1.0]\n[[component]]\nweight = 1\nmean = [0, 0, 0, 0]\n"
     "covariance = [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,-1]]\n", "positive definite"),
    ("plates_per_image = [-1.0]\n[[component]]\nweight = 1\nmean = [0, 0, 0, 0]\n"
     "covariance = [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]\n", "plates_per_image"),
])
def test_malformed_prior_files_name_themselves(tmp_path, text, match) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        ScenePrior.load(path)
    assert "bad.toml" in str(err.value)


def test_too_few_boxes_to_fit_is_an_error() -> None:
    with pytest.raises(ValueError, match="too few"):
        ScenePrior.from_boxes(np.ones((5, 4)) * 0.1, np.ones(5), components=4)
