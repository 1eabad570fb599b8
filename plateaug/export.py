"""CLI: `python -m plateaug.export CHECKPOINT [--out PATH] [--fp16 | --int8] [--opset N] [--no-verify]`
writes the generator as a verified ONNX file and prints how closely it matches torch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .generator.checkpoint import atomic_save, load_checkpoint, slim_checkpoint
from .generator.onnx_export import ExportReport, ExportVerificationError, export_onnx
from .generator.quantize import Int8ExportReport, export_int8


def default_out(checkpoint: str | Path, fp16: bool, int8: bool = False) -> Path:
    """export/<checkpoint stem>.onnx, or ..._fp16.onnx / ..._int8.onnx."""
    return Path("export") / f"{Path(checkpoint).stem}{'_fp16' if fp16 else '_int8' if int8 else ''}.onnx"


def describe(report: ExportReport | Int8ExportReport) -> str:
    """A few human lines: what was written and the verification numbers."""
    size_mb = report.path.stat().st_size / 2**20 if report.path.exists() else float("nan")
    if isinstance(report, Int8ExportReport):
        return describe_int8(report, size_mb)
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


def describe_int8(report: Int8ExportReport, size_mb: float) -> str:
    cal, tol = report.calibration, report.tolerance
    lines = [f"wrote {report.path} (int8 QDQ, {cal['weights']} weights, {cal['activations']} activations, float32 "
             f"in/out, opset {report.opset}, {size_mb:.2f} MiB)",
             f"calibrated on {cal['images']} renders: {len(cal['regions'])} regions ({', '.join(cal['regions'])}) at "
             f"{', '.join(cal['sizes'])}, {cal['method']}; left in float: {', '.join(cal['float_ops']) or 'nothing'}"]
    if report.verified:
        lines += ["verified against torch (fp32) with ONNX Runtime CPU on fresh renders of every region and on random "
                  "inputs",
                  f"renders: mean abs err {report.render_mean_abs:.3g} (limit {tol['render_mean']:g}), 99.9th "
                  f"percentile {report.render_p999_abs:.3g} (limit {tol['render_p999']:g}), max abs err "
                  f"{report.render_max_abs:.3g}",
                  f"random:  max abs err {report.random_max_abs:.3g}, mean abs err {report.random_mean_abs:.3g} "
                  f"(limit {tol['random_mean']:g})"]
    else:
        lines.append("not verified (--no-verify)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plateaug.export", description=__doc__)
    parser.add_argument("checkpoint", help="plateaug checkpoint (.pt), e.g. runs/default/last.pt")
    parser.add_argument("--out", help="ONNX file to write (default: export/<checkpoint stem>[_fp16|_int8].onnx)")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="float16 weights, input and output")
    precision.add_argument("--int8", action="store_true",
                           help="int8 static quantisation (ONNX Runtime QDQ, calibrated on renders of every shipped "
                                "region), float32 input and output; for the CPU")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument("--calibration-plates", type=int, default=None, metavar="N",
                        help="--int8: rendered plates per region and size to calibrate on (default 16)")
    parser.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs torch check")
    parser.add_argument("--torch-out", help="also write a slim generator-only checkpoint (.pt) for TorchGenerator")
    args = parser.parse_args(argv)
    if args.calibration_plates is not None and (not args.int8 or args.calibration_plates < 1):
        parser.error("--calibration-plates needs --int8 and a positive number")
    out = Path(args.out) if args.out else default_out(args.checkpoint, args.fp16, args.int8)
    try:
        if args.int8:
            per_region = {} if args.calibration_plates is None else {"per_region": args.calibration_plates}
            report = export_int8(args.checkpoint, out, opset=args.opset, verify=not args.no_verify, **per_region)
        else:
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
