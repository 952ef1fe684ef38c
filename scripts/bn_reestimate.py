"""Re-evaluate finished runs after re-estimating BatchNorm's running statistics on natural training images only.

GAIN with `masked_bn = "train"` blends the erased images' statistics into the running statistics that every
evaluation then uses. This separates what the weights learned from what that blend does at evaluation: each run's
`model.pt` is loaded, its running statistics are recomputed as the plain average over its own training split's
images (BatchNorm's cumulative average, `momentum = None`, no gradient, weights untouched), and its test splits are
scored again. Nothing in the results folder is changed; the table goes to standard output.

    python scripts/bn_reestimate.py reports/gain-dynamics --only gain --only gradcam

Prints, per configuration, the mean over its runs of each metric as recorded and after the re-estimation.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from benchmark.core.predictions import audited_view
from benchmark.core.spec import RunSpec
from benchmark.core.store import read_record
from benchmark.execute.checkpoints import load_trained
from benchmark.execute.metrics import audit_metrics
from benchmark.execute.prediction import predict
from benchmark.execute.train import load_data

METRICS = ("val_accuracy", "class_without_context", "context_without_class", "shifted_auroc")


def reestimate(model: nn.Module, images: torch.Tensor, batch_size: int) -> None:
    """Running statistics = the average of the batch statistics over `images` in batches (weights unchanged)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size])
    model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--only", action="append", default=[], help="method entries' labels to include (prefix)")
    parser.add_argument("--data-root", type=Path)
    args = parser.parse_args(argv)
    rows: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    for path in sorted(args.folder.glob("runs/*/record.json")):
        record = read_record(path)
        spec = RunSpec.from_dict(record["spec"])
        if record["status"] != "complete" or (
            args.only and not any(spec.method_label.startswith(o) for o in args.only)
        ):
            continue
        data = load_data(spec, args.data_root)
        classes = data["train"].classes
        model = load_trained(spec, path.parent / "model.pt", len(classes))
        train = data["train"]
        images = train.batch(torch.arange(len(train)), mean=model.mean, std=model.std)["image"]
        if spec.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        reestimate(model, images, spec.train.batch_size)
        index = classes.index(spec.audited_class)
        preds = predict(model, {k: v for k, v in data.items() if k != "train"}, index, spec)
        again = audit_metrics({role: audited_view(p, index) for role, p in preds.items()}, spec.train.threshold)
        rows[spec.method_label].append((record["metrics"], again))
        print(
            f"{spec.run_id}: AUROC {record['metrics']['shifted_auroc']:.3f} -> {again['shifted_auroc']:.3f}", flush=True
        )
    header = f"{'configuration':<32} {'runs':>4}" + "".join(f"{m:>34}" for m in METRICS)
    print(header)
    for label, pairs in rows.items():
        cells = []
        for m in METRICS:
            before = statistics.fmean(p[0][m] for p in pairs)
            after = statistics.fmean(p[1][m] for p in pairs)
            cells.append(f"{f'{before:.3f} -> {after:.3f} ({after - before:+.3f})':>34}")
        print(f"{label:<32} {len(pairs):>4}" + "".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
