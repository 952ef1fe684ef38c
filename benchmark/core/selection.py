"""Which trial of a hyperparameter search a report shows: a named selection rule, scored on held-out data that is
neither a test split nor the reported `val` split (DomainBed's practice: the rule is part of the result).

- `in-distribution-val` (the realistic default): the mean average precision over every class on a held-out
  in-distribution split, drawn by the generator like `val` (same bias) but from its own seed. It reads no image and
  no label of any shifted group.
- `worst-group-val` (realistic, with a few group labels): the lowest accuracy of the four (class x context) groups
  on a small group-labelled validation split, `[search] group_val_size` images (default 78: 20/20/19/19) drawn
  group-balanced by a fixed seed from the same held-out data (the majority groups from its in-distribution split,
  the shifted groups from its shifted splits), so disjoint from every test split. Selecting on worst-group
  validation accuracy with a few group labels is the common practice of the subpopulation-shift literature (Sagawa
  et al., ICLR 2020; Yang et al., SubpopBench, ICML 2023).
- `oracle` (an upper bound): the worse of the two shifted-group accuracies (class without context, context without
  class) on held-out shifted groups drawn from that same separate seed, so disjoint from the test groups. It peeks
  at the very shift the test measures, with every held-out shifted image, so its numbers say how good a method
  could look, not how good it is.

Every trial run scores every rule's selection data after training (`evaluate`, into the record's `selection`), so
changing the rule re-selects without retraining, and one search is read with each rule (`select_rules`): the
suite's `[search] rule` chooses the headline trials, the report and `gain-bench table --rule` show the others,
always naming the rule. A record made before a rule existed lacks its entry: the rule cannot choose its trial, and
`unrecorded_note` says so. A trial's score is the mean over its seeds; a trial is eligible once every
seed is complete with a finite score (a failed seed rules it out); the highest score wins, ties going to the lower
trial index. `score_of` reads a record's `selection[rule]` and nothing else, so the test metrics and predictions of
the trials never enter a choice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from benchmark.core.selection_rules import RULES
from benchmark.core.spec import RunSpec
from benchmark.core.store import COMPLETE, FAILED, run_state


class Searched(Protocol):
    """What selection reads of a suite (`suites.Suite` where it runs, `results.SuiteView` where it is analysed):
    its `search` settings (None without one) and its runs with their config hashes."""

    search: Any

    def runs(self) -> list[RunSpec]: ...


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
    unrecorded: tuple[int, ...] = ()  # seeds complete but without the rule's entry (recorded before the rule existed)

    @property
    def score(self) -> float | None:
        """Mean score over the seeds; None unless every seed is complete with a finite score."""
        incomplete = self.failed or self.waiting or self.unrecorded
        return None if incomplete or not self.scores else float(np.mean(self.scores))


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

    @property
    def unrecorded(self) -> int:
        """Runs complete without the rule's entry (recorded before the rule existed): their trials cannot be
        chosen."""
        return sum(len(t.unrecorded) for t in self.trials)


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
        scores, failed, waiting, unrecorded = [], [], [], []
        for spec, record in members:
            score = score_of(record, rule) if record is not None else None
            if score is not None:
                scores.append(score)
            elif record is not None and record.get("status") == COMPLETE and rule not in record.get("selection", {}):
                unrecorded.append(spec.seed)
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
                unrecorded=tuple(unrecorded),
            )
        )
    return {g: Selection(g, rule, tuple(sorted(ts, key=lambda t: t.trial))) for g, ts in groups.items()}


def _trial_runs(suite: Searched, out_root: Path) -> list[tuple[RunSpec, dict[str, Any] | None]]:
    runs = []
    for spec in suite.runs():
        state, record = run_state(out_root, spec.run_id, spec.config_hash)
        runs.append((spec, record if state in (COMPLETE, FAILED) else None))
    return runs


def select_suite(suite: Searched, out_root: Path, rule: str | None = None) -> dict[str, Selection]:
    """`rule` (default: the suite's `[search] rule`) applied to what its results folder holds now (empty without a
    `[search]`)."""
    if suite.search is None:
        return {}
    return choose(_trial_runs(suite, out_root), rule or suite.search.rule)


def select_rules(suite: Searched, out_root: Path) -> dict[str, dict[str, Selection]]:
    """One search read with several rules: the suite's own rule first, then every other rule that at least one
    run's record holds (a rule no record holds, say one added after the runs, is left out); empty without a
    `[search]`. The records are read once."""
    if suite.search is None:
        return {}
    runs = _trial_runs(suite, out_root)
    held = {rule for _, record in runs if record is not None for rule in record.get("selection", {})}
    rules = [suite.search.rule, *(r for r in RULES if r != suite.search.rule and r in held)]
    return {rule: choose(runs, rule) for rule in rules}


def unrecorded_note(rule: str, selections: dict[str, Selection]) -> str | None:
    """What to say when some complete runs lack `rule`'s score (records made before the rule existed), else None."""
    runs = sum(s.unrecorded for s in selections.values())
    if not runs:
        return None
    trials = sum(bool(t.unrecorded) for s in selections.values() for t in s.trials)
    return (
        f"selection rule {rule} was not recorded for {runs} complete run(s) of {trials} trial(s) (recorded before "
        f"the rule existed): {rule} cannot choose those trials; read the search with a rule they hold (--rule "
        f"{', '.join(r for r in RULES if r != rule)}), or delete their run folders to train them again"
    )


def reported_specs(
    suite: Searched, out_root: Path, selections: dict[str, Selection] | None = None, rule: str | None = None
) -> list[RunSpec]:
    """The runs a report's tables, figures and timings read: all of a suite without a search; with one, only the
    trial chosen by `rule` (default: the suite's) of each group (none yet for a group without an eligible trial).
    `selections`: that rule's `select_suite`, when already at hand."""
    if suite.search is None:
        return suite.runs()
    selections = select_suite(suite, out_root, rule) if selections is None else selections
    chosen = {(g, s.chosen.trial) for g, s in selections.items() if s.chosen is not None}
    return [spec for spec in suite.runs() if (spec.search["group"], spec.trial) in chosen]


def trials_table(selections: dict[str, Selection]) -> pd.DataFrame:
    """Every trial with its selection score and whether it was chosen (`results_trials.csv`, one row per rule and
    trial when the report reads the search with several rules): the selection's evidence, never test numbers."""
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
                    "seeds_unrecorded": len(t.unrecorded),
                    "chosen": chosen is not None and t.trial == chosen.trial,
                    **t.hparams,
                }
            )
    return pd.DataFrame(rows)
