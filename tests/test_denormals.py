"""`train.flush_denormal` reaches every thread of torch's pool only when set before the pool starts
(benchmark.execute.denormals): checked in fresh processes, since this one's pool started long ago."""

import json
import subprocess
import sys

import pytest
from tiny import tiny_suite

from benchmark.core.store import read_record

PROBE = """
import sys, torch
from benchmark.execute.denormals import flush_from_the_start, flushed_share
torch.set_num_threads(2)
if sys.argv[1] == "late":
    (torch.ones(1 << 20) * 2).sum()  # a parallel operation first: the pool starts unflushed
flush_from_the_start(True)
print(flushed_share())
"""


def _share(when: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, when], capture_output=True, text=True, check=True).stdout
    return float(out)


def test_only_a_flag_set_before_the_thread_pool_starts_reaches_every_thread():
    assert _share("early") == 1.0
    assert 0.0 < _share("late") < 1.0, "set after the pool started: the calling thread's share only"


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_runs_started_from_the_command_line_flush_on_every_thread(tmp_path, jobs):
    """In-process (the command's own process, whose pool also times the suite) and in pool workers, two torch threads
    each: the run records and the suite-level timing rows show every thread flushing."""
    suite = tmp_path / "tiny.toml"
    suite.write_text(tiny_suite())
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "benchmark", "run", str(suite), "--out", str(out), "--quiet", "--no-report",
        "--threads", "2", "--jobs", jobs, "--seeds", "0", "--data-root", str(tmp_path / "data"),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    records = [read_record(p) for p in sorted(out.glob("runs/*/record.json"))]
    assert len(records) == 2 and all(r["status"] == "complete" for r in records)
    assert all(r["environment"]["threads"] == 2 for r in records)
    assert [r["environment"]["denormals_flushed"] for r in records] == [1.0, 1.0]
    rows = json.loads((out / "throughput.json").read_text())["rows"]
    assert [r["denormals_flushed"] for r in rows] == [1.0, 1.0] and all(r["flush_denormal"] for r in rows)
