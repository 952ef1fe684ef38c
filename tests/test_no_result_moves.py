"""The layering moved code, not results: every shipped suite expands to the runs it expanded to before (run ids,
config hashes, specs), and the smoke suite trains to the metrics and tables stored before (with pinned numerics).

`tests/data/suite_expansions.json` and `tests/data/smoke_summary.json` were written from the code before the
plugins-and-layers change (commit "Baselines before the layering"); regenerate them only for a change that is meant
to move results, and say so in its commit. Regenerated for the built-in data's generator version 2 (the object-only
split): the built-in-data runs' ids and config hashes moved (the data digest is in them), their specs did not, and
with `GENERATOR_VERSION = 1` the expansions were those of the earlier file; the smoke runs' metrics are the earlier
ones under the new run ids, with the background metrics added. Regenerated once more with pinned numerics
(`PINNED_CODE`, `PINNED_ENV`; `python tests/test_no_result_moves.py` writes the file): with the default kernels the
stored numbers held on one CPU and not on another, and pinned, the code before the layering gives the same metrics
bit for bit.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.core.provenance import cpu_identity
from benchmark.execute import suites

DATA = Path(__file__).parent / "data"


def _digest(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def test_every_shipped_suite_expands_to_the_same_runs() -> None:
    stored = json.loads((DATA / "suite_expansions.json").read_text())
    assert sorted(stored) == sorted(n for n in suites.available() if n in stored)
    for name, runs in stored.items():
        now = {s.run_id: {"config_hash": s.config_hash, "spec": _digest(s.to_dict())} for s in suites.load(name).runs()}
        assert now == runs, name


def _close(a: float | None, b: float | None, tol: float) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return (a is None and b is None) or (a is not None and b is not None and math.isnan(a) and math.isnan(b))
    return abs(a - b) <= tol


# Numerics that do not depend on the CPU: oneDNN and NNPACK off (their kernels are chosen for the CPU they run on),
# ATen's scalar kernels, MKL in its conditional-numerical-reproducibility mode, one thread. The same two epochs gave
# different validation APs by up to 0.03 on two x86 machines with the default kernels; with these they are bit-equal
# to the code before the layering (commit "Baselines before the layering", run with the same settings).
PINNED_CODE = (
    "import sys, torch; torch.backends.mkldnn.enabled = False; torch.backends.nnpack.set_flags(False); "
    "from benchmark.cli import main; sys.exit(main(sys.argv[1:]))"
)
PINNED_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def run_pinned_smoke(out: Path) -> None:
    """The smoke suite, as a user runs it but with the numerics pinned, in a fresh process (no thread count or
    backend flag left by another test)."""
    command = [sys.executable, "-c", PINNED_CODE, "run", "smoke", "--out", str(out), "--quiet", "--threads", "1",
               "--set", "timing.enabled=false"]  # fmt: skip
    env = os.environ | PINNED_ENV
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False, env=env)
    assert done.returncode == 0, done.stderr


def smoke_summary(out: Path) -> dict[str, dict]:
    """What `smoke_summary.json` stores of a smoke results folder: every run's numeric metrics, and the cells of the
    results tables (means and intervals; paired differences, intervals and p-values)."""
    metrics = {}
    for path in out.glob("runs/*/record.json"):
        record = json.loads(path.read_text())
        metrics[record["run_id"]] = {
            k: v for k, v in record["metrics"].items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
    table: dict[str, float | None] = {}
    for row in csv.DictReader((out / "results_runs.csv").open()):
        table[f'{row["run_id"]}|{row["role"]}|{row["metric"]}'] = float(row["value"]) if row["value"] else None
    for name, cols in (("results.csv", ("mean", "sd", "ci_low", "ci_high")),
                       ("results_paired.csv", ("difference", "ci_low", "ci_high", "p_value", "p_holm",
                                               "prob_improvement"))):  # fmt: skip
        for row in csv.DictReader((out / name).open()):
            for c in cols:
                table[f'{name}|{row["label"]}|{row["metric"]}|{c}'] = float(row[c]) if row[c] else None
    return {"metrics": metrics, "table": table}


def cpu_summary_path() -> Path:
    """Where this CPU's own stored summary lives: `smoke_summary.<8 hex of its identity>.json`. Pinned numerics are
    bit-equal across the Intel machines tried, but an AMD EPYC (`AMD EPYC, features 2380ab50`) flips one val image
    of one run, at the code before this file's last regeneration as at HEAD; such a CPU keeps a summary of its own,
    written at the earlier code, so the test still says that no change of ours moved a result."""
    key = hashlib.sha256(cpu_identity().encode()).hexdigest()[:8]
    return DATA / f"smoke_summary.{key}.json"


def stored_summary_path() -> Path:
    """This CPU's stored summary where it has one, else the canonical one (the machine that first stored them)."""
    own = cpu_summary_path()
    return own if own.is_file() else DATA / "smoke_summary.json"


@pytest.mark.slow
def test_the_smoke_suite_gives_the_stored_metrics(tmp_path: Path) -> None:
    """Two epochs on tiny data with pinned numerics: bit-equal on the machines tried; the tolerance is a margin for
    a machine where some kernel still differs."""
    stored = json.loads(stored_summary_path().read_text())
    out = tmp_path / "smoke"
    run_pinned_smoke(out)
    got = smoke_summary(out)
    tol = 2e-3
    assert set(got["metrics"]) == set(stored["metrics"])
    for run_id, want in stored["metrics"].items():
        assert set(got["metrics"][run_id]) == set(want), run_id
        moved = {k: (got["metrics"][run_id][k], v) for k, v in want.items()
                 if not _close(got["metrics"][run_id][k], v, tol)}  # fmt: skip
        assert not moved, (run_id, moved)
    assert set(got["table"]) == set(stored["table"])
    moved = {k: (got["table"][k], v) for k, v in stored["table"].items() if not _close(got["table"][k], v, tol)}
    assert not moved, moved


if __name__ == "__main__":  # python tests/test_no_result_moves.py [--this-cpu]: write smoke_summary.json again (a
    import tempfile  # change meant to move results only, said in its commit), or this CPU's own summary

    target = cpu_summary_path() if "--this-cpu" in sys.argv else DATA / "smoke_summary.json"
    with tempfile.TemporaryDirectory() as tmp:
        run_pinned_smoke(Path(tmp) / "smoke")
        summary = smoke_summary(Path(tmp) / "smoke")
    target.write_text(json.dumps(summary, indent=0, sort_keys=True) + "\n")
    print(f"wrote {target}: {len(summary['metrics'])} runs, {len(summary['table'])} table cells")
