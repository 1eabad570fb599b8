"""Generator throughput (plates/s) by backend: torch eager and ONNX Runtime CPU, plus torch CUDA,
ORT CUDA fp32/fp16 and TensorRT where present, for B = 1, 32, 256 at a 64x256 canvas.

    python benchmarks/generator.py [--onnx export/plateaug_default.onnx] [--checkpoint export/plateaug_default.pt]
                                   [--random unet_s] [--canvas 64x256] [--batches 1,32,256] [--json out.json]

Without a shipped model or checkpoint it falls back to a random unet_s, exported to a temp
folder, so it always runs (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(ROOT))
from common import machine, median_seconds, write_json  # noqa: E402

from plateaug.generator.onnx_export import export_onnx  # noqa: E402
from plateaug.generator.onnx_runtime import DEFAULT_MODEL, OnnxGenerator  # noqa: E402
from plateaug.generator.torch_generator import generator_from_checkpoint  # noqa: E402
from plateaug.models import create_generator  # noqa: E402

REPEATS = {1: 20, 32: 5, 256: 3}  # fewer repeats for big batches keeps the default run under ~3 minutes
Backend = tuple[str, str, Callable[[torch.Tensor], torch.Tensor]]  # (name, device, condition -> image)


def resolve_models(args: argparse.Namespace, tmp: Path, want_fp16: bool) -> dict:
    """The torch model (or None) and the fp32 (and fp16, if wanted) ONNX files to time."""
    onnx_path, ckpt_path = Path(args.onnx), Path(args.checkpoint)
    random_name = args.random
    if not random_name and not onnx_path.is_file() and not ckpt_path.is_file():
        print(f"note: neither {onnx_path} nor {ckpt_path} exists: timing a random unet_s instead")
        random_name = "unet_s"
    if random_name:
        model, source = create_generator(random_name).eval(), f"random {random_name}"
    elif ckpt_path.is_file():
        model, source = generator_from_checkpoint(ckpt_path), str(ckpt_path)
    else:
        model, source = None, str(onnx_path)
        print(f"note: {ckpt_path} does not exist: no torch rows")
    fp32 = onnx_path if onnx_path.is_file() and not random_name else None
    fp16 = onnx_path.with_name(f"{onnx_path.stem}_fp16.onnx") if fp32 else None
    if fp32 is None:
        fp32 = export_onnx(model, tmp / "g.onnx").path
    if want_fp16 and (fp16 is None or not fp16.is_file()):
        fp16 = export_onnx(model, tmp / "g_fp16.onnx", fp16=True).path if model is not None else None
    return {"torch": model, "fp32": fp32, "fp16": fp16 if want_fp16 else None, "source": source}


def torch_backend(model: nn.Module, device: str) -> Callable[[torch.Tensor], torch.Tensor]:
    model = model.to(device).eval()

    @torch.inference_mode()
    def run(x: torch.Tensor) -> torch.Tensor:
        return model(x)

    return run


def backends(models: dict, cuda: bool) -> list[Backend]:
    """Every backend this machine can run, cheapest to set up first."""
    out: list[Backend] = []
    if models["torch"] is not None:
        out.append(("torch eager", "cpu", torch_backend(models["torch"], "cpu")))
    out.append(("ORT CPU fp32", "cpu", OnnxGenerator(models["fp32"], threads=os.cpu_count())))
    if not cuda:
        return out
    if models["torch"] is not None:
        out.append(("torch eager", "cuda", torch_backend(models["torch"], "cuda")))
    out.append(("ORT CUDA fp32", "cuda", OnnxGenerator(models["fp32"], device="cuda")))
    if models["fp16"] is not None:
        out.append(("ORT CUDA fp16", "cuda", OnnxGenerator(models["fp16"], device="cuda")))
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        for dtype in ("fp32", "fp16"):
            if models[dtype] is None:
                continue
            try:
                trt = OnnxGenerator(models[dtype], device="cuda", providers=["TensorrtExecutionProvider"])
            except Exception as e:  # TensorRT libraries missing or engine build failed: report and go on
                print(f"note: TensorRT {dtype} unavailable ({type(e).__name__}: {str(e)[:200]})")
                continue
            if "TensorrtExecutionProvider" in trt.providers:
                out.append((f"ORT TensorRT {dtype}", "cuda", trt))
    return out


def time_backend(name: str, device: str, fn: Callable, batches: list[int], canvas: tuple[int, int]) -> list[dict]:
    rows = []
    for B in batches:
        x = torch.rand((B, 4, *canvas), device=device)  # (B, 4, H, W) float in [0, 1]
        try:
            seconds = median_seconds(functools.partial(fn, x), REPEATS.get(B, 3), device=device)
        except Exception as e:  # e.g. TensorRT failing on a shape: keep the other rows
            print(f"note: {name} on {device} at B={B} failed ({type(e).__name__}: {str(e)[:200]})")
            continue
        rows.append({"backend": name, "device": device, "batch": B, "median_s": seconds, "plates_per_s": B / seconds})
        print(f"{name:<20}{device:<6}{B:>6}{seconds * 1e3:>12.2f}{B / seconds:>14,.0f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", default=str(DEFAULT_MODEL), help="fp32 ONNX model (an _fp16 sibling is used on CUDA)")
    ap.add_argument("--checkpoint", default=str(ROOT / "runs" / "default" / "last.pt"), help="for the torch rows")
    ap.add_argument("--random", metavar="NAME", help="time a random generator of this preset (e.g. unet_s)")
    ap.add_argument("--canvas", default="64x256", help="HxW, multiples of 16")
    ap.add_argument("--batches", default="1,32,256")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    canvas = tuple(int(v) for v in args.canvas.lower().split("x"))
    if len(canvas) != 2 or any(v <= 0 or v % 16 for v in canvas):
        ap.error(f"--canvas must be HxW with multiples of 16, got {args.canvas}")
    batches = [int(b) for b in args.batches.split(",")]
    torch.set_num_threads(os.cpu_count() or 1)
    cuda = torch.cuda.is_available()
    info = {**machine(), "onnxruntime": ort.__version__, "ort_providers": ort.get_available_providers()}
    with tempfile.TemporaryDirectory() as tmp:
        models = resolve_models(args, Path(tmp), want_fp16=cuda)
        print(f"machine: {info.get('cpu', info['processor'])}, {info['cpu_count']} cores, torch {info['torch']}, "
              f"onnxruntime {info['onnxruntime']}" + (f", {info['gpu']}" if "gpu" in info else ""))
        print(f"model: {models['source']}, canvas {canvas[0]}x{canvas[1]}")
        print(f"{'backend':<20}{'dev':<6}{'B':>6}{'median ms':>12}{'plates/s':>14}")
        rows = [r for name, dev, fn in backends(models, cuda) for r in time_backend(name, dev, fn, batches, canvas)]
    speed = {(r["backend"], r["device"], r["batch"]): r["plates_per_s"] for r in rows}
    ratio = None
    if ("torch eager", "cpu", 32) in speed and ("ORT CPU fp32", "cpu", 32) in speed:
        ratio = speed[("ORT CPU fp32", "cpu", 32)] / speed[("torch eager", "cpu", 32)]
        print(f"ORT CPU / torch eager at B=32: {ratio:.2f}x plates/s")
    write_json(args.json, {"machine": info, "model": models["source"], "canvas": list(canvas), "results": rows,
                           "ort_cpu_over_torch_eager_b32": ratio})


if __name__ == "__main__":
    main()
