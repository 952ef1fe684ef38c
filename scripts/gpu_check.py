#!/usr/bin/env python3
"""One short GPU check (< 5 minutes on one GPU): the device, the CUDA-only tests, and train-step throughput.

    python scripts/gpu_check.py                       # on a CUDA machine: VGG-16, 224 px, fp32 and bf16
    python scripts/gpu_check.py --device cpu --model small_cnn --size 48 --batches 8 --steps 2 --skip-tests  # dry run
    python scripts/gpu_check.py --skip-tests --compile  # the same steps torch.compile'd ("+c" after the precision)

Prints the device, runs `pytest -m cuda` (the CUDA-only tests and the GPU benchmarks), then measures the training
step (and Grad-CAM inference) of gradcam, gain, gain_ext and the floor step (`benchmark.execute.timing.floor_loss`:
what a GAIN step would cost if everything but its one unavoidable extra pass were free) with
`benchmark.execute.timing.measure_interleaved` (CUDA-event timing, warm-up, then the steps interleaved round by round,
medians) for each precision, batch size and cuDNN autotuning setting. Each row gives images/s, the ratio of the
step's time to the baseline's (gradcam) step in the same rounds, the step's FLOPs
(`benchmark.execute.timing.step_flops`:
torch's FLOP counter over forward, Grad-CAM, the added passes and backward), the achieved TFLOPS and the model FLOP
utilisation: achieved over the card's dense peak for that arithmetic (`PEAK_TFLOPS`; fp32 is compared with the TF32
peak, since PyTorch runs fp32 convolutions on TF32 tensor cores by default). The table is also written as JSON to
`--json`, by default `$OUT/gpu_check.json` when `$OUT` is set. Exit status: non-zero when the tests fail or a
measurement raises.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's `benchmark`, whatever is installed

import torch  # noqa: E402

from benchmark.execute.methods import build_method  # noqa: E402
from benchmark.execute.models import build_model  # noqa: E402
from benchmark.execute.timing import (  # noqa: E402
    FloorStep,
    TimingSettings,
    device_name,
    example_batch,
    measure_interleaved,
    step_flops,
)

METHODS = ("gradcam", "gain", "gain_ext")
CONTENDERS = (*METHODS, "floor")
# Dense (no sparsity) tensor-core peaks in TFLOPS from the vendors' data sheets, by the device name's model; fp32 runs
# its convolutions as TF32 (PyTorch's default for cuDNN), so its utilisation is against the TF32 peak.
PEAK_TFLOPS = {
    "H200": {"bf16": 989.4, "fp16": 989.4, "fp32": 494.7},
    "H100": {"bf16": 989.4, "fp16": 989.4, "fp32": 494.7},
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 156.0},
}


def peak_tflops(name: str, precision: str) -> float | None:
    """The card's dense peak for `precision`, None for a device not in `PEAK_TFLOPS` (a CPU: no utilisation)."""
    return next((peaks.get(precision) for model, peaks in PEAK_TFLOPS.items() if model in name), None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu: a dry run of this script)")
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--batches", default="32", help="comma-separated batch sizes")
    parser.add_argument(
        "--cudnn-benchmark", default="on", help="comma-separated: on, off (cuDNN autotuning of convolutions)"
    )
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30, help="timed rounds (median); each times every method once")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16, fp16 (CUDA)")
    parser.add_argument("--channels-last", action="store_true", help="time channels_last models")
    parser.add_argument("--compile", action="store_true", help="time torch.compile'd models (compiled in the warm-up)")
    parser.add_argument("--skip-tests", action="store_true", help="do not run `pytest -m cuda`")
    parser.add_argument("--json", type=Path, default=None, help="the table as JSON (default: $OUT/gpu_check.json)")
    return parser.parse_args(argv)


def run_cuda_tests() -> int:
    """`pytest -m cuda` over the tests (CUDA-only unit tests and GPU benchmarks); returns its exit status."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"]
    cmd += [str(ROOT / "tests")]
    print("$", " ".join(cmd), flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def measure_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (cuDNN autotuning, batch size, precision, contender): `measure_interleaved`'s figures (the steps
    timed round by round, so the ratios compare steps under the same clocks and load), the step-time ratio to
    gradcam's, the step's FLOPs, TFLOPS and utilisation."""
    device = torch.device(args.device)
    peak_name = device_name(device)
    rows: list[dict[str, Any]] = []
    for tuning in _split(args.cudnn_benchmark):
        torch.backends.cudnn.benchmark = tuning == "on"
        for size in [int(b) for b in _split(args.batches)]:
            batch = example_batch(size, args.size, args.classes, device)
            for precision in _split(args.precisions):
                settings = TimingSettings(
                    batch_size=size,
                    warmup=args.warmup,
                    iterations=args.steps,
                    precision=precision,
                    channels_last=True if args.channels_last else None,
                    compile=args.compile,
                )
                torch.manual_seed(0)
                model = build_model(args.model, args.classes).to(device)
                if args.channels_last:
                    model = model.to(memory_format=torch.channels_last)
                methods = {m: build_method(m, **({} if m == "gradcam" else {"warmup_epochs": 0})) for m in METHODS}
                methods["floor"] = FloorStep()
                figures = measure_interleaved({m: (model, methods[m]) for m in CONTENDERS}, batch, 0, settings)
                base = figures["gradcam"]["train_step_seconds"]
                peak = peak_tflops(peak_name, precision)
                for name in CONTENDERS:
                    flops = step_flops(model, methods[name], batch, precision)
                    achieved = flops / figures[name]["train_step_seconds"] / 1e12
                    rows.append(
                        {
                            "model": args.model,
                            "method": name,
                            **figures[name],
                            "cudnn_benchmark": tuning == "on",
                            "train_step_ratio_to_gradcam": figures[name]["train_step_seconds"] / base,
                            "step_gflop": flops / 1e9,
                            "achieved_tflops": achieved,
                            "peak_tflops": peak,
                            "mfu": achieved / peak if peak else None,
                        }
                    )
                print(table(rows[-len(CONTENDERS) :]), flush=True)
                del model, methods, figures
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'model':<8} {'prec':<6} {'cudnn':<5} {'batch':>5} {'method':<9} {'img/s':>8} {'x base':>7} "
    head += f"{'GFLOP/img':>9} {'TFLOPS':>7} {'MFU':>6} {'peak MiB':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        lines.append(
            f"{r['model']:<8} {r['precision'] + ('+c' if r['compiled'] else ''):<6} "
            f"{'tuned' if r['cudnn_benchmark'] else 'off':<5} {r['batch_size']:>5} {r['method']:<9} "
            f"{r['train_images_per_s']:>8.1f} {r['train_step_ratio_to_gradcam']:>7.2f} "
            f"{r['step_gflop'] / r['batch_size']:>9.1f} {r['achieved_tflops']:>7.1f} {mfu:>6} "
            f"{r['peak_memory_mb']:>9.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (use --device cpu for a dry run)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device {device}: {device_name(device)}", flush=True)
    tests_rc = None if args.skip_tests else run_cuda_tests()
    rows = measure_all(args)
    print(table(rows), flush=True)
    peaks = {p: peak_tflops(device_name(device), p) for p in _split(args.precisions)}
    print(f"dense peak TFLOPS of {device_name(device)} used for MFU: {peaks}", flush=True)
    out = args.json or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "device": str(device),
            "device_name": device_name(device),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "tests_exit_status": tests_rc,
            "peak_tflops": PEAK_TFLOPS,
            "seconds": time.perf_counter() - started,
            "rows": rows,
        }
        out.write_text(json.dumps(payload, indent=2))
        print(f"wrote {out}")
    print(f"done in {time.perf_counter() - started:.0f} s; CUDA tests: {'skipped' if tests_rc is None else tests_rc}")
    return tests_rc or 0


if __name__ == "__main__":
    sys.exit(main())
