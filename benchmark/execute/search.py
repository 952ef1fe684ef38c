"""An equal random hyperparameter search (DomainBed's practice): what each trial of a method entry trains with.

Every method entry of a suite with a `[search]` table gets the same `trials` configurations at each of its budgets,
each run with every seed. Trial 0 is the defaults; trial t > 0 draws every searched hyperparameter from its declared
distribution with a random stream keyed by (search seed, t, method entry, hyperparameter name), so adding a
hyperparameter to a method never changes what is drawn for the others, and raising `trials` keeps the first ones.

Searched are the training settings every method shares (`TRAIN_HPARAMS`; trial 0 takes the suite's `[train]`
values) and the method's `HPARAMS` that declare a distribution (trial 0 takes their defaults), except a value the
suite's method entry sets itself, which stays fixed in every trial, and, when `[search] keys` is given, any name
not listed there (an entry left with nothing to draw runs trial 0 only). Drawn reals are rounded to 3 significant
digits (readable labels; finer is noise). Which trial a report shows is `benchmark.core.selection`'s choice.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np

from benchmark.core.selection_rules import GROUP_VAL_SIZE
from benchmark.core.settings import SearchSettings
from benchmark.core.spec import RunSpec, configuration_key
from benchmark.execute.methods import METHODS, HParam

TRAIN_HPARAMS: dict[str, HParam] = {
    "lr": HParam(3e-3, 1e-4, 1e-2, log=True, doc="learning rate (the one-cycle schedule's peak); trial 0: [train] lr"),
    "weight_decay": HParam(0.0, 1e-6, 1e-2, log=True, doc="weight decay; trial 0: [train] weight_decay"),
}


def searchable(method: str) -> dict[str, HParam]:
    """Every hyperparameter a search may draw for `method`: the shared training settings, then the method's own
    declared distributions."""
    own = {k: h for k, h in METHODS[method].HPARAMS.items() if h.searched}
    return TRAIN_HPARAMS | own


def _stream(seed: int, trial: int, entry: str, name: str) -> np.random.Generator:
    words = [int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "little") for s in (entry, name)]
    return np.random.default_rng(np.random.SeedSequence([seed, trial, *words]))


def _rounded(value: Any) -> Any:
    return float(f"{value:.3g}") if isinstance(value, float) else value


def draw(hparam: HParam, *, seed: int, trial: int, entry: str, name: str) -> Any:
    """The value of one hyperparameter in one trial: its own stream, so nothing else changes it."""
    return _rounded(hparam.sample(_stream(seed, trial, entry, name)))


def trial_values(entry: str, spec: RunSpec, trial: int, settings: SearchSettings) -> dict[str, Any]:
    """The searched names and their values in `trial` for a method entry whose unsearched run is `spec` (trial 0:
    the suite's `[train]` values and the method's defaults). The entry's own parameters are not searched."""
    values: dict[str, Any] = {}
    for name, hparam in searchable(spec.method).items():
        if name in spec.method_params or (settings.keys is not None and name not in settings.keys):
            continue
        if trial == 0:
            values[name] = getattr(spec.train, name) if name in TRAIN_HPARAMS else hparam.default
        else:
            values[name] = draw(hparam, seed=settings.seed, trial=trial, entry=entry, name=name)
    return values


def group_id(entry: str, spec: RunSpec) -> str:
    """The selection group of a method entry's unsearched configuration: `<entry>-b<budget>-<6 hex>`, the hex from
    everything but the seed (so a configuration that differs in data or model is a group of its own)."""
    digest = hashlib.sha256(configuration_key(spec.to_dict()).encode()).hexdigest()[:6]
    return f"{entry}-b{spec.budget}-{digest}"


def expand(entry: str, specs: list[RunSpec], settings: SearchSettings) -> list[RunSpec]:
    """The search over one (method entry, budget): `specs` are its runs without a search (one per seed, same
    configuration); returns, for each trial, each of them with the trial's values, recording the group, the entry,
    the trial index and the values drawn in `spec.search` (and `group_val_size` where it is not the default). An
    entry with nothing to draw (every name fixed or left out by `keys`) has one trial: its other trials would be the
    same runs again."""
    group = group_id(entry, specs[0])
    out = []
    trials = settings.trials if trial_values(entry, specs[0], 0, settings) else 1
    for trial in range(trials):
        values = trial_values(entry, specs[0], trial, settings)
        method_values = {k: v for k, v in values.items() if k not in TRAIN_HPARAMS}
        train_values = {k: v for k, v in values.items() if k in TRAIN_HPARAMS}
        search = {"group": group, "entry": entry, "trial": trial, "hparams": values}
        if settings.group_val_size != GROUP_VAL_SIZE:  # the size `heldout.evaluate` scores worst-group-val at; at
            search["group_val_size"] = settings.group_val_size  # the default left out: earlier trials keep their ids
        for spec in specs:
            out.append(
                dataclasses.replace(
                    spec,
                    method_params=spec.method_params | method_values,
                    train=dataclasses.replace(spec.train, **train_values),
                    search=search,
                )
            )
    return out
