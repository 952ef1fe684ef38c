#!/usr/bin/env python3
"""How fast the VOC loader builds training batches from a VOCdevkit tree: images/s, to hold against a training step's.

    gain-bench export-voc --data-root /tmp/voc                  # once: the built-in data as a VOC tree, 224 px
    python scripts/loader_speed.py --data-root /tmp/voc --workers 4,8,16 --device cuda

Builds the `train_aug` training split as `data.name = "voc"` does (every file decoded and checked once), then times
`FileSplit.batch` as the training loop calls it (random resized crop and flip from a generator, the batch moved to
`--device`): JPEG decoding, resizing and augmentation in `workers` threads. Each figure is the median of `--batches`
timed batches after two untimed ones, per number of workers; `cache = true` (decoded images kept in memory after the
first epoch) is timed last. Prints a table and writes JSON to `--json` (default `$OUT/loader_speed.json` when `$OUT`
is set).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's `benchmark`, whatever is installed

import torch  # noqa: E402

from benchmark.execute.datasets import voc  # noqa: E402
from benchmark.execute.models import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="the folder holding VOCdevkit/")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10, help="timed batches per setting (median)")
    parser.add_argument("--workers", default="4,8,16", help="comma-separated decoding thread counts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def time_batches(split: voc.FileSplit, args: argparse.Namespace) -> float:
    """Median seconds per training batch (the first two untimed)."""
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(split), generator=generator)
    times = []
    for k in range(args.batches + 2):
        rows = order[(k * args.batch) % len(split) :][: args.batch]
        started = time.perf_counter()
        batch = split.batch(rows, device=args.device, mean=IMAGENET_MEAN, std=IMAGENET_STD, generator=generator)
        if torch.device(args.device).type == "cuda":
            torch.cuda.synchronize()
        assert batch["image"].shape[-1] == args.image_size
        if k >= 2:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = []
    for workers in [int(w) for w in args.workers.split(",") if w.strip()] + [-1]:
        cached = workers == -1
        workers = max(int(w) for w in args.workers.split(",")) if cached else workers
        cfg = voc.config({"train_split": "train_aug", "image_size": args.image_size, "workers": workers,
                          "cache": cached})  # fmt: skip
        started = time.perf_counter()
        split = voc.load(cfg, args.data_root, roles=("train",))["train"]
        checked = time.perf_counter() - started
        if cached:
            time_batches(split, args)  # the first pass fills the cache, as the first epoch does
        seconds = time_batches(split, args)
        rows.append({"workers": workers, "cache": cached, "images": len(split), "build_seconds": checked,
                     "batch": args.batch, "batch_seconds": seconds, "images_per_s": args.batch / seconds,
                     "cpus": os.cpu_count(), "device": args.device})  # fmt: skip
        print(f"workers {workers:>3} cache {cached!s:<5} {args.batch / seconds:>8.0f} images/s "
              f"(split of {len(split)} built and checked in {checked:.1f} s)", flush=True)  # fmt: skip
    out = args.json or (Path(os.environ["OUT"]) / "loader_speed.json" if os.environ.get("OUT") else None)
    if out is not None:
        out.write_text(json.dumps({"rows": rows, "image_size": args.image_size}, indent=2))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
