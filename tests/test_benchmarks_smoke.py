"""Smoke test of benchmarks/realism.py --quick on a tiny fixture folder, and unit tests of the CRNN."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from plateaug import render, sample_text
from plateaug.generator.checkpoint import generator_checkpoint
from plateaug.generator.onnx_export import export_onnx
from plateaug.models import create_generator
from plateaug.models.crnn import CRNN, greedy_decode, with_charset
from plateaug.training.realdata import is_validation
from plateaug.writers.sheet import to_pil

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("clean", "aug", "gan", "default", "real", "real+default")
SYNTHETIC = ("clean", "aug", "gan", "default")


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


def _fixture(folder: Path, regions: tuple = (("br", "br_old"), ("us", "us")), seed: int = 7) -> None:
    """Rendered plates saved as jpg (3 validation + 5 training crops per region), with labels.csv
    (file,region,text,source)."""
    rows = []
    for region, spec in regions:
        names = _names(region, n_val=3, n_train=5)
        plates = render(spec, sample_text(spec, len(names), torch.Generator().manual_seed(seed)))
        (folder / region).mkdir(parents=True)
        for name, image, text in zip(names, plates.images, plates.texts):
            to_pil(image).save(folder / region / name, quality=85)
            rows.append({"file": f"{region}/{name}", "region": region, "text": text, "source": "test render"})
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "region", "text", "source"])
        writer.writeheader()
        writer.writerows(rows)


def _realism(tmp_path: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "realism.py"), "--quick", "--threads", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_realism_quick(tmp_path: Path) -> None:
    real = tmp_path / "real"
    _fixture(real)
    onnx = export_onnx(generator_checkpoint(create_generator("unet_xs"), name="unet_xs"), tmp_path / "g.onnx").path
    out, txt = tmp_path / "realism.json", tmp_path / "realism.txt"
    proc = _realism(tmp_path, "--real", str(real), "--regions", "br,us", "--onnx", str(onnx), "--json", str(out),
                    "--txt", str(txt))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert {"accuracy", "c2st", "machine", "date", "settings", "runtime_s"} <= set(result)
    acc_fields = {"source", "region", "exact_mean", "exact_std", "char_mean", "char_std", "seeds", "own_exact_mean",
                  "own_exact_std", "own_char_mean", "n_test", "time_s"}
    rows = result["accuracy"]
    assert {(r["region"], r["source"]) for r in rows} == {(r, s) for r in ("br", "us") for s in SOURCES}
    assert len(rows) == 2 * len(SOURCES)
    for r in rows:
        assert set(r) == acc_fields
        for k in acc_fields - {"source", "region", "seeds", "n_test", "time_s"}:
            assert 0.0 <= r[k] <= 1.0, r
        assert r["seeds"] == 1 and r["n_test"] == 3  # the fixture's validation split: 3 crops per region
    c2st = result["c2st"]  # synthetic sources only
    assert {(r["region"], r["source"]) for r in c2st} == {(r, s) for r in ("br", "us") for s in SYNTHETIC}
    assert all(set(r) == {"source", "region", "accuracy"} and 0.0 <= r["accuracy"] <= 1.0 for r in c2st)
    assert "real+default" in txt.read_text()
    # six steps learn nothing: every synthetic recogniser is named as not learned, under the table too
    stalled = result["stalled"]
    assert {(x["source"], x["region"]) for x in stalled} == {(s, r) for s in SYNTHETIC for r in ("br", "us")}
    assert all(x["seed"] == 0 and x["own_exact"] < 0.5 for x in stalled)
    assert "not learned (own exact < 0.5" in txt.read_text()
    recognisers = result["settings"]["recognisers"]  # br and us are read by the one Latin recogniser
    assert set(recognisers) == {"latin"} and recognisers["latin"]["regions"] == ["br", "us"]
    assert recognisers["latin"]["charset_size"] == len(set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def test_realism_holdout_sources_and_stream_options(tmp_path: Path) -> None:
    real, holdout = tmp_path / "real", tmp_path / "holdout"
    _fixture(real)
    _fixture(holdout, regions=(("us", "us"),), seed=11)
    out = tmp_path / "realism.json"
    proc = _realism(tmp_path, "--real", str(real), "--holdout", str(holdout), "--regions", "br,us", "--sources",
                    "aug,real", "--stream-options", '{"augment": "heavy", "image_size": [32, 128]}', "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(out.read_text())
    # every holdout crop is a test crop; br has none there, so only us is scored
    rows = {(r["region"], r["source"], r["n_test"]) for r in result["accuracy"]}
    assert rows == {("us", "aug", 8), ("us", "real", 8)}
    assert result["settings"]["stream_options"]["augment"] == "heavy"


def test_realism_jobs_in_worker_processes_match_the_in_process_run(tmp_path: Path) -> None:
    """Jobs in two spawned workers (finishing in any order) score exactly as the same jobs run one
    after another in the benchmark's own process: a job depends only on its source and seed."""
    real = tmp_path / "real"
    _fixture(real)
    runs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}.json"
        proc = _realism(tmp_path, "--real", str(real), "--regions", "br,us", "--sources",
                        "aug,default,real,real+default", "--seeds", "2", "--steps", "30", "--real-steps", "30",
                        "--jobs", jobs, "--json", str(out))
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        result = json.loads(out.read_text())
        assert result["settings"]["jobs"] == int(jobs) and result["settings"]["threads_per_job"] == 1
        runs.append(([{k: v for k, v in r.items() if k != "time_s"} for r in result["accuracy"]], result["c2st"]))
    assert runs[0] == runs[1]
    rows, c2st = runs[0]
    assert len(rows) == 2 * 4 and len(c2st) == 2 * 2
    # something to compare: the recognisers read some characters (the classifiers, tested on 3 + 3
    # crops here, may all land on 3 of 6 by chance: their equality is checked above, their scores are valid)
    assert any(r["own_char_mean"] > 0 for r in rows)
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in c2st)


def _import_benchmark(name: str):
    """benchmarks/NAME.py imported in-process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_bench", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def realism():
    return _import_benchmark("realism")


@pytest.fixture(scope="module")
def detection():
    return _import_benchmark("detection")


def test_realism_groups_partition_the_regions_with_their_own_charsets(realism) -> None:
    """Every real region is read by exactly one recogniser; cn's charset holds the provinces and
    none of the letters cn plates never use (I, O), the Latin one no CJK."""
    regions = [r for g in realism.GROUPS.values() for r in g.regions]
    assert sorted(regions) == sorted(realism.REGION_MAP) and len(regions) == len(set(regions))
    empty = realism.Crops(torch.zeros(0, 3, 32, 128, dtype=torch.uint8), [], [])
    cn = realism.group_charset(["cn"], empty, empty)
    latin = realism.group_charset(["br", "eu", "us"], empty, empty)
    assert "皖" in cn and "京" in cn and not {"I", "O"} & set(cn) and len(cn) == 31 + 24 + 10
    assert set("0123456789ABCXYZ") <= set(latin) and not any(ord(ch) > 127 for ch in latin)
    real = realism.Crops(torch.zeros(2, 3, 32, 128, dtype=torch.uint8), ["皖AI0001", "ABC123"], ["cn", "us"])
    assert set(realism.group_charset(["cn"], real, empty)) == set(cn) | {"I"}  # its real crops' characters too
    assert realism.group_steps(900, 4 / 3) == 1200 and realism.group_steps(3, 0.1) == 1
    cn, latin = realism.GROUPS["cn"], realism.GROUPS["latin"]
    assert cn.init == "latin" and cn.synthetic_steps(900, warm=True) == 900  # warm-started from the Latin one
    assert cn.synthetic_steps(900, warm=False) == 1200 and latin.synthetic_steps(900, warm=False) == 900


def test_recogniser_augmentation_greys_and_shifts_contrast_and_brightness(realism) -> None:
    """The recogniser's own augmentation: ~15 % of crops grey; contrast scales colour differences by
    0.7-1.3 around the crop's mean, brightness moves it by +-0.15; reproducible."""
    colour = torch.tensor([0.3, 0.5, 0.7]).view(1, 3, 1, 1)
    x = colour.expand(400, 3, 32, 128).contiguous()  # a flat colour: warping leaves it as it is
    out = realism.light_augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.equal(out, realism.light_augment(x, torch.Generator().manual_seed(0)))
    flat = out.amax((2, 3)) - out.amin((2, 3))  # (400, 3): still flat per channel
    assert flat.max() < 1e-5
    rgb = out[:, :, 0, 0]  # (400, 3)
    grey = (rgb[:, 2] - rgb[:, 0]).abs() < 1e-5
    assert 0.08 < grey.float().mean() < 0.25
    contrast = (rgb[~grey, 2] - rgb[~grey, 0]) / 0.4
    assert contrast.min() >= 0.7 - 1e-5 and contrast.max() <= 1.3 + 1e-5 and contrast.std() > 0.1
    shift = rgb.mean(1) - 0.5  # the crop's mean moves by the brightness only
    assert shift.abs().max() <= 0.15 + 1e-5 and shift.std() > 0.05
    photo = torch.rand(8, 3, 32, 128, generator=torch.Generator().manual_seed(1))
    warped = realism.light_augment(photo, torch.Generator().manual_seed(2))
    assert 0 <= warped.min() and warped.max() <= 1 and not torch.allclose(warped, photo, atol=0.05)


def test_plain_steps_hold_the_augmentation_back_only_from_a_new_recogniser(realism, monkeypatch) -> None:
    """--plain-steps: a recogniser from scratch sees plain crops for its first steps (a curriculum);
    a warm-started or fine-tuned one is augmented from its first step."""
    calls = []
    augment = realism.light_augment
    monkeypatch.setattr(realism, "light_augment", lambda x, g: calls.append(len(x)) or augment(x, g))
    crops = realism.Crops(torch.randint(0, 255, (6, 3, 32, 128), dtype=torch.uint8), ["AB1"] * 6, ["us"] * 6)
    model = realism.train_recogniser(crops, "1AB", 5, 1e-3, 4, seed=0, plain_steps=3)
    assert calls == [4, 4]  # steps 4 and 5
    calls.clear()
    realism.train_recogniser(crops, "1AB", 5, 1e-3, 4, seed=0, model=model, plain_steps=3)
    assert calls == [4] * 5


def test_finetune_mix_draws_its_share_of_each_batch_from_the_synthetic_pool(realism) -> None:
    """--finetune-mix: real crops and the `default` pool together, weighted so a `share` of the draws is
    synthetic and each part stays balanced over its regions; share 0 is the real crops alone."""
    u8 = lambda n: torch.zeros(n, 3, 32, 128, dtype=torch.uint8)  # noqa: E731
    real = realism.Crops(u8(4), ["A1", "A2", "A3", "B1"], ["us", "us", "us", "br"])
    synth = realism.Crops(u8(6), ["S"] * 6, ["us", "br", "br", "br", "br", "br"])
    data, w = realism.mixed(real, synth, 0.0)
    assert data is real and w is None
    data, w = realism.mixed(real, synth, 0.25)
    assert data.texts == real.texts + synth.texts and len(w) == 10
    assert torch.isclose(w[4:].sum(), torch.tensor(0.25)) and torch.isclose(w.sum(), torch.tensor(1.0))
    assert torch.isclose(w[3], 0.375 * torch.ones(())) and torch.isclose(w[:3].sum(), torch.tensor(0.375))  # balanced
    assert torch.isclose(w[4], 0.125 * torch.ones(())) and torch.isclose(w[5:].sum(), torch.tensor(0.125))
    draws = torch.multinomial(w, 20000, replacement=True, generator=torch.Generator().manual_seed(0))
    assert abs((draws >= 4).float().mean().item() - 0.25) < 0.02


def test_realism_bad_arguments_fail_clearly(realism, tmp_path: Path, capsys) -> None:
    """Each bad argument is named, whatever else is given: a valid --real fixture is passed so no
    message hides behind the default data folder (which the suite points at a missing path)."""
    real = tmp_path / "real"
    _fixture(real)
    for args, message in ((["--onnx", str(tmp_path / "no.onnx")], "does not exist"),
                          (["--sources", "aug,nope"], "--sources: unknown ['nope']"),
                          (["--stream-options", '{"seed": 3}'], "without ['batch_size', 'length', 'mode'"),
                          (["--stream-options", "{augment"], "--stream-options is not JSON"),
                          (["--stream-options", '{"augment": "nope"}'], "--stream-options / --onnx"),
                          (["--real", str(tmp_path)], "holds no labels.csv"),
                          (["--holdout", str(tmp_path / "nowhere")], "--holdout"),
                          (["--jobs", "0"], "--jobs and --threads must be >= 1"),
                          (["--plain-steps", "-1"], "--plain-steps must be >= 0"),
                          (["--finetune-mix", "1"], "--finetune-mix must be in [0, 1)")):
        with pytest.raises(SystemExit) as exc:
            realism.main(["--quick", "--real", str(real), *args])
        assert exc.value.code != 0 and message in capsys.readouterr().err, args


def test_realism_without_data_names_the_missing_folder_and_the_option(realism, tmp_path: Path, capsys,
                                                                     monkeypatch) -> None:
    monkeypatch.setenv("PLATEAUG_DATA", str(tmp_path / "no-data"))
    with pytest.raises(SystemExit) as exc:
        realism.main(["--quick"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 2
    assert f"--real {tmp_path / 'no-data' / 'real-plates'} is missing: pass --real DIR" in err
    assert "PLATEAUG_DATA" in err


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


def test_with_charset_keeps_what_both_charsets_read() -> None:
    """The warm-started model scores the shared characters and the blank exactly as the old one."""
    torch.manual_seed(0)
    old = CRNN(4).eval()
    new = with_charset(old, "0AB1", "皖B0Z").eval()
    assert new.head.out_channels == 5 and new.config["channels"] == old.config["channels"]
    x = torch.rand(2, 3, 32, 128)
    with torch.no_grad():
        a, b = old(x), new(x)  # (T, B, C + 1)
    for new_cls, old_cls in ((0, 0), (2, 3), (3, 1)):  # blank, "B", "0"
        torch.testing.assert_close(b[..., new_cls], a[..., old_cls])
    assert not torch.allclose(b[..., 1], a[..., 1])  # "皖": freshly initialised
    with pytest.raises(ValueError, match="charset 3 characters"):
        with_charset(old, "0AB", "0AB")


def test_realism_cn_recogniser_starts_from_the_latin_one(realism, tmp_path: Path, monkeypatch) -> None:
    """In a run with Latin regions, each source and seed's cn recogniser is warm-started from that
    source and seed's Latin recogniser (GROUPS["cn"].init); the Latin one starts from scratch."""
    real = tmp_path / "real"
    _fixture(real, regions=(("us", "us"), ("cn", "cn_blue")))
    calls = []  # (regions, charset, model given, model returned)

    def fake_train(crops, charset, steps, lr, batch, seed, model=None, balance=True, bf16=False, plain_steps=0):
        torch.manual_seed(len(calls))
        out = copy.deepcopy(model) if model is not None else CRNN(len(charset))
        calls.append((set(crops.regions), charset, model, out.eval()))
        return out

    monkeypatch.setattr(realism, "train_recogniser", fake_train)
    s = realism.Settings(**{**realism.QUICK, "seeds": 2})
    realism.run(real, None, ["us", "cn"], ["aug"], {}, s)
    assert [c[0] for c in calls] == [{"us"}, {"cn"}] * 2  # per seed: Latin first, then cn
    for latin, cn in zip(calls[::2], calls[1::2]):
        assert latin[2] is None and cn[2] is not None and "皖" in cn[1]
        i, j = cn[1].index("7") + 1, latin[1].index("7") + 1  # "7": read by both
        torch.testing.assert_close(cn[2].head.weight[i], latin[3].head.weight[j])
        torch.testing.assert_close(cn[2].features[0].weight, latin[3].features[0].weight)
    assert not torch.equal(calls[1][2].features[0].weight, calls[3][2].features[0].weight)  # seed's own Latin


# ---- benchmarks/detection.py ------------------------------------------------------------------------

def _scene_fixture(folder: Path, seed: int = 0) -> Path:
    """Photos of two sources (4 validation + 6 training each, by the split's file-name hash) with one or
    two dark 'plates' on light rectangles, COCO annotations.json."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    images, anns = [], []
    (folder / "images").mkdir(parents=True)
    for source in ("street", "web"):
        for name in _names(source, n_val=4, n_train=6):
            arr = rng.integers(70, 160, (150, 240, 3), dtype=np.uint8)
            iid = len(images) + 1
            for k in range(1 + iid % 2):
                x, y, w, h = 20 + 110 * k, 60 + 10 * (iid % 4), 70, 18
                arr[y: y + h, x: x + w] = 235
                arr[y + 5: y + h - 5, x + 6: x + w - 6: 7] = 20  # "characters"
                anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": 1, "bbox": [x, y, w, h]})
            Image.fromarray(arr).save(folder / "images" / name, quality=90)
            images.append({"id": iid, "file_name": f"images/{name}", "width": 240, "height": 150, "source": source,
                           "licence": "MIT" if source == "street" else "CC BY 2.0 (authors not listed)"})
    (folder / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                         "categories": [{"id": 1, "name": "plate"}]}))
    return folder


def _detection(*args: str, timeout: int = 300, tmpdir: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "detection.py"), "--quick", "--jobs", "1", "--threads", "1",
           *args]
    env = {**os.environ, "TMPDIR": str(tmpdir)} if tmpdir is not None else None
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def test_detection_quick_every_source_and_the_json_rows(tmp_path: Path) -> None:
    real = _scene_fixture(tmp_path / "scenes")
    out = tmp_path / "det.json"
    proc = _detection("--real", str(real), "--json", str(out), "--figure", str(tmp_path / "det.png"),
                      "--save-dets", str(tmp_path / "dets.npz"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    sources = ("procedural", "default", "paste", "replace", "real", "real+stream", "real@10%", "real+stream@10%")
    assert [r["source"] for r in rows if r["test_source"] == "all"] == list(sources)
    assert {r["test_source"] for r in rows} == {"all", "street", "web"}
    for r in rows:
        assert {"source", "test_source", "ap50_mean", "ap50_std", "ap_mean", "recall_mean", "seeds"} <= set(r)
        assert 0 <= r["ap50_mean"] <= 1 and 0 <= r["recall_mean"] <= 1 and r["seeds"] == 1
        assert r["n_test"] == (8 if r["test_source"] == "all" else 4)
    assert result["mix_source"] in ("procedural", "default", "paste", "replace")
    assert (tmp_path / "det.png").is_file()
    redraw = _detection("--real", str(real), "--figure-from", str(tmp_path / "dets.npz"), "--figure",
                        str(tmp_path / "again.png"))
    assert redraw.returncode == 0 and "figure:" in redraw.stdout, redraw.stderr[-2000:]
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "det.png").read_bytes()  # the same detections
    # every synthetic pool drawn once: the four sources', then the mix source's from the low-data photos
    pools = [line for line in proc.stdout.splitlines() if line.strip().startswith("pool of")]
    assert len(pools) == 5 and sum("(low-data photos)" in line for line in pools) == 1, pools
    assert sum(f"`{result['mix_source']}`" in line for line in pools) == 2, pools


def test_detection_seeds_share_one_pool_and_mix_share_is_checked(tmp_path: Path) -> None:
    real = _scene_fixture(tmp_path / "scenes")
    out = tmp_path / "det.json"
    dets = tmp_path / "dets.npz"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    proc = _detection("--real", str(real), "--sources", "replace,real+stream", "--seeds", "2", "--mix-share", "0.4",
                      "--json", str(out), "--save-dets", str(dets), tmpdir=scratch)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert list(scratch.glob("plateaug-detection-*")) == []  # the run's working folder (its pools) is gone
    assert sum(line.strip().startswith("pool of") for line in proc.stdout.splitlines()) == 1, proc.stdout
    assert "real+stream mixes in `replace` (40% of every batch, one of its plates pasted into 50% of the crops)" \
        in proc.stdout
    result = json.loads(out.read_text())
    assert result["settings"]["mix_share"] == 0.4
    assert (result["settings"]["heat_spread"], result["settings"]["dense"]) == (0.54, True)  # TTFNet's targets
    assert result["settings"]["flip_test"] is True and result["settings"]["p_mosaic"] == 0.5  # by default
    assert result["settings"]["paste"] == 0.5  # by default
    assert result["settings"]["device"] == "cpu" and "on cpu, 1 job(s)" in proc.stdout  # by default
    assert {r["seeds"] for r in result["rows"]} == {2}
    import numpy as np

    ids = {im["id"] for im in json.loads((real / "annotations.json").read_text())["images"]}
    with np.load(dets) as saved:  # every detector's detections: [image id, x0, y0, x1, y1, score]
        assert sorted(saved.files) == ["real+stream|0", "real+stream|1", "replace|0", "replace|1"]
        for key in saved.files:
            a = saved[key]
            assert a.ndim == 2 and a.shape[1] == 6 and len(a) > 0
            assert set(a[:, 0].astype(int)) <= ids
            assert (a[:, 3] >= a[:, 1]).all() and (a[:, 4] >= a[:, 2]).all()
            assert ((a[:, 5] >= 0) & (a[:, 5] <= 1)).all()
    for bad in ("0", "1", "1.5"):
        proc = _detection("--real", str(real), "--mix-share", bad)
        assert proc.returncode != 0 and f"--mix-share must be between 0 and 1, got {float(bad)}" in proc.stderr


def test_detection_pool_seed_draws_other_scenes_and_is_checked(detection, monkeypatch, tmp_path: Path) -> None:
    """Settings.pool_seed: the same pool seed draws the same scenes, another seed other ones; --pool-seed
    reaches the settings and a negative one is refused."""
    def pool(k: int) -> torch.Tensor:
        s = detection.Settings(**{**detection.QUICK, "pool_seed": k})
        monkeypatch.setattr(detection, "_CTX", detection.Context(tmp_path, None, s, tmp_path, {"generator": None}))
        return torch.stack(detection.synthetic_pool("procedural", 2).images)  # (2, 3, H, W) uint8

    assert torch.equal(pool(0), pool(0))
    assert not torch.equal(pool(0), pool(3))
    real = _scene_fixture(tmp_path / "scenes")
    out = tmp_path / "det.json"
    proc = _detection("--real", str(real), "--sources", "real", "--pool-seed", "3", "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert json.loads(out.read_text())["settings"]["pool_seed"] == 3
    proc = _detection("--real", str(real), "--pool-seed", "-1")
    assert proc.returncode != 0 and "--pool-seed must be >= 0, got -1" in proc.stderr


def test_detection_two_workers_run_every_job_once_and_match_one(tmp_path: Path) -> None:
    """With two worker processes the jobs needing no pool run while pools are drawn, each synthetic job once
    its pool is there: every (source, seed) runs once, and the rows are those of one in-process worker."""
    real = _scene_fixture(tmp_path / "scenes")
    rows = {}
    for jobs in ("1", "2"):
        out, dets = tmp_path / f"det{jobs}.json", tmp_path / f"dets{jobs}.npz"
        proc = _detection("--real", str(real), "--sources", "replace,real,real@10%,real+stream@10%", "--seeds", "2",
                          "--mix-source", "default", "--jobs", jobs, "--json", str(out), "--save-dets", str(dets))
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        rows[jobs] = json.loads(out.read_text())["rows"]
        import numpy as np

        with np.load(dets) as saved:
            assert sorted(saved.files) == sorted(f"{x}|{k}" for x in ("replace", "real", "real@10%",
                                                                       "real+stream@10%") for k in (0, 1))
        assert sum(line.strip().startswith("pool of") for line in proc.stdout.splitlines()) == 2, proc.stdout
    assert [r["source"] for r in rows["2"] if r["test_source"] == "all"] == ["replace", "real", "real@10%",
                                                                             "real+stream@10%"]
    assert rows["2"] == rows["1"]


@pytest.mark.parametrize("scale", [(0.6, 1.6), (0.3, 0.45)])  # the benchmark's range; shrinking (filtered first)
def test_detection_crops_keep_their_plate_under_its_box(detection, scale) -> None:
    """sample_batch: every box it returns covers white plate pixels only (a plate cut by the crop's edge keeps
    its visible part), and a whole plate's box is its outline at the crop's scale, black round it."""
    img = torch.zeros(3, 200, 300, dtype=torch.uint8)
    img[:, 80:110, 100:180] = 255  # the plate: 80 x 30 px
    photos = detection.Photos([img], [torch.tensor([[100.0, 80, 180, 110]])])
    s = detection.Settings(crop=96, scale=scale, p_around_plate=1.0, p_mosaic=0.0)  # plain crops
    crops, boxes = detection.sample_batch(photos, 32, s, torch.Generator().manual_seed(3))
    assert crops.shape == (32, 3, 96, 96) and 0 <= float(crops.min()) and float(crops.max()) <= 1
    whole = found = 0
    for crop, b in zip(crops, boxes):
        assert len(b) <= 1
        if not len(b):
            continue
        found += 1
        x0, y0, x1, y1 = (int(round(float(v))) for v in b[0])
        assert crop[:, y0 + 1: y1 - 1, x0 + 1: x1 - 1].mean() > 0.6, b
        if not (x0 > 2 and y0 > 2 and x1 < 94 and y1 < 94):
            continue  # cut by the crop's edge
        whole += 1
        assert (x1 - x0) / (y1 - y0) == pytest.approx(80 / 30, rel=0.15)
        assert scale[0] - 0.05 <= (x1 - x0) / 80 <= scale[1] + 0.05
        ring = torch.cat([crop[:, y0 - 2, x0:x1].flatten(), crop[:, y1 + 1, x0:x1].flatten()]).mean()
        assert ring < 0.3, (b, float(ring))
    assert found >= 24 and whole >= 5


def test_detection_mosaic_crops_tile_four_crops_with_their_boxes(detection) -> None:
    """sample_batch with p_mosaic: that share of crops are 2x2 tiles of half-side crops, every box over plate
    pixels of its own tile; p_mosaic 0 draws exactly the plain crops (the benchmark's rows unchanged)."""
    img = torch.zeros(3, 200, 300, dtype=torch.uint8)
    img[:, 80:110, 100:180] = 255  # the plate: 80 x 30 px
    photos = detection.Photos([img], [torch.tensor([[100.0, 80, 180, 110]])])
    s = detection.Settings(crop=96, scale=(0.3, 0.45), p_around_plate=1.0, p_mosaic=1.0)
    crops, boxes = detection.sample_batch(photos, 12, s, torch.Generator().manual_seed(5))
    assert crops.shape == (12, 3, 96, 96)
    for crop, b in zip(crops, boxes):
        tiles = {(int(float(x0) >= 48), int(float(y0) >= 48)) for x0, y0, _, _ in b}
        assert len(tiles) >= 3 and len(b) <= 4, b  # a plate near each tile's centre (one may be cut away)
        for x0, y0, x1, y1 in b.tolist():
            assert (x0 >= 48) == (x1 > 48) and (y0 >= 48) == (y1 > 48), b  # inside one tile
            x0, y0, x1, y1 = (int(round(v)) for v in (x0, y0, x1, y1))
            assert crop[:, y0 + 1: y1 - 1, x0 + 1: x1 - 1].mean() > 0.6, b
    plain = detection.Settings(crop=96, p_mosaic=0.0)
    a, ab = detection.sample_batch(photos, 8, plain, torch.Generator().manual_seed(1))
    c, cb = detection._sample_crops(photos, 8, plain, torch.Generator().manual_seed(1))
    assert torch.equal(a, c) and all(torch.equal(x, y) for x, y in zip(ab, cb))
    half = detection.sample_batch(photos, 64, replace(s, p_mosaic=0.5), torch.Generator().manual_seed(2))[1]
    assert 16 <= sum(len(b) > 1 for b in half) <= 48  # about half the crops are mosaics


def test_detection_train_detector_pastes_only_when_asked(detection) -> None:
    """train_detector: paste_from with s.paste 0 trains exactly the detector without it (no draw: the rows of
    runs without pasting are unchanged); with s.paste > 0 the crops (plateaug.paste_plates, tests/test_copy_paste.py),
    and so the detector, differ, and differ again with s.paste_harmonise or s.paste_context."""
    s = detection.Settings(steps=2, batch=4, crop=64, bf16=False, paste=0.0)
    img = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
    photos = detection.Photos([img], [torch.tensor([[20.0, 40, 60, 52]])])
    weights = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])  # noqa: E731
    plain = weights(detection.train_detector([(photos, 1.0)], s, seed=0))
    assert torch.equal(plain, weights(detection.train_detector([(photos, 1.0)], s, seed=0, paste_from=photos)))
    pasted = detection.train_detector([(photos, 1.0)], replace(s, paste=1.0), seed=0, paste_from=photos)
    assert not torch.equal(plain, weights(pasted))
    harmonised = detection.train_detector([(photos, 1.0)], replace(s, paste=1.0, paste_harmonise=True), seed=0,
                                          paste_from=photos)  # the stream's compositing: other pixels
    assert not torch.equal(weights(pasted), weights(harmonised))
    with_car = detection.train_detector([(photos, 1.0)], replace(s, paste=1.0, paste_context=0.5), seed=0,
                                        paste_from=photos)  # each plate with its surroundings
    assert not torch.equal(weights(pasted), weights(with_car))


@pytest.mark.parametrize("schedule", ["constant", "decay"])
def test_detection_mix_schedule_sets_the_synthetic_share_of_each_batch(detection, monkeypatch, schedule) -> None:
    """real+stream draws mix_share of every batch from the pool ("constant"), or a share falling from twice
    mix_share to none ("decay": synthetic first, the last steps real only), the same share in all."""
    s = detection.Settings(steps=40, batch=16, crop=64, mix_share=0.25, mix_schedule=schedule, bf16=False)
    photos = [detection.Photos([torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)] * 2,
                               [torch.tensor([[20.0, 40, 60, 52]])] * 2) for _ in range(2)]
    drawn = []  # (part, crops drawn from it) at every draw
    sample = detection.sample_batch
    monkeypatch.setattr(detection, "sample_batch", lambda p, n, s_, g: (drawn.append((p is photos[1], n)),
                                                                        sample(p, n, s_, g))[1])
    detection.train_detector(detection.mix_parts(photos[0], photos[1], s), s, seed=0)
    per_step = [0] * s.steps
    step = -1
    for synthetic, n in drawn:
        step += not synthetic  # every step draws its real crops first (at least half the batch)
        if synthetic:
            per_step[step] += n
    assert step == s.steps - 1
    assert sum(per_step) == pytest.approx(0.25 * s.batch * s.steps, rel=0.05)
    if schedule == "constant":
        assert set(per_step) == {4}
    else:
        assert per_step[0] == 8 and per_step[-1] == 0 and per_step == sorted(per_step, reverse=True)


def test_detection_nms_keeps_the_best_of_each_overlapping_group(detection) -> None:
    import numpy as np

    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 4]], np.float32)
    scores = np.array([0.5, 0.9, 0.3, 0.8], np.float32)
    kept, s = detection.nms(boxes, scores, iou=0.5)
    assert s.tolist() == pytest.approx([0.9, 0.8, 0.3])  # box 0 overlaps box 1 at IoU 9/11; box 3 only 0.36
    assert kept[0].tolist() == [1, 0, 11, 10] and kept[2].tolist() == [20, 20, 30, 30]
    assert len(detection.nms(boxes, scores, iou=0.5, keep=2)[0]) == 2
    assert len(detection.nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))[0]) == 0


def test_detection_two_scale_test_takes_wide_boxes_from_the_half_size_pass(detection) -> None:
    """detect_two_scale: boxes at least coarse_from px wide (at the photo's stored size) from the half-size pass,
    narrower ones from the full-size pass, both in the original photo's pixels."""
    import numpy as np

    photos = detection.Photos([torch.zeros(3, 101, 130, dtype=torch.uint8)], [torch.tensor([[10.0, 10, 90, 30]])],
                              [7], ["web"], [0.5])  # stored at half the original size
    half = detection.half_size(photos)
    assert half.images[0].shape == (3, 50, 65) and half.scale[0] == pytest.approx(0.25)
    assert half.boxes[0].tolist() == [[5.0, 5.0, 45.0, 15.0]]

    class Fixed(nn.Module):  # two peaks: a narrow box (8 x 4 cells) and a wide one (24 x 4 cells)
        def forward(self, x: torch.Tensor):
            B, _, H, W = x.shape
            heat = torch.full((B, 1, H // 4, W // 4), -9.0)
            heat[:, 0, 2, 2], heat[:, 0, 5, 8] = 3.0, 2.0
            size = torch.zeros(B, 2, H // 4, W // 4)
            size[:, 0, 2, 2], size[:, 1, 2, 2] = np.log(32), np.log(16)
            size[:, 0, 5, 8], size[:, 1, 5, 8] = np.log(96), np.log(16)
            return heat, size, torch.zeros(B, 2, H // 4, W // 4)

    s = detection.Settings(bf16=False, coarse_from=64, flip_test=False)  # the passes alone
    boxes, scores = detection.detect_two_scale(Fixed(), photos, s)[0]
    widths = sorted({round(float(w)) for w, sc in zip(boxes[:, 2] - boxes[:, 0], scores) if sc > 0.5})
    # full-size pass: 32 and 96 px at the stored size = 64 and 192 original px; the half-size pass: 128 and 384
    # original px (64 and 192 stored px). Kept: the narrow one of the first (32 < 64) and both of the second.
    assert widths == [64, 128, 384]
    one = detection.detect_two_scale(Fixed(), photos, replace(s, coarse_from=None))[0]
    assert sorted({round(float(w)) for w, sc in zip(one[0][:, 2] - one[0][:, 0], one[1]) if sc > 0.5}) == [64, 192]


def test_detection_flip_test_averages_the_mirrored_outputs(detection) -> None:
    """detect(flip=True): a detector that always answers one peak gives, merged with its answer on the mirror
    image flipped back, two peaks of half the probability at mirrored centres; without flip, the one peak."""
    import numpy as np

    photos = detection.Photos([torch.zeros(3, 64, 128, dtype=torch.uint8)], [torch.zeros(0, 4)], [1], ["web"], [1.0])

    class Fixed(nn.Module):  # one peak at cell (row 4, column 5) of a 16 x 32 output, a 32 x 8 px box
        def forward(self, x: torch.Tensor):
            B, _, H, W = x.shape
            heat = torch.full((B, 1, H // 4, W // 4), -9.0)
            heat[:, 0, 4, 5] = 3.0
            size = torch.zeros(B, 2, H // 4, W // 4)
            size[:, 0], size[:, 1] = np.log(32), np.log(8)
            return heat, size, torch.full((B, 2, H // 4, W // 4), 0.5)

    boxes, scores = detection.detect(Fixed(), photos, bf16=False)[0]
    assert scores[0] == pytest.approx(1 / (1 + np.exp(-3.0)), abs=1e-5) and scores[1] < 1e-3
    assert boxes[0].tolist() == pytest.approx([6.0, 14.0, 38.0, 22.0])  # centre (5.5, 4.5) cells x 4 px
    boxes, scores = detection.detect(Fixed(), photos, bf16=False, flip=True)[0]
    half = (1 / (1 + np.exp(-3.0)) + 1 / (1 + np.exp(9.0))) / 2
    assert scores[:2].tolist() == pytest.approx([half, half], abs=1e-5) and scores[2] < 1e-3
    centres = sorted(float(b[0] + b[2]) / 2 for b in boxes[:2])
    assert centres == pytest.approx([22.0, 106.0])  # columns 5 and 31 - 5 = 26, each + the offset 0.5, x 4 px
    assert (boxes[:2, 2] - boxes[:2, 0]).tolist() == pytest.approx([32.0, 32.0])  # the sizes agree: kept


def test_detection_device_is_resolved_or_refused_by_name(detection, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert [detection.resolve_device(x) for x in ("cpu", " CPU ", "auto")] == ["cpu", "cpu", "cpu"]
    for bad, message in (("cuda", "--device cuda: torch sees no CUDA device"), ("cuda:0", "--device cuda:0: torch"),
                         ("gpu", "must be cpu, cuda, cuda:N or auto, got 'gpu'"), ("cuda:x", "got 'cuda:x'")):
        with pytest.raises(ValueError, match=re.escape(message)):
            detection.resolve_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [detection.resolve_device(x) for x in ("auto", "cuda", "cuda:1")] == ["cuda", "cuda", "cuda:1"]
    with pytest.raises(ValueError, match="--device cuda:2: torch sees 2 CUDA device"):
        detection.resolve_device("cuda:2")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_detection_trains_and_tests_on_cuda_like_on_the_cpu(detection, tmp_path: Path) -> None:
    """A detector trained with device="cuda" lives there and detects real boxes; the CLI records the device."""
    img = torch.full((3, 96, 160), 120, dtype=torch.uint8)
    img[:, 40:56, 30:90] = 235
    photos = detection.Photos([img] * 4, [torch.tensor([[30.0, 40, 90, 56]])] * 4, [1, 2, 3, 4], ["web"] * 4,
                              [1.0] * 4)
    s = replace(detection.Settings(**detection.QUICK), steps=30, device="cuda", bf16=True)
    model = detection.train_detector([(photos, 1.0)], s, 0)
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    for flip in (False, True):
        out = detection.detect(model, photos, bf16=True, flip=flip)
        assert len(out) == 4
        for boxes, scores in out:
            assert boxes.shape == (100, 4) and scores.shape == (100,) and bool((scores[:-1] >= scores[1:]).all())
            assert torch.isfinite(torch.from_numpy(boxes)).all()
    real = _scene_fixture(tmp_path / "scenes")
    proc = _detection("--real", str(real), "--sources", "real,replace", "--device", "cuda", "--json",
                      str(tmp_path / "det.json"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads((tmp_path / "det.json").read_text())
    assert (result["settings"]["device"], result["settings"]["bf16"]) == ("cuda", True)
    assert "bf16 autocast on cuda" in proc.stdout and {r["seeds"] for r in result["rows"]} == {1}


def test_detection_holdout_is_all_test_and_bad_arguments_fail_clearly(tmp_path: Path) -> None:
    real = _scene_fixture(tmp_path / "scenes")
    holdout = _scene_fixture(tmp_path / "holdout", seed=1)
    out = tmp_path / "det.json"
    proc = _detection("--real", str(real), "--holdout", str(holdout), "--sources", "real", "--json", str(out),
                      "--heat-spread", "0", "--no-dense", "--coarse-from", "48", "--no-flip-test", "--mosaic", "0",
                      "--paste", "0", "--paste-harmonise", "--paste-context", "0.5", "--around-plate", "1")
    # CenterNet's targets, two passes, no flip test, no mosaics; the shares take 0, the switches are recorded
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert (result["settings"]["heat_spread"], result["settings"]["dense"]) == (None, False)
    assert result["settings"]["coarse_from"] == 48 and result["settings"]["flip_test"] is False
    assert result["settings"]["p_mosaic"] == 0 and result["settings"]["paste"] == 0
    assert result["settings"]["paste_harmonise"] is True and result["settings"]["paste_context"] == 0.5
    assert result["settings"]["p_around_plate"] == 1
    rows = result["rows"]
    assert {(r["test_source"], r["n_test"]) for r in rows} == {("all", 20), ("street", 10), ("web", 10)}
    for args, message in ((["--sources", "real,nope"], "--sources: unknown ['nope']"),
                          (["--crop", "100"], "--crop must be > 0 and a multiple of 32"),
                          (["--jobs", "0"], "--jobs and --threads must be >= 1"),
                          (["--heat-spread", "-1"], "--heat-spread must be > 0"),
                          (["--coarse-from", "-5"], "--coarse-from must be > 0"),
                          (["--mosaic", "1.5"], "--mosaic must be between 0 and 1, got 1.5"),
                          (["--paste", "-0.1"], "--paste must be between 0 and 1, got -0.1"),
                          (["--paste-context", "5"], "--paste-context must be between 0 and 4, got 5.0"),
                          (["--around-plate", "1.5"], "--around-plate must be between 0 and 1, got 1.5"),
                          (["--mix-schedule", "decay", "--mix-share", "0.6"], "it must be <= 0.5, got 0.6"),
                          (["--real", str(tmp_path)], "holds no annotations.json"),
                          (["--device", "gpu"], "--device must be cpu, cuda, cuda:N or auto, got 'gpu'"),
                          *([(["--device", "cuda"], "--device cuda: torch sees no CUDA device here")]
                            if not torch.cuda.is_available() else [])):
        proc = _detection("--real", str(real), *args)
        assert proc.returncode != 0 and message in proc.stderr, (args, proc.stderr[-500:])


def test_detection_without_data_names_the_missing_folder_and_the_option(tmp_path: Path) -> None:
    proc = _detection()  # PLATEAUG_DATA points at a missing folder (tests/conftest.py)
    assert proc.returncode == 2
    assert "--real" in proc.stderr and "real-scenes is missing: pass --real DIR" in proc.stderr


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")
                                          if "argparse" in p.read_text(encoding="utf-8")))
def test_every_benchmark_prints_its_help(script: str) -> None:
    """`--help` of every benchmark runs (a bare % in a help string once made argparse raise)."""
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage:")


def test_throughput_detector_step_trains_the_detector_on_the_scenes() -> None:
    """The throughput benchmark's detector row times a real training step (channels-last, as detection.py trains):
    the weights move and every step runs on the same scenes."""
    throughput = _import_benchmark("throughput")
    images = torch.rand(2, 3, 64, 96)
    boxes = [torch.tensor([[10.0, 20, 50, 32]]), torch.tensor([[40.0, 8, 90, 20], [4.0, 40, 30, 50]])]
    step = throughput._detector_step(images, boxes, bf16=False)
    conv = step.model.stem[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    before = conv.detach().clone()
    step()
    step()
    assert step.bf16 is False and not torch.equal(before, conv.detach())
    assert torch.isfinite(conv).all()


# ---- benchmarks/shipped_frames.py -------------------------------------------------------------------

def test_shipped_frames_writes_training_frames_halved_to_out_and_leaves_the_package_alone(tmp_path: Path) -> None:
    """--out: the frames (training split only, 640x360), their boxes scaled alike, the prior; the
    package's own frames untouched."""
    import numpy as np
    from PIL import Image

    src = tmp_path / "scenes"
    (src / "images").mkdir(parents=True)
    images, anns = [], []
    for t in range(8):  # one video, 8 s apart: 0-40 s train, 50 s gap, 60-70 s validation
        iid = t + 1
        Image.fromarray(np.full((720, 1280, 3), 30 * t, np.uint8)).save(src / "images" / f"f{t}.jpg")
        images.append({"id": iid, "file_name": f"images/f{t}.jpg", "width": 1280, "height": 720,
                       "source": "ro_dashcam", "origin": f"v.mp4#t={10 * t}.jpg"})
        for k in range(4):  # 4 plates a frame: 20 training boxes, enough for the prior's 4 components
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": 1,
                         "bbox": [100.0 + 250 * k + 7 * t, 200.0 + 40 * k + 3 * t, 80.0 + 10 * k, 20.0 + k]})
    (src / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                       "categories": [{"id": 1, "name": "plate"}]}))
    shipped = ROOT / "plateaug" / "stream" / "scenes" / "frames.json"
    before = shipped.read_bytes()
    module = _import_benchmark("shipped_frames")
    out = tmp_path / "out"
    assert module.main(["--scenes", str(src), "--frames", "100", "--out", str(out)]) == 0
    coco = json.loads((out / "frames.json").read_text())
    assert [im["origin"] for im in coco["images"]] == [f"v.mp4#t={10 * t}.jpg" for t in range(5)]
    first = [a["bbox"] for a in coco["annotations"] if a["image_id"] == 1]
    assert first == [[50.0 + 125 * k, 100.0 + 20 * k, 40.0 + 5 * k, 10.0 + k / 2] for k in range(4)]
    assert len(coco["annotations"]) == 20 and all(a["region"] == "eu" for a in coco["annotations"])
    for im in coco["images"]:
        with Image.open(out / im["file_name"]) as frame:
            assert frame.size == (640, 360)
    assert (out / "prior.toml").is_file()
    assert shipped.read_bytes() == before


@pytest.mark.parametrize("has_bf16", [True, False])
def test_benchmarks_autocast_bf16_only_on_cpus_with_bf16_units(detection, realism, monkeypatch, has_bf16) -> None:
    """The detector and recogniser benchmarks train under bf16 autocast only where the CPU multiplies bf16
    in hardware: elsewhere torch emulates it (a detector step 8.3 s against 1.43 s in fp32 on an AVX2 EPYC)."""
    for module in (detection, realism):
        monkeypatch.setattr(module, "cpu_has_bf16", lambda v=has_bf16: v)
        assert module.Settings().bf16 is has_bf16
        assert module.Settings(bf16=not has_bf16).bf16 is (not has_bf16)  # still settable (--fp32)


def test_detection_figure_by_default_only_for_the_whole_run(detection) -> None:
    """The README's figure is drawn by default only for the whole run with the benchmark's settings: a screen
    (fewer sources, other settings or stream options) or a --quick run leaves it as it is."""
    every = list(detection.SOURCES)
    assert detection.default_figure(every, False, {}) == detection.FIGURE
    assert detection.default_figure(every[:3], False, {}) is None
    assert detection.default_figure(every, True, {}) is None
    assert detection.default_figure(every, False, {"steps": 3000}) is None
    assert detection.default_figure(every, False, "replace") is None  # --mix-source


def test_detection_figure_shows_only_photos_that_may_ship(detection, tmp_path: Path) -> None:
    """The committed figure shows test photos under FIGURE_LICENCES only (the MIT dashcam frames, never the
    AGPL or Open Images photos); with none such it draws nothing, and --figure-from needs a file."""
    real = _scene_fixture(tmp_path / "scenes")
    coco = json.loads((real / "annotations.json").read_text())
    street = {im["id"] for im in coco["images"] if im["source"] == "street"}
    assert detection.shippable_ids(real / "annotations.json") == street
    test = detection.load_photos(real / "annotations.json", 192)
    picks = detection.figure_picks(test, street, n=3)
    assert len(picks) == 3 and all(test.ids[i] in street and len(test.boxes[i]) for i in picks)
    assert detection.draw_figure(tmp_path / "none.png", test, {}, set()) is False
    assert not (tmp_path / "none.png").exists()
    proc = _detection("--real", str(real), "--figure-from", str(tmp_path / "missing.npz"))
    assert proc.returncode == 2 and "--figure-from" in proc.stderr and "is not a file" in proc.stderr


def test_scene_plates_stats_read_the_box_pixels() -> None:
    """plate_stats: width, mean, contrast, sharpness and lift over the ring of each box, from its pixels;
    boxes too small or cut by the image edge are measured on what lies inside."""
    plate_stats = _import_benchmark("scene_plates").plate_stats
    img = torch.full((3, 60, 100), 51.0)  # ring luma 0.2
    img[:, 20:30, 30:70] = 255.0  # a white plate 40 x 10
    img[:, 20:30, 30:70:2] = 0.0  # with black stripes every other column: std 0.5, grad 1 across
    stats = plate_stats([img], [torch.tensor([[30.0, 20, 70, 30], [0, 0, 3, 3]])])
    assert stats.shape == (1, 5)  # the 3 x 3 box is too small
    width, mean, std, grad, lift = stats[0].tolist()
    assert width == 40 and abs(mean - 0.5) < 1e-6 and abs(std - 0.5) < 0.01
    assert abs(grad - 1.0) < 1e-6  # columns alternate 0 / 1, rows equal
    assert abs(lift - 0.3) < 1e-6
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        plate_stats([torch.zeros(60, 100)], [torch.zeros(0, 4)])


def test_scene_plates_quick_rows(tmp_path: Path) -> None:
    """benchmarks/scene_plates.py on the scene fixture: a real and a replace row per photo source, a default
    row, quartiles in order; the fixture's plates (white, striped) measured as such."""
    real = _scene_fixture(tmp_path / "scenes")
    out = tmp_path / "sp.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scene_plates.py"), "--real", str(real),
                           "--scenes", "4", "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["source"], r["test_source"]) for r in rows] == [
        ("real", "street"), ("replace", "street"), ("real", "web"), ("replace", "web"), ("default", "shipped frames")]
    for r in rows:
        assert r["plates"] > 0
        for c in ("width", "mean", "std", "grad", "lift"):
            assert len(r[c]) == 3 and r[c] == sorted(r[c])
    real_street = rows[0]
    assert real_street["width"] == [70, 70, 70]  # every fixture plate is 70 px wide (photos under 640 px stay)
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scene_plates.py"), "--real", str(real),
                          "--sources", "real,bogus"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode != 0 and "--sources" in bad.stderr
