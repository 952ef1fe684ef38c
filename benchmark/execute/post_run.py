"""The post-run steps of a suite, after its runs: each configuration's representative run (`pick_run`, for the
gallery and the timings) and the suite-level throughput, timed round by round with the baseline
(`measure_throughput`). `gallery_maps` draws the gallery's maps from the same representatives."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmark.core.selection import reported_specs
from benchmark.core.spec import BASELINE, RunSpec, configuration_key, pairing_key
from benchmark.core.store import (
    THROUGHPUT_FILE,
    pick_complete,
    representatives,
    run_dir,
    throughput_rows,
    write_atomic,
)
from benchmark.execute.checkpoints import load_trained
from benchmark.execute.denormals import denormals_flushed
from benchmark.execute.methods import build_method
from benchmark.execute.prediction import timing_batch
from benchmark.execute.run_data import cached_data
from benchmark.execute.suites import Suite
from benchmark.execute.timing import Contender, TimingSettings, measure, measure_paired


def configurations(suite: Suite, out_root: Path | None = None) -> list[list[RunSpec]]:
    """The suite's configurations in its order, each as its runs by ascending seed; given the results folder, only
    those a report shows (of a hyperparameter search, the chosen trials: `selection.reported_specs`)."""

    groups: dict[str, list[RunSpec]] = {}
    for spec in suite.runs() if out_root is None else reported_specs(suite, Path(out_root)):
        groups.setdefault(configuration_key(spec.to_dict()), []).append(spec)
    return [sorted(g, key=lambda s: s.seed) for g in groups.values()]


def gallery_picks(suite: Suite, out_root: Path) -> list[tuple[RunSpec, RunSpec | None, str]]:
    """Per configuration of the report: its first spec, its representative run (`pick_run`) and why there is none."""
    return [(specs[0], *pick_run(out_root, specs)) for specs in configurations(suite, out_root)]


def pick_run(out_root: Path, specs: list[RunSpec]) -> tuple[RunSpec | None, str]:
    """A configuration's representative: its lowest-seed complete run with a checkpoint, or None and why not."""
    index, reason = pick_complete(out_root, [(s.run_id, s.config_hash) for s in specs])
    return (specs[index] if index is not None else None), reason


def measure_throughput(
    suite: Suite, out_root: Path, *, data_root: Path | None = None, device: str | None = None
) -> dict[str, Any] | None:
    """Time every configuration's trained model once more, in this process, after the suite's runs (the figures in
    each run's record were taken while other runs may have shared the cores), with denormals flushed as its training
    was (`train.flush_denormal`; each row records the flag and the share it reached, `benchmark.execute.denormals`).
    Each configuration is timed round by round with its baseline (the Grad-CAM configuration on the same data, model and
    training settings: `spec.pairing_key`, as the statistics pair them), `timing.passes` x
    `timing.iterations` rounds, two models in memory at a time: its `train_cost_ratio` and
    `attention_speed_ratio` compare steps taken under the same load, and the baseline's own figures are the medians
    over its pairings. A configuration without a baseline is timed alone, the best of `timing.passes` passes in
    alternating order.
    A method that takes no training step (`Method.fine_tunes` false) is not timed.
    Written to `<out_root>/throughput.json`; the report prefers it. None when nothing is complete."""

    device = device or suite.device
    jobs: list[tuple[RunSpec, Contender]] = []
    for specs in configurations(suite, out_root):
        spec, _ = pick_run(out_root, specs)
        if spec is None:
            continue
        method = build_method(spec.method, **spec.method_params)
        if not method.fine_tunes:  # no training step to time (`no_finetune` evaluates its start as it is)
            continue
        data = cached_data(spec, data_root)
        classes = data["train"].classes
        model = load_trained(spec, run_dir(out_root, spec.run_id) / "model.pt", len(classes)).to(device)
        batch = timing_batch(model, method, data["train"], suite.timing, device)
        jobs.append((spec, (model, method, batch, classes.index(spec.audited_class))))
    if not jobs:
        return None
    figures = _paired_figures(jobs, suite.timing)
    alone = [job for job in jobs if job[0].run_id not in figures]
    figures |= _best_of_passes(alone, suite.timing)
    rows = [
        {"config": spec.method_label, "method": spec.method, "budget": spec.budget, "run_id": spec.run_id,
         **figures[spec.run_id], "flush_denormal": spec.train.flush_denormal}
        for spec, _ in jobs
    ]  # fmt: skip
    payload = {
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "how": f"after the suite, in one process: each configuration timed round by round with its baseline "
        f"({suite.timing.passes * suite.timing.iterations} rounds, medians); without a baseline, "
        f"{suite.timing.passes} pass(es) in alternating order, each figure the best of its passes",
        "rows": rows,
    }
    write_atomic(Path(out_root) / THROUGHPUT_FILE, json.dumps(payload, indent=2) + "\n")
    return payload


def _paired_figures(jobs: list[tuple[RunSpec, Contender]], settings: TimingSettings) -> dict[str, dict[str, Any]]:
    """Figures per run id for every configuration that has a baseline with the same shared settings, each timed
    round by round against that baseline (`timing.measure_paired`); the baseline's figures are the medians over its
    pairings. A baseline with nothing to pair is left out (timed alone by the caller)."""
    groups: dict[str, list[tuple[RunSpec, Contender]]] = {}
    for spec, job in jobs:
        groups.setdefault(pairing_key(spec.to_dict()), []).append((spec, job))
    rounds = replace(settings, warmup=max(settings.warmup, 1), iterations=settings.iterations * settings.passes)
    out: dict[str, dict[str, Any]] = {}
    for group in groups.values():
        base = next(((spec, job) for spec, job in group if spec.method == BASELINE), None)
        others = {spec.run_id: job for spec, job in group if spec.method != BASELINE}
        if base is None or not others:
            continue
        with denormals_flushed(base[0].train.flush_denormal):  # the group shares its training settings
            out[base[0].run_id], paired = measure_paired(base[1], others, rounds)
        out |= paired
    return out


def _best_of_passes(jobs: list[tuple[RunSpec, Contender]], settings: TimingSettings) -> dict[str, dict[str, Any]]:
    """Each configuration timed alone, `settings.passes` passes in alternating order, each figure its best pass."""
    best: dict[str, dict[str, Any]] = {}
    for order in [jobs if i % 2 == 0 else jobs[::-1] for i in range(settings.passes)]:
        for spec, (model, method, batch, class_index) in order:
            with denormals_flushed(spec.train.flush_denormal):
                figures = measure(model, method, batch, class_index, settings)
            kept = best.get(spec.run_id)
            for key, seconds in (("train_images_per_s", "train_step_seconds"),
                                 ("attention_images_per_s", "attention_batch_seconds")):  # fmt: skip
                if kept is None or figures[key] > kept[key]:
                    kept = (kept or figures) | {key: figures[key], seconds: figures[seconds]}
            best[spec.run_id] = kept | {"peak_memory_mb": figures["peak_memory_mb"]}
    return best


def read_throughput(out_root: Path, suite: Suite) -> list[dict[str, Any]] | None:
    """The suite-level timings if they were taken on the runs the suite holds now, else None."""
    groups = ([(s.run_id, s.config_hash) for s in specs] for specs in configurations(suite, out_root))
    return throughput_rows(out_root, representatives(out_root, groups))
