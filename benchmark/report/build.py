"""Collect a suite results folder (its `suite.json` and run records) into the report's context and render it."""

from __future__ import annotations

import csv
import io
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from benchmark import __version__
from benchmark.runner import plan, read_suite_file
from benchmark.spec import RunSpec
from benchmark.summary import COLUMNS, summarise

TEMPLATES = Path(__file__).parent / "templates"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def results_csv(records: list[dict[str, Any]]) -> str:
    """One row per run: identity, status and every scalar metric and timing."""
    keys = sorted({k for r in records for k, v in r.get("metrics", {}).items() if isinstance(v, int | float)})
    timing_keys = ["train_seconds", "eval_seconds", "train_images_per_s"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run_id", "label", "method", "budget", "seed", "status", "error", *keys, *timing_keys])
    for r in records:
        spec = r["spec"]
        writer.writerow(
            [r["run_id"], r["label"], spec["method"], spec["budget"], spec["seed"], r["status"], r.get("error") or ""]
            + [r["metrics"].get(k, "") for k in keys]
            + [r.get("timings", {}).get(k, "") for k in timing_keys]
        )
    return buffer.getvalue()


def context(out_root: Path) -> dict[str, Any]:
    """Everything the template shows, from the folder alone (a partial suite renders too)."""
    suite = read_suite_file(out_root)
    planned = plan(suite, out_root)
    records = [p.record for p in planned if p.record is not None and p.state in ("complete", "failed")]
    counts = {state: sum(p.state == state for p in planned) for state in ("complete", "failed", "running", "missing")}
    rows = summarise(records, short=True) if records else []
    environment = next((r["environment"] for r in records if r.get("environment")), {})
    throughput = []
    for row in rows:
        group = [
            r
            for r in records
            if RunSpec.from_dict(r["spec"]).method_label == row["config"] and "throughput" in r.get("timings", {})
        ]
        if group:
            t = group[0]["timings"]["throughput"]
            throughput.append({"config": row["config"], **t})
    return {
        "suite": suite,
        "counts": counts,
        "total": len(planned),
        "columns": COLUMNS,
        "rows": rows,
        "failed": [p for p in planned if p.state == "failed"],
        "missing": [p for p in planned if p.state in ("missing", "running")],
        "throughput": throughput,
        "environment": environment,
        "provenance": {
            "gain-bench": __version__,
            "git commit": _git_commit(),
            "suite file": suite.source,
            "suite digest": suite.digest,
            "rendered": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
        },
    }


def write_report(out_root: Path | str, output: Path | str | None = None) -> Path:
    """Render `<out_root>/index.html` (or `output`) and `results.csv` beside it; returns the HTML path."""
    from benchmark.store import write_atomic

    out_root = Path(out_root)
    ctx = context(out_root)
    html = _environment().get_template("report.html.j2").render(**ctx)
    path = Path(output) if output else out_root / "index.html"
    records = [p.record for p in plan(ctx["suite"], out_root) if p.record is not None]
    write_atomic(path, html)
    write_atomic(path.parent / "results.csv", results_csv(records))
    return path
