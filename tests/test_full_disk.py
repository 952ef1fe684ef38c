"""A full disk: a run or a report that cannot write fails with one line naming the file (no traceback), leaves no
half-written file behind, records the run as failed with the reason, and the same command completes only what is
missing once there is room again.

The disk is made "full" honestly, for a child process only: a file-size limit (`RLIMIT_FSIZE`) with SIGXFSZ
ignored, so a write past it fails with EFBIG as a write to a full disk fails with ENOSPC."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import test_damaged_folders

from benchmark.analyse.results import planned, read_suite, status_lines
from benchmark.cli import main
from benchmark.core.store import STORAGE_ERROR, WriteError, read_record, write_atomic

SEEDS = test_damaged_folders.SEEDS
folder = test_damaged_folders.folder  # the fixture: a copy of the session's trained folder, to fill the disk with

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a file-size limit as Linux has it")

LIMITED = """
import functools, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
import benchmark.cli, benchmark.commands
from benchmark.analyse.report import render, write_report
benchmark.cli.write_report = functools.partial(write_report, n_resamples=50)
benchmark.commands.render = functools.partial(render, n_resamples=50)
raise SystemExit(benchmark.cli.main(sys.argv[2:]))
"""


def limited(limit: int, *args: str) -> subprocess.CompletedProcess:
    """`gain-bench ARGS` in a child process that may write no file larger than `limit` bytes."""
    return subprocess.run([sys.executable, "-c", LIMITED, str(limit), *args], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.rglob(".*.tmp"))


def test_write_atomic_names_the_file_and_leaves_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "results.csv"
    path.write_text("old\n")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError) as caught:
        write_atomic(path, "new\n" * 1000)
    assert str(caught.value) == (f"cannot write {path}: No space left on device (ENOSPC: the disk is full); nothing "
                                 "half-written was left behind: make room and run it again")  # fmt: skip
    assert caught.value.errno == errno.ENOSPC and caught.value.path == path
    assert path.read_text() == "old\n" and not leftovers(tmp_path)


@pytest.mark.slow
def test_a_run_that_cannot_write_fails_naming_the_file_and_the_suite_resumes(folder, capsys):
    suite_file, out, data_root = folder
    ids = [s.run_id for s in read_suite(out).runs()]
    shutil.rmtree(out / "runs" / ids[1])  # the one run left to train
    kept = {run_id: (out / "runs" / run_id / "model.pt").stat().st_mtime_ns for run_id in ids if run_id != ids[1]}
    args = ["run", str(suite_file), "--out", str(out), "--seeds", SEEDS, "--quiet", "--threads", "1", "--data-root",
            str(data_root)]  # fmt: skip

    done = limited(100_000, *args)  # a record and the predictions fit, the checkpoint (~250 kB) does not
    model = out / "runs" / ids[1] / "model.pt"
    message = (f"gain-bench: error: cannot write {model}: File too large (EFBIG: larger than the file-size limit "
               "allows); nothing half-written was left behind: make room and run it again\n"
               f"finished runs are kept; run the same command again to resume ({out})\n")  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.endswith(message), done.stderr
    assert "Traceback" not in done.stderr
    assert not model.exists() and not leftovers(out), "no half-written file"
    record = read_record(out / "runs" / ids[1] / "record.json")
    assert record["status"] == "failed" and record[STORAGE_ERROR] == str(model)
    assert record["error"] == message.splitlines()[0].removeprefix("gain-bench: error: ")
    assert main(["status", str(out)]) == 0
    assert "4 runs: 3 complete, 1 failed" in capsys.readouterr().out
    suite = read_suite(out)
    assert status_lines(suite, out, planned(suite, out)) == [f"  failed {ids[1]}: {record['error']}"]

    assert main(args) == 0, "room again: the same command resumes, without --retry-failed"
    assert f"suite damaged: 1 run(s) executed, 3 skipped -> {out}" in capsys.readouterr().out
    assert read_record(out / "runs" / ids[1] / "record.json")["status"] == "complete" and model.is_file()
    assert {run_id: (out / "runs" / run_id / "model.pt").stat().st_mtime_ns for run_id in kept} == kept
    assert not leftovers(out)


@pytest.mark.slow
def test_a_report_that_cannot_write_fails_naming_the_file(folder):
    _, out, data_root = folder
    (out / "index.html").unlink(missing_ok=True)
    done = limited(200_000, "report", str(out), "--data-root", str(data_root))  # the page is larger
    page = out / "index.html"
    assert done.returncode == 1, "a full disk is not bad input (exit 2)"
    assert done.stderr.endswith(f"gain-bench: error: cannot write {page}: File too large (EFBIG: larger than the "
                                "file-size limit allows); nothing half-written was left behind: make room and run it "
                                "again\n"), done.stderr  # fmt: skip
    assert "Traceback" not in done.stderr
    assert not page.exists() and not leftovers(out)


@pytest.mark.slow
def test_a_suite_that_cannot_write_its_suite_file_trains_nothing(folder, tmp_path):
    suite_file, _, data_root = folder
    out = tmp_path / "new"
    done = limited(2_000, "run", str(suite_file), "--out", str(out), "--quiet", "--data-root", str(data_root))
    assert done.returncode == 1, done.stderr
    assert f"gain-bench: error: cannot write {out / 'suite.json'}: File too large (EFBIG" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == [], "nothing half-written, nothing trained"


@pytest.mark.slow
def test_table_csv_that_cannot_write_leaves_the_earlier_tables_whole(folder, tmp_path, capsys):
    _, out, _ = folder
    tables = tmp_path / "tables"
    assert main(["table", str(out), "--csv", str(tables)]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in tables.iterdir()}
    limit = max(map(len, before.values())) // 2  # the largest table no longer fits
    done = limited(limit, "table", str(out), "--csv", str(tables))
    assert done.returncode == 1, done.stderr
    assert re.search(rf"gain-bench: error: cannot write {re.escape(str(tables))}/\w+\.csv: File too large \(EFBIG",
                     done.stderr), done.stderr  # fmt: skip
    assert "Traceback" not in done.stderr
    assert {p.name: p.read_bytes() for p in tables.iterdir()} == before, "no table half-written"
