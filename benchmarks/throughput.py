"""End-to-end throughput: the seed's pipeline next to plateaug's, per stage and end to end, in one run.

(a) seed pipeline (benchmarks/seed_baseline.py): per-plate Pillow render at 226x70, OpenCV Canny,
    resize to 256x256, pix2pix `unet_256` (ngf=64, BatchNorm) in torch; batch 1 and 16.
(b) plateaug: text sampling, batched render, outline + colour hint (generator_input), generator
    (ONNX Runtime, --onnx), resize to the crop size, augmentation ("light"), and end to end via
    PlateGANStream(batch_size=B, augment="light") in crop mode (64x256); B = 32, 128, 256 on
    CPU, and on CUDA (fp32 and fp16 ONNX) when torch sees a GPU.
Also the GFLOPs per plate of both generators (FlopCounterMode, one plate: plateaug at 64x256,
unet_256 at 256x256), which explain most of the end-to-end ratio.

    python benchmarks/throughput.py [--onnx export/plateaug_default.onnx] [--checkpoint export/plateaug_default.pt]
                                    [--regions cn_blue] [--batches 32,128,256] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(ROOT))
from common import machine, median_seconds, write_json  # noqa: E402
from seed_baseline import SeedRenderer, canny, canny_backend, seed_pipeline, unet_256  # noqa: E402

from plateaug.generator.backends import DEFAULT_CHECKPOINT, DEFAULT_ONNX  # noqa: E402
from plateaug.generator.onnx_export import export_onnx  # noqa: E402
from plateaug.generator.onnx_runtime import OnnxGenerator  # noqa: E402
from plateaug.generator.torch_generator import generator_from_checkpoint  # noqa: E402
from plateaug.models import generator_input  # noqa: E402
from plateaug.renderer.draw import get_renderer, render  # noqa: E402
from plateaug.renderer.spec_loader import load_region  # noqa: E402
from plateaug.renderer.text import sample_text  # noqa: E402
from plateaug.stream.augment import augment as apply_augment  # noqa: E402
from plateaug.stream.augment import resolve  # noqa: E402
from plateaug.stream.dataset import DEFAULT_SIZE, PlateGANStream  # noqa: E402

CROP = DEFAULT_SIZE["crop"]  # (64, 256): the stream's crop size, and the canvas the plateaug FLOPs are counted at
SEED_CANVAS = (256, 256)
AUGMENT = "light"


def gflops(model: nn.Module, shape: tuple[int, ...]) -> float:
    """GFLOPs (multiply + add counted as 2) of one forward pass on a zero input of `shape`."""
    model = model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(shape))
    return counter.get_total_flops() / 1e9


def row(pipeline: str, device: str, batch: int, stage: str, seconds: float, **extra) -> dict:
    return {"pipeline": pipeline, "device": device, "batch": batch, "stage": stage, "ms_per_batch": seconds * 1e3,
            "plates_per_s": batch / seconds, **extra}


def show(r: dict) -> dict:
    """Print one result row as it is measured."""
    print(f"{r['pipeline']:<18}{r['device']:<6}{r['batch']:>6}  {r['stage']:<26}{r['ms_per_batch']:>12.2f}"
          f"{r['plates_per_s']:>12,.0f}", flush=True)
    return r


# -- (a) the seed pipeline -------------------------------------------------------------------------------

def bench_seed(batches: list[int], n_plates: int, repeats: int, device: str) -> list[dict]:
    """Per-stage and end-to-end plates/s of the seed pipeline (render and Canny always on the CPU)."""
    rows = []
    r = SeedRenderer()
    model = unet_256().to(device)
    name = "seed"
    if device == "cpu":
        t = median_seconds(lambda: [r() for _ in range(n_plates)], repeats)
        rows.append(show(row(name, "cpu", 1, "render (Pillow)", t / n_plates)))
        imgs = [r()[0] for _ in range(n_plates)]
        t = median_seconds(lambda: [canny(im) for im in imgs], repeats)
        rows.append(show(row(name, "cpu", 1, f"canny ({canny_backend()})", t / n_plates)))
        edges = [canny(im) for im in imgs]
        t = median_seconds(lambda: [_to_input(e) for e in edges], repeats)
        rows.append(show(row(name, "cpu", 1, "resize 256 + tensor", t / n_plates)))
    for B in batches:
        x = torch.rand((B, 3, *SEED_CANVAS), device=device) * 2 - 1  # (B, 3, 256, 256) in [-1, 1]
        with torch.no_grad():
            t = median_seconds(lambda x=x: model(x), repeats, device=device)
        rows.append(show(row(name, device, B, "generator unet_256", t)))
        if device == "cuda":  # the model on the GPU, render + Canny still one plate at a time on the CPU
            model_fn = _on_device(model, device)
            t = median_seconds(lambda B=B, f=model_fn: seed_pipeline(r, f, B), repeats, device=device)
        else:
            t = median_seconds(lambda B=B: seed_pipeline(r, model, B), repeats)
        rows.append(show(row(name, device, B, "end to end", t)))
    return rows


def _to_input(edge: np.ndarray) -> torch.Tensor:
    """The seed's per-plate preprocessing: Canny map -> RGB 256x256 tensor in [-1, 1]."""
    e = Image.fromarray(edge).convert("RGB").resize(SEED_CANVAS)
    return torch.from_numpy(np.array(e)).permute(2, 0, 1).float() / 127.5 - 1


def _on_device(model: nn.Module, device: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: model(x.to(device))


# -- (b) plateaug ----------------------------------------------------------------------------------------------

def bench_plateaug(label: str, regions: list[str], gen: OnnxGenerator, batches: list[int], repeats: int,
                   device: str, all_regions: bool = True) -> list[dict]:
    """Per-stage (per region) and end-to-end (PlateGANStream over the region mix, and over every
    shipped region when all_regions) plates/s."""
    rows = []
    aug = resolve(AUGMENT)
    for B in batches:
        for region in regions:
            spec = load_region(region)
            get_renderer(spec, device)  # glyph atlas built once, outside the timing
            g = torch.Generator().manual_seed(0)
            texts = sample_text(spec, B, g)
            plates = render(spec, texts, device)
            cond = generator_input(plates.images)  # (B, 4, h, w)
            out = gen(cond)  # (B, 3, h, w)
            crop = F.interpolate(out, size=CROP, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
            h, w = spec.canvas
            boxes = plates.char_boxes * torch.tensor([CROP[1] / w, CROP[0] / h] * 2, device=device)  # (B, S, 4)
            valid = torch.arange(boxes.shape[1], device=device)[None] < plates.lengths.to(device)[:, None]  # (B, S)
            corners = torch.tensor([[0, 0], [CROP[1], 0], [CROP[1], CROP[0]], [0, CROP[0]]], dtype=torch.float32,
                                   device=device).expand(B, 4, 2)
            stages: list[tuple[str, Callable[[], object]]] = [
                ("text sampling", lambda B=B, g=g, spec=spec: sample_text(spec, B, g)),
                ("render", lambda t=texts, spec=spec: render(spec, t, device)),
                ("outline + hint", lambda p=plates: generator_input(p.images)),
                (f"generator ({h}x{w})", lambda c=cond: gen(c)),
                ("resize to 64x256", lambda o=out: F.interpolate(o, size=CROP, mode="bilinear", align_corners=False,
                                                                 antialias=True)),
                (f"augment ({AUGMENT})", lambda c=crop, b=boxes, k=corners, v=valid: apply_augment(aug, c, b, k, v, 1)),
            ]
            for stage, fn in stages:
                t = median_seconds(fn, repeats, device=device)
                rows.append(show(row(label, device, B, f"{stage} [{region}]" if len(regions) > 1 else stage, t)))
        rows.append(show(bench_stream(label, regions, gen, B, repeats, device, "end to end (stream)")))
        if all_regions:
            rows.append(show(bench_stream(label, None, gen, B, repeats, device, "end to end (all regions)")))
    return rows


def bench_stream(label: str, regions: list[str] | None, gen: OnnxGenerator, B: int, repeats: int, device: str,
                 stage: str) -> dict:
    """One batch from iter(PlateGANStream(batch_size=B, augment="light")): images and targets, as a user gets them."""
    stream = PlateGANStream(regions=regions, batch_size=B, augment=AUGMENT, generator=gen, seed=0, device=device)
    it = iter(stream)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = median_seconds(lambda: next(it), repeats, device=device)
    # torch's allocations only: ORT's CUDA arena is not counted
    extra = {"peak_torch_cuda_mib": torch.cuda.max_memory_allocated() / 2**20} if device == "cuda" else {}
    return row(label, device, B, stage, t, **extra)


def fp16_model(onnx: Path, checkpoint: Path, tmp: Path) -> Path:
    """The fp16 sibling of the ONNX file (<stem>_fp16.onnx) if shipped, else exported from the checkpoint."""
    sibling = onnx.with_name(f"{onnx.stem}_fp16.onnx")
    if sibling.is_file():
        return sibling
    return export_onnx(checkpoint, tmp / "g_fp16.onnx", fp16=True).path


# -- report --------------------------------------------------------------------------------------------------------

def summarise(rows: list[dict], flops: dict[str, float]) -> dict:
    """Best end-to-end plates/s per pipeline and device, and the plateaug / seed ratios (CPU)."""
    best: dict[str, dict] = {}
    for r in rows:
        if r["stage"] in ("end to end", "end to end (stream)"):
            key = f"{r['pipeline']}/{r['device']}"
            if key not in best or r["plates_per_s"] > best[key]["plates_per_s"]:
                best[key] = {"plates_per_s": r["plates_per_s"], "batch": r["batch"]}
    seed, ours = best.get("seed/cpu"), best.get("plateaug ORT fp32/cpu")
    ratio = ours["plates_per_s"] / seed["plates_per_s"] if seed and ours else None
    flop_ratio = flops["seed_unet_256"] / flops["plateaug"]
    print(f"\nGFLOPs per plate: seed unet_256 at 256x256 {flops['seed_unet_256']:.1f}, plateaug generator at 64x256 "
          f"{flops['plateaug']:.3f} ({flop_ratio:.0f}x fewer)")
    for key, b in sorted(best.items()):
        print(f"best end to end {key:<28} {b['plates_per_s']:>12,.0f} plates/s (B={b['batch']})")
    if ratio is not None:
        print(f"plateaug end to end (CPU, B={ours['batch']}) / seed pipeline (CPU, B={seed['batch']}): {ratio:,.1f}x "
              f"plates/s; the generator alone needs {flop_ratio:.0f}x fewer FLOPs per plate")
    return {"best_end_to_end": best, "ratio_plateaug_over_seed_cpu": ratio,
            "gflops_ratio_seed_over_plateaug": flop_ratio}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", default=str(DEFAULT_ONNX), help="plateaug generator, fp32 ONNX (an _fp16 sibling is "
                                                              "used on CUDA when present)")
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT),
                    help="the same generator as a checkpoint (FLOP count, fp16 export for CUDA)")
    ap.add_argument("--regions", default="cn_blue", help="plateaug regions (cn_blue is the seed's plate)")
    ap.add_argument("--batches", default="32,128,256", help="plateaug batch sizes (CPU)")
    ap.add_argument("--cuda-batches", default="256,1024,4096", help="plateaug batch sizes on CUDA")
    ap.add_argument("--seed-batches", default="1,16", help="unet_256 batch sizes")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch and ORT CPU threads")
    ap.add_argument("--no-cuda", action="store_true", help="CPU rows only")
    ap.add_argument("--quick", action="store_true", help="smoke run (< 60 s): B=32 only, unet_256 at B=1,2, "
                                                         "one repeat")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    onnx, checkpoint = Path(args.onnx), Path(args.checkpoint)
    for flag, path in (("--onnx", onnx), ("--checkpoint", checkpoint)):
        if not path.is_file():
            ap.error(f"{flag} {path} does not exist: train and export the default model "
                     f"(python -m plateaug.train, python -m plateaug.export) or pass {flag} PATH")
    ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
    batches, cuda_batches, seed_batches = ints(args.batches), ints(args.cuda_batches), ints(args.seed_batches)
    repeats, n_seed_plates = args.repeats, 200
    if args.quick:
        batches, cuda_batches, seed_batches, repeats, n_seed_plates = [32], [1024], [1, 2], 1, 20
    regions = [r for r in args.regions.split(",") if r]
    torch.set_num_threads(max(1, args.threads))
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")  # seed_pipeline's asarray
    cuda = torch.cuda.is_available() and not args.no_cuda
    info = {**machine(), "onnxruntime": ort.__version__, "ort_providers": ort.get_available_providers()}
    print(f"machine: {info.get('cpu', info['processor'])}, {info['cpu_count']} cores, {torch.get_num_threads()} "
          f"threads, torch {info['torch']}, onnxruntime {info['onnxruntime']}"
          + (f", {info['gpu']}" if "gpu" in info else ""))
    print(f"generator: {onnx}; regions {regions}; crop {CROP[0]}x{CROP[1]}; augment {AUGMENT!r}")
    t0 = time.perf_counter()
    flops = {"plateaug": gflops(generator_from_checkpoint(checkpoint), (1, 4, *CROP)),
             "seed_unet_256": gflops(unet_256(), (1, 3, *SEED_CANVAS))}
    print(f"\n{'pipeline':<18}{'dev':<6}{'B':>6}  {'stage':<26}{'ms/batch':>12}{'plates/s':>12}")
    rows = bench_seed(seed_batches, n_seed_plates, repeats, "cpu")
    rows += bench_plateaug("plateaug ORT fp32", regions, OnnxGenerator(onnx, threads=torch.get_num_threads()),
                           batches, repeats, "cpu")
    if cuda:
        rows += bench_seed(seed_batches, n_seed_plates, repeats, "cuda")
        with tempfile.TemporaryDirectory() as tmp:
            for label, path in (("plateaug ORT fp32", onnx), ("plateaug ORT fp16", fp16_model(onnx, checkpoint,
                                                                                                Path(tmp)))):
                rows += bench_plateaug(label, regions, OnnxGenerator(path, device="cuda"), cuda_batches, repeats,
                                       "cuda")
    summary = summarise(rows, flops)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    print(f"peak process RSS {peak_rss:,.0f} MiB; total {time.perf_counter() - t0:.0f} s")
    payload = {"machine": info, "settings": {"onnx": str(onnx), "checkpoint": str(checkpoint), "regions": regions,
                                             "crop": list(CROP), "augment": AUGMENT, "repeats": repeats,
                                             "seed_canvas": list(SEED_CANVAS), "canny": canny_backend()},
               "gflops_per_plate": flops, "results": rows, **summary, "peak_rss_mib": peak_rss}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
