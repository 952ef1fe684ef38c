"""`--launcher slurm` against a real SLURM cluster: the one-node cluster of scripts/slurm_cluster.sh (started by
.ci/run; the tests marked `slurm` skip without one, and fail instead where GAIN_BENCH_REQUIRE_SLURM=1 says one was
started). That cluster has no accounting database, so these runs also show the launcher working without `sacct`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from tiny import tiny_suite

from benchmark.cli import main
from benchmark.execute import runner
from benchmark.execute.suites import load

# one cluster of one node: under `pytest -n`, these run one after another on one worker (`--dist loadgroup`)
pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.xdist_group("slurm")]

CONTROL_PLUGIN = '''
"""Methods whose jobs the tests control: `held` waits while HOLD exists (saying its SLURM task in HOLD.job), and
`crashing` kills its own process while CRASH exists, as a job that dies without a result would."""
import os
import time
from pathlib import Path

from benchmark.execute.methods.gradcam import GradCAMBaseline
from benchmark.core.registry import register_method

HERE = Path(__file__).parent


@register_method(display="Held")
class Held(GradCAMBaseline):
    name = "held"

    def training_loss(self, model, batch, *, epoch):
        if (HERE / "HOLD").exists():
            array = os.environ.get("SLURM_ARRAY_JOB_ID")
            task = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
            (HERE / "HOLD.job").write_text(task)
            while (HERE / "HOLD").exists():
                time.sleep(0.2)
        return super().training_loss(model, batch, epoch=epoch)


@register_method(display="Crashing")
class Crashing(GradCAMBaseline):
    name = "crashing"

    def training_loss(self, model, batch, *, epoch):
        if (HERE / "CRASH").exists():
            os._exit(3)
        return super().training_loss(model, batch, epoch=epoch)
'''


def _cluster_up() -> str | None:
    """Why there is no usable cluster, or None."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        return "no SLURM client on this machine"
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 10 s"
    if done.returncode != 0 or "up" not in done.stdout:
        return f"no SLURM controller answers ({done.stderr.strip() or 'no partition up'})"
    return None


@pytest.fixture(scope="module")
def cluster() -> None:
    why = _cluster_up()
    if why is not None:
        message = f"{why}: start one with `sudo bash scripts/slurm_cluster.sh start`"
        if os.environ.get("GAIN_BENCH_REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)


def _suite(tmp_path: Path, methods: tuple[str, ...] = ("gradcam", "gain"), **slurm: object) -> tuple[Path, str]:
    """A tiny suite with a unique name (its jobs are told apart in squeue by name), one CPU and 2 GB per job."""
    name = f"sl-{uuid.uuid4().hex[:8]}"
    settings = {"cpus_per_task": 1, "mem_gb": 2, "timeout_min": 10} | slurm
    text = tiny_suite(name, methods, timing=False)
    if any(m in ("held", "crashing") for m in methods):
        text = 'plugins = ["control.py"]\n' + text
        (tmp_path / "control.py").write_text(CONTROL_PLUGIN)
    text += "[slurm]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path, name


def _gain_bench(*args: str | Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmark", *map(str, args)],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def _jobs(name: str) -> list[tuple[str, str]]:
    """(job id, state) of every array task of the suite's jobs still known to SLURM."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "--states=all", "-n", f"gain-bench-{name}", "-o", "%i|%T"],
        capture_output=True, text=True, check=True,
    ).stdout
    return [tuple(line.split("|")) for line in out.split()]  # type: ignore[misc]


def _held_task(folder: Path, suite_run: subprocess.Popen) -> str:
    """The SLURM task of the `held` run once it holds (its HOLD.job, consumed), while the suite still runs."""
    deadline = time.monotonic() + 180
    while not (folder / "HOLD.job").exists():
        assert suite_run.poll() is None, suite_run.communicate()[0]
        assert time.monotonic() < deadline, "the held job never started"
        time.sleep(0.3)
    task = (folder / "HOLD.job").read_text()
    (folder / "HOLD.job").unlink()
    return task


def _reason(job_id: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%r"], capture_output=True, text=True).stdout.strip()


class _Observer(threading.Thread):
    """Polls squeue while a suite runs: the largest number of its tasks running at once, and its array ids."""

    def __init__(self, name: str) -> None:
        super().__init__(daemon=True)
        self.name_, self.most_running, self.arrays, self.stop = name, 0, set(), threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            jobs = _jobs(self.name_)
            self.arrays |= {job_id.split("_")[0] for job_id, _ in jobs}
            self.most_running = max(self.most_running, sum(state == "RUNNING" for _, state in jobs))
            time.sleep(0.3)


def _records(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("runs/*/record.json"))}


def test_a_suite_runs_as_one_array_within_its_parallelism_and_matches_the_in_process_run(cluster, tmp_path):
    path, name = _suite(tmp_path, ("gradcam",), array_parallelism=1)
    watcher = _Observer(name)
    watcher.start()
    code, out = _finish(_gain_bench("run", path, "--launcher", "slurm", "--quiet", "--out", "slurm", cwd=tmp_path))
    watcher.stop.set()
    watcher.join()
    assert code == 0, out
    assert "submitting 2 runs as one SLURM job array to partition debug: 1 CPU, 2 GB" in out
    assert "sacct" not in out and "status may be inaccurate" not in out, "states come from squeue, without warnings"
    assert len(watcher.arrays) == 1, f"one array, not {watcher.arrays}"
    assert watcher.most_running == 1, "array_parallelism = 1 holds back every task but one"
    assert (tmp_path / "slurm" / "index.html").is_file()

    suite = load(path)
    runner.run_suite(suite, tmp_path / "here", quiet=True, threads=1)
    here, there = _records(tmp_path / "here"), _records(tmp_path / "slurm")
    assert set(here) == set(there) and len(here) == 2
    for run_id in here:
        assert there[run_id]["status"] == "complete"
        assert there[run_id]["metrics"] == here[run_id]["metrics"], run_id
        predictions = [(tmp_path / d / "runs" / run_id / "predictions.csv").read_bytes() for d in ("here", "slurm")]
        assert predictions[0] == predictions[1], run_id


def test_a_cancelled_and_a_crashed_job_are_reported_the_suite_goes_on_and_a_rerun_trains_only_them(cluster, tmp_path):
    path, _ = _suite(tmp_path, ("gradcam", "held", "crashing"), array_parallelism=3)
    (tmp_path / "HOLD").touch()
    (tmp_path / "CRASH").touch()
    suite_run = _gain_bench("run", path, "--seeds", "0", "--launcher", "slurm", "--quiet", "--out", "out",
                            cwd=tmp_path)
    task = _held_task(tmp_path, suite_run)
    subprocess.run(["scancel", task], check=True)
    code, out = _finish(suite_run)
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("[")}
    runs = {spec.method: spec.run_id for spec in load(path, ["seeds=[0]"]).runs()}
    assert "complete" in lines[runs["gradcam"]], out
    assert f"job {task}" in lines[runs["held"]] and "CANCELLED" in lines[runs["held"]], out
    assert "failed" in lines[runs["crashing"]] and "FAILED" in lines[runs["crashing"]], out
    assert code != 0, "failed runs make the exit status non-zero"
    finished = (tmp_path / "out" / "runs" / runs["gradcam"] / "record.json").stat().st_mtime_ns

    (tmp_path / "HOLD").unlink()
    (tmp_path / "CRASH").unlink()
    code, out = _finish(_gain_bench("run", path, "--seeds", "0", "--launcher", "slurm", "--quiet", "--out", "out",
                                    cwd=tmp_path))
    assert code == 0, out
    assert "2 of 3 runs to train" in out, "the cancelled and the crashed run, and nothing else"
    assert {r["status"] for r in _records(tmp_path / "out").values()} == {"complete"}
    assert (tmp_path / "out" / "runs" / runs["gradcam"] / "record.json").stat().st_mtime_ns == finished


def test_two_runners_on_one_folder_train_every_run_once(cluster, tmp_path):
    path, _ = _suite(tmp_path, ("gradcam",), array_parallelism=2)
    first = _gain_bench("run", path, "--launcher", "slurm", "--quiet", "--no-report", "--out", "out", cwd=tmp_path)
    time.sleep(1.0)
    second = _gain_bench("run", path, "--launcher", "slurm", "--quiet", "--no-report", "--out", "out", cwd=tmp_path)
    outputs = [_finish(first), _finish(second)]
    assert [code for code, _ in outputs] == [0, 0], outputs
    records = _records(tmp_path / "out")
    assert len(records) == 2 and {r["status"] for r in records.values()} == {"complete"}
    said = [line.split(" ", 2)[1:] for _, out in outputs for line in out.splitlines() if line.startswith("[")]
    trained = sorted(run_id for run_id, rest in said if rest.startswith("complete in"))
    assert trained == sorted(records), f"every run trained by exactly one of the two runners: {said}"
    assert all(rest.startswith(("complete in", "already complete", "locked")) for _, rest in said), said


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("slurm.cpus_per_task=999", "[slurm] cpus_per_task = 999: no node of partition 'debug' has that many"),
        ("slurm.mem_gb=99999", "[slurm] mem_gb = 99999: no node of partition 'debug' has that many"),
        ("slurm.gpus_per_node=1", "[slurm] gpus_per_node = 1: no node of partition 'debug' has that many"),
        ("slurm.partition=nowhere", "[slurm] partition = 'nowhere': no such partition on this cluster; its "
                                    "partitions: debug (default), small"),
    ],
)
def test_a_request_no_node_can_run_is_refused_before_submission(cluster, tmp_path, monkeypatch, capsys, setting,
                                                                message):
    path, name = _suite(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(path), "--launcher", "slurm", "--set", setting, "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert _jobs(name) == [], "nothing was submitted"
    assert not (tmp_path / "out" / "submitit").exists()


def test_a_limit_only_the_scheduler_knows_is_reported_with_its_reason_within_a_minute(cluster, tmp_path):
    path, name = _suite(tmp_path, partition="small", cpus_per_task=2)  # `small` allows 1 CPU per node
    started = time.monotonic()
    code, out = _finish(_gain_bench("run", path, "--launcher", "slurm", "--quiet", "--out", "out", cwd=tmp_path),
                        timeout=120)
    assert time.monotonic() - started < 60
    assert code == 2, out
    assert "it is pending with reason PartitionConfig (the request exceeds what the partition allows)" in out
    assert "`scontrol show partition small`" in out
    deadline = time.monotonic() + 20
    while any(state not in ("CANCELLED", "COMPLETED") for _, state in _jobs(name)):
        assert time.monotonic() < deadline, f"its jobs are still queued: {_jobs(name)}"
        time.sleep(0.5)


def test_a_requeued_job_as_after_preemption_trains_its_run_again_and_the_suite_completes(cluster, tmp_path):
    path, _ = _suite(tmp_path, ("held",))
    (tmp_path / "HOLD").touch()
    suite_run = _gain_bench("run", path, "--seeds", "0", "--launcher", "slurm", "--quiet", "--no-report", "--out",
                            "out", cwd=tmp_path)
    task = _held_task(tmp_path, suite_run)
    subprocess.run(["scontrol", "requeue", task], check=True)  # what SLURM does to a pre-empted job
    deadline = time.monotonic() + 60
    while _reason(task) != "BeginTime":  # requeued: pending until a begin time SLURM sets a while ahead
        assert time.monotonic() < deadline, f"not requeued: {_reason(task)}"
        time.sleep(0.3)
    subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], check=True)  # skip that delay
    assert _held_task(tmp_path, suite_run) == task, "the same task started again"
    (tmp_path / "HOLD").unlink()
    code, out = _finish(suite_run)
    assert code == 0, out
    [record] = _records(tmp_path / "out").values()
    assert record["status"] == "complete", out
