"""`suite.json`: the runner writes, before any run, everything the analysis needs of a suite (every run with its
config hash, spec and keys, the regimes, the search, the audited context, the components' names and colours, a
plugin's metrics), and reads the suite back from it (`benchmark.analyse.results` reads the same file without torch)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from benchmark.core import metric_defs
from benchmark.core.registry import labels
from benchmark.core.store import (
    SUITE_FILE,
    DamagedFile,
    read_json,
    suite_file_hint,
    write_atomic,
)
from benchmark.execute.datasets import registry
from benchmark.execute.reference import setting_key
from benchmark.execute.suites import Suite, SuiteError, from_dict, label_kind


def write_suite_file(suite: Suite, out_root: Path) -> None:
    """`<out_root>/suite.json`: the resolved suite, and under `view` everything the analysis needs to know of it
    without the registries: every run (id, config hash, spec, configuration and pairing keys, reference key), the
    sweep's regimes, the search settings, the audited context, and the names and colours of its components."""
    specs = suite.runs()
    used = {kind: sorted({getattr(s, kind) for s in specs}) for kind in ("method", "model", "dataset")}
    view = {
        "description": suite.description,
        "seeds": list(suite.seeds),
        "audited_class": suite.audited_class,
        "dataset": suite.dataset,
        "dataset_params": suite.dataset_params,
        "context": registry.context_name(suite.dataset, suite.dataset_params),
        "search": asdict(suite.search) if suite.search is not None else None,
        "numeric_axis": suite.numeric_axis(),
        "label_costs": suite.label_costs,
        "regimes": [
            {"label": r.label, "parts": list(r.parts), "settings": r.settings,
             "run_ids": [s.run_id for s in r.suite.runs()]}
            for r in suite.sweep
        ],
        "runs": [
            {"run_id": s.run_id, "config_hash": s.config_hash, "spec": s.to_dict(), "keys": s.keys(),
             "reference": setting_key(s), "label_kind": label_kind(s.method, s.annotation)}
            for s in specs
        ],
        "components": {kind: {name: labels({kind: name})[kind] for name in names} for kind, names in used.items()},
    }
    if declared := metric_defs.declared():  # the plugins' metrics, for an analysis that does not import them
        view["metrics"] = declared
    payload = suite.to_dict() | {"view": view, "written": datetime.now(UTC).isoformat(timespec="seconds")}
    write_atomic(Path(out_root) / SUITE_FILE, json.dumps(payload, indent=2, default=str) + "\n")  # file order kept


def read_suite_file(out_root: Path) -> Suite:
    """The suite a results folder was run with, from its `suite.json`."""
    path = Path(out_root) / SUITE_FILE
    if not path.is_file():
        raise SuiteError(f"{path} not found: not a suite results folder (run `gain-bench run SUITE` first)")
    try:
        payload = read_json(path)
        return from_dict(payload["raw"], source=payload.get("source", ""))
    except DamagedFile as err:
        raise SuiteError(f"{err}: {suite_file_hint(out_root)}") from None
    except (KeyError, TypeError, AttributeError) as err:
        what = f"{type(err).__name__} {err}"
        raise SuiteError(f"{path}: garbled (not a suite file: {what}): {suite_file_hint(out_root)}") from None
