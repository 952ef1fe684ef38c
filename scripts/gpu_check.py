#!/usr/bin/env python3
"""One short GPU check (< 5 minutes on one GPU): the device, the CUDA-only tests, and train-step throughput.

    python scripts/gpu_check.py                       # on a CUDA machine: VGG-16, 224 px, fp32 and bf16
    python scripts/gpu_check.py --device cpu --model small_cnn --size 48 --batch 8 --steps 2 --skip-tests  # dry run
    python scripts/gpu_check.py --skip-tests --compile  # the same steps torch.compile'd ("+c" after the precision)

Prints the device, runs `pytest -m cuda` (the CUDA-only tests and the GPU benchmarks), then measures the training
step (and Grad-CAM inference) of gradcam, gain and gain_ext with `benchmark.timing.measure_interleaved` (CUDA-event
timing, warm-up, then the three methods' steps interleaved round by round, medians) for each precision, and prints
images/s with the ratio of each step's time to the baseline's (gradcam) step at the same precision. The table is also
written as JSON to `--json`, by default `$OUT/gpu_check.json` when `$OUT` is set. Exit status: non-zero when the
tests fail or a measurement raises.
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

from benchmark.methods import build_method  # noqa: E402
from benchmark.models import build_model  # noqa: E402
from benchmark.timing import TimingSettings, device_name, example_batch, measure_interleaved  # noqa: E402

METHODS = ("gradcam", "gain", "gain_ext")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu: a dry run of this script)")
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=32)
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


def measure_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per (precision, method): `measure_interleaved`'s figures (the three methods' steps timed round by
    round, so the ratios compare steps taken under the same clocks and load) plus the step-time ratio to gradcam's."""
    device = torch.device(args.device)
    batch = example_batch(args.batch, args.size, args.classes, device)
    rows: list[dict[str, Any]] = []
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        settings = TimingSettings(
            batch_size=args.batch,
            warmup=args.warmup,
            iterations=args.steps,
            precision=precision,
            channels_last=True if args.channels_last else None,
            compile=args.compile,
        )
        torch.manual_seed(0)
        model = build_model(args.model, args.classes).to(device)
        contenders = {m: (model, build_method(m, **({} if m == "gradcam" else {"warmup_epochs": 0}))) for m in METHODS}
        figures = measure_interleaved(contenders, batch, 0, settings)
        base = figures["gradcam"]["train_step_seconds"]
        for method in METHODS:
            ratio = figures[method]["train_step_seconds"] / base
            rows.append(
                {"model": args.model, "method": method, **figures[method], "train_step_ratio_to_gradcam": ratio}
            )
        del model, contenders, figures
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'model':<10} {'precision':<9} {'method':<9} {'train img/s':>12} {'x gradcam step':>15} "
    head += f"{'attention img/s':>16} {'peak MiB':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<10} {r['precision'] + ('+c' if r['compiled'] else ''):<9} {r['method']:<9} "
            f"{r['train_images_per_s']:>12.1f} "
            f"{r['train_step_ratio_to_gradcam']:>15.2f} {r['attention_images_per_s']:>16.1f} "
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
    out = args.json or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "device": str(device),
            "device_name": device_name(device),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "tests_exit_status": tests_rc,
            "seconds": time.perf_counter() - started,
            "rows": rows,
        }
        out.write_text(json.dumps(payload, indent=2))
        print(f"wrote {out}")
    print(f"done in {time.perf_counter() - started:.0f} s; CUDA tests: {'skipped' if tests_rc is None else tests_rc}")
    return tests_rc or 0


if __name__ == "__main__":
    sys.exit(main())
