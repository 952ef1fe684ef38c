"""One run, start to end (`run`): its data and pixel-label budget, the model and method, the training loop (`fit`)
with its non-finite-loss check, the held-out scores, then prediction, metrics, timings and the record, written
atomically into the run's folder."""

from __future__ import annotations

import dataclasses
import io
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.core.predictions import ROWS_KEY, audited_view, predictions_csv, row_counts
from benchmark.core.spec import RunSpec, TrainSettings
from benchmark.core.store import run_dir, write_atomic, write_record
from benchmark.execute.allocator import retain_freed_memory
from benchmark.execute.checkpoints import load_start
from benchmark.execute.datasets import registry, synthetic
from benchmark.execute.datasets.annotations import annotated_split
from benchmark.execute.datasets.budgets import (
    POOL_NAMES,
    budget_pool,
    budget_record,
    nested_budget,
    pool_rows,
    write_manifest,
)
from benchmark.execute.datasets.files import FileSplit
from benchmark.execute.datasets.mask_controls import controlled_split
from benchmark.execute.datasets.tensors import TensorSplit
from benchmark.execute.denormals import flushed_share
from benchmark.execute.diagnostics import gradient_probe, heldout_scored, heldout_scores, probe_batch, probe_steps
from benchmark.execute.heldout import evaluate as evaluate_selection
from benchmark.execute.methods import Method, build_method
from benchmark.execute.metrics import (
    audit_metrics,
)
from benchmark.execute.models import SplitModel, build_model
from benchmark.execute.prediction import Split, attention_info, predict, throughput
from benchmark.execute.run_record import NonFiniteLoss, environment, new_record, now_iso
from benchmark.execute.timing import TimingSettings, autocast

AUGMENT_SEED = 0xA06  # offset of the augmentation generator's seed from the run's


LOSS_READ_EVERY = 16
"""Steps whose losses are read from the device at once: one host synchronisation per 16 steps instead of one per
step, so a GPU is fed the next batches while it computes. A non-finite loss still fails the run, naming its step."""


def load_data(spec: RunSpec, data_root: Path | None = None) -> dict[str, Split]:
    """The training split and the evaluation splits by role (`datasets.registry`)."""
    return registry.load(spec.dataset, spec.dataset_params, data_root)


def select_budget(
    spec: RunSpec, data: dict[str, Split], class_index: int, data_root: Path | None = None
) -> tuple[torch.Tensor, dict[str, Any] | None]:
    """The training rows inside the pixel-label budget and, for file-based data, what the record says about the data
    (split sizes, skipped files, the budget's pool, ids and manifest under `<data root>/<dataset>/budgets/`).

    Raises ValueError for a budget larger than its pool (naming both) or a biased split about another class."""
    train = data["train"]
    if not isinstance(train, FileSplit):
        return nested_budget(budget_pool(train.labels, class_index), spec.budget, spec.budget_seed), None
    shifted = data.get("class_without_context")
    if shifted is not None and not bool((shifted.labels[:, class_index] > 0.5).all()):
        raise ValueError(f"the biased split {shifted.source} is not about the audited class {spec.audited_class!r}")
    pool = registry.pool(spec.dataset, spec.dataset_params) or "class"
    rows = pool_rows(train.labels, train.pixel_labelled, class_index, pool)
    what = POOL_NAMES[pool].format(cls=spec.audited_class) + f" of {len(train)} training images (data.pool = {pool})"
    chosen = nested_budget(rows, spec.budget, spec.budget_seed, what)
    manifest, error = None, ""
    if spec.budget:
        name = f"class-{spec.audited_class}" if pool == "class" else "pixel"
        folder = Path(data_root if data_root is not None else synthetic.default_root()) / spec.dataset / "budgets"
        try:
            manifest = write_manifest(folder, "train", train.ids, rows, spec.budget_seed, name)
        except OSError as err:  # a read-only data root: the ids are in the record all the same
            error = f"could not write the budget manifest: {err}"
    skipped = [s for split in data.values() for s in getattr(split, "skipped", [])]
    notes = []
    if "class_without_context" not in data:
        notes.append(
            "no biased split (data.biased_split is empty): the shifted-group rows (class without context, context "
            "without class, overall, AUROC) are not measured; val accuracy, mAP and localisation are"
        )
    info = {
        "dataset": spec.dataset,
        "data_root": str(Path(data_root if data_root is not None else synthetic.default_root()).resolve()),
        "splits": {role: split.info() for role, split in data.items()},
        "skipped_images": {"count": len(skipped), "files": skipped},
        "budget": budget_record(manifest, pool, rows.numel(), [train.ids[int(r)] for r in chosen], error),
        "notes": notes,
    }
    return chosen, info


def run(
    spec: RunSpec,
    out_root: Path,
    *,
    data_root: Path | None = None,
    progress: bool = True,
    device: str = "cpu",
    data: dict[str, Split] | None = None,
    timing: TimingSettings | None = None,
    start: Path | None = None,
) -> dict[str, Any]:
    """Train and evaluate `spec`, writing `<out_root>/runs/<run_id>/`. `start`: the checkpoint the model starts
    from, which a pre-trained start needs (`pretrain.start_checkpoint` resolves it; the runner does before the run).

    Bad settings raise ValueError before anything is written. A non-finite loss (or non-finite logits after
    training) fails the run with its reason recorded and returns the record; any other error is recorded, then
    raised. A re-run first removes what an earlier attempt left in the folder, so a record never sits beside
    another attempt's checkpoint or predictions.
    """
    _ = spec.config_hash  # resolving the spec validates its method, model and data keys before anything is written
    if spec.model_params.get("init", "scratch") == "pretrained-synthetic" and start is None:
        raise ValueError(
            f"{spec.run_id}: model.init = 'pretrained-synthetic' starts from the pre-trained checkpoint; resolve it "
            "with benchmark.execute.pretrain.start_checkpoint(spec) and pass it as start="
        )
    method = build_method(spec.method, **spec.method_params)
    if spec.budget and method.budget_labels is None:
        raise ValueError(f"method {spec.method!r} uses no pixel labels (nor group labels): its budget must be 0, "
                         f"got {spec.budget}")
    if spec.budget < method.min_budget:
        raise ValueError(f"method {spec.method!r} needs a budget of at least {method.min_budget}, got {spec.budget}")
    if spec.mask_control != "true" and not method.uses_pixel_labels:
        raise ValueError(f"method {spec.method!r} uses no pixel labels: data.mask_control must be true, got "
                         f"{spec.mask_control!r}")
    if spec.annotation and not method.uses_pixel_labels:
        raise ValueError(f"method {spec.method!r} uses no pixel labels: it takes no annotation type, got "
                         f"{spec.annotation['type']!r}")
    if spec.annotation and spec.annotation["type"] not in method.annotations:
        raise ValueError(f"method {spec.method!r} cannot train with {spec.annotation['type']!r} annotations: "
                         f"{method.annotation_refusal}")
    data = data if data is not None else load_data(spec, data_root)
    if torch.device(device).type == "cuda":  # in-memory splits live on the GPU: batches are built there
        data = {role: s.to(device) if isinstance(s, TensorSplit) else s for role, s in data.items()}
    classes = data["train"].classes
    class_index = _index_of(spec.audited_class, classes, "audited_class")
    chosen, data_info = select_budget(spec, data, class_index, data_root)
    control = annotation = None
    if spec.annotation:  # the budget's masks replaced by their annotation, on a copy of the (shared) split
        train_split, annotation = annotated_split(
            data["train"], chosen, class_index, spec.annotation, budget_seed=spec.budget_seed
        )
        data = {**data, "train": train_split}
    if spec.mask_control != "true":  # a placebo: the budget's masks controlled on a copy of the (shared) split
        train_split, control = controlled_split(
            data["train"], chosen, class_index, spec.mask_control, budget_seed=spec.budget_seed, seed=spec.seed
        )
        data = {**data, "train": train_split}
    out = run_dir(out_root, spec.run_id)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("model.pt", "predictions.csv", "record.json", *(p.name for p in out.glob(".*.tmp"))):
        (out / stale).unlink(missing_ok=True)
    allocator = retain_freed_memory()  # each step reuses freed buffers instead of page-faulting them in again
    if torch.device(device).type == "cuda":  # shapes are fixed within a run: let cuDNN pick each convolution's kernel
        torch.backends.cudnn.benchmark = True
    # this thread; the pool's threads: see benchmark.execute.denormals
    torch.set_flush_denormal(spec.train.flush_denormal)
    host = {"allocator": allocator, "denormals_flushed": flushed_share()}
    record = new_record(spec, "running") | {"environment": environment(device) | host}
    record["started"] = now_iso()
    if data_info is not None:
        record["data"] = data_info
    if control is not None:
        record["mask_control"] = control
    if annotation is not None:
        record["annotation"] = annotation
    record["replicate"] = spec.replicate()
    try:
        write_record(out / "record.json", record)
        torch.manual_seed(spec.seed)
        model = build_model(spec.model, len(classes), **spec.model_params)
        if start is not None:
            fresh = load_start(start, model, len(classes))
            record["pretrained_from"] = start.parent.name  # <cache>/runs/<run_id>/model.pt
            if fresh:
                record["pretrained_fresh"] = fresh
        record["attention"] = attention_info(model, data["train"])
        model = model.to(device)
        if spec.train.channels_last:  # the same math; 1.5-2x faster convolutions and pooling on CPU (oneDNN)
            model = model.to(memory_format=torch.channels_last)
        started = time.perf_counter()
        in_training = chosen if method.budget_in_training else chosen[:0]  # dfr: trained as the baseline is
        if method.fine_tunes:

            def phase(phase_model: SplitModel, phase_method: Method, epochs: int) -> list[dict[str, float]]:
                settings = dataclasses.replace(spec.train, epochs=epochs, diagnostics=False)
                phase_spec = dataclasses.replace(spec, train=settings)
                return fit(phase_model, phase_method, data["train"], chosen[:0], phase_spec, device=device,
                           progress=False, data_root=data_root)  # fmt: skip

            before = method.before_training(model, data["train"], spec, phase=phase, device=device)
            if before is not None:  # e.g. jtt's identification model and error set
                record["before_training"] = before
        record["curve"] = (
            fit(model, method, data["train"], in_training, spec, device=device, progress=progress, data_root=data_root)
            if method.fine_tunes
            else []  # no_finetune: the start, evaluated as it is
        )
        diagnostics_seconds = sum(epoch.get("diagnostics_seconds", 0.0) for epoch in record["curve"])
        record["timings"]["train_seconds"] = time.perf_counter() - started - diagnostics_seconds
        record["timings"]["diagnostics_seconds"] = diagnostics_seconds
        started = time.perf_counter()
        after = method.after_training(model, data["train"], chosen, spec, data_root=data_root, device=device)
        if after is not None:  # e.g. dfr's last-layer refit
            record["after_training"] = after
            record["timings"]["after_training_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        preds = predict(model, data, class_index, spec, device)
        record["timings"]["eval_seconds"] = time.perf_counter() - started
        audited = {role: audited_view(p, class_index) for role, p in preds.items()}
        record["metrics"] = audit_metrics(audited, spec.train.threshold, classes=classes)
        if spec.search:  # a search trial: its scores on the held-out selection splits (benchmark.core.selection)
            record["selection"] = evaluate_selection(model, spec, data_root, device)
        curves = [*record.get("before_training", {}).get("curve", []), *record["curve"]]  # jtt: both phases
        images = sum(epoch["steps_images"] for epoch in curves)
        record["timings"]["train_images_per_s"] = images / record["timings"]["train_seconds"] if images else 0.0
        write_atomic(out / "predictions.csv", predictions_csv(preds, classes))
        record[ROWS_KEY] = row_counts(preds)
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        write_atomic(out / "model.pt", buffer.getvalue())
        if timing is not None and timing.enabled and method.fine_tunes:
            try:
                record["timings"]["throughput"] = throughput(model, method, data["train"], class_index, timing, device)
            except Exception as err:  # timing is not part of the result: the run stays complete
                record["timings"]["throughput_error"] = "".join(traceback.format_exception_only(err)).strip()
        record["status"] = "complete"
    except NonFiniteLoss as err:
        record.update(status="failed", error=str(err))
    except (KeyboardInterrupt, SystemExit) as err:  # stopped, not failed: a re-run of the suite trains it again
        record.update(status="interrupted", error=f"interrupted ({type(err).__name__})")
        raise
    except BaseException as err:
        record.update(
            status="failed",
            error="".join(traceback.format_exception_only(err)).strip(),
            traceback=traceback.format_exc(),
        )
        raise
    finally:
        torch.set_flush_denormal(False)
        record["finished"] = now_iso()
        write_record(out / "record.json", record)
    return record


def fit(
    model: SplitModel,
    method: Method,
    train: Split,
    budget_rows: torch.Tensor,
    spec: RunSpec,
    *,
    device: str = "cpu",
    progress: bool = True,
    data_root: Path | None = None,
) -> list[dict[str, float]]:
    """The method-agnostic training loop; returns per epoch the mean of every loss part and of the method's
    diagnostics (over the steps that report them) and, with `train.diagnostics`, the probes' means and the held-out
    scores after the epoch (`benchmark.execute.diagnostics`; none of it changes the run). File-based splits draw their
    augmentation from a generator of their own, so the order of the batches does not depend on it."""
    settings = spec.train
    generator = torch.Generator().manual_seed(spec.seed)
    augment = torch.Generator().manual_seed(spec.seed + AUGMENT_SEED)
    in_budget = torch.zeros(len(train), dtype=torch.bool)
    in_budget[budget_rows] = True
    steps = math.ceil(len(train) / settings.batch_size)
    optimizer, scheduler = _optimiser(model, settings, steps)
    probe, probe_at = None, set()
    if settings.diagnostics:
        probe, probe_at = (
            probe_batch(model, train, budget_rows, settings.batch_size, spec.seed, device),
            probe_steps(steps),
        )
    heldout = heldout_scored(spec) or method.needs_heldout
    if method.needs_heldout and spec.dataset != synthetic.NAME:
        raise ValueError(f"method {spec.method!r} chooses by the held-out selection splits after every epoch, which "
                         f"only the built-in data ({synthetic.NAME}) draws; dataset {spec.dataset!r} has none")
    curve: list[dict[str, float]] = []
    bar = tqdm(total=settings.epochs * steps, desc=spec.run_id, disable=not progress, leave=False, file=sys.stderr)
    model.train()
    for epoch in range(settings.epochs):
        epoch_start = time.perf_counter()
        probes: dict[str, list[float]] = {}
        n_images = 0
        order = torch.randperm(len(train), generator=generator)
        diagnostics_seconds = 0.0
        losses = _StepLosses()
        for step in range(steps):
            if probe is not None and step in probe_at:
                probe_start = time.perf_counter()
                for key, value in gradient_probe(model, method, probe, epoch=epoch, optimizer=optimizer).items():
                    probes.setdefault(key, []).append(value)
                diagnostics_seconds += time.perf_counter() - probe_start
            rows = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            if settings.mask_batch and budget_rows.numel():
                pick = torch.randperm(budget_rows.numel(), generator=generator)[: settings.mask_batch]
                rows = torch.cat([rows, budget_rows[pick]])
            batch = train.batch(
                rows, has_mask=in_budget[rows], device=device, mean=model.mean, std=model.std, generator=augment
            )
            with autocast(torch.device(device), settings.precision):
                parts = method.training_loss(model, batch, epoch=epoch)
            losses.add(step, parts, rows.numel(), epoch)
            optimizer.zero_grad(set_to_none=True)
            parts["total"].backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if len(losses.pending) == LOSS_READ_EVERY:
                bar.set_postfix(epoch=epoch, loss=f"{losses.read(epoch):.3f}", refresh=False)
            n_images += rows.numel()
            bar.update()
        losses.read(epoch)
        entry = {"epoch": epoch, **losses.means()}
        entry |= {k: float(np.mean(v)) for k, v in probes.items()}
        if scheduler is not None:
            entry["lr"] = float(scheduler.get_last_lr()[0])
        selection = None
        if heldout:
            heldout_start = time.perf_counter()
            selection = evaluate_selection(model, spec, data_root, device)
            entry |= heldout_scores(selection)
            diagnostics_seconds += time.perf_counter() - heldout_start
        method.epoch_end(model, epoch, selection)
        seconds = time.perf_counter() - epoch_start - diagnostics_seconds
        curve.append(entry | {"seconds": seconds, "diagnostics_seconds": diagnostics_seconds, "steps_images": n_images})
    bar.close()
    return curve


class _StepLosses:
    """An epoch's per-step loss parts, kept on the device and read `LOSS_READ_EVERY` steps at a time (and whenever
    the parts change): each read checks every step it holds, so a non-finite loss fails the run naming its step."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, list[str], torch.Tensor, int]] = []
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, step: int, parts: dict[str, torch.Tensor], n: int, epoch: int) -> None:
        if self.pending and self.pending[-1][1] != list(parts):
            self.read(epoch)
        self.pending.append((step, list(parts), torch.stack([v.detach().float() for v in parts.values()]), n))

    def read(self, epoch: int) -> float:
        """Read and check the pending steps with one host synchronisation; returns the last step's total loss."""
        if not self.pending:
            return math.nan
        rows = torch.stack([p[2] for p in self.pending]).tolist()
        for (step, names, _, n), row in zip(self.pending, rows, strict=True):
            values = dict(zip(names, row, strict=True))
            _check_finite(values, epoch, step)
            for key, value in values.items():
                self.sums[key] = self.sums.get(key, 0.0) + value * n
                self.counts[key] = self.counts.get(key, 0) + n
        last = values["total"]
        self.pending.clear()
        return last

    def means(self) -> dict[str, float]:
        return {k: v / self.counts[k] for k, v in self.sums.items()}


def _check_finite(values: dict[str, float], epoch: int, step: int) -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        detail = ", ".join(f"{k}={v}" for k, v in bad.items())
        raise NonFiniteLoss(f"non-finite loss at epoch {epoch}, step {step}: {detail}")


def _index_of(name: str, classes: tuple[str, ...], key: str) -> int:
    if name not in classes:
        raise ValueError(f"{key}: {name!r} is not a class of this dataset; classes: {', '.join(classes)}")
    return classes.index(name)


def _optimiser(
    model: SplitModel, settings: TrainSettings, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    params = model.parameters()
    if settings.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=settings.lr, momentum=0.9, weight_decay=settings.weight_decay)
    scheduler = None
    if settings.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=settings.lr, total_steps=settings.epochs * steps_per_epoch
        )
    return optimizer, scheduler
