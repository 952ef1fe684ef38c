"""The complete runs of a results folder, as the tables read them (`Run`, `load_runs`: record, predictions and the
audited class), and the names configurations and settings go by; the seeded generator every resampling draws from."""

from __future__ import annotations

import json
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.analyse.names import Names
from benchmark.analyse.results import known_keys, with_keys
from benchmark.analyse.summary import configuration, record_keys
from benchmark.core.predictions import read_predictions
from benchmark.core.settings import MASK_CONTROLS
from benchmark.core.spec import flat_keys
from benchmark.core.store import DamagedFile, read_record, whole_predictions


def config_name(method: str, budget: int, label: str | None = None, display: str | None = None) -> str:
    """ "GAIN_ext-78" (`display`: the method's display name, default its name), and whatever a configuration's label
    adds after its method and budget (e.g. " masked_bn=eval"): a configuration's name in the report and the
    verdict."""
    return Names({method: {"display": display}} if display else {}).config(method, budget, label)


def row_name(row: dict[str, Any]) -> str:
    """A table row's configuration name: the `name` the tables give it (`config_names`), or, in a table that carries
    none, "GAIN_ext-78" and its label's parameters (`config_name`)."""
    if isinstance(row.get("name"), str):
        return row["name"]
    return config_name(row["method"], int(row["budget"]), row.get("label"), row.get("display"))


@dataclass(frozen=True)
class Run:
    """One complete run: its record, its per-role predictions and the audited class's column."""

    record: dict[str, Any]
    preds: dict[str, dict[str, np.ndarray]]
    classes: tuple[str, ...]
    class_index: int
    config: str
    label: str

    @property
    def spec(self) -> dict[str, Any]:
        return self.record["spec"]

    @property
    def threshold(self) -> float:
        return float(self.record["metrics"].get("threshold", self.spec.get("train", {}).get("threshold", 0.5)))

    def decision(self, role: str) -> np.ndarray:
        return self.preds[role]["scores"][:, self.class_index] >= self.threshold

    def column(self, role: str, key: str) -> np.ndarray:
        return self.preds[role][key][:, self.class_index]


def load_runs(
    roots: list[Path], *, run_ids: Collection[str] | None = None, short: bool = False
) -> tuple[list[Run], pd.DataFrame]:
    """Complete runs with their predictions under `<root>/runs/*/`, and a table of the runs left out and why.

    `run_ids` keeps only those runs (a suite's report reads the runs of the suite as it is now, not folders left by
    earlier configurations); `short` labels configurations by method, budget and method parameters only. A damaged
    record, or a complete record whose predictions are missing, cut off or garbled (`store.whole_predictions`), is
    left out as `damaged` with the file and the reason; a record of an unknown schema raises ValueError naming it.
    """
    runs: list[Run] = []
    excluded: list[dict[str, Any]] = []
    seen: set[str] = set()
    for root in roots:
        keys = known_keys(root)
        for path in sorted(Path(root).glob("runs/*/record.json")):
            if run_ids is not None and path.parent.name not in run_ids:
                continue
            try:
                record = with_keys(read_record(path), keys)
            except DamagedFile as err:
                row = {"run_id": path.parent.name, "config": "", "label": ""}
                excluded.append(row | {"path": str(path), "kind": "damaged", "reason": str(err)})
                continue
            config, label = configuration(record, short)
            row = {"run_id": record.get("run_id", path.parent.name), "config": config, "label": label}
            predictions = path.parent / "predictions.csv"
            if record.get("status") != "complete":
                kind = "incomplete or failed"
                reason = f"status {record.get('status')!r}" + (f": {record['error']}" if record.get("error") else "")
            elif not predictions.exists():
                kind, reason = "without predictions", "no predictions.csv"
            elif problem := whole_predictions(predictions, record):
                kind, reason = "damaged", f"{predictions}: {problem}"
            elif row["run_id"] in seen:
                kind, reason = "duplicate", f"duplicate of run {row['run_id']} (first one kept)"
            else:
                preds, classes = read_predictions(predictions)
                audited = record["spec"].get("audited_class", "boat")
                if audited in classes:
                    seen.add(row["run_id"])
                    runs.append(Run(record, preds, classes, classes.index(audited), config, label))
                    continue
                kind, reason = (
                    "unknown audited class",
                    f"audited class {audited!r} not among the classes of {predictions}",
                )
            excluded.append(row | {"path": str(path), "kind": kind, "reason": reason})
    return runs, pd.DataFrame(excluded, columns=["run_id", "config", "label", "path", "kind", "reason"])


def run_columns(run: Run) -> dict[str, Any]:
    spec = run.spec
    return {
        "run_id": run.record["run_id"],
        "config": run.config,
        "label": run.label,
        "method": spec["method"],
        "budget": spec["budget"],
        "seed": spec["seed"],
    }


def method_names_of(runs: list[Run], names: Names | None) -> Names:
    found = Names.of_records(r.record for r in runs)
    return names.merged(found) if names is not None else found


def by_configuration(runs: list[Run], names: Names) -> dict[str, list[Run]]:
    """Configurations in the registry's order of methods (baseline first), budgets ascending, the true masks before
    their placebo-mask controls (so a report's verdict is about a true-mask configuration)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.config, []).append(run)
    ordered = sorted(
        groups.items(),
        key=lambda kv: (
            names.rank(kv[1][0].spec["method"]),
            kv[1][0].spec["budget"],
            mask_control(kv[1][0].spec) != TRUE_MASKS,
            kv[1][0].label,
        ),
    )
    return {k: sorted(v, key=lambda r: r.spec["seed"]) for k, v in ordered}


def config_names(runs: list[Run], names: Names | None = None) -> dict[str, str]:
    """One name per configuration, for every table, figure and sentence: the method's display name and budget
    ("GAIN_ext-78"), plus only those of its label's parameters that tell it apart from the other configurations of
    that name ("GAIN masked_bn=eval" beside "GAIN masked_bn=batch"; "GAIN" where it is the only one); numbered only
    where even those agree."""
    names = method_names_of(runs, names)
    parts: dict[str, tuple[str, list[str]]] = {}
    for config, group in by_configuration(runs, names).items():
        spec, label = group[0].spec, group[0].label
        own = spec["method"] + (f"-{int(spec['budget'])}" if spec["budget"] else "")
        base = config_name(spec["method"], spec["budget"], display=names.display(spec["method"]))
        parts[config] = (base, label[len(own) :].split() if label.startswith(own) else [])
    out: dict[str, str] = {}
    for config, (base, extras) in parts.items():
        peers = [e for b, e in parts.values() if b == base]
        common = set.intersection(*(set(e) for e in peers))
        name = " ".join([base, *(t for t in extras if t not in common)])
        clashes = sum(n == name or n.startswith(f"{name} (") for n in out.values())
        out[config] = f"{name} ({clashes + 1})" if clashes else name
    return out


def config_columns(config: str, first: Run, names: Names, short: dict[str, str]) -> dict[str, Any]:
    """The columns that name a configuration in a table's row: its key, label, method (with its display name), its
    one name (`config_names`) and budget, from its first run."""
    method = first.spec["method"]
    return {"config": config, "label": first.label, "method": method, "display": names.display(method),
            "name": short[config], "budget": first.spec["budget"]}  # fmt: skip


def seeded_rng(seed: int, *keys: str) -> np.random.Generator:
    """The generator of one comparison: seeded by `seed` and what is compared, so a table's numbers do not depend
    on the order its rows are computed in."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def short_names(labels: list[str]) -> dict[str, str]:
    """Each configuration label less the settings every label shares (its first token, the method, always kept)."""
    tokens = {label: str(label).split() for label in labels}
    shared = set.intersection(*(set(t[1:]) for t in tokens.values())) if tokens else set()
    return {
        label: " ".join(t for i, t in enumerate(words) if i == 0 or t not in shared) for label, words in tokens.items()
    }


def setting_labels(keys: list[str]) -> dict[str, str]:
    """A short label per setting (a pairing key: what the configurations compared with one baseline share): the
    settings in which it differs from the others ("rho=0.9 init=scratch"); "" when there is one."""
    if len(keys) < 2:
        return dict.fromkeys(keys, "")
    try:
        flat = [flat_keys(json.loads(k)) for k in keys]
    except ValueError:
        return {k: f"setting {i + 1}" for i, k in enumerate(keys)}
    paths = list(dict.fromkeys(p for f in flat for p in f))
    differ = [p for p in paths if len({json.dumps(f.get(p), sort_keys=True, default=str) for f in flat}) > 1]
    pairs = list(zip(keys, flat, strict=True))
    labels = {k: " ".join(f"{p.rsplit('.', 1)[-1]}={f.get(p, '-')}" for p in differ) for k, f in pairs}
    if len(set(labels.values())) < len(keys):  # two paths ending alike: the full paths
        labels = {k: " ".join(f"{p}={f.get(p, '-')}" for p in differ) for k, f in pairs}
    return labels


def by_setting(runs: list[Run], names: Names | None) -> dict[str, dict[str, list[Run]]]:
    """The configurations (key: their runs) of each setting, by pairing key (what the configurations compared with
    one baseline share; a sweep's regimes are different settings), in the runs' order."""
    settings: dict[str, dict[str, list[Run]]] = {}
    for config, group in by_configuration(runs, method_names_of(runs, names)).items():
        settings.setdefault(record_keys(group[0].record)["pairing"], {})[config] = group
    return settings


TRUE_MASKS = MASK_CONTROLS[0]  # "true"


PLACEBOS = MASK_CONTROLS[1:]  # what `table --view content --control` can hold the true masks against


def mask_control(spec: dict[str, Any]) -> str:
    """A record's placebo-mask control (`spec["mask_control"]`; absent: the true masks)."""
    return str(spec.get("mask_control", TRUE_MASKS))
