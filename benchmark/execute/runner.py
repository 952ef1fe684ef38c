"""Execute a suite's runs: in this process, in a local process pool (`jobs`), or as submitit jobs (SLURM, or
submitit's local executor, which exercises the same code path without a cluster).

Every run goes through `execute`, wherever it runs: take the run's lock (skip if another runner holds it), look at
the folder again (skip if it is complete by now), train and record. Finished runs are never touched again unless
their configuration changes (a new `run_id`) or they failed and `retry_failed` is set. Beside it: `suite_file`
(`suite.json`), `run_data` (the data a run loads) and `post_run` (the steps after the runs).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import submitit
import torch
from tqdm.auto import tqdm

from benchmark.core.phases import phase, say
from benchmark.core.plugins import PluginError
from benchmark.core.registry import load_plugins
from benchmark.core.spec import RunSpec
from benchmark.core.store import (
    COMPLETE,
    CONFLICT,
    DAMAGED,
    FAILED,
    MISSING,
    REFERENCE_FILE,
    RUNNING,
    STORAGE_ERROR,
    SUITE_FILE,
    THROUGHPUT_FILE,
    DamagedFile,
    RunLock,
    WriteError,
    failed_for_space,
    inspect_run,
    read_json,
    read_record,
    read_references,
    run_dir,
    run_state,
    throughput_rows,
    trains_again,
    write_record,
)
from benchmark.execute import slurm
from benchmark.execute.datasets import registry
from benchmark.execute.denormals import flush_from_the_start
from benchmark.execute.diagnostics import heldout_scored
from benchmark.execute.gallery_maps import write_gallery
from benchmark.execute.heldout import ensure_data
from benchmark.execute.models import imagenet_weights_path
from benchmark.execute.post_run import gallery_picks, measure_throughput, read_throughput
from benchmark.execute.pretrain import ensure_pretrained, pretrain_spec, start_checkpoint
from benchmark.execute.reference import write_references
from benchmark.execute.run_data import cached_data
from benchmark.execute.run_record import new_record
from benchmark.execute.suite_file import write_suite_file
from benchmark.execute.suites import LAUNCHERS, Suite, SuiteError
from benchmark.execute.timing import TimingSettings
from benchmark.execute.train import run

FILTER_KEYS = ("method", "budget", "seed", "trial")


@dataclass(frozen=True)
class Planned:
    """A run of the suite, what its folder holds now and what this invocation will do with it."""

    spec: RunSpec
    state: str
    action: str  # "run", "skip", "locked" or "conflict"
    reason: str
    record: dict[str, Any] | None = None


def parse_filters(items: Iterable[str]) -> dict[str, set[str]]:
    """`--only method=gain_ext,budget=78` → {key: allowed values}; a key given twice allows either value."""
    filters: dict[str, set[str]] = {}
    for item in items:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not value:
                raise SuiteError(
                    f"--only {item!r}: expected KEY=VALUE[,KEY=VALUE...] with KEY one of {', '.join(FILTER_KEYS)}"
                )
            if key not in FILTER_KEYS:
                raise SuiteError(f"--only {item!r}: unknown key {key!r}; allowed: {', '.join(FILTER_KEYS)}")
            filters.setdefault(key, set()).add(value)
    return filters


def _matches(spec: RunSpec, filters: dict[str, set[str]]) -> bool:
    return all(str(getattr(spec, key)) in values for key, values in filters.items())


def plan(
    suite: Suite, out_root: Path, *, filters: dict[str, set[str]] | None = None, retry_failed: bool = False
) -> list[Planned]:
    """What each selected run of the suite would do now."""
    planned = []
    for spec in suite.runs():
        if filters and not _matches(spec, filters):
            continue
        found = inspect_run(out_root, spec.run_id, spec.config_hash)
        state, record, problem = found
        if not trains_again(found, retry_failed):
            action, reason = {
                COMPLETE: ("skip", "complete"),
                FAILED: ("skip", "failed earlier (--retry-failed to run it again)"),
                CONFLICT: ("conflict", "its folder holds another configuration (same run id prefix); not touched"
                           + (f" ({problem})" if problem else "")),
            }[state]
        elif RunLock(out_root, spec.run_id).held_elsewhere():
            action, reason = "locked", "another runner is running it"
        else:
            action = "run"
            reason = {
                MISSING: "not run yet",
                RUNNING: "interrupted earlier",
                FAILED: "failed writing its files earlier: running it again"
                if failed_for_space(record)
                else "retrying a failed run",
                DAMAGED: f"damaged: {problem}: training it again",
                COMPLETE: f"complete without its checkpoint ({problem}): training it again",
            }[state]
        planned.append(Planned(spec, state, action, reason, record))
    return planned


def execute(
    spec_dict: dict[str, Any],
    out_root: str,
    *,
    data_root: str | None = None,
    device: str = "cpu",
    timing: dict[str, Any] | None = None,
    threads: int | None = None,
    progress: bool = False,
    retry_failed: bool = False,
    plugins: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """Run one spec under its lock; returns a small summary (run_id, status, seconds, error). Plain data in and out,
    so it can run in a pool worker or a submitit job: the suite's plugins are imported first (once per process).
    The folder is looked at again under the lock: another runner may have completed (or failed) the run since it
    was planned."""
    try:
        load_plugins(plugins)
    except PluginError as err:  # this process cannot import what the suite needs: no run id without it
        name = f"{spec_dict['method']}-b{spec_dict.get('budget', 0)}-s{spec_dict.get('seed', 0)}"
        return {"run_id": name, "label": name, "status": FAILED, "seconds": 0.0, "error": str(err)}
    spec = RunSpec.from_dict(spec_dict)
    flush_from_the_start(spec.train.flush_denormal)  # a fresh worker or job: before its first parallel operation
    if threads:
        torch.set_num_threads(threads)
    root = Path(out_root)
    summary: dict[str, Any] = {"run_id": spec.run_id, "label": spec.label, "seconds": 0.0, "error": None}
    lock = RunLock(root, spec.run_id)
    if not lock.acquire(attempts=5):
        return summary | {"status": "locked"}
    started = time.perf_counter()
    try:
        found = inspect_run(root, spec.run_id, spec.config_hash)
        if not trains_again(found, retry_failed):
            summary["status"] = {COMPLETE: "already complete", CONFLICT: "conflict", FAILED: "failed earlier"}[
                found.state
            ]
            return summary
        data = cached_data(spec, data_root)
        settings = TimingSettings(**timing) if timing is not None else None
        where = Path(data_root) if data_root else None
        record = run(
            spec,
            root,
            data_root=where,
            progress=progress,
            device=device,
            data=data,
            timing=settings,
            start=start_checkpoint(spec, where, device=device),
        )
        summary.update(status=record["status"], error=record["error"])
    except WriteError as err:  # a full disk: recorded (where it can be) as failed for want of space; the suite stops
        summary.update(status=FAILED, error=str(err), errno=err.errno, **{STORAGE_ERROR: str(err.path or "")})
        _record_storage_failure(spec, root, err)
    except Exception as err:  # train.run records what fails once it has started; the suite goes on
        summary.update(status=FAILED, error="".join(traceback.format_exception_only(err)).strip())
        if run_state(root, spec.run_id, spec.config_hash)[0] != FAILED:
            try:
                record_failure(spec, root, summary["error"])
            except WriteError:  # the record stays as the attempt left it; a re-run trains the run again
                pass
    finally:
        summary["seconds"] = time.perf_counter() - started
        lock.release()
    return summary


def record_failure(spec: RunSpec, out_root: Path, error: str, **extra: Any) -> None:
    """A failed record for a run that stopped before training began (e.g. a budget larger than its pool)."""
    record = new_record(spec, FAILED, error) | {"finished": datetime.now(UTC).isoformat(timespec="seconds")} | extra
    write_record(run_dir(out_root, spec.run_id) / "record.json", record)


def _record_storage_failure(spec: RunSpec, out_root: Path, err: WriteError) -> None:
    """The run's record says it failed because `err`'s file could not be written (`store.STORAGE_ERROR`: a re-run
    trains it again without `--retry-failed`), keeping what the attempt recorded; on a disk still too full for the
    record, the record stays as the attempt left it (running or failed), which a re-run also trains again."""
    path = run_dir(out_root, spec.run_id) / "record.json"
    try:
        record = read_record(path) if path.is_file() else None
    except ValueError:
        record = None
    try:
        if record is not None and record.get("config_hash") == spec.config_hash:
            record.update(status=FAILED, error=str(err), **{STORAGE_ERROR: str(err.path or "")})
            record.setdefault("finished", datetime.now(UTC).isoformat(timespec="seconds"))
            write_record(path, record)
        else:
            record_failure(spec, out_root, str(err), **{STORAGE_ERROR: str(err.path or "")})
    except WriteError:
        pass


@dataclass
class SuiteResult:
    planned: list[Planned]
    finished: list[dict[str, Any]]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [f for f in self.finished if f["status"] == FAILED]


def _worker_threads(jobs: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)


def _init_worker(threads: int) -> None:
    """Pool worker set-up: its torch threads, and (Linux) to die with the runner, so a killed runner leaves no
    orphan training on (its runs would be safe under their locks, but the machine would stay busy)."""
    torch.set_num_threads(threads)
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def run_suite(
    suite: Suite,
    out_root: Path,
    *,
    jobs: int = 1,
    launcher: str = "inprocess",
    retry_failed: bool = False,
    filters: dict[str, set[str]] | None = None,
    quiet: bool = False,
    verbose: bool = False,
    data_root: Path | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> SuiteResult:
    """Run what `plan` says should run; records land in `<out_root>/runs/`, the resolved suite in `suite.json`."""
    if launcher not in LAUNCHERS:
        raise SuiteError(f"launcher {launcher!r}: allowed: {', '.join(LAUNCHERS)}")
    if jobs < 1:
        raise SuiteError(f"jobs={jobs}: allowed: an integer >= 1")
    out_root = Path(out_root).resolve()
    _note_damaged(out_root / SUITE_FILE, "writing it again from the suite")
    write_suite_file(suite, out_root)
    planned = plan(suite, out_root, filters=filters, retry_failed=retry_failed)
    todo = [p.spec for p in planned if p.action == "run"]
    say(f"suite {suite.name}: {len(todo)} of {len(planned)} runs to train -> {out_root}")
    # a request no node of the cluster can run is refused before any data is prepared or job submitted
    partition = slurm.check_request(suite.slurm) if launcher == "slurm" and todo else ""
    prepare(todo, data_root, device=device or suite.device)
    device = device or suite.device
    common: dict[str, Any] = {
        "data_root": str(Path(data_root).resolve()) if data_root else None,
        "device": device,
        "timing": asdict(suite.timing),
        "retry_failed": retry_failed,
        "plugins": suite.plugins,
    }
    # a bar only on a terminal; in a pipe (CI logs, `| tee`) every line stands alone
    lines = quiet or not sys.stderr.isatty()
    bar = tqdm(total=len(todo), desc=f"suite {suite.name}", unit="run", disable=lines, file=sys.stderr)
    finished: list[dict[str, Any]] = []
    at_once = 1 if launcher == "inprocess" and jobs == 1 else jobs if launcher != "slurm" else len(todo)
    started = _StartLines(todo, at_once, every=verbose, show=not quiet or verbose)
    started.first()

    def done(summary: dict[str, Any]) -> None:
        finished.append(summary)
        line = f"[{len(finished)}/{len(todo)}] {summary['run_id']} {summary['status']} in {summary['seconds']:.1f} s"
        if summary.get("error"):
            line += f": {summary['error']}"
        if lines:
            print(line, flush=True)
        else:
            bar.write(line, file=sys.stderr)
            bar.update()
        started.next()

    try:
        if launcher == "inprocess" and jobs == 1:
            for spec in todo:
                done(execute(spec.to_dict(), str(out_root), threads=threads, progress=not lines, **common))
                if finished[-1].get(STORAGE_ERROR) is not None:  # the next run would train only to fail writing as well
                    break
        elif launcher in ("inprocess", "local"):
            _run_pool(todo, out_root, jobs, threads or _worker_threads(jobs), common, done)
        else:
            _run_submitit(
                suite, todo, out_root, launcher, jobs, threads or _worker_threads(jobs), common, done, partition
            )
    finally:
        bar.close()
    full = next((f for f in finished if f.get(STORAGE_ERROR) is not None), None)
    if full is not None:  # the post-run steps and the report would not be written either
        raise WriteError(full["errno"], full["error"])
    timed = suite.timing.enabled and launcher != "slurm"
    if timed and (
        _note_damaged(out_root / THROUGHPUT_FILE, "timing the configurations again")
        or finished
        or read_throughput(out_root, suite) is None
    ):
        rounds = suite.timing.passes * suite.timing.iterations
        what = f"timing each configuration against its baseline ({rounds} paired round{'s' * (rounds != 1)} each)"
        try:
            with phase(what):
                measure_throughput(suite, out_root, data_root=data_root, device=device)
        except WriteError:
            raise
        except Exception as err:  # the runs are recorded; a report without suite-level timings is still a report
            say(f"warning: timing the configurations failed, the report uses the per-run timings: {err}")
    if launcher != "slurm" and not suite.sweep:
        try:
            with phase("drawing the gallery's attention maps"):
                write_gallery(out_root, gallery_picks(suite, out_root), data_root)
        except WriteError:
            raise
        except Exception as err:  # the runs are recorded; the report says the gallery is missing
            say(f"warning: the gallery was not written: {err}")
    if suite.unbiased_reference and launcher != "slurm":
        if _note_damaged(out_root / REFERENCE_FILE, "measuring the reference again"):
            (out_root / REFERENCE_FILE).unlink()
        try:
            with phase("measuring where the unbiased model looks (the report's reference)"):
                write_references(suite.runs(), out_root, data_root, device=device)
        except WriteError:
            raise
        except Exception as err:  # a reference the report can do without; say why it is missing
            say(f"warning: the unbiased attention reference was not measured: {err}")
    return SuiteResult(planned, finished)


class _StartLines:
    """Says when runs start: the first `at_once` (those the launcher starts together) at once, so a user does not
    wait a whole run for the first line; with `every`, also each later one as a finished run frees its slot (the
    pool and the local executor take the runs in order)."""

    def __init__(self, todo: list[RunSpec], at_once: int, *, every: bool, show: bool) -> None:
        self.ids = [s.run_id for s in todo]
        self.at_once, self.every, self.show = max(1, at_once), every, show
        self.said = 0

    def first(self) -> None:
        if not self.show or not self.ids:
            return
        self.said = min(self.at_once, len(self.ids))
        what = ", ".join(self.ids[: self.said])
        rest = "" if self.every else "; a line as each run finishes (--verbose: as each starts)"
        print(f"starting {what}{rest}", flush=True)

    def next(self) -> None:
        if self.show and self.every and self.said < len(self.ids):
            print(f"starting {self.ids[self.said]}", flush=True)
            self.said += 1


def _note_damaged(path: Path, then: str) -> bool:
    """Whether the suite-level file `path` is there but damaged (truncated, garbled), saying so and what the runner
    does about it: the runner writes these files, so it replaces a damaged one."""
    if not path.is_file():
        return False
    try:
        if path.name == THROUGHPUT_FILE:
            throughput_rows(path.parent, set())
        elif path.name == REFERENCE_FILE:
            read_references(path.parent)
        else:
            read_json(path)
    except DamagedFile as err:
        say(f"note: {err}: {then}")
        return True
    return False


def prepare(todo: list[RunSpec], data_root: Path | None, *, device: str = "cpu") -> None:
    """Before any run starts: generate the built-in data, or check that a real dataset is where it should be (its
    folder, its biased split), and that ImageNet weights a model names are in the local cache, so a wrong path is
    one error now, not one failed record per run; generate a search's held-out selection data; then train each
    pre-trained start the runs name, once per configuration (a sweep may need several), before any worker needs
    it."""

    pretrained: dict[str, RunSpec] = {}
    for spec in todo:
        if spec.model_params.get("init", "scratch") == "pretrained-synthetic":
            pretrained.setdefault(pretrain_spec(spec).run_id, spec)
    seen: set[str] = set()
    for spec in todo:
        key = json.dumps([spec.dataset, spec.dataset_params, spec.model, spec.model_params], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        entry = registry.dataset(spec.dataset)
        entry.prepare(entry.config(spec.dataset_params), data_root)
        if spec.search or heldout_scored(spec):  # search trials and the diagnostics score held-out selection data
            ensure_data(spec.dataset, spec.dataset_params, data_root)
        weights = spec.model_params.get("weights")
        if weights is not None:
            path = imagenet_weights_path(spec.model, str(weights))
            if not path.is_file():
                raise FileNotFoundError(
                    f"{spec.model} ImageNet weights {path.name} (model.weights = {weights!r}) are not in the local "
                    f"torch cache: expected {path}; gain-bench never downloads weights (see docs/methods.md, Models)"
                )
    for spec in pretrained.values():
        ensure_pretrained(spec, data_root, device=device)


def _run_pool(
    todo: list[RunSpec], out_root: Path, jobs: int, threads: int, common: dict[str, Any], done: Callable
) -> None:
    context = multiprocessing.get_context("spawn")  # a forked torch process can deadlock in OpenMP
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(threads,))
    try:
        futures = {pool.submit(execute, s.to_dict(), str(out_root), threads=threads, **common): s for s in todo}
        for future in _as_done(list(futures)):
            try:
                done(future.result())
            except BrokenProcessPool as err:  # a worker died (killed, out of memory): its run is left to a re-run
                spec = futures[future]
                done({"run_id": spec.run_id, "label": spec.label, "status": FAILED, "seconds": 0.0,
                      "error": f"worker process died: {err}"})  # fmt: skip
    except BaseException:  # Ctrl-C: stop now; the interrupted and queued runs are left to a re-run
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate a pool's workers: calls already handed to them cannot be cancelled, and Python's exit would wait
    for them to finish."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() drops this attribute
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def _as_done(futures: list[Future]) -> Iterable[Future]:
    pending = set(futures)
    while pending:
        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
        yield from finished


def _run_submitit(
    suite: Suite,
    todo: list[RunSpec],
    out_root: Path,
    launcher: str,
    jobs: int,
    threads: int,
    common: dict[str, Any],
    done: Callable,
    partition: str = "",
) -> None:
    """Each run one submitit job. On SLURM (to `partition`, checked by `slurm.check_request`) all are submitted as
    one job array (`array_parallelism` caps how many run at once), watched by `slurm.QueueWatch`; submitit's local
    executor starts every job it is given, so at most `jobs` are in flight."""
    watch = None
    if launcher == "slurm":
        watch = slurm.QueueWatch(partition)
        say(slurm.describe(suite.slurm, partition, len(todo)))
        threads, in_flight = suite.slurm.cpus_per_task, len(todo)
    else:
        in_flight = jobs
    executor = make_executor(suite, launcher, out_root / "submitit" / "%j")

    def submit(spec: RunSpec) -> Any:
        return executor.submit(execute, spec.to_dict(), str(out_root), threads=threads, **common)

    queue = list(todo)
    active: dict[Any, RunSpec] = {}
    if launcher == "slurm":
        with slurm.submission_errors(), executor.batch():
            jobs_list = [submit(spec) for spec in queue]
        active = dict(zip(jobs_list, queue, strict=True))
        queue = []
    while queue or active:
        if watch is not None:
            watch.check(list(active))  # a job SLURM will never start: cancelled and reported, not waited on
        while queue and len(active) < in_flight:
            spec = queue.pop(0)
            active[submit(spec)] = spec
        for job in [j for j in active if j.done()]:
            spec = active.pop(job)
            try:
                done(job.result())
            except Exception as err:  # the job died (cancelled, timeout, node failure): its record says "running"
                done(
                    {
                        "run_id": spec.run_id,
                        "label": spec.label,
                        "status": FAILED,
                        "seconds": 0.0,
                        "error": _job_error(job, err),
                    }
                )
        time.sleep(0.2)


def _job_error(job: Any, err: Exception) -> str:
    """One line for a job that ended without a summary: its id, its last state and its log, or what it raised."""
    if isinstance(err, submitit.core.utils.UncompletedJobError):
        return f"job {job.job_id} ended without a result (state {job.state}); its log: {job.paths.stderr}"
    return f"job {job.job_id}: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}"


def make_executor(suite: Suite, launcher: str, folder: Path) -> Any:
    """A submitit executor: SLURM with the suite's `[slurm]` resources, or submitit's local executor."""
    if launcher == "slurm":
        return slurm.executor(suite.slurm, folder, f"gain-bench-{suite.name}")
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=7 * 24 * 60)  # a local run has no queue limit; [slurm] is for SLURM
    return executor
