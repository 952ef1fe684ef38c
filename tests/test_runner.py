import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny import tiny_suite

from benchmark.analyse.report import write_report
from benchmark.cli import main
from benchmark.core.store import RunLock, read_record
from benchmark.execute import post_run, run_data, runner
from benchmark.execute.suites import SuiteError, load

TINY = tiny_suite()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def suite_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def _records(out: Path) -> dict[str, dict]:
    return {p.parent.name: read_record(p) for p in sorted(out.glob("runs/*/record.json"))}


def test_suite_runs_once_and_resumes_without_retraining(tmp_path, suite_file, data_root, monkeypatch):
    suite = load(suite_file)
    out = tmp_path / "out"
    flushed_while_timing = []

    def measure_paired(*args, **kwargs):  # the real timing, noting whether denormals were flushed around it
        flushed_while_timing.append(bool(torch.tensor([1e-40]) * 1.0 == 0))
        return real_measure_paired(*args, **kwargs)

    real_measure_paired = post_run.measure_paired
    monkeypatch.setattr(post_run, "measure_paired", measure_paired)
    result = runner.run_suite(suite, out, quiet=True, data_root=data_root, threads=1)
    assert [f["status"] for f in result.finished] == ["complete"] * 4
    assert flushed_while_timing == [True], "the suite-level timing flushes denormals as training did"
    assert not bool(torch.tensor([1e-40]) * 1.0 == 0), "and turns flushing off again"
    first = _records(out)
    assert set(first) == {s.run_id for s in suite.runs()}
    assert all(r["status"] == "complete" for r in first.values())
    throughput = first[suite.runs()[0].run_id]["timings"]["throughput"]
    assert throughput["train_images_per_s"] > 0 and throughput["batch_size"] == 8 and throughput["precision"] == "fp32"
    assert json.loads((out / "suite.json").read_text())["raw"]["name"] == "tiny"
    timed = post_run.read_throughput(out, suite)
    assert [r["run_id"] for r in timed] == [s.run_id for s in suite.runs() if s.seed == 0], "lowest seed per config"
    assert all(r["train_images_per_s"] > 0 and r["batch_size"] == 8 and r["flush_denormal"] is True for r in timed)
    timed_labels = run_data.cached_data(suite.runs()[0], data_root)["train"].batch(torch.arange(8))["labels"]
    assert all(r["label_pairs"] == int((timed_labels > 0.5).sum()) for r in timed), "pairs of the 8 timed images"
    html = write_report(out, n_resamples=50).read_text()
    assert "labels per image" in html and f"<td>{timed[0]['label_pairs'] / 8:.2f}</td>" in html
    assert ", batch 8, 48×48 px, 1 torch thread." in html, "the settings the timings share, said once"
    by_method = {r["method"]: r for r in timed}
    assert by_method["gain_ext"]["timing"] == "paired with the baseline"
    assert by_method["gradcam"]["train_cost_ratio"] == 1.0
    assert f"<td>{by_method['gain_ext']['train_cost_ratio']:.2f}×</td>" in html, "the report shows the paired ratio"
    start = html.index('<table id="throughput">')
    table = html[start : html.index("</table>", start)]
    number, cost = r"<td>([\d,]+)</td>", r"<td>([\d.]+)×</td>"
    cells = re.findall(rf"<tr><td>([^<]+)</td>{number}{number}\s*{cost}{number}{number}{cost}", table)
    assert [c[0] for c in cells] == ["Grad-CAM", "GAIN_ext-9 warmup_epochs=0"], "display names, as elsewhere"
    for row in cells:  # one story: every cost = the baseline images/s it names / the row's own
        for images, baseline, ratio in (row[1:4], row[4:7]):
            images, baseline, ratio = (float(v.replace(",", "")) for v in (images, baseline, ratio))
            assert abs(baseline / images - ratio) <= 0.006 + 0.01 * ratio
    assert " MiB</td>" in table and "process_peak_rss" not in table
    text = re.sub(r"<[^>]+>", "", re.sub(r"<style.*?</style>|src=\"data:[^\"]*\"", "", html, flags=re.S))
    assert not re.findall(r".{20}[a-z)]\.[A-Z][a-z].{10}", text), "a sentence runs into the next without a space"
    assert "(s)" not in text, "plurals are spelled out"
    environment = html[html.index('<table id="provenance">') :]
    assert "torch threads per run" in environment and "<td>cuda</td>" not in environment, "no CUDA line on a CPU"
    stamp = (out / "throughput.json").stat().st_mtime_ns

    again = runner.run_suite(suite, out, quiet=True, data_root=data_root, threads=1)
    assert again.finished == [] and all(p.action == "skip" for p in again.planned)
    assert _records(out) == first, "complete runs are not touched"
    assert (out / "throughput.json").stat().st_mtime_ns == stamp, "nothing new to time"

    changed = load(suite_file, ["train.lr=0.001"])
    third = runner.run_suite(changed, out, quiet=True, data_root=data_root, threads=1)
    assert len(third.finished) == 4, "a changed configuration is a new run"
    assert {k: v for k, v in _records(out).items() if k in first} == first, "earlier results are kept apart"


def test_failed_runs_are_recorded_and_retried_only_when_asked(tmp_path, suite_file, data_root):
    suite = load(suite_file, ["budgets=[100000]", "seeds=[0]"])
    out = tmp_path / "out"
    result = runner.run_suite(suite, out, quiet=True, data_root=data_root, threads=1)
    statuses = {f["run_id"].split("-")[0]: f["status"] for f in result.finished}
    assert statuses == {"gradcam": "complete", "gain_ext": "failed"}, "one failure does not stop the suite"
    failed = next(r for r in _records(out).values() if r["status"] == "failed")
    assert "100000" in failed["error"] and "larger than" in failed["error"]
    assert [p.action for p in runner.plan(suite, out)] == ["skip", "skip"]
    retried = runner.run_suite(suite, out, quiet=True, data_root=data_root, threads=1, retry_failed=True)
    assert [f["run_id"] for f in retried.finished] == [failed["run_id"]]


def test_a_locked_run_is_skipped_by_a_second_runner(tmp_path, suite_file, data_root):
    suite = load(suite_file, ["seeds=[0]"])
    out = tmp_path / "out"
    spec = suite.runs()[0]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from benchmark.core.store import RunLock; "
            "assert RunLock(sys.argv[1], sys.argv[2]).acquire(); print('held', flush=True); time.sleep(60)",
            str(out),
            spec.run_id,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        planned = {p.spec.run_id: p.action for p in runner.plan(suite, out)}
        assert planned[spec.run_id] == "locked"
        assert runner.execute(spec.to_dict(), str(out), data_root=str(data_root))["status"] == "locked"
        result = runner.run_suite(suite, out, quiet=True, data_root=data_root, threads=1)
        assert [f["run_id"] for f in result.finished] == [suite.runs()[1].run_id]
    finally:
        holder.kill()
        holder.wait()
    assert not RunLock(out, spec.run_id).held_elsewhere(), "the kernel drops a dead holder's lock"
    assert [p.action for p in runner.plan(suite, out)] == ["run", "skip"]


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_sigkill_midway_then_resume_leaves_every_run_exactly_once(tmp_path, suite_file, data_root, jobs):
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "benchmark", "run", str(suite_file), "--out", str(out), "--quiet", "--no-report",
        "--threads", "1", "--data-root", str(data_root), "--seeds", "0,1,2", "--jobs", str(jobs),
    ]  # fmt: skip
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            done = [r for r in _safe_records(out) if r["status"] == "complete"]
            if done:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no run completed within 120 s")
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # the runner only: its pool workers must die with it
        proc.wait()
    suite = load(suite_file, seeds=[0, 1, 2])
    before = {r["run_id"]: r for r in _safe_records(out) if r["status"] == "complete"}
    try:
        time.sleep(3)  # longer than a tiny run: an orphaned worker would finish its run meanwhile
        assert not any(RunLock(out, s.run_id).held_elsewhere() for s in suite.runs()), "a worker outlived the runner"
        assert {r["run_id"] for r in _safe_records(out) if r["status"] == "complete"} == set(before)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert 1 <= len(before) < 6, "killed part-way"
    mtimes = {rid: (out / "runs" / rid / "model.pt").stat().st_mtime_ns for rid in before}

    assert subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    after = _records(out)
    assert sorted(after) == sorted(s.run_id for s in suite.runs()), "every run exactly once, no strays"
    assert all(r["status"] == "complete" for r in after.values())
    for rid, record in before.items():
        assert after[rid] == record, f"{rid} was re-trained"
        assert (out / "runs" / rid / "model.pt").stat().st_mtime_ns == mtimes[rid]
    assert not list(out.glob("runs/*/.*.tmp")), "no half-written files left"


def _safe_records(out: Path) -> list[dict]:
    records = []
    for path in out.glob("runs/*/record.json"):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            pytest.fail(f"{path} is not a whole JSON file: records must be written atomically")
    return records


def _comparable(records: dict[str, dict]) -> dict[str, dict]:
    return {
        k: {"metrics": r["metrics"], "curve": [c | {"seconds": 0, "diagnostics_seconds": 0} for c in r["curve"]]}
        for k, r in records.items()
    }


def _launch(suite, out, data_root, launcher="inprocess", jobs=1) -> dict[str, dict]:
    result = runner.run_suite(suite, out, quiet=True, data_root=data_root, threads=1, launcher=launcher, jobs=jobs)
    assert {f["status"] for f in result.finished} == {"complete"}, result.finished
    assert len(result.finished) == len(suite.runs())
    return _comparable(_records(out))


@pytest.mark.slow
def test_the_smoke_suite_through_submitit_gives_the_in_process_records(tmp_path, data_root):
    suite = load("smoke", ["seeds=[0]", "timing.enabled=false"])
    in_process = _launch(suite, tmp_path / "inprocess", data_root)
    assert _launch(suite, tmp_path / "submitit", data_root, "submitit-local", jobs=2) == in_process
    assert list((tmp_path / "submitit" / "submitit").iterdir()), "submitit kept its job logs"


def test_a_local_process_pool_gives_the_in_process_records(tmp_path, suite_file, data_root):
    suite = load(suite_file, ["seeds=[0]", "timing.enabled=false"])
    assert _launch(suite, tmp_path / "pool", data_root, "local", jobs=2) == _launch(suite, tmp_path / "one", data_root)


def test_filters_and_dry_run(tmp_path, suite_file, data_root, capsys):
    suite = load(suite_file)
    chosen = runner.plan(suite, tmp_path, filters=runner.parse_filters(["method=gain_ext,seed=1"]))
    assert [(p.spec.method, p.spec.seed) for p in chosen] == [("gain_ext", 1)]
    either = runner.plan(suite, tmp_path, filters=runner.parse_filters(["seed=0,seed=1", "method=gradcam"]))
    assert len(either) == 2
    with pytest.raises(SuiteError, match="unknown key 'lr'"):
        runner.parse_filters(["lr=1"])
    assert main(["run", str(suite_file), "--out", str(tmp_path / "o"), "--dry-run", "--only", "budget=9"]) == 0
    text = capsys.readouterr().out
    assert "2 of 2 runs would run" in text and "not run yet" in text
    assert not (tmp_path / "o").exists(), "a dry run writes nothing"


def test_cli_run_status_report_and_errors(tmp_path, suite_file, data_root, capsys):
    out = tmp_path / "o"
    args = ["run", str(suite_file), "--out", str(out), "--quiet", "--seeds", "0", "--data-root", str(data_root)]
    assert main([*args, "--only", "method=gradcam"]) == 0
    printed = capsys.readouterr().out
    assert "1 run(s) executed" in printed and f"report: {(out / 'index.html').resolve()}" in printed
    assert (out / "index.html").is_file() and (out / "results.csv").is_file()
    assert main(["status", str(out)]) == 0
    assert "2 runs: 1 complete, 1 missing" in capsys.readouterr().out
    assert main(["run", str(suite_file), "--set", "train.epochs=0", "--out", str(out)]) == 2
    assert "train.epochs = 0" in capsys.readouterr().err
    assert main(["run", str(suite_file), "--seeds", "a,b"]) == 2
    assert main(["status", str(tmp_path / "nothing")]) == 2
    assert "not a suite results folder" in capsys.readouterr().err
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "quick:" in listed and "synthetic-boats" in listed
    assert "gain_ext (GAIN_ext; uses pixel labels; built-in)" in listed


def test_progress_in_a_pipe_is_one_line_per_event(tmp_path, suite_file, data_root, capsys):
    """Without a terminal (a CI log, `| tee`) there is no progress bar to glue onto the run lines: the first run's
    start is said at once, and with --verbose every start, each on a line of its own."""
    out = tmp_path / "o"
    args = ["run", str(suite_file), "--out", str(out), "--seeds", "0", "--data-root", str(data_root), "--no-report"]
    assert main([*args, "--verbose", "--set", "timing.enabled=false"]) == 0
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "\r" not in printed and "run/s" not in printed and "%|" not in printed, "no bar in a pipe"
    ids = [s.run_id for s in load(suite_file, ["timing.enabled=false"]).runs() if s.seed == 0]
    lines = captured.out.splitlines()
    assert lines.index(f"starting {ids[0]}") < lines.index(f"starting {ids[1]}")
    assert lines.index(f"starting {ids[1]}") < next(i for i, x in enumerate(lines) if x.startswith("[2/2] "))
    assert [x.split()[1] for x in lines if x.startswith("[")] == ids
    assert all(x.endswith(" s") and " complete in " in x for x in lines if x.startswith("["))


def test_slurm_launcher_maps_the_suite_resources(tmp_path, suite_file, monkeypatch):
    suite = load(suite_file, ["slurm.partition=gpu", "slurm.gpus_per_node=1", "slurm.account=lab", "slurm.mem_gb=32"])
    monkeypatch.setenv("PATH", "")
    with pytest.raises(SuiteError, match=r"--launcher slurm: .*srun.*--launcher local"):
        runner.make_executor(suite, "slurm", tmp_path / "%j")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    executor = runner.make_executor(suite, "slurm", tmp_path / "%j")
    script = executor._make_submission_file_text("python -m job", "uid")
    for line in ("--partition=gpu", "--gpus-per-node=1", "--account=lab", "--mem=32GB", "--cpus-per-task=4",
                 "--time=60", "--job-name=gain-bench-tiny"):  # fmt: skip
        assert line in script, line


def test_report_escapes_text_from_the_suite(tmp_path, data_root):
    path = tmp_path / "evil.toml"
    path.write_text(TINY.replace('name = "tiny"', 'name = "<script>x"\ndescription = "<script>alert(1)</script>"'))
    suite = load(path, ["seeds=[0]"])
    out = tmp_path / "out"
    runner.run_suite(suite, out, quiet=True, data_root=data_root, threads=1, filters={"method": {"gradcam"}})
    from benchmark.analyse.report import write_report

    html = write_report(out).read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;script&gt;x" in html
    assert "1 complete, 0 failed" in html and "1 missing" in html, "a partial suite renders and says so"


def test_an_interrupted_run_is_not_a_failure_and_runs_again(tmp_path, suite_file, data_root, monkeypatch):
    import benchmark.execute.train

    suite = load(suite_file, ["seeds=[0]"])
    out = tmp_path / "out"

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmark.execute.train, "fit", stop)
    with pytest.raises(KeyboardInterrupt):
        runner.run_suite(suite, out, quiet=True, data_root=data_root, threads=1)
    record = next(iter(_records(out).values()))
    assert record["status"] == "interrupted"
    monkeypatch.undo()
    assert [p.action for p in runner.plan(suite, out)] == ["run", "run"], "no --retry-failed needed"


def test_execute_looks_again_under_the_lock(tmp_path, suite_file, data_root):
    suite = load(suite_file, ["seeds=[0]"])
    out = tmp_path / "out"
    spec = suite.runs()[0]
    runner.record_failure(spec, out, "failed in another runner meanwhile")
    summary = runner.execute(spec.to_dict(), str(out), data_root=str(data_root), threads=1)
    assert summary["status"] == "failed earlier", "planned as missing, failed by another runner: not re-run"
    assert read_record(out / "runs" / spec.run_id / "record.json")["error"] == "failed in another runner meanwhile"
    retried = runner.execute(spec.to_dict(), str(out), data_root=str(data_root), threads=1, retry_failed=True)
    assert retried["status"] == "complete"


def test_a_timing_failure_leaves_the_run_complete(tmp_path, suite_file, data_root, monkeypatch):
    import benchmark.execute.train

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory while timing")

    monkeypatch.setattr(benchmark.execute.train, "throughput", broken)
    suite = load(suite_file, ["seeds=[0]", "methods.gain_ext.budgets=[9]"])
    result = runner.run_suite(suite, tmp_path / "out", quiet=True, data_root=data_root, threads=1)
    assert {f["status"] for f in result.finished} == {"complete"}
    record = next(iter(_records(tmp_path / "out").values()))
    assert "out of memory while timing" in record["timings"]["throughput_error"]


def test_cli_exit_code_reports_failures_left_from_before(tmp_path, suite_file, data_root, capsys):
    out = tmp_path / "o"
    args = ["run", str(suite_file), "--out", str(out), "--quiet", "--no-report", "--data-root", str(data_root)]
    failing = [*args, "--seeds", "0", "--set", "budgets=[100000]", "--only", "method=gain_ext"]
    assert main(failing) == 1
    assert main(failing) == 1, "the failure is still there, though nothing ran"
    assert "failed earlier" in capsys.readouterr().out


@pytest.mark.slow
def test_ctrl_c_stops_a_pool_suite_and_the_next_run_resumes(tmp_path, suite_file, data_root):
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "benchmark", "run", str(suite_file), "--out", str(out), "--quiet", "--no-report",
        "--threads", "1", "--data-root", str(data_root), "--seeds", "0,1,2,3", "--jobs", "2",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background shell ignores SIGINT
    )
    try:
        deadline = time.monotonic() + 120
        while not any(r["status"] == "complete" for r in _safe_records(out)):
            assert time.monotonic() < deadline, "no run completed within 120 s"
            time.sleep(0.05)
        before = sum(r["status"] == "complete" for r in _safe_records(out))
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the runner and its workers
        assert proc.wait(timeout=30) != 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    complete = [r for r in _safe_records(out) if r["status"] == "complete"]
    assert len(complete) <= before + 2, "only runs already in flight may finish; the queued ones are dropped"
    assert {r["status"] for r in _safe_records(out)} <= {"complete", "interrupted", "running"}
    assert subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    assert sorted(r["status"] for r in _safe_records(out)) == ["complete"] * 8


def test_suite_level_timing_pairs_each_configuration_with_its_baseline():
    """Each configuration is timed round by round with the Grad-CAM configuration on the same data and model (its
    ratios come from those rounds); the baseline's figures are medians over its pairings; a configuration with no
    baseline on its data and model is left to the alone-timing."""
    from benchmark.core.spec import RunSpec
    from benchmark.execute.methods import build_method
    from benchmark.execute.models import build_model
    from benchmark.execute.timing import TimingSettings, example_batch

    def job(method, model_params=None):
        spec = RunSpec(method=method, model_params=model_params or {})
        method_obj = build_method(method) if method == "gradcam" else build_method(method, warmup_epochs=0)
        return spec, (build_model("small_cnn", 5), method_obj, example_batch(4, 48, 5), 0)

    jobs = [job("gradcam"), job("gain"), job("gain_ext"), job("gain", {"widths": [8, 16, 32, 32]})]
    settings = TimingSettings(batch_size=4, warmup=1, iterations=2, passes=2)
    figures = post_run._paired_figures(jobs, settings)
    base_id, gain_id, ext_id, orphan_id = (spec.run_id for spec, _ in jobs)
    assert set(figures) == {base_id, gain_id, ext_id} and orphan_id not in figures, "no baseline on its model"
    assert figures[base_id]["train_cost_ratio"] == 1.0 and "configuration (2)" in figures[base_id]["timing"]
    for run_id in (gain_id, ext_id):
        row = figures[run_id]
        assert row["timing"] == "paired with the baseline" and row["iterations"] == 4, "passes x iterations rounds"
        assert row["train_cost_ratio"] > 1.0, "a GAIN step costs more than a Grad-CAM step"
        assert 0 < row["attention_speed_ratio"] < 10
    n = figures[base_id]["batch_size"]
    assert figures[base_id]["train_images_per_s"] == n / figures[base_id]["train_step_seconds"]


def test_a_search_s_chosen_trials_pair_with_their_baseline_for_timing():
    """Trials differ in the learning rate and weight decay they drew: the suite-level timing pairs them with the
    baseline by the one pairing key the statistics use; settings that change a step (batch, memory format, data,
    model) do not pair."""
    from benchmark.core.spec import RunSpec, pairing_key

    runs = load("search").runs()
    chosen = [
        next(r for r in runs if r.method == m and r.search["trial"] == t) for m, t in [("gradcam", 5), ("gain_ext", 2)]
    ]
    assert chosen[0].train.lr != chosen[1].train.lr
    assert pairing_key(chosen[0].to_dict()) == pairing_key(chosen[1].to_dict())
    base = chosen[0].to_dict()
    for train in ({"batch_size": 32}, {"channels_last": False}, {"mask_batch": 4}):
        other = RunSpec.from_dict(base | {"train": base["train"] | train})
        assert pairing_key(other.to_dict()) != pairing_key(chosen[0].to_dict()), train
    other = RunSpec.from_dict(base | {"model_params": base["model_params"] | {"attention_layer": "block3"}})
    assert pairing_key(other.to_dict()) != pairing_key(chosen[0].to_dict())
