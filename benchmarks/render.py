"""Clean-render and outline throughput (plates/s) for B = 1, 64, 512 on CPU (and CUDA when
present), next to the seed's per-plate Pillow render + Canny loop.

    python benchmarks/render.py [--regions cn_blue,eu_de,us] [--system-malloc] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median_seconds, set_malloc, write_json  # noqa: E402
from seed_baseline import SeedRenderer, canny, canny_backend  # noqa: E402

from plateaug import (
    outline,  # noqa: E402
    render,
    sample_text,
)
from plateaug.renderer.draw import get_renderer  # noqa: E402
from plateaug.renderer.spec_loader import load_region  # noqa: E402


def bench_region(region: str, device: str, batches: list[int], repeats: int) -> list[dict]:
    spec = load_region(region)
    get_renderer(spec, str(torch.device(device)))  # atlas built once, outside the timing
    rows = []
    for B in batches:
        g = torch.Generator().manual_seed(0)
        texts = sample_text(spec, B, g)
        plates = render(spec, texts, device)
        t_text = median_seconds(lambda B=B, g=g: sample_text(spec, B, g), repeats)
        t_render = median_seconds(lambda t=texts: render(spec, t, device), repeats, device=device)
        t_outline = median_seconds(lambda p=plates: outline(p.images), repeats, device=device)
        t_both = median_seconds(lambda B=B, g=g: outline(render(spec, sample_text(spec, B, g), device).images),
                                repeats, device=device)
        rows.append({"region": region, "device": device, "batch": B, "canvas": list(spec.canvas),
                     "text_per_s": B / t_text, "render_per_s": B / t_render, "outline_per_s": B / t_outline,
                     "render_outline_per_s": B / t_both})
    return rows


def bench_seed(n: int) -> dict:
    r = SeedRenderer()
    t_render = median_seconds(lambda: [r() for _ in range(n)], 3)
    imgs = [r()[0] for _ in range(n)]
    t_canny = median_seconds(lambda: [canny(im) for im in imgs], 3)
    t_both = median_seconds(lambda: [canny(r()[0]) for _ in range(n)], 3)
    return {"render_per_s": n / t_render, "canny_per_s": n / t_canny, "render_canny_per_s": n / t_both,
            "canny": canny_backend(), "size": [70, 226]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regions", default="cn_blue,eu_de,us")
    ap.add_argument("--batches", default="1,64,512")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--system-malloc", action="store_true",
                    help="leave glibc malloc as it is (default: plateaug.tune_malloc, as a CPU stream sets it)")
    ap.add_argument("--json")
    args = ap.parse_args()
    malloc = set_malloc(args.system_malloc)
    torch.set_num_threads(os.cpu_count() or 1)
    batches = [int(b) for b in args.batches.split(",")]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = [r for dev in devices for reg in args.regions.split(",")
            for r in bench_region(reg, dev, batches, args.repeats)]
    seed = bench_seed(200)
    info = {**machine(), "malloc": malloc}
    print(f"machine: {info.get('cpu', info['processor'])}, {info['cpu_count']} cores, torch {info['torch']}, "
          f"malloc {malloc}"
          + (f", {info['gpu']}" if "gpu" in info else ""))
    print(f"{'region':<12}{'dev':<6}{'B':>5}{'text/s':>12}{'render/s':>12}{'outline/s':>12}{'render+outline/s':>18}")
    for r in rows:
        print(f"{r['region']:<12}{r['device']:<6}{r['batch']:>5}{r['text_per_s']:>12,.0f}{r['render_per_s']:>12,.0f}"
              f"{r['outline_per_s']:>12,.0f}{r['render_outline_per_s']:>18,.0f}")
    print(f"seed loop (Pillow 226x70 + {seed['canny']} Canny, one plate at a time): "
          f"render {seed['render_per_s']:,.0f}/s, canny {seed['canny_per_s']:,.0f}/s, "
          f"render+canny {seed['render_canny_per_s']:,.0f}/s")
    best = max(r["render_outline_per_s"] for r in rows if r["device"] == "cpu" and r["batch"] == max(batches))
    print(f"plateaug render+outline at B={max(batches)} (CPU, best region) / seed render+canny: "
          f"{best / seed['render_canny_per_s']:.1f}x")
    write_json(args.json, {"machine": info, "plateaug": rows, "seed": seed})


if __name__ == "__main__":
    main()
