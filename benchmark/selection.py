"""Which trial of a hyperparameter search a report shows: a named selection rule, scored on held-out data that is
neither a test split nor the reported `val` split (DomainBed's practice: the rule is part of the result).

- `in-distribution-val` (the realistic default): the mean average precision over every class on a held-out
  in-distribution split, drawn by the generator like `val` (same bias) but from its own seed. It reads no image and
  no label of any shifted group.
- `oracle` (an upper bound): the worse of the two shifted-group accuracies (class without context, context without
  class) on held-out shifted groups drawn from that same separate seed, so disjoint from the test groups. It peeks
  at the very shift the test measures, so its numbers say how good a method could look, not how good it is.

Every trial run scores both selection splits after training (`evaluate`, into the record's `selection`), so changing
the rule re-selects without retraining. A trial's score is the mean over its seeds; a trial is eligible once every
seed is complete with a finite score (a failed seed rules it out); the highest score wins, ties going to the lower
trial index. `score_of` reads a record's `selection[rule]` and nothing else, so the test metrics and predictions of
the trials never enter a choice.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from benchmark.datasets import synthetic
from benchmark.metrics import auroc, mean_average_precision
from benchmark.spec import RunSpec
from benchmark.store import COMPLETE, FAILED, run_state

if TYPE_CHECKING:
    from benchmark.datasets.tensors import TensorSplit
    from benchmark.models import SplitModel
    from benchmark.suites import Suite


@dataclass(frozen=True)
class Rule:
    """A selection rule: the roles of the held-out data it reads, the metric it maximises, and whether its result is
    an upper bound (it sees the shift) rather than a realistic estimate."""

    name: str
    roles: tuple[str, ...]
    metric: str
    upper_bound: bool
    doc: str


RULES: dict[str, Rule] = {
    "in-distribution-val": Rule(
        "in-distribution-val",
        ("val",),
        "val_map",
        False,
        "mean average precision over every class on a held-out in-distribution split (the training bias, its own "
        "seed); no shifted-group image or label is read",
    ),
    "oracle": Rule(
        "oracle",
        ("class_without_context", "context_without_class"),
        "worst_shifted_group_accuracy",
        True,
        "the worse of the two shifted-group accuracies on held-out shifted groups (their own seed, disjoint from the "
        "test groups); an upper bound, since it selects on the shift the test measures",
    ),
}
SEED_OFFSET = 2_000_003  # the selection data's generator seed = the evaluation data's seed + this


def selection_config(config: synthetic.SyntheticConfig) -> synthetic.SyntheticConfig:
    """The held-out selection data: the same generator settings (bias, sizes of val and the shifted groups) from
    its own seed, so none of its images is a test or `val` image; its train and counterfactual splits are not used
    (one image each)."""
    return dataclasses.replace(config, seed=config.seed + SEED_OFFSET, n_train=1, n_counterfactual=1)


def ensure_data(dataset: str, params: dict[str, Any], data_root: Path | None = None) -> Path:
    """Generate the selection data of a run's dataset once (before the runs, so workers do not race to do it)."""
    return synthetic.ensure_generated(selection_config(synthetic.data_config(dataset, params)), data_root)


@functools.lru_cache(maxsize=4)
def _splits(dataset: str, params_json: str, data_root: str | None, rule: str) -> dict[str, TensorSplit]:
    folder = ensure_data(dataset, json.loads(params_json), Path(data_root) if data_root else None)
    return {role: synthetic.load_split(folder, synthetic.ROLES[role]) for role in RULES[rule].roles}


def load_splits(spec: RunSpec, rule: str, data_root: Path | None = None) -> dict[str, TensorSplit]:
    """The held-out splits `rule` reads, by role (loaded once per process)."""
    params = json.dumps(spec.dataset_params, sort_keys=True)
    return _splits(spec.dataset, params, str(data_root) if data_root else None, rule)


def _logits(model: SplitModel, split: TensorSplit, batch_size: int, device: str) -> torch.Tensor:
    chunks = []
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(split)))
            batch = split.batch(rows, device=device, mean=model.mean, std=model.std)
            chunks.append(model(batch["image"]).float().cpu())
    return torch.cat(chunks)


def in_distribution_metrics(logits: torch.Tensor, labels: torch.Tensor, class_index: int, threshold: float) -> dict:
    """`val_map` (the rule's metric) and the audited class's accuracy, from held-out in-distribution logits."""
    scores = torch.sigmoid(logits).numpy()
    truth = labels.numpy()
    val_map, _ = mean_average_precision(scores, truth)
    decided = scores[:, class_index] >= threshold
    return {"val_map": val_map, "val_accuracy": float(np.mean(decided == (truth[:, class_index] > 0.5)))}


def oracle_metrics(with_class: torch.Tensor, without_class: torch.Tensor, class_index: int, threshold: float) -> dict:
    """The two shifted-group accuracies, the worse of them (the rule's metric) and their AUROC, from the logits of
    held-out class-without-context and context-without-class images."""
    positive, negative = with_class[:, class_index], without_class[:, class_index]
    cwc = float(np.mean(torch.sigmoid(positive).numpy() >= threshold))
    xwc = float(np.mean(torch.sigmoid(negative).numpy() < threshold))
    return {
        "class_without_context": cwc,
        "context_without_class": xwc,
        "worst_shifted_group_accuracy": min(cwc, xwc),
        "shifted_auroc": auroc(positive.numpy(), negative.numpy()),
    }


def evaluate(model: SplitModel, spec: RunSpec, data_root: Path | None = None, device: str = "cpu") -> dict:
    """Every rule's selection metrics for a trained search trial (`train.run` stores them as `record["selection"]`);
    each rule's entry comes from its own held-out splits only."""
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, Any]] = {}
    threshold = spec.train.threshold
    for name, rule in RULES.items():
        splits = load_splits(spec, name, data_root)
        class_index = next(iter(splits.values())).classes.index(spec.audited_class)
        logits = {role: _logits(model, split, spec.train.eval_batch_size, device) for role, split in splits.items()}
        if name == "in-distribution-val":
            metrics = in_distribution_metrics(logits["val"], splits["val"].labels, class_index, threshold)
        else:
            metrics = oracle_metrics(*(logits[r] for r in rule.roles), class_index, threshold)
        splits_used = {role: len(split) for role, split in splits.items()}
        out[name] = {"metric": rule.metric, "images": splits_used, **metrics}
    model.train(was_training)
    return out


def score_of(record: dict[str, Any], rule: str) -> float | None:
    """The rule's selection score of a complete run: `record["selection"][rule][metric]` and nothing else of the
    record (no test metric, no prediction); None for a run that is not complete or has no finite score."""
    if record.get("status") != COMPLETE:
        return None
    value = record.get("selection", {}).get(rule, {}).get(RULES[rule].metric)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


@dataclass(frozen=True)
class Trial:
    """One trial of one selection group: its runs (one per seed) and their selection scores."""

    group: str
    entry: str
    method: str
    budget: int
    trial: int
    hparams: dict[str, Any]
    run_ids: tuple[str, ...]
    scores: tuple[float, ...]  # of the seeds with a score
    failed: tuple[int, ...]  # seeds whose run failed (or completed without a finite score)
    waiting: tuple[int, ...]  # seeds not complete yet (not run or running)

    @property
    def score(self) -> float | None:
        """Mean score over the seeds; None unless every seed is complete with a finite score."""
        return None if self.failed or self.waiting or not self.scores else float(np.mean(self.scores))


@dataclass(frozen=True)
class Selection:
    """A selection group's trials and the rule's choice among them."""

    group: str
    rule: str
    trials: tuple[Trial, ...]

    @property
    def chosen(self) -> Trial | None:
        """The eligible trial with the highest score (ties: the lower index); None while none is eligible."""
        eligible = [t for t in self.trials if t.score is not None]
        return max(eligible, key=lambda t: (t.score, -t.trial)) if eligible else None

    @property
    def final(self) -> bool:
        """No trial waits for a run: more runs cannot change the choice."""
        return not any(t.waiting for t in self.trials)


def choose(runs: Iterable[tuple[RunSpec, dict[str, Any] | None]], rule: str) -> dict[str, Selection]:
    """The rule's choice in every search group, from each trial run's spec and record (None: no record yet).
    A record is read only through `score_of`."""
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; allowed: {', '.join(RULES)}")
    by_trial: dict[tuple[str, int], list[tuple[RunSpec, dict[str, Any] | None]]] = {}
    for spec, record in runs:
        if spec.search:
            by_trial.setdefault((spec.search["group"], spec.search["trial"]), []).append((spec, record))
    groups: dict[str, list[Trial]] = {}
    for (group, index), members in by_trial.items():
        members.sort(key=lambda m: m[0].seed)
        first = members[0][0]
        scores, failed, waiting = [], [], []
        for spec, record in members:
            score = score_of(record, rule) if record is not None else None
            if score is not None:
                scores.append(score)
            elif record is not None and record.get("status") in (FAILED, COMPLETE):
                failed.append(spec.seed)  # failed, or complete without a finite score: never eligible
            else:
                waiting.append(spec.seed)
        groups.setdefault(group, []).append(
            Trial(
                group=group,
                entry=first.search["entry"],
                method=first.method,
                budget=first.budget,
                trial=index,
                hparams=dict(first.search["hparams"]),
                run_ids=tuple(m[0].run_id for m in members),
                scores=tuple(scores),
                failed=tuple(failed),
                waiting=tuple(waiting),
            )
        )
    return {g: Selection(g, rule, tuple(sorted(ts, key=lambda t: t.trial))) for g, ts in groups.items()}


def select_suite(suite: Suite, out_root: Path) -> dict[str, Selection]:
    """The suite's rule applied to what its results folder holds now (empty without a `[search]`)."""
    if suite.search is None:
        return {}
    runs = []
    for spec in suite.runs():
        state, record = run_state(out_root, spec.run_id, spec.config_hash)
        runs.append((spec, record if state in (COMPLETE, FAILED) else None))
    return choose(runs, suite.search.rule)


def reported_specs(suite: Suite, out_root: Path, selections: dict[str, Selection] | None = None) -> list[RunSpec]:
    """The runs a report's tables, figures and timings read: all of a suite without a search; with one, only the
    chosen trial's runs of each group (none yet for a group without an eligible trial). `selections`: the suite's
    `select_suite`, when already at hand."""
    if suite.search is None:
        return suite.runs()
    selections = select_suite(suite, out_root) if selections is None else selections
    chosen = {(g, s.chosen.trial) for g, s in selections.items() if s.chosen is not None}
    return [spec for spec in suite.runs() if (spec.search["group"], spec.trial) in chosen]


def trials_table(selections: dict[str, Selection]) -> pd.DataFrame:
    """Every trial with its selection score and whether it was chosen (`results_trials.csv`): the selection's
    evidence, never test numbers."""
    rows = []
    for selection in selections.values():
        chosen = selection.chosen
        for t in selection.trials:
            rows.append(
                {
                    "group": t.group,
                    "entry": t.entry,
                    "method": t.method,
                    "budget": t.budget,
                    "trial": t.trial,
                    "rule": selection.rule,
                    "metric": RULES[selection.rule].metric,
                    "selection_score": t.score,
                    "seeds_scored": len(t.scores),
                    "seeds_failed": len(t.failed),
                    "seeds_waiting": len(t.waiting),
                    "chosen": chosen is not None and t.trial == chosen.trial,
                    **t.hparams,
                }
            )
    return pd.DataFrame(rows)
