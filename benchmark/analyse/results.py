"""The results reader: a suite results folder as the analysis sees it, from its files alone.

`suite.json` (written by the runner before any run, `suite_file.write_suite_file`) lists every run of the suite with
its config hash, spec and keys, the sweep's regimes, the search settings, the audited context and the names and
colours of the methods; `runs/<run_id>/record.json` says what became of each run. Nothing here resolves a spec,
looks up a registry, imports a plugin or torch, or opens a checkpoint or a data set: a report renders on any
machine from the folder alone.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.core import metric_defs
from benchmark.core.selection_rules import GROUP_VAL_SIZE
from benchmark.core.spec import RunSpec
from benchmark.core.store import (
    COMPLETE,
    CONFLICT,
    DAMAGED,
    FAILED,
    GALLERY_MEND,
    REFERENCE_FILE,
    SUITE_FILE,
    THROUGHPUT_FILE,
    DamagedFile,
    inspect_run,
    read_gallery_files,
    read_json,
    read_references,
    suite_file_hint,
    throughput_rows,
)
from benchmark.core.store import (
    representatives as store_representatives,
)

RERUN = "`gain-bench run` trains it again"


class ResultsError(ValueError):
    """A folder that is not a suite results folder, or one written before the analysis could read it alone."""


@dataclass(frozen=True)
class SearchView:
    """A suite's `[search]` as run: trials per entry, the selection rule, the draws' seed, the keys searched, the
    size of `worst-group-val`'s group-labelled split (a folder written before it: the default)."""

    trials: int
    rule: str
    seed: int = 0
    keys: tuple[str, ...] | None = None
    group_val_size: int = GROUP_VAL_SIZE


@dataclass(frozen=True)
class RegimeView:
    """One regime of a sweep (the whole suite without one): its label, the label per axis, the keys it sets, and
    the ids of its runs."""

    label: str
    parts: tuple[str, ...]
    settings: dict[str, Any]
    run_ids: frozenset[str]


@dataclass(frozen=True)
class PlannedRun:
    """A run of the suite and what its folder holds now (`store.inspect_run`): its state, its record, and what is
    wrong with it, if anything (the file and the reason)."""

    spec: RunSpec
    state: str
    record: dict[str, Any] | None
    problem: str = ""


@dataclass(frozen=True)
class SuiteView:
    """What the analysis knows of a suite: `suite.json` as the runner wrote it."""

    name: str
    source: str
    digest: str
    description: str
    seeds: tuple[int, ...]
    audited_class: str
    dataset: str
    dataset_params: dict[str, Any]
    context: str
    timing: dict[str, Any]
    search: SearchView | None
    numeric_axis: str | None
    sweep: tuple[RegimeView, ...]
    entries: tuple[dict[str, Any], ...]
    components: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    label_costs: dict[str, float] = field(default_factory=dict)  # seconds per image by label kind ({}: unrecorded)

    def label_time(self) -> dict[str, tuple[str, int, float]]:
        """Run id -> (what its budget's labels are, how many images, their annotation seconds) for every run that
        pays for labels (`[label_costs]`; `suites.label_kind`), where the folder recorded them."""
        out = {}
        for entry in self.entries:
            kind = entry.get("label_kind")
            if kind is not None and kind in self.label_costs:
                budget = int(entry["spec"].get("budget", 0))
                out[entry["run_id"]] = (kind, budget, budget * float(self.label_costs[kind]))
        return out

    def config_label_time(self, config_of: dict[str, str]) -> dict[str, tuple[str, int, float]]:
        """Configuration -> `label_time` of its runs (`config_of`: run id -> configuration, as the tables key them;
        a configuration's runs share its budget and label kind)."""
        time = self.label_time()
        return {config: time[run_id] for run_id, config in config_of.items() if run_id in time}

    def runs(self) -> list[RunSpec]:
        """Every run of the suite, in the suite's order, with the config hash it runs under."""
        return [RunSpec.from_record(e["spec"], e["config_hash"]) for e in self.entries]

    def regimes(self) -> tuple[RegimeView, ...]:
        """The sweep's regimes in axis order; a suite without `[sweep]` is one regime labelled ""."""
        return self.sweep or (RegimeView("", (), {}, frozenset(e["run_id"] for e in self.entries)),)

    def keys(self, run_id: str) -> dict[str, str]:
        """The run's configuration and pairing keys."""
        return self._by_id[run_id]["keys"]

    def reference_key(self, run_id: str) -> str:
        """The key of the run's data and model setting in `reference.json`."""
        return self._by_id[run_id]["reference"]

    @functools.cached_property
    def _by_id(self) -> dict[str, dict[str, Any]]:
        return {e["run_id"]: e for e in self.entries}

    def configurations(self, specs: list[RunSpec] | None = None) -> list[list[RunSpec]]:
        """`specs` (default: every run) grouped by configuration in the suite's order, each by ascending seed."""
        groups: dict[str, list[RunSpec]] = {}
        for spec in self.runs() if specs is None else specs:
            groups.setdefault(self.keys(spec.run_id)["configuration"], []).append(spec)
        return [sorted(g, key=lambda s: s.seed) for g in groups.values()]


def read_suite(out_root: Path) -> SuiteView:
    """The suite of a results folder, from its `suite.json`; a folder without one, or with one written before the
    analysis could read it alone (no `view`), is a ResultsError that says what to do."""
    path = Path(out_root) / SUITE_FILE
    if not path.is_file():
        raise ResultsError(f"{path} not found: not a suite results folder (run `gain-bench run SUITE` first)")
    try:
        payload = read_json(path)
    except DamagedFile as err:
        raise ResultsError(f"{err}: {suite_file_hint(out_root)}") from None
    if isinstance(payload, dict) and payload.get("view") is None:
        raise ResultsError(
            f"{path} was written by an earlier gain-bench and lists no runs: run `gain-bench report {out_root}` once "
            "where gain-bench is installed with torch (and the suite's plugins) to rewrite it"
        )
    try:
        return _suite_view(payload)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        what = f"no {err} where a suite file has one" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"
        raise ResultsError(f"{path}: garbled ({what}): {suite_file_hint(out_root)}") from None


def _suite_view(payload: dict[str, Any]) -> SuiteView:
    view = payload["view"]
    metric_defs.declare(view.get("metrics", ()))  # a plugin's metrics, known here without the plugin
    search = view.get("search")
    for entry in view["runs"]:
        _ = entry["run_id"], entry["config_hash"], entry["spec"]["method"], entry["keys"]["configuration"]
    return SuiteView(
        name=payload["name"],
        source=payload.get("source", ""),
        digest=payload.get("digest", ""),
        description=view.get("description", ""),
        seeds=tuple(view.get("seeds", ())),
        audited_class=view["audited_class"],
        dataset=view["dataset"],
        dataset_params=dict(view.get("dataset_params", {})),
        context=view.get("context", "context"),
        timing=dict(payload.get("timing", {})),
        search=SearchView(**(search | {"keys": tuple(search["keys"]) if search.get("keys") else None}))
        if search
        else None,
        numeric_axis=view.get("numeric_axis"),
        sweep=tuple(
            RegimeView(r["label"], tuple(r["parts"]), dict(r["settings"]), frozenset(r["run_ids"]))
            for r in view.get("regimes", [])
        ),
        entries=tuple(view["runs"]),
        components=view.get("components", {}),
        label_costs=dict(view.get("label_costs", {})),
    )


def known_keys(out_root: Path) -> dict[str, dict[str, Any]]:
    """Run id -> what the folder's `suite.json` knows of it that a record written before records carried it lacks:
    its `keys` (configuration and pairing) and its `components` (its method's, model's and dataset's names, colours
    and ranks). {} without a list."""
    try:
        view = json.loads((Path(out_root) / SUITE_FILE).read_text()).get("view")
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}
    return _known(view.get("runs", []), view.get("components", {})) if isinstance(view, dict) else {}


def _known(entries: Iterable[dict[str, Any]], labels: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`known_keys` from `suite.json`'s run entries and component labels."""
    out: dict[str, dict[str, Any]] = {}
    for entry in entries:
        spec = entry.get("spec", {})
        components = {kind: labels[kind][spec[kind]] for kind in ("method", "model", "dataset")
                      if spec.get(kind) in labels.get(kind, {})}  # fmt: skip
        out[entry["run_id"]] = {"keys": entry.get("keys"), "components": components}
    return out


def with_keys(record: dict[str, Any], known: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`record` with its keys and components: its own, or those `suite.json` lists for it (`known_keys`; a record
    written before records carried them)."""
    for field_name, value in known.get(record.get("run_id"), {}).items():
        if field_name not in record and value:
            record[field_name] = value
    return record


def planned(suite: SuiteView, out_root: Path) -> list[PlannedRun]:
    """Each run of the suite with its state, record and problem (`store.inspect_run`)."""
    out = []
    known = _known(suite.entries, suite.components)
    for spec in suite.runs():
        state, record, problem = inspect_run(out_root, spec.run_id, spec.config_hash)
        record = with_keys(record, known) if record is not None and state not in (CONFLICT, DAMAGED) else None
        out.append(PlannedRun(spec, state, record, problem))
    return out


def folder_problems(out_root: Path) -> list[tuple[str, str]]:
    """The suite-level files of a results folder that are there but cannot be read, each with what is wrong, what
    the report does without it and what mends it: (file, reason). A file that is not there is no problem (a sweep's
    or a SLURM suite's folder has no gallery by design); the gallery's two files are listed as one."""
    out = []
    for name, read, then in (
        (THROUGHPUT_FILE, lambda: throughput_rows(out_root, set()),
         ": the report leaves the suite-level timings out (each run's own timings stand in); `gain-bench run` "
         "measures them again"),
        (REFERENCE_FILE, lambda: read_references(out_root),
         ": the report leaves the unbiased attention reference out; `gain-bench run` measures it again"),
        ("gallery", lambda: read_gallery_files(out_root), f"; {GALLERY_MEND}"),
    ):  # fmt: skip
        try:
            read()
        except DamagedFile as err:
            out.append((name, f"{str(err).removeprefix(f'{Path(out_root) / name}: ')}{then}"))
    return out


def status_lines(suite: SuiteView, out_root: Path, runs: list[PlannedRun]) -> list[str]:
    """What `gain-bench status` says of the runs and files that need attention, after its counts: every failed run
    with its error, every damaged run with the file and the reason, every complete run without its checkpoint, and
    every damaged suite-level file."""
    lines = []
    for p in runs:
        if p.state == FAILED and p.record:
            lines.append(f"  failed {p.spec.run_id}: {p.record.get('error')}")
        elif p.state == DAMAGED:
            lines.append(f"  damaged {p.spec.run_id}: {p.problem}; left out of the report; {RERUN}")
        elif p.state == COMPLETE and p.problem:
            lines.append(f"  no checkpoint {p.spec.run_id}: {p.problem}; its results are reported, the gallery and "
                         f"the timings cannot use it; {RERUN}")  # fmt: skip
        elif p.state == CONFLICT and p.problem:
            lines.append(f"  conflict {p.spec.run_id}: {p.problem}; not touched")
    lines += [f"  damaged {name}: {reason}" for name, reason in folder_problems(out_root)]
    return lines


def representatives(suite: SuiteView, out_root: Path, specs: list[RunSpec] | None = None) -> set[str]:
    """`store.representatives` of the folder's configurations (of `specs`, default every run)."""
    groups = ([(s.run_id, s.config_hash) for s in group] for group in suite.configurations(specs))
    return store_representatives(out_root, groups)


def read_throughput(out_root: Path, suite: SuiteView, specs: list[RunSpec] | None = None) -> list[dict] | None:
    """The suite-level timings if they were taken on the representatives of `specs` (default: every run) now (a
    damaged `throughput.json` is a `store.DamagedFile`)."""
    return throughput_rows(out_root, representatives(suite, out_root, specs))


def reference_share(references: dict[str, dict[str, Any]], key: str | None) -> float:
    """The unbiased model's share of the map on the context for a data and model setting (`reference.json`)."""
    value = references.get(key, {}).get("context_attention_share") if key is not None else None
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else float("nan")
