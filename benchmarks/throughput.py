"""End-to-end throughput: the seed's pipeline next to plateaug's, per stage and end to end, in one run.

(a) seed pipeline (benchmarks/seed_baseline.py): per-plate Pillow render at 226x70, OpenCV Canny,
    resize to 256x256, pix2pix `unet_256` (ngf=64, BatchNorm) in torch; batch 1 and 16.
(b) plateaug: text sampling, batched render, outline + colour hint (generator_input), generator
    (ONNX Runtime, --onnx), resize to the crop size, detector framing (margins, surroundings, tilt,
    low resolution), augmentation ("light"), and end to end via
    PlateGANStream(batch_size=B, augment="light") in crop mode (64x256); B = 32, 128, 256 on
    CPU, and on CUDA (fp32 and fp16 ONNX) when torch sees a GPU.
End-to-end rows are timed after --stream-warmup batches (default 8): the steady state of a long run.
Also the GFLOPs per plate of both generators (FlopCounterMode, one plate: plateaug at 64x256,
unet_256 at 256x256), which explain most of the end-to-end ratio.
(c) the int8 generator (python -m plateaug.export --int8; --int8-onnx PATH, else exported from
    --checkpoint into a temporary folder): its generator row and the stream end to end with it.
(e) scenes (--scenes-only runs just these): PlateGANStream(mode="scene", batch_size=B) end to end at
    384x640, B = 16 and 64: the default (the shipped dashcam frames, plates replaced, harmonised,
    degraded) and procedural backgrounds; next to them one training step of the detector the detection
    benchmark trains (plateaug.models.centernet.PlateDetector, bf16 autocast where the CPU has bf16
    units) on the same batch of 384x640 scenes: the stream must outrun the detector.
(d) the bf16 generator (PlateGANStream(generator="torch-bf16"): --checkpoint in torch, BatchNorm
    folded, bfloat16 weights, channels-last) where this torch multiplies bf16 on the CPU
    (--no-bf16 leaves it out): its generator row and the stream end to end with it.
How far from the hardware: the same run first measures the machine's peaks (fp32 GFLOP/s of a
2048x2048 torch.mm, bf16 and int8 (torch._int_mm) the same way where the CPU runs them, GB/s of a
large tensor copy, read + write), and every plateaug row prints what it achieved next to them:
generator rows in GFLOP/s (FLOPs counted on the torch model at that canvas; int8 rows against the
int8 peak), memory-bound stages in GB/s (the bytes of their input and output tensors, a lower bound
on their traffic), end-to-end rows as the generator's GFLOP/s over the whole pipeline's time.

    python benchmarks/throughput.py [--onnx export/plateaug_default.onnx] [--checkpoint export/plateaug_default.pt]
                                    [--int8-onnx PATH | --no-int8] [--no-bf16] [--regions cn_blue]
                                    [--batches 32,128,256] [--stream-warmup 8]
                                    [--quick] [--system-malloc] [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import inspect
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
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(ROOT))
from common import machine, median_seconds, set_malloc, write_json  # noqa: E402
from seed_baseline import SeedRenderer, canny, canny_backend, seed_pipeline, unet_256  # noqa: E402

from plateaug.generator.backends import DEFAULT_CHECKPOINT, DEFAULT_ONNX  # noqa: E402
from plateaug.generator.onnx_export import ExportVerificationError, export_onnx  # noqa: E402
from plateaug.generator.onnx_runtime import OnnxGenerator  # noqa: E402
from plateaug.generator.quantize import export_int8  # noqa: E402
from plateaug.generator.torch_generator import TorchGenerator, generator_from_checkpoint  # noqa: E402
from plateaug.models import generator_input  # noqa: E402
from plateaug.renderer.draw import get_renderer, render  # noqa: E402
from plateaug.renderer.spec_loader import builtin_regions, load_region  # noqa: E402
from plateaug.renderer.text import sample_text  # noqa: E402
from plateaug.stream.augment import augment as apply_augment  # noqa: E402
from plateaug.stream.augment import resolve  # noqa: E402
from plateaug.stream.dataset import DEFAULT_SIZE, PlateGANStream, resize  # noqa: E402
from plateaug.stream.framing import FRAMINGS, frame  # noqa: E402

Gen = Callable[[torch.Tensor], torch.Tensor]  # a generator backend: condition (B, 4, H, W) -> RGB (B, 3, H, W)
CROP = DEFAULT_SIZE["crop"]  # (64, 256): the stream's crop size, and the canvas the plateaug FLOPs are counted at
SEED_CANVAS = (256, 256)
AUGMENT = "light"
STREAM_OPTIONS: dict = {}  # extra PlateGANStream arguments of the end-to-end rows (--generator-share)
# batches drawn before an end-to-end row is timed: the generator's batch size varies from call to call
# (each region's translated share is a Binomial draw), and the first call of each size sets up kernels
# (oneDNN primitives for bf16: +8-16 ms on a 16-22 ms call, results/generator_first_call_xeon.txt; ORT
# less); a training run of thousands of batches pays that once, so the rows time the steady state
# (--stream-warmup; 1 with --quick)
STREAM_WARMUP = [8]
PEAKS: dict[str, float] = {}  # the machine's measured peaks (measure_peaks), for the "achieved" column
PEAK_NAMES = {"fp32_gflops": "fp32 mm", "bf16_gflops": "bf16 mm", "int8_gops": "int8 mm", "copy_gbs": "copy"}


def gflops(model: nn.Module, shape: tuple[int, ...]) -> float:
    """GFLOPs (multiply + add counted as 2) of one forward pass on a zero input of `shape`."""
    model = model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(shape))
    return counter.get_total_flops() / 1e9


def row(pipeline: str, device: str, batch: int, stage: str, seconds: float, gflop: float | None = None,
        gbytes: float | None = None, peak: str | None = None, **extra) -> dict:
    """One result; gflop (FLOPs of the batch, 1e9) or gbytes (bytes in + out, 1e9) add the achieved rate
    and its share of the measured peak `peak` (a PEAKS key; default fp32 for FLOPs, copy for bytes)."""
    r = {"pipeline": pipeline, "device": device, "batch": batch, "stage": stage, "ms_per_batch": seconds * 1e3,
         "plates_per_s": batch / seconds, **extra}
    if gflop is not None:
        key = peak or "fp32_gflops"
        r.update(gflops_per_s=gflop / seconds, peak=key)
        if device == "cpu" and PEAKS.get(key):
            r["fraction_of_peak"] = r["gflops_per_s"] / PEAKS[key]
    elif gbytes is not None:
        key = peak or "copy_gbs"
        r.update(gb_per_s=gbytes / seconds, peak=key)
        if device == "cpu" and PEAKS.get(key):
            r["fraction_of_peak"] = r["gb_per_s"] / PEAKS[key]
    return r


def show(r: dict) -> dict:
    """Print one result row as it is measured."""
    achieved = ""
    if "gflops_per_s" in r or "gb_per_s" in r:
        rate = f"{r['gflops_per_s']:8.1f} GFLOP/s" if "gflops_per_s" in r else f"{r['gb_per_s']:8.2f} GB/s   "
        share = (f" = {100 * r['fraction_of_peak']:4.1f}% of {PEAK_NAMES.get(r['peak'], r['peak'])}"
                 if "fraction_of_peak" in r else "")
        achieved = f"  {rate}{share}"
    print(f"{r['pipeline']:<20}{r['device']:<6}{r['batch']:>6}  {r['stage']:<26}{r['ms_per_batch']:>12.2f}"
          f"{r['plates_per_s']:>12,.0f}{achieved}", flush=True)
    return r


# -- the machine's peaks ---------------------------------------------------------------------------------------

def measure_peaks(quick: bool = False) -> dict[str, float]:
    """Best of a few runs, with the threads set for the benchmark: fp32 / bf16 GFLOP/s and int8 GOP/s
    of an n x n matrix product (n = 2048, 1024 with --quick; 2 n^3 operations), and GB/s of copying a
    256 MiB (64 MiB) float tensor, counted as bytes read + bytes written. A dtype this torch cannot
    multiply on the CPU is left out."""
    n, mib, runs = (1024, 64, 3) if quick else (2048, 256, 5)
    g = torch.Generator().manual_seed(0)

    def best(fn: Callable[[], object]) -> float:
        fn()
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    peaks = {}
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    peaks["fp32_gflops"] = 2 * n**3 / best(lambda: torch.mm(a, b)) / 1e9
    try:
        ab, bb = a.bfloat16(), b.bfloat16()
        peaks["bf16_gflops"] = 2 * n**3 / best(lambda: torch.mm(ab, bb)) / 1e9
    except RuntimeError:
        pass
    try:
        ai = torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=g)
        bi = torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=g)
        peaks["int8_gops"] = 2 * n**3 / best(lambda: torch._int_mm(ai, bi)) / 1e9
    except (RuntimeError, AttributeError):
        pass
    src = torch.empty(mib * 2**20 // 4)
    dst = torch.empty_like(src)
    peaks["copy_gbs"] = 2 * src.numel() * 4 / best(lambda: dst.copy_(src)) / 1e9
    return peaks


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

def bench_plateaug(label: str, regions: list[str], gen: Gen, batches: list[int], repeats: int, device: str,
                   all_regions: bool = True, gflops_at: Callable[[int, int], float] | None = None,
                   peak: str = "fp32_gflops", only: tuple[str, ...] | None = None) -> list[dict]:
    """Per-stage (per region) and end-to-end (PlateGANStream over the region mix, and over every
    shipped region when all_regions) plates/s. gflops_at(h, w): the generator's GFLOPs per plate at
    that canvas (generator rows report GFLOP/s against PEAKS[peak]); only: the stage names to run
    (e.g. ("generator", "end to end") for a second generator), default all."""
    rows = []
    f4 = 4e-9  # GB per float32 element
    gf = gflops_at or (lambda h, w: None)
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
            crop = resize(out, CROP).clamp(0, 1)  # the stream's resize (antialiased only where an axis shrinks)
            h, w = spec.canvas
            boxes = plates.char_boxes * torch.tensor([CROP[1] / w, CROP[0] / h] * 2, device=device)  # (B, S, 4)
            valid = torch.arange(boxes.shape[1], device=device)[None] < plates.lengths.to(device)[:, None]  # (B, S)
            corners = torch.tensor([[0, 0], [CROP[1], 0], [CROP[1], CROP[0]], [0, CROP[0]]], dtype=torch.float32,
                                   device=device).expand(B, 4, 2)
            aspects = torch.full((B,), spec.size_mm[0] / spec.size_mm[1])  # (B,) plate width / height
            px, crop_px = B * h * w, B * CROP[0] * CROP[1]  # pixels per batch at the canvas and the crop
            gen_flop = gf(h, w)
            # (name, function, work): work = {"gflop": ...} or {"gbytes": bytes of the input and output tensors}
            stages: list[tuple[str, Callable[[], object], dict]] = [
                ("text sampling", lambda B=B, g=g, spec=spec: sample_text(spec, B, g), {}),
                ("render", lambda t=texts, spec=spec: render(spec, t, device), {"gbytes": 3 * px * f4}),
                ("outline + hint", lambda p=plates: generator_input(p.images), {"gbytes": (3 + 4) * px * f4}),
                (f"generator ({h}x{w})", lambda c=cond: gen(c),
                 {"gflop": B * gen_flop, "peak": peak} if gen_flop else {}),
                ("resize to 64x256", lambda o=out: resize(o, CROP), {"gbytes": 3 * (px + crop_px) * f4}),
                ("framing (detector)", lambda c=crop, b=boxes, a=aspects: frame(c, b, a, FRAMINGS["detector"],
                                                                              torch.Generator().manual_seed(1)),
                 {"gbytes": 3 * 3 * crop_px * f4}),  # plate in, background, crop out
                (f"augment ({AUGMENT})", lambda c=crop, b=boxes, k=corners, v=valid: apply_augment(aug, c, b, k, v, 1),
                 {"gbytes": 2 * 3 * crop_px * f4}),
            ]
            for stage, fn, work in stages:
                if only is not None and not stage.startswith(only):
                    continue
                t = median_seconds(fn, repeats, device=device)
                rows.append(show(row(label, device, B, f"{stage} [{region}]" if len(regions) > 1 else stage, t,
                                     **work)))
        if only is not None and not "end to end".startswith(only):
            continue
        share = stream_generator_share()  # expected generator work: only that share of plates is translated
        mean_gflop = _mean_gflop(gf, regions, share)
        rows.append(show(bench_stream(label, regions, gen, B, repeats, device, "end to end (stream)",
                                      {"gflop": B * mean_gflop, "peak": peak} if mean_gflop else {})))
        if all_regions:
            mean_gflop = _mean_gflop(gf, builtin_regions(), share)
            rows.append(show(bench_stream(label, None, gen, B, repeats, device, "end to end (all regions)",
                                          {"gflop": B * mean_gflop, "peak": peak} if mean_gflop else {})))
    return rows


def _mean_gflop(gf: Callable[[int, int], float | None], regions: list[str], share: float = 1.0) -> float | None:
    """The generator's mean GFLOPs per plate over equally weighted regions (each at its canvas), when
    a `share` of the plates is translated."""
    values = [gf(*load_region(r).canvas) for r in regions]
    return None if None in values else share * sum(values) / len(values)


def stream_generator_share() -> float:
    """The end-to-end rows' generator_share: --generator-share, else PlateGANStream's default."""
    default = inspect.signature(PlateGANStream.__init__).parameters["generator_share"].default
    return float(STREAM_OPTIONS.get("generator_share", default))


def bench_stream(label: str, regions: list[str] | None, gen: Gen, B: int, repeats: int, device: str,
                 stage: str, work: dict | None = None) -> dict:
    """One batch from iter(PlateGANStream(batch_size=B, augment="light")): images and targets, as a user gets them."""
    stream = PlateGANStream(regions=regions, batch_size=B, augment=AUGMENT, generator=gen, seed=0, device=device,
                            **STREAM_OPTIONS)
    it = iter(stream)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = median_seconds(lambda: next(it), repeats, warmup=STREAM_WARMUP[0], device=device)
    # torch's allocations only: ORT's CUDA arena is not counted
    extra = {"peak_torch_cuda_mib": torch.cuda.max_memory_allocated() / 2**20} if device == "cuda" else {}
    return row(label, device, B, stage, t, **(work or {}), **extra)


def bench_scenes(batches: list[int], repeats: int, device: str) -> list[dict]:
    """Scenes/s of the scene stream (default photos, procedural) and of a detector training step, per B."""
    rows = []
    for B in batches:
        for label, kw in (("scenes default", {}), ("scenes procedural", {"backgrounds": "procedural"})):
            it = iter(PlateGANStream(mode="scene", batch_size=B, seed=0, device=device, **kw))
            t = median_seconds(lambda it=it: next(it), repeats, warmup=min(2, STREAM_WARMUP[0]), device=device)
            rows.append(show(row(label, device, B, "end to end (scenes/s)", t)))
        images, targets = next(iter(PlateGANStream(mode="scene", batch_size=B, seed=1, device=device)))
        step = _detector_step(images, [t["boxes"].as_subclass(torch.Tensor).float() for t in targets],
                              bf16=device == "cpu" and "bf16_gflops" in PEAKS)
        t = median_seconds(step, repeats, warmup=1, device=device)
        rows.append(show(row("detector train step", device, B, f"384x640 (scenes/s){' bf16' if step.bf16 else ''}",
                             t)))
    return rows


def _detector_step(images: torch.Tensor, boxes: list[torch.Tensor], bf16: bool):
    """One training step of a fresh PlateDetector on these scenes, as a callable (bf16 autocast on the CPU;
    channels-last, as benchmarks/detection.py trains it since 2026-12-07)."""
    from plateaug.models.centernet import PlateDetector, detection_loss, encode_targets

    model = PlateDetector().to(images.device, memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    enc = encode_targets(boxes, images.shape[-2:])
    images = images.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(images)
        loss, _ = detection_loss(out, enc)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step.bf16, step.model = bf16, model
    return step


def fp16_model(onnx: Path, checkpoint: Path, tmp: Path) -> Path:
    """The fp16 sibling of the ONNX file (<stem>_fp16.onnx) if shipped, else exported from the checkpoint."""
    sibling = onnx.with_name(f"{onnx.stem}_fp16.onnx")
    if sibling.is_file():
        return sibling
    return export_onnx(checkpoint, tmp / "g_fp16.onnx", fp16=True).path


def int8_model(onnx: Path, checkpoint: Path, tmp: Path, given: str | None, quick: bool) -> Path | None:
    """The int8 generator: `given`, else the <stem>_int8.onnx sibling of the fp32 file, else exported
    from the checkpoint into tmp (a smaller calibration set with --quick); None, with a note, when the
    export fails its verification."""
    if given:
        return Path(given)
    sibling = onnx.with_name(f"{onnx.stem}_int8.onnx")
    if sibling.is_file():
        return sibling
    try:
        return export_int8(checkpoint, tmp / "g_int8.onnx", per_region=8 if quick else 16).path
    except ExportVerificationError as e:
        print(f"no int8 rows: {e}")
        return None


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
    ratios = {}  # every CPU plateaug pipeline (ORT fp32, int8, torch bf16) over the seed
    for key, b in sorted(best.items()):
        if seed and key.startswith("plateaug") and key.endswith("/cpu"):
            ratios[key] = b["plates_per_s"] / seed["plates_per_s"]
            if key != "plateaug ORT fp32/cpu":
                print(f"{key.removesuffix('/cpu')} end to end (CPU, B={b['batch']}) / seed pipeline: "
                      f"{ratios[key]:,.1f}x plates/s")
    return {"best_end_to_end": best, "ratio_plateaug_over_seed_cpu": ratio, "ratios_over_seed_cpu": ratios,
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
    ap.add_argument("--int8-onnx", help="int8 generator (python -m plateaug.export --int8); default: the <onnx stem>"
                                        "_int8.onnx sibling if present, else exported from --checkpoint")
    ap.add_argument("--no-int8", action="store_true", help="no int8 rows")
    ap.add_argument("--no-bf16", action="store_true", help="no torch bf16 rows")
    ap.add_argument("--generator-share", type=float, help="PlateGANStream(generator_share=) of the end-to-end "
                    "rows (default: the stream's default)")
    ap.add_argument("--stream-warmup", type=int, default=STREAM_WARMUP[0],
                    help="batches drawn before each end-to-end row is timed (default %(default)s)")
    ap.add_argument("--system-malloc", action="store_true",
                    help="leave glibc malloc as it is (default: plateaug.tune_malloc, as a CPU stream sets it)")
    ap.add_argument("--scene-batches", default="16,64", help="scene-stream batch sizes")
    ap.add_argument("--scenes-only", action="store_true", help="only the scene rows (e) and the machine's peaks")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    malloc = set_malloc(args.system_malloc)
    onnx, checkpoint = Path(args.onnx), Path(args.checkpoint)
    for flag, path in (("--onnx", onnx), ("--checkpoint", checkpoint)):
        if not path.is_file():
            ap.error(f"{flag} {path} does not exist: train and export the default model "
                     f"(python -m plateaug.train, python -m plateaug.export) or pass {flag} PATH")
    ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
    batches, cuda_batches, seed_batches = ints(args.batches), ints(args.cuda_batches), ints(args.seed_batches)
    repeats, n_seed_plates = args.repeats, 200
    STREAM_WARMUP[0] = max(0, args.stream_warmup)
    if args.quick:
        batches, cuda_batches, seed_batches, repeats, n_seed_plates = [32], [1024], [1, 2], 1, 20
        STREAM_WARMUP[0] = 1
    regions = [r for r in args.regions.split(",") if r]
    if args.generator_share is not None:
        if not 0 <= args.generator_share <= 1:
            ap.error(f"--generator-share must be in [0, 1], got {args.generator_share}")
        STREAM_OPTIONS["generator_share"] = args.generator_share
    torch.set_num_threads(max(1, args.threads))
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")  # seed_pipeline's asarray
    cuda = torch.cuda.is_available() and not args.no_cuda
    info = {**machine(), "onnxruntime": ort.__version__, "ort_providers": ort.get_available_providers(),
            "malloc": malloc}
    print(f"machine: {info.get('cpu', info['processor'])}, {info['cpu_count']} cores, {torch.get_num_threads()} "
          f"threads, torch {info['torch']}, onnxruntime {info['onnxruntime']}, malloc {malloc}"
          + (f", {info['gpu']}" if "gpu" in info else ""))
    print(f"generator: {onnx}; regions {regions}; crop {CROP[0]}x{CROP[1]}; augment {AUGMENT!r}"
          + (f"; stream options {STREAM_OPTIONS}" if STREAM_OPTIONS else ""))
    t0 = time.perf_counter()
    torch_model = generator_from_checkpoint(checkpoint)
    flops = {"plateaug": gflops(torch_model, (1, 4, *CROP)), "seed_unet_256": gflops(unet_256(), (1, 3, *SEED_CANVAS))}
    gflops_at = functools.lru_cache(maxsize=None)(lambda h, w: gflops(torch_model, (1, 4, h, w)))
    PEAKS.update(measure_peaks(args.quick))
    print("machine peaks (this run, " + f"{torch.get_num_threads()} threads): "
          + ", ".join(f"{PEAK_NAMES[k]} {v:,.1f} {'GB/s' if k == 'copy_gbs' else 'GFLOP/s'}" for k, v in PEAKS.items()))
    print(f"\n{'pipeline':<20}{'dev':<6}{'B':>6}  {'stage':<26}{'ms/batch':>12}{'plates/s':>12}  achieved")
    scene_batches = [16] if args.quick else ints(args.scene_batches)
    if args.scenes_only:
        rows = bench_scenes(scene_batches, repeats, "cpu") + (bench_scenes(scene_batches, repeats, "cuda") if cuda
                                                             else [])
        payload = {"machine": info, "settings": {"scene_batches": scene_batches, "repeats": repeats},
                   "peaks": dict(PEAKS), "results": rows}
        write_json(args.json, payload)
        return payload
    rows = bench_seed(seed_batches, n_seed_plates, repeats, "cpu")
    rows += bench_plateaug("plateaug ORT fp32", regions, OnnxGenerator(onnx, threads=torch.get_num_threads()),
                           batches, repeats, "cpu", gflops_at=gflops_at)
    int8_path = None
    if not args.no_int8:
        with tempfile.TemporaryDirectory() as tmp:
            int8_path = int8_model(onnx, checkpoint, Path(tmp), args.int8_onnx, args.quick)
            if int8_path is not None:
                rows += bench_plateaug("plateaug ORT int8", regions, OnnxGenerator(int8_path,
                                                                                   threads=torch.get_num_threads()),
                                       batches, repeats, "cpu", all_regions=False, gflops_at=gflops_at,
                                       peak="int8_gops" if "int8_gops" in PEAKS else "fp32_gflops",
                                       only=("generator", "end to end"))
    if not args.no_bf16 and "bf16_gflops" in PEAKS:
        rows += bench_plateaug("plateaug torch bf16", regions, TorchGenerator(checkpoint, dtype=torch.bfloat16),
                               batches, repeats, "cpu", all_regions=False, gflops_at=gflops_at, peak="bf16_gflops",
                               only=("generator", "end to end"))
    rows += bench_scenes(scene_batches, repeats, "cpu")
    if cuda:
        rows += bench_seed(seed_batches, n_seed_plates, repeats, "cuda")
        rows += bench_scenes(scene_batches, repeats, "cuda")
        with tempfile.TemporaryDirectory() as tmp:
            for label, path in (("plateaug ORT fp32", onnx), ("plateaug ORT fp16", fp16_model(onnx, checkpoint,
                                                                                                Path(tmp)))):
                rows += bench_plateaug(label, regions, OnnxGenerator(path, device="cuda"), cuda_batches, repeats,
                                       "cuda", gflops_at=gflops_at)
    summary = summarise(rows, flops)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    print(f"peak process RSS {peak_rss:,.0f} MiB; total {time.perf_counter() - t0:.0f} s")
    payload = {"machine": info, "settings": {"onnx": str(onnx), "checkpoint": str(checkpoint), "regions": regions,
                                             "crop": list(CROP), "augment": AUGMENT, "repeats": repeats,
                                             "stream_warmup": STREAM_WARMUP[0],
                                             "stream_options": dict(STREAM_OPTIONS),
                                             "seed_canvas": list(SEED_CANVAS), "canny": canny_backend(),
                                             "int8_onnx": str(int8_path) if int8_path else None},
               "peaks": dict(PEAKS), "gflops_per_plate": flops, "results": rows, **summary, "peak_rss_mib": peak_rss}
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
