"""ONNX export: numbers match torch, metadata round-trips, atomic writes, CLI behaviour."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from fixtures import random_generator
from torch import nn

import plateaug
import plateaug.generator.onnx_export as onnx_export
from plateaug.export import default_out, main
from plateaug.generator.checkpoint import atomic_save, generator_checkpoint
from plateaug.generator.onnx_export import ExportVerificationError, export_onnx
from plateaug.generator.onnx_runtime import OnnxGenerator

CANVASES = {"cn_blue": [64, 208], "eu": [64, 256]}
TRAINING_DATA = {"real_crops": 123, "source": "unit-test"}


def torch_close(got: torch.Tensor, ref: torch.Tensor, rel: float) -> float:
    """Relative error max|got - ref| / max|ref|, asserted <= rel."""
    err = ((got - ref).abs().max() / ref.abs().max()).item()
    assert err <= rel, f"relative error {err:.3g} > {rel:g}"
    return err


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return random_generator()


@pytest.fixture(scope="module")
def ckpt_path(model: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ckpt = generator_checkpoint(model, "unet_xs", canvases=CANVASES, training_data=TRAINING_DATA)
    ckpt["val_history"] = [{"all": 0.5}, {"all": 0.125}]
    return atomic_save(ckpt, tmp_path_factory.mktemp("ckpt") / "g.pt")


@pytest.mark.parametrize("fp16", [False, True])
def test_export_matches_torch(model: nn.Module, ckpt_path: Path, tmp_path: Path, fp16: bool) -> None:
    report = export_onnx(ckpt_path, tmp_path / "g.onnx", fp16=fp16)
    limit = 1e-2 if fp16 else 1e-4
    assert report.path == tmp_path / "g.onnx" and report.path.is_file()
    assert report.fp16 is fp16 and report.opset == 18 and report.verified
    assert len(report.sizes) == 4 and {b for b, _, _ in report.sizes} == {1, 3}
    assert len({(h, w) for _, h, w in report.sizes}) == 2
    assert 0 <= report.rel_err <= limit and 0 <= report.max_abs_err <= limit
    gen = OnnxGenerator(report.path)
    assert gen.dtype == (torch.float16 if fp16 else torch.float32)
    rng = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for b, h, w in [(1, 16, 16), (2, 48, 128), (5, 64, 256), (3, 128, 96)]:
            condition = torch.rand((b, 4, h, w), generator=rng)
            out = gen(condition)
            assert out.shape == (b, 3, h, w) and out.dtype == torch.float32
            torch_close(out, model(condition), limit)


def test_fp16_graph_is_float16_in_and_out(ckpt_path: Path, tmp_path: Path) -> None:
    export_onnx(ckpt_path, tmp_path / "h.onnx", fp16=True, verify=False)
    graph = onnx.load(str(tmp_path / "h.onnx")).graph
    f16 = onnx.TensorProto.FLOAT16
    assert graph.input[0].type.tensor_type.elem_type == f16
    assert graph.output[0].type.tensor_type.elem_type == f16
    assert all(t.data_type == f16 for t in graph.initializer if t.data_type in (f16, onnx.TensorProto.FLOAT))


def test_dynamic_axes_and_names(ckpt_path: Path, tmp_path: Path) -> None:
    export_onnx(ckpt_path, tmp_path / "g.onnx", verify=False)
    proto = onnx.load(str(tmp_path / "g.onnx"))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("condition", "image")
    in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert in_dims[1] == 4 and out_dims[1] == 3
    for dims in (in_dims, out_dims):
        assert all(isinstance(dims[i], str) and dims[i] for i in (0, 2, 3)), dims
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 18


def test_metadata_round_trips(model: nn.Module, ckpt_path: Path, tmp_path: Path) -> None:
    export_onnx(ckpt_path, tmp_path / "g.onnx", fp16=True, verify=False)
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "g.onnx")).metadata_props}
    assert meta["plateaug.in_channels"] == "4"
    assert meta["plateaug.channels"] == "outline,hint_r,hint_g,hint_b"
    assert meta["plateaug.value_range"] == "0,1"
    assert meta["plateaug.size_multiple"] == "16"
    assert json.loads(meta["plateaug.canvases"]) == CANVASES
    assert json.loads(meta["plateaug.training_data"]) == TRAINING_DATA
    assert float(meta["plateaug.val_l1"]) == 0.125
    assert meta["plateaug.version"] == plateaug.__version__
    assert meta["plateaug.dtype"] == "float16"
    assert json.loads(meta["plateaug.generator"]) == {"name": "unet_xs", "config": model.config}
    gen = OnnxGenerator(tmp_path / "g.onnx")
    assert {k: v for k, v in gen.metadata.items() if k.startswith("plateaug.")} == meta
    assert gen.canvases == CANVASES


def test_bare_module_export_leaves_module_alone(model: nn.Module, tmp_path: Path) -> None:
    model.train()
    try:
        report = export_onnx(model, tmp_path / "m.onnx")
        assert model.training and next(model.parameters()).dtype == torch.float32
    finally:
        model.eval()
    meta = OnnxGenerator(report.path).metadata
    assert "plateaug.val_l1" not in meta and json.loads(meta["plateaug.canvases"]) == {}
    assert report.rel_err <= 1e-4


def test_failed_verification_leaves_no_file(ckpt_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_export, "TOLERANCE", {False: -1.0, True: -1.0})
    monkeypatch.setattr(onnx_export, "VERIFY_CANVASES", ((32, 48),))  # fewer checks: this test is about failing
    out = tmp_path / "g.onnx"
    with pytest.raises(ExportVerificationError, match=r"relative err .* > -1"):
        export_onnx(ckpt_path, out)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temp file
    out.write_bytes(b"previous export")
    with pytest.raises(ExportVerificationError):
        export_onnx(ckpt_path, out, fp16=True)
    assert out.read_bytes() == b"previous export"  # an older file is left untouched, never torn
    assert [p.name for p in tmp_path.iterdir()] == ["g.onnx"]


def test_bad_checkpoints_and_options(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        export_onnx(tmp_path / "nope.pt", tmp_path / "x.onnx")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02 not a checkpoint at all")
    with pytest.raises(ValueError, match="bad.pt"):
        export_onnx(bad, tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="no usable generator"):
        export_onnx({"format": "plateaug-checkpoint-1"}, tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(random_generator(), tmp_path / "x.onnx", opset=11)
    assert list(tmp_path.iterdir()) == [bad]


def test_cli_writes_and_reports(ckpt_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([str(ckpt_path)]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "export" / "g.onnx").is_file()
    assert "relative err" in printed and "max abs err" in printed and "B=3 96x256" in printed
    assert main([str(ckpt_path), "--fp16", "--no-verify", "--opset", "17"]) == 0
    assert "not verified" in capsys.readouterr().out
    fp16 = tmp_path / "export" / "g_fp16.onnx"
    assert fp16.is_file() and OnnxGenerator(fp16).dtype == torch.float16
    assert default_out("runs/x/last.pt", False) == Path("export/last.onnx")
    assert main([str(ckpt_path), "--out", "sub/dir/m.onnx"]) == 0
    assert (tmp_path / "sub" / "dir" / "m.onnx").is_file()


def test_cli_errors(tmp_path: Path, ckpt_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main([str(bad), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.pt" in err and err.count("\n") == 1
    monkeypatch.setattr(onnx_export, "TOLERANCE", {False: -1.0, True: -1.0})
    assert main([str(ckpt_path), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "relative err" in err and err.count("\n") == 1
    assert not (tmp_path / "x.onnx").exists()


def test_cli_entry_point_missing_checkpoint(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-m", "plateaug.export", str(tmp_path / "missing.pt")], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "missing.pt" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (root / "export" / "missing.onnx").exists()


@pytest.mark.slow
def test_dynamo_fallback(model: nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the TorchScript exporter fail (or be removed from torch), the dynamo exporter writes the file."""
    real_export = torch.onnx.export

    def no_torchscript(*args, **kwargs):
        if kwargs.get("dynamo") is False:
            raise RuntimeError("TorchScript exporter unavailable")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_torchscript)
    report = export_onnx(model, tmp_path / "d.onnx")
    assert report.exporter == "dynamo" and report.rel_err <= 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ["d.onnx"]  # one self-contained file, no .data beside it
    assert OnnxGenerator(report.path).metadata["plateaug.exporter"] == "dynamo"


def test_cli_torch_out_writes_a_slim_checkpoint(model: nn.Module, ckpt_path: Path, tmp_path: Path) -> None:
    slim = tmp_path / "slim.pt"
    assert main([str(ckpt_path), "--out", str(tmp_path / "g.onnx"), "--torch-out", str(slim)]) == 0
    gen = plateaug.TorchGenerator(slim)
    x = torch.rand(2, 4, 32, 64)
    with torch.no_grad():
        assert torch.allclose(gen(x), model(x), atol=1e-6)
    loaded = torch.load(slim, weights_only=True)  # plain types only: no pickle code can run
    assert "opt_g" not in loaded and loaded["canvases"] == CANVASES
