"""Smoke test of benchmarks/realism.py --quick on a tiny fixture folder, and unit tests of the CRNN."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from plateaug import render, sample_text
from plateaug.generator.checkpoint import generator_checkpoint
from plateaug.generator.onnx_export import export_onnx
from plateaug.models import create_generator
from plateaug.models.crnn import CRNN, greedy_decode
from plateaug.training.realdata import is_validation
from plateaug.writers.sheet import to_pil

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"clean", "classic", "gan", "gan+aug"}


def _names(prefix: str, n_val: int, n_train: int) -> list[str]:
    """File names with exactly n_val in the validation split and n_train in the training split."""
    val, train, i = [], [], 0
    while len(val) < n_val or len(train) < n_train:
        name = f"{prefix}_{i:03d}.jpg"
        bucket, limit = (val, n_val) if is_validation(name) else (train, n_train)
        if len(bucket) < limit:
            bucket.append(name)
        i += 1
    return val + train


def _fixture(folder: Path) -> None:
    """Rendered br_old / us plates saved as jpg, with labels.csv (file,region,text,source)."""
    rows = []
    for region, spec in (("br", "br_old"), ("us", "us")):
        names = _names(region, n_val=3, n_train=5)
        plates = render(spec, sample_text(spec, len(names), torch.Generator().manual_seed(7)))
        (folder / region).mkdir(parents=True)
        for name, image, text in zip(names, plates.images, plates.texts):
            to_pil(image).save(folder / region / name, quality=85)
            rows.append({"file": f"{region}/{name}", "region": region, "text": text, "source": "test render"})
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "region", "text", "source"])
        writer.writeheader()
        writer.writerows(rows)


def test_realism_quick(tmp_path: Path) -> None:
    real = tmp_path / "real"
    _fixture(real)
    onnx = export_onnx(generator_checkpoint(create_generator("unet_xs"), name="unet_xs"), tmp_path / "g.onnx").path
    out = tmp_path / "realism.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "realism.py"), "--quick", "--real", str(real), "--regions",
           "br,us", "--onnx", str(onnx), "--json", str(out), "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert set(result) == {"accuracy", "c2st", "machine", "date"}
    for key, fields in (("accuracy", {"source", "region", "exact_mean", "exact_std", "char_mean", "char_std",
                                      "seeds"}), ("c2st", {"source", "region", "accuracy"})):
        rows = result[key]
        assert {(r["region"], r["source"]) for r in rows} == {(r, s) for r in ("br", "us") for s in SOURCES}
        assert len(rows) == 8
        for r in rows:
            assert set(r) == fields
            for k in fields - {"source", "region", "seeds"}:
                assert 0.0 <= r[k] <= 1.0, (key, r)
    assert all(r["seeds"] == 1 for r in result["accuracy"])


def test_realism_missing_model_fails_clearly(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "realism.py"), "--quick", "--onnx", str(tmp_path / "no.onnx")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode != 0 and "does not exist" in proc.stderr


def test_crnn_shapes_and_ctc() -> None:
    torch.manual_seed(0)
    charset = "0123456789ABC"
    model = CRNN(len(charset))
    logits = model(torch.rand(3, 3, 32, 128))
    assert logits.shape == (32, 3, len(charset) + 1)  # (T, B, n_classes + 1)
    assert model(torch.rand(2, 3, 64, 256)).shape == (32, 2, len(charset) + 1)  # other sizes are resized
    targets = torch.tensor([1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 1])  # (sum L,), 1-based
    loss = nn.CTCLoss(blank=0)(logits.log_softmax(-1), targets, torch.full((3,), 32), torch.tensor([4, 3, 4]))
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert len(greedy_decode(logits, charset)) == 3


def test_greedy_decode_collapses_repeats_and_drops_blanks() -> None:
    charset = "ABC"
    path = [[1, 1, 0, 1, 2, 2, 0, 0, 3], [0, 0, 0, 0, 0, 0, 0, 0, 0]]  # (B, T) best classes, 0 = blank
    logits = torch.nn.functional.one_hot(torch.tensor(path).T, num_classes=4).float()  # (T, B, 4)
    assert greedy_decode(logits, charset) == ["AABC", ""]
