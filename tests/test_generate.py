"""python -m plateaug.generate: three formats, resume, shards, errors, no partial files."""

from __future__ import annotations

import json
import os

import pytest
from PIL import Image

from plateaug import encode_texts
from plateaug.generate import main, parse_args, run

FAST = ["--generator", "none", "--regions", "us,br_mercosur", "--no-progress", "--batch-size", "4"]


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_coco_structure_and_boxes(tmp_path):
    out = tmp_path / "coco"
    assert main(["--n", "6", "--out", str(out), "--format", "coco", "--image-size", "128x192", *FAST]) == 0
    coco = json.loads((out / "annotations.json").read_text(encoding="utf-8"))
    assert set(coco) >= {"images", "annotations", "categories"}
    assert [im["id"] for im in coco["images"]] == list(range(1, 7))
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    assert cats[1] == "plate"
    ids = {im["id"]: im for im in coco["images"]}
    plates = [a for a in coco["annotations"] if a["category_id"] == 1]
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])
    # us serials hold 4-7 characters, br_mercosur 7 (FAST's regions)
    assert plates and all(4 <= len(a["text"]) <= 7 and a["text"].isalnum() for a in plates)
    for a in coco["annotations"]:
        im = ids[a["image_id"]]
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= im["width"] + 1e-3 and y + h <= im["height"] + 1e-3
        assert a["category_id"] in cats and a["iscrowd"] == 0
        with Image.open(out / im["file_name"]) as pic:
            assert pic.size == (im["width"], im["height"]) == (192, 128)
    # every plate has as many character annotations as characters
    chars = [a for a in coco["annotations"] if a["category_id"] != 1]
    assert len(chars) == sum(len(a["text"]) for a in plates)
    assert (out / "preview.png").exists()


def test_box_margin_grows_the_plate_boxes_only(tmp_path):
    """Scene mode: the plate bbox is its exact box (--box-margin 0) grown by 0.15 x its height per side by
    default (clipped to the image); the images, segmentations and character boxes are the same. The margin is
    recorded: a rerun into the folder with another one is refused."""
    runs = {}
    for name, extra in (("exact", ["--box-margin", "0"]), ("default", []), ("pair", ["--box-margin", "0.3,0.1"])):
        out = tmp_path / name
        assert main(["--n", "4", "--out", str(out), "--format", "coco", "--image-size", "128x192", *FAST, *extra]) == 0
        runs[name] = json.loads((out / "annotations.json").read_text(encoding="utf-8"))
    exact = runs["exact"]["annotations"]
    assert [x["file_name"] for x in runs["exact"]["images"]] == [x["file_name"] for x in runs["default"]["images"]]
    assert _files(tmp_path / "exact" / "images") == _files(tmp_path / "default" / "images")
    for name, (mx, my) in (("default", (0.15, 0.15)), ("pair", (0.3, 0.1))):
        grown = runs[name]["annotations"]
        assert len(grown) == len(exact) and any(a["category_id"] == 1 for a in exact)
        for a, b in zip(exact, grown):
            assert a["segmentation"] == b["segmentation"]
            x, y, w, h = a["bbox"]
            if a["category_id"] != 1:  # characters keep their boxes
                assert a["bbox"] == b["bbox"]
                continue
            want = [max(0, x - mx * h), max(0, y - my * h), min(192, x + w + mx * h), min(128, y + h + my * h)]
            got = [b["bbox"][0], b["bbox"][1], b["bbox"][0] + b["bbox"][2], b["bbox"][1] + b["bbox"][3]]
            assert got == pytest.approx(want, abs=0.03)
    settings = json.loads((tmp_path / "pair" / "settings.json").read_text(encoding="utf-8"))
    assert settings["box_margin"] == [0.3, 0.1]
    with pytest.raises(ValueError, match="--box-margin: was"):
        run(parse_args(["--n", "4", "--out", str(tmp_path / "pair"), "--format", "coco", "--image-size", "128x192",
                        *FAST]))



def test_as_taken_switches_the_shipped_frames_augmentation(tmp_path):
    """--as-taken yes takes the shipped frames as they are (by default they get --augment): other pixels from
    the same seed; recorded in settings.json, so a rerun into the folder with another choice is refused."""
    common = ["--n", "4", "--format", "yolo", "--image-size", "128x192", "--augment", "heavy", *FAST]
    assert main(["--out", str(tmp_path / "default"), *common]) == 0
    with pytest.warns(UserWarning, match="taken as they are"):  # --augment asked for, not applied
        assert main(["--out", str(tmp_path / "yes"), "--as-taken", "yes", *common]) == 0
    default, yes = (_files(tmp_path / name / "images") for name in ("default", "yes"))
    assert default.keys() == yes.keys() and len(default) == 4
    assert all(default[k] != yes[k] for k in default)
    settings = json.loads((tmp_path / "yes" / "settings.json").read_text(encoding="utf-8"))
    assert settings["as_taken"] is True
    assert json.loads((tmp_path / "default" / "settings.json").read_text(encoding="utf-8"))["as_taken"] is None
    with pytest.raises(ValueError, match="--as-taken: was"):
        run(parse_args(["--out", str(tmp_path / "yes"), *common]))


def test_yolo_labels_normalised(tmp_path):
    out = tmp_path / "yolo"
    assert main(["--n", "5", "--out", str(out), "--format", "yolo", "--mode", "crop", *FAST]) == 0
    names = (out / "data.yaml").read_text(encoding="utf-8")
    assert '0: "plate"' in names
    for lbl in sorted((out / "labels").glob("*.txt")):
        rows = [ln.split() for ln in lbl.read_text().splitlines()]
        assert rows and all(len(r) == 5 for r in rows)
        assert int(rows[0][0]) == 0  # the plate first, then its characters
        for r in rows:
            assert all(0.0 <= float(v) <= 1.0 for v in r[1:])
        assert (out / "images" / f"{lbl.stem}.jpg").exists()


def test_ocr_crops_and_csv(tmp_path):
    out = tmp_path / "ocr"
    assert main(["--n", "5", "--out", str(out), "--format", "ocr", "--image-format", "png", *FAST]) == 0
    lines = (out / "labels.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "file,text,region" and len(lines) == 6
    for ln in lines[1:]:
        file, text, region = ln.split(",")
        assert region in ("us", "br_mercosur")
        encode_texts(region, [text])  # a text its region's grammar accepts (raises otherwise)
        with Image.open(out / file) as im:
            assert im.size == (256, 64)


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    args = ["--n", "10", "--format", "coco", "--seed", "3", *FAST]
    assert main(["--out", str(full), *args]) == 0
    assert main(["--out", str(part), *args]) == 0
    # simulate a kill: drop some finished items and leave a torn temp file behind
    for name in ("00000005", "00000009"):
        (part / "meta" / f"{name}.json").unlink()
        (part / "images" / f"{name}.jpg").write_bytes(b"torn")
    (part / "annotations.json").unlink()
    (part / "images" / ".00000006.jpg.shard0.tmp").write_bytes(b"half")
    assert main(["--out", str(part), *args]) == 0
    assert _files(part) == _files(full)


def test_shards_merge_into_one_consistent_index(tmp_path):
    out, ref = tmp_path / "sharded", tmp_path / "ref"
    args = ["--n", "12", "--format", "coco", "--seed", "1", *FAST]
    assert main(["--out", str(out), "--shards", "2", "--shard", "1", *args]) == 0
    assert not (out / "annotations.json").exists()  # shard 0 still missing
    assert main(["--out", str(out), "--shards", "2", "--shard", "0", *args]) == 0
    assert main(["--out", str(ref), *args]) == 0
    assert json.loads((out / "annotations.json").read_text()) == json.loads((ref / "annotations.json").read_text())


def test_torchrun_env_picks_the_shard(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    out = tmp_path / "rank"
    assert main(["--n", "12", "--out", str(out), "--format", "yolo", *FAST]) == 0
    assert sorted(p.stem for p in (out / "meta").glob("*.json")) == [f"{i:08d}" for i in range(4, 8)]


@pytest.mark.parametrize("argv,match", [
    (["--n", "-3"], "--n must be >= 1"),
    (["--n", "3", "--regions", "atlantis"], "unknown region"),
    (["--n", "3", "--format", "ocr", "--mode", "scene"], "ocr writes plate crops"),
    (["--n", "3", "--shards", "2", "--shard", "2"], "--shard must be in"),
    (["--n", "3", "--generator", "/nonexistent.onnx"], "does not exist"),
    (["--n", "3", "--box-margin", "0.7"], "shares of the plate height in [0, 0.5]"),
    (["--n", "3", "--box-margin", "wide"], "expected M or MX,MY"),
    (["--n", "3", "--box-margin", "0.1", "--mode", "crop"], "--box-margin is for --mode scene"),
    (["--n", "3", "--as-taken", "no", "--mode", "crop"], "--as-taken is for --mode scene on photos"),
    (["--n", "3", "--as-taken", "no", "--backgrounds", "procedural"], "--as-taken is for --mode scene on photos"),
    (["--n", "3", "--as-taken", "maybe"], "invalid choice"),
])
def test_bad_arguments(tmp_path, capsys, argv, match):
    try:
        code = main(["--out", str(tmp_path / "x"), "--no-progress", *argv])
    except SystemExit as e:  # argparse errors
        code = e.code
    assert code != 0
    assert match in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert main(["--n", "2", "--out", str(ro / "sub"), *FAST]) == 2
    assert "not writable" in capsys.readouterr().err


def test_disk_full_keeps_finished_items(tmp_path, monkeypatch, capsys):
    import plateaug.writers.formats as writers

    out = tmp_path / "full"
    real = writers.atomic_write_bytes
    calls = {"n": 0}

    def flaky(path, data, tag=""):
        calls["n"] += 1
        if calls["n"] > 7:  # a few items, then the disk is full
            raise OSError(28, "No space left on device")
        return real(path, data, tag)

    monkeypatch.setattr(writers, "atomic_write_bytes", flaky)
    assert main(["--n", "8", "--out", str(out), "--format", "ocr", *FAST]) == 1
    assert "No space left on device" in capsys.readouterr().err
    done = sorted(p.stem for p in (out / "meta").glob("*.json"))
    for name in done:  # every item with a sidecar is complete and readable
        with Image.open(out / "images" / f"{name}.jpg") as im:
            im.load()
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(writers, "atomic_write_bytes", real)
    assert main(["--n", "8", "--out", str(out), "--format", "ocr", *FAST]) == 0
    assert len(list((out / "meta").glob("*.json"))) == 8
