"""Mean and standard deviation over seeds of every configuration's metrics, read from run records on disk."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmark.analyse.names import Names
from benchmark.analyse.results import known_keys, with_keys
from benchmark.core.spec import SPEC_SECTIONS, RunSpec, configuration_key, pairing_key
from benchmark.core.store import DamagedFile, read_record

COLUMNS = [
    ("val_accuracy", "val acc"),
    ("class_without_context", "boat w/o water"),
    ("context_without_class", "water w/o boat"),
    ("overall", "overall"),
    ("shifted_auroc", "AUROC"),
    ("context_attention_share", "attn on water"),
    ("context_flip_rate", "ctx flip"),
]


def load_records(roots: list[Path], damaged: list[str] | None = None) -> list[dict[str, Any]]:
    """Every `runs/*/record.json` under the given output roots (with the keys their `suite.json` lists). A truncated
    or garbled record is left out, and what is wrong with it (the file named) appended to `damaged` where given; a
    record of an unknown schema raises ValueError naming it."""
    out = []
    for root in roots:
        keys = known_keys(root)
        for path in sorted(Path(root).glob("runs/*/record.json")):
            try:
                out.append(with_keys(read_record(path), keys))
            except DamagedFile as err:
                if damaged is not None:
                    damaged.append(str(err))
    return out


def configuration(record: dict[str, Any], short: bool = False) -> tuple[str, str]:
    """(key, label) of a run's configuration: everything in its spec but the seed and the suite's name. `short`
    labels name only the method, budget and method parameters (enough within one suite)."""
    run_spec = RunSpec.from_dict(record["spec"])
    return record_keys(record)["configuration"], run_spec.method_label if short else run_spec.label


def record_keys(record: dict[str, Any]) -> dict[str, str]:
    """A record's configuration and pairing keys as the run wrote them (`RunSpec.keys`); a record from before they
    were written has them resolved from its spec, which needs the registries (the training install)."""
    keys = record.get("keys")
    if isinstance(keys, dict) and "configuration" in keys and "pairing" in keys:
        return keys
    try:
        return {"configuration": configuration_key(record["spec"]), "pairing": pairing_key(record["spec"])}
    except ImportError as err:  # an analysis-only install cannot resolve a spec
        raise ValueError(
            f"run {record.get('run_id')}: its record predates the keys the analysis reads ({err}); run `gain-bench "
            "report DIR` once where gain-bench is installed with torch, to list them in DIR/suite.json"
        ) from None


def summarise(records: list[dict[str, Any]], short: bool = False) -> list[dict[str, Any]]:
    """One row per configuration: seeds done, seeds failed, and mean/sd of each column over complete runs."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    labels: dict[str, str] = {}
    for record in records:
        key, labels[key] = configuration(record, short)
        groups[key].append(record)
    rows = []
    order = _order(records)
    for config_key, group in groups.items():
        label = labels[config_key]
        done = [r for r in group if r["status"] == "complete"]
        row: dict[str, Any] = {"config": label, "seeds": len(done), "failed": len(group) - len(done)}
        for key, _ in COLUMNS:
            values = [r["metrics"][key] for r in done if key in r["metrics"] and math.isfinite(r["metrics"][key])]
            row[key] = (
                (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0) if values else None
            )
        rows.append(row | {"_order": order(group[0]["spec"], label)})
    rows.sort(key=lambda r: r.pop("_order"))
    return rows


def _order(records: list[dict[str, Any]]) -> Callable[[dict[str, Any], str], tuple[int, int, str]]:
    """Baseline first, then the registry's order of methods (as the records carry it), budgets ascending."""
    names = Names.of_records(records)
    return lambda spec, label: (names.rank(spec["method"]), spec["budget"], label)


def format_table(rows: list[dict[str, Any]]) -> str:
    width = max([len("config"), *(len(r["config"]) for r in rows)])
    lines = [f"{'config':<{width}} {'n':>3}" + "".join(f"{label:>16}" for _, label in COLUMNS)]
    for row in rows:
        cells = "".join(f"{row[k][0]:>9.3f} ±{row[k][1]:.3f}" if row[k] else f"{'-':>16}" for k, _ in COLUMNS)
        failed = f" ({row['failed']} failed)" if row["failed"] else ""
        lines.append(f"{row['config']:<{width}} {row['seeds']:>3}{cells}{failed}")
    return "\n".join(lines)


def curve_table(records: list[dict[str, Any]], keys: list[str], short: bool = True) -> list[dict[str, Any]]:
    """Per configuration and curve key (`curves.LOSS_PARTS`, `curves.DIAGNOSTICS`), the mean over the complete runs'
    seeds at every epoch, with the smallest and largest seed's value: `{"config", "seeds", "key", "epochs": [(mean,
    low, high) or None per epoch]}`, configurations in the table's order."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    labels: dict[str, str] = {}
    for record in records:
        if record["status"] == "complete" and record.get("curve"):
            key, labels[key] = configuration(record, short)
            groups[key].append(record)
    rows = []
    order = _order(records)
    for config_key, group in sorted(groups.items(), key=lambda kv: order(kv[1][0]["spec"], labels[kv[0]])):
        epochs = max(len(r["curve"]) for r in group)
        for key in keys:
            cells: list[tuple[float, float, float] | None] = []
            for epoch in range(epochs):
                values = [r["curve"][epoch][key] for r in group if epoch < len(r["curve"]) and key in r["curve"][epoch]]
                values = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
                cells.append((statistics.fmean(values), min(values), max(values)) if values else None)
            if any(cells):
                rows.append({"config": labels[config_key], "seeds": len(group), "key": key, "epochs": cells})
    return rows


def format_curves(rows: list[dict[str, Any]], spread: bool = False) -> str:
    """`curve_table` as text: one line per configuration and key, one column per epoch (mean over seeds; with
    `spread`, `mean [low, high]`)."""
    if not rows:
        return ""
    epochs = max(len(r["epochs"]) for r in rows)
    width = max(len(f"{r['config']} (n={r['seeds']})") for r in rows)
    key_width = max(len(r["key"]) for r in rows)
    cell = 22 if spread else 8
    lines = [f"{'config':<{width}} {'key':<{key_width}}" + "".join(f"{f'ep {e + 1}':>{cell}}" for e in range(epochs))]
    for row in rows:
        cells = []
        for value in row["epochs"]:
            if value is None:
                cells.append(f"{'-':>{cell}}")
            elif spread:
                cells.append(f"{f'{value[0]:.3f} [{value[1]:.3f}, {value[2]:.3f}]':>{cell}}")
            else:
                cells.append(f"{value[0]:>{cell}.3f}")
        name = f"{row['config']} (n={row['seeds']})"
        lines.append(f"{name:<{width}} {row['key']:<{key_width}}" + "".join(cells))
    return "\n".join(lines)


def spec_without(spec: dict[str, Any], keys: tuple[str, ...]) -> str:
    """A record's configuration (`configuration_key`) and seed, less the suite keys `keys` (`data.generator_version`,
    `seed_scope`): what two runs that differ only in those keys share."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in spec.items()}
    for key in keys:
        section, _, name = key.partition(".")
        if name and section in SPEC_SECTIONS:
            out.get(SPEC_SECTIONS[section], {}).pop(name, None)
        else:
            out.pop(key, None)
    return f"{configuration_key(out)} seed={spec.get('seed')}"


def compare_runs(
    first: list[dict[str, Any]], second: list[dict[str, Any]], short: bool = True, ignore: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The same runs (same `run_id`: same configuration, seed and code) made twice, e.g. under another thread count
    or on another machine, or (`ignore`) runs whose specs differ only in those suite keys: per configuration, how
    many runs pair up and, per `COLUMNS` metric, the mean and largest absolute difference between the two makes of a
    run, and the environments' thread counts."""

    def match(record: dict[str, Any]) -> str:
        return spec_without(record["spec"], ignore) if ignore else record["run_id"]

    made = {match(r): r for r in second if r["status"] == "complete"}
    groups: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    labels: dict[str, str] = {}
    for record in first:
        other = made.get(match(record))
        if record["status"] == "complete" and other is not None:
            key, labels[key] = configuration(record, short)
            groups[key].append((record, other))
    rows = []
    order = _order(first)
    for config_key, pairs in sorted(groups.items(), key=lambda kv: order(kv[1][0][0]["spec"], labels[kv[0]])):
        row: dict[str, Any] = {"config": labels[config_key], "runs": len(pairs)}
        for key, _ in COLUMNS:
            diffs = [
                abs(a["metrics"][key] - b["metrics"][key])
                for a, b in pairs
                if key in a["metrics"]
                and key in b["metrics"]
                and math.isfinite(a["metrics"][key])
                and math.isfinite(b["metrics"][key])
            ]
            row[key] = (statistics.fmean(diffs), max(diffs)) if diffs else None
        row["threads"] = sorted({(a["environment"].get("threads"), b["environment"].get("threads")) for a, b in pairs})
        rows.append(row)
    return rows


def format_comparison(rows: list[dict[str, Any]]) -> str:
    """`compare_runs` as text: per configuration and metric, `mean |diff| (max)` between the two makes of a run."""
    width = max([len("config"), *(len(r["config"]) for r in rows)])
    lines = [f"{'config':<{width}} {'runs':>4}" + "".join(f"{label:>18}" for _, label in COLUMNS) + "  threads"]
    for row in rows:
        cells = "".join(f"{row[k][0]:>10.3f} ({row[k][1]:.3f})" if row[k] else f"{'-':>18}" for k, _ in COLUMNS)
        threads = ", ".join(f"{a} vs {b}" for a, b in row["threads"])
        lines.append(f"{row['config']:<{width}} {row['runs']:>4}{cells}  {threads}")
    return "\n".join(lines)


UNRECORDED = "unrecorded"  # a key a run's record does not hold (made before the key was recorded)
PROVENANCE = {"git_commit": "git commit", "gain_bench": "gain-bench", "torch": "torch", "python": "python",
              "device": "device", "device_name": "GPU", "threads": "threads", "platform": "platform",
              "cpu": "CPU"}  # fmt: skip
"""The environment keys a table's provenance line names, and its name for each."""


def environments(records: list[dict[str, Any]]) -> dict[str, str]:
    """Every environment key of the complete runs among `records`, with each distinct value it took, sorted and
    comma-separated (a folder trained at two commits names both; `unrecorded` for runs whose record lacks the key):
    the report's environment and a table's provenance."""
    done = [r.get("environment", {}) for r in records if r.get("status") == "complete"]
    keys = dict.fromkeys(key for env in done for key in env)
    return {key: ", ".join(sorted({str(env.get(key, UNRECORDED)) for env in done})) for key in keys}


def provenance(records: list[dict[str, Any]]) -> dict[str, str]:
    """Where and when the complete runs among `records` were made: how many, the first start and last finish (UTC),
    and the `PROVENANCE` keys of their `environments` (the commit always, `unrecorded` where no run recorded it)."""
    done = [r for r in records if r.get("status") == "complete"]
    if not done:
        return {}
    env = environments(done)
    out = {
        "runs": str(len(done)),
        "trained": f"{min(r.get('started') or '?' for r in done)} to {max(r.get('finished') or '?' for r in done)}",
    }
    shown = {key: name for key, name in PROVENANCE.items() if key in env or key == "git_commit"}
    return out | {name: env.get(key, UNRECORDED) for key, name in shown.items()}


def provenance_text(facts: dict[str, str]) -> str:
    """`provenance` as one Markdown line, for a table pasted into a page: `Runs: 27; trained: ...; ...`."""
    text = "; ".join(f"{key}: {value}" for key, value in facts.items())
    return f"{text[:1].upper()}{text[1:]}." if text else ""
