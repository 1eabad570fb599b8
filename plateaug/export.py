"""CLI: `python -m plateaug.export CHECKPOINT [--out PATH] [--fp16] [--opset N] [--no-verify]`
writes the generator as a verified ONNX file and prints how closely it matches torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .generator.checkpoint import atomic_save, load_checkpoint, slim_checkpoint
from .generator.onnx_export import ExportReport, ExportVerificationError, export_onnx


def default_out(checkpoint: str | Path, fp16: bool) -> Path:
    """export/<checkpoint stem>.onnx, or ..._fp16.onnx."""
    return Path("export") / f"{Path(checkpoint).stem}{'_fp16' if fp16 else ''}.onnx"


def describe(report: ExportReport) -> str:
    """A few human lines: what was written and the verification numbers."""
    size_mb = report.path.stat().st_size / 2**20 if report.path.exists() else float("nan")
    lines = [f"wrote {report.path} ({'float16' if report.fp16 else 'float32'}, opset {report.opset}, "
             f"{report.exporter} exporter, {size_mb:.2f} MiB)"]
    if report.verified:
        sizes = ", ".join(f"B={b} {h}x{w}" for b, h, w in report.sizes)
        lines += [f"verified against torch (fp32) with ONNX Runtime CPU at {sizes}",
                  f"max abs err {report.max_abs_err:.3g}, relative err {report.rel_err:.3g} "
                  f"(limit {report.tolerance:g})"]
    else:
        lines.append("not verified (--no-verify)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plateaug.export", description=__doc__)
    parser.add_argument("checkpoint", help="plateaug checkpoint (.pt), e.g. runs/default/last.pt")
    parser.add_argument("--out", help="ONNX file to write (default: export/<checkpoint stem>[_fp16].onnx)")
    parser.add_argument("--fp16", action="store_true", help="float16 weights, input and output")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs torch check")
    parser.add_argument("--torch-out", help="also write a slim generator-only checkpoint (.pt) for TorchGenerator")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else default_out(args.checkpoint, args.fp16)
    try:
        report = export_onnx(args.checkpoint, out, fp16=args.fp16, opset=args.opset, verify=not args.no_verify)
    except (FileNotFoundError, ValueError, ExportVerificationError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)  # one line
        return 2
    print(describe(report))
    if args.torch_out:
        slim = atomic_save(slim_checkpoint(load_checkpoint(args.checkpoint)), args.torch_out)
        print(f"wrote {slim} (generator EMA weights, {slim.stat().st_size / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
