"""The benchmark detector's targets, loss and decoding (plateaug.models.centernet)."""

import pytest
import torch
import torch.nn.functional as F

from plateaug.models.centernet import STRIDE, PlateDetector, decode, detection_loss, encode_targets, flip_merge

BOXES = [torch.tensor([[10.0, 20.0, 90.0, 40.0], [100.0, 60.0, 140.0, 72.0]]), torch.zeros(0, 4)]
SIZE = (96, 160)  # (H, W) input pixels


def outputs_from(targets: dict, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The outputs a perfect detector would give: heat logits peaking where the targets' heat is 1, and
    the targets' log size and offset at every regression cell."""
    heat = targets["heat"]
    B, _, H, W = heat.shape
    logits = torch.where(heat.eq(1), torch.tensor(9.0), torch.tensor(-9.0))
    size, offset = torch.zeros(B, 2, H * W), torch.zeros(B, 2, H * W)
    size[targets["image"], :, targets["index"]] = targets["logsize"]
    offset[targets["image"], :, targets["index"]] = targets["offset"]
    return logits, size.view(B, 2, H, W), offset.view(B, 2, H, W)


@pytest.mark.parametrize("spread,dense", [(None, False), (0.54, False), (0.54, True)])
def test_targets_decode_back_to_their_boxes(spread, dense):
    targets = encode_targets(BOXES, SIZE, spread, dense)
    assert targets["heat"].shape == (2, 1, SIZE[0] // STRIDE, SIZE[1] // STRIDE)
    assert int(targets["heat"].eq(1).sum()) == 2  # one peak a box
    (boxes, scores), (_, empty_scores) = decode(*outputs_from(targets, SIZE), k=5)
    found = boxes[scores > 0.5]
    assert len(found) == 2 and float(empty_scores.max()) < 0.5
    order = found[:, 0].argsort()
    torch.testing.assert_close(found[order], BOXES[0], atol=1e-3, rtol=0)


def test_elliptical_peaks_follow_the_box_and_round_ones_do_not():
    wide = [torch.tensor([[8.0, 40.0, 152.0, 56.0]])]  # 144 x 16 px: 36 x 4 cells
    cy, cx = 12, 20  # the centre cell
    round_ = encode_targets(wide, SIZE)["heat"][0, 0]
    ellipse = encode_targets(wide, SIZE, spread=0.54)["heat"][0, 0]
    assert float(round_[cy, cx + 3]) == pytest.approx(float(round_[cy + 3, cx]))
    assert float(ellipse[cy, cx + 3]) > 0.5 > float(ellipse[cy + 2, cx])
    assert float(ellipse[cy, cx + 3]) > float(round_[cy, cx + 3])


def test_dense_targets_sample_every_cell_of_the_peak_and_weigh_each_box_once():
    centre = encode_targets(BOXES, SIZE, 0.54)
    dense = encode_targets(BOXES, SIZE, 0.54, dense=True)
    assert len(centre["index"]) == 2 and len(dense["index"]) > 6
    W = SIZE[1] // STRIDE
    cells = torch.stack([dense["index"] % W, dense["index"] // W], 1).float()
    centres = cells + dense["offset"]  # every sample points at its box's centre (in cells)
    expected = torch.tensor([[50.0, 30.0], [120.0, 66.0]]) / STRIDE
    first = dense["logsize"][:, 0] > torch.tensor(60.0).log()  # the 80-px-wide box's samples
    torch.testing.assert_close(centres[first], expected[0].expand(int(first.sum()), 2))
    torch.testing.assert_close(centres[~first], expected[1].expand(int((~first).sum()), 2))
    assert float(dense["weight"][first].sum()) == pytest.approx(1.0)
    assert float(dense["weight"][~first].sum()) == pytest.approx(1.0)
    assert set(centre["index"].tolist()) <= set(dense["index"].tolist())


def test_loss_is_the_mean_l1_at_the_centres_and_nothing_for_perfect_regression():
    torch.manual_seed(0)
    targets = encode_targets(BOXES, SIZE)
    heat, size, offset = PlateDetector()(torch.rand(2, 3, *SIZE))
    _, parts = detection_loss((heat, size, offset), targets)
    img, idx = targets["image"], targets["index"]
    expected = F.l1_loss(size.detach().flatten(2)[img, :, idx], targets["logsize"])
    assert parts["size"] == pytest.approx(float(expected), rel=1e-5)
    dense = encode_targets(BOXES, SIZE, 0.54, dense=True)
    _, perfect = detection_loss(outputs_from(dense, SIZE), dense)
    assert perfect["size"] == pytest.approx(0.0, abs=1e-6) and perfect["offset"] == pytest.approx(0.0, abs=1e-6)
    h, s, o = outputs_from(dense, SIZE)
    _, shifted = detection_loss((h, s + 0.5, o), dense)  # every sample off by 0.5: the weighted mean is 0.5
    assert shifted["size"] == pytest.approx(0.5, rel=1e-5)


def test_flip_merge_of_a_mirrored_pair_decodes_to_the_same_boxes():
    """Outputs on an image and the exact mirror of them (what a mirror-symmetric detector gives on the
    mirrored image) merge into the first's boxes; a peak in only one of the two halves its probability."""
    targets = encode_targets(BOXES, SIZE, 0.54, True)
    heat, size, offset = outputs_from(targets, SIZE)
    merged = flip_merge((heat, size, offset), (heat.flip(-1), size.flip(-1), offset.flip(-1)))
    (boxes, scores), _ = decode(*merged, k=5)
    found = boxes[scores > 0.5]
    torch.testing.assert_close(found[found[:, 0].argsort()], BOXES[0], atol=1e-3, rtol=0)
    half = flip_merge((heat, size, offset), (torch.full_like(heat, -9.0), size.flip(-1), offset))
    peak = heat.eq(9.0)
    expected = (torch.sigmoid(torch.tensor(9.0)) + torch.sigmoid(torch.tensor(-9.0))) / 2
    torch.testing.assert_close(half[0][peak].sigmoid(), expected.expand(int(peak.sum())), atol=1e-5, rtol=0)


def test_flip_merge_refuses_outputs_of_different_shapes():
    a = (torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8))
    b = (torch.zeros(1, 1, 8, 16), torch.zeros(1, 2, 8, 16), torch.zeros(1, 2, 8, 16))
    with pytest.raises(ValueError, match="different shapes"):
        flip_merge(a, b)
