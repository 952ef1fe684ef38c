"""The SLURM cluster as the `slurm` launcher meets it: what its partitions' nodes offer (a request that no node can
ever satisfy is refused before anything is submitted), job states read from `squeue` (so a cluster without an
accounting database, where `sacct` answers "accounting storage is disabled", is watched without a warning per
poll), and the pending reasons that never clear (a job held for one is cancelled and reported, never waited on).

submitit still writes the job scripts, submits them and runs each job; this module replaces only its `sacct`-based
job watcher and adds the checks before and during the wait."""

from __future__ import annotations

import contextlib
import getpass
import re
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import submitit
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

from benchmark.core.settings import SlurmSettings
from benchmark.execute.suites import SuiteError

# Pending reasons (squeue's %r) after which SLURM will never start the job unless someone edits it or the cluster:
# squeue(1) "JOB REASON CODES". Any reason naming a per-job limit ("...PerJob...") belongs here too.
NEVER_CLEARS = {
    "PartitionConfig": "the request exceeds what the partition allows",
    "PartitionNodeLimit": "the request exceeds the partition's node limits",
    "PartitionTimeLimit": "the time limit exceeds the partition's maximum",
    "BadConstraints": "no node has the requested features",
    "InvalidAccount": "the account does not exist or may not use this partition",
    "InvalidQOS": "the quality of service does not exist or may not be used",
    "DependencyNeverSatisfied": "a job it depends on failed",
    "JobHeldAdmin": "an administrator holds it",
}
POLL_S = 15  # at most one squeue call per this many seconds, for all jobs of a suite


def never_clears(reason: str) -> str | None:
    """Why a job pending for `reason` will never start, or None when the reason can clear by itself."""
    if reason in NEVER_CLEARS:
        return NEVER_CLEARS[reason]
    if "PerJob" in reason:
        return "the request exceeds a per-job limit of the cluster"
    return None


@dataclass(frozen=True)
class Node:
    name: str
    partition: str
    cpus: int
    memory_mb: int
    gpus: int
    time_limit_min: float  # the partition's maximum; inf when unlimited


def _command(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise SuiteError(f"--launcher slurm: `{args[0]}` not found: this machine is not a SLURM login node "
                         "(use --launcher local or submitit-local here)") from None
    except subprocess.TimeoutExpired:
        raise SuiteError(f"--launcher slurm: `{' '.join(args)}` did not answer within 60 s") from None
    if done.returncode != 0:
        raise SuiteError(f"--launcher slurm: `{' '.join(args)}` failed: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _gpus(gres: str) -> int:
    """GPUs in an sinfo %G field such as `gpu:a100:4(S:0-1),shard:8` or `(null)`."""
    return sum(int(m.group(1)) for m in re.finditer(r"(?:^|,)gpu(?::[\w.-]+)?:(\d+)", gres))


def _minutes(limit: str) -> float:
    """A SLURM time limit in minutes: `infinite`, or M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (sinfo's %l)."""
    if limit in ("infinite", "UNLIMITED", "n/a", ""):
        return float("inf")
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:  # the clock after a day count starts with hours
        hours, minutes, seconds = [*parts, 0, 0][:3]
    else:  # without one, with minutes unless it has all three fields
        hours, minutes, seconds = parts if len(parts) == 3 else [0, *parts, 0][:3]
    return int(days or 0) * 1440 + hours * 60 + minutes + seconds / 60


def nodes() -> tuple[list[Node], str | None]:
    """Every (node, partition) pair of the cluster with what it offers, and the default partition."""
    rows, default = [], None
    for line in _command(["sinfo", "-h", "-N", "-o", "%N|%P|%c|%m|%G|%l"]).splitlines():
        name, partition, cpus, memory, gres, limit = line.strip().split("|")
        if partition.endswith("*"):
            partition = default = partition[:-1]
        memory_mb = int(memory.rstrip("+")) if memory.rstrip("+").isdigit() else 0
        rows.append(Node(name, partition, int(cpus.rstrip("+")), memory_mb, _gpus(gres), _minutes(limit)))
    return rows, default


def check_request(settings: SlurmSettings, cluster: tuple[list[Node], str | None] | None = None) -> str:
    """The partition the jobs go to, after checking that at least one of its nodes can run one: a request none can
    satisfy is a SuiteError naming the `[slurm]` key, what the cluster has and what to set."""
    rows, default = cluster if cluster is not None else nodes()
    names = sorted({n.partition for n in rows})
    partition = settings.partition or default
    listed = ", ".join(f"{p} (default)" if p == default else p for p in names) or "none"
    if partition is None:
        raise SuiteError(f"[slurm] partition is empty and the cluster has no default partition; "
                         f"its partitions: {listed} (--set slurm.partition=NAME)")
    members = [n for n in rows if n.partition == partition]
    if not members:
        raise SuiteError(f"[slurm] partition = {partition!r}: no such partition on this cluster; its partitions: "
                         f"{listed} (--set slurm.partition=NAME)")
    wants = [
        ("cpus_per_task", settings.cpus_per_task, lambda n: n.cpus, "CPUs", 1),
        ("mem_gb", settings.mem_gb, lambda n: n.memory_mb, "MB of memory", 1024),
        ("gpus_per_node", settings.gpus_per_node, lambda n: n.gpus, "GPUs", 1),
        ("timeout_min", settings.timeout_min, lambda n: n.time_limit_min, "minutes (its time limit)", 1),
    ]
    for key, value, offered, unit, scale in wants:
        most = max(offered(n) for n in members)
        if value * scale > most:
            fits = min(int(most // scale), 10**6)
            hints = [f"--set slurm.{key}={fits}"] if fits >= (key != "gpus_per_node") else []
            if others := sorted({n.partition for n in rows if offered(n) >= value * scale}):
                hints.append(f"a partition that has it: --set slurm.partition={'|'.join(others)}")
            hint = ", or ".join(hints) or "no partition of this cluster has it"
            raise SuiteError(f"[slurm] {key} = {value}: no node of partition {partition!r} has that many; the most "
                             f"it offers is {most:g} {unit} ({hint})")
    if not any(all(v * s <= f(n) for _, v, f, _, s in wants) for n in members):
        raise SuiteError(f"[slurm] no single node of partition {partition!r} has {settings.cpus_per_task} CPUs, "
                         f"{settings.mem_gb} GB and {settings.gpus_per_node} GPUs at once; its nodes: "
                         + ", ".join(f"{n.name} ({n.cpus} CPUs, {n.memory_mb} MB, {n.gpus} GPUs)" for n in members))
    return partition


def describe(settings: SlurmSettings, partition: str, count: int) -> str:
    """One line of what is asked of the cluster, said before submitting."""
    per_job = (f"{settings.cpus_per_task} CPU{'s' * (settings.cpus_per_task != 1)}, {settings.mem_gb} GB, "
               f"{settings.gpus_per_node} GPU{'s' * (settings.gpus_per_node != 1)}, {settings.timeout_min} min")
    what = f"{count} runs as one SLURM job array" if count > 1 else "1 run as one SLURM job"
    limit = f", at most {settings.array_parallelism} at once" if count > 1 else ""
    return (f"submitting {what} to partition {partition}: {per_job} per job{limit} ([slurm] of the suite; "
            "--set slurm.KEY=VALUE)")


class SqueueWatcher(SlurmInfoWatcher):
    """submitit's job watcher, reading `squeue` (this user's jobs, array tasks one per line, recently finished ones
    included) instead of `sacct`. A job that has left the queue is finished: its result file says how. One warning
    per outage of the controller, not one per poll."""

    def __init__(self, delay_s: int = POLL_S) -> None:
        super().__init__(delay_s=delay_s)
        self._failing = False

    def update(self) -> None:
        ids = {x.split("_")[0] for x in self._registered - self._finished}
        if not ids:
            return
        self._num_calls += 1
        self._last_status_check = time.time()
        try:
            out = subprocess.run(
                ["squeue", "-h", "-r", "--states=all", "-u", getpass.getuser(), "-o", "%i|%T|%r|%N"],
                capture_output=True, text=True, timeout=60, check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError) as err:
            if not self._failing:
                print(f"warning: squeue failed, job states are stale until it answers again: {err}", flush=True)
            self._failing = True
            return
        self._failing = False
        self._info_dict.update(self.read_info(out, ids))
        for job_id in self._registered - self._finished:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)

    def read_info(self, string: bytes | str, ids: Iterable[str] = ()) -> dict[str, dict[str, str]]:
        text = string.decode() if isinstance(string, bytes) else string
        seen: dict[str, dict[str, str]] = {}
        for line in text.splitlines():
            job_id, state, reason, node = [*line.strip().split("|", 3), "", "", ""][:4]
            if job_id.split("_")[0] in ids:
                seen[job_id] = {"JobID": job_id, "State": state, "Reason": reason, "NodeList": node}
        for job_id in self._registered - self._finished:
            if job_id not in seen and self._info_dict.get(job_id, {}).get("State") not in (None, "UNKNOWN"):
                seen[job_id] = self._info_dict[job_id] | {"State": "FINISHED", "Reason": "left the queue"}
        return seen


class SqueueJob(SlurmJob):
    watcher = SqueueWatcher()


class Executor(submitit.SlurmExecutor):
    """submitit's SLURM executor with jobs watched through `squeue` (submitit makes the tasks of an array plain
    `SlurmJob`s, watched through `sacct`: they are handed back as `SqueueJob`s)."""

    job_class = SqueueJob

    def _internal_process_submissions(self, delayed_submissions: list[Any]) -> list[Any]:
        jobs = super()._internal_process_submissions(delayed_submissions)
        return [
            job if isinstance(job, SqueueJob)
            else SqueueJob(folder=self.folder, job_id=job.job_id, tasks=list(range(job.num_tasks)))
            for job in jobs
        ]


def executor(settings: SlurmSettings, folder: Any, name: str) -> Executor:
    """An executor with the suite's `[slurm]` resources (the partition already checked by `check_request`)."""
    try:
        executor = Executor(folder=folder)
    except RuntimeError as err:
        raise SuiteError(f"--launcher slurm: {err} (use --launcher local or submitit-local on this machine)") from None
    params: dict[str, Any] = {
        "time": settings.timeout_min,
        "cpus_per_task": settings.cpus_per_task,
        "mem": f"{settings.mem_gb}GB",
        "array_parallelism": settings.array_parallelism,
        "job_name": name,
    }
    if settings.gpus_per_node:
        params["gpus_per_node"] = settings.gpus_per_node
    params |= {k: getattr(settings, k) for k in ("partition", "account", "constraint") if getattr(settings, k)}
    executor.update_parameters(**params)
    return executor


@contextlib.contextmanager
def submission_errors() -> Iterator[None]:
    """sbatch refusing the jobs (an unknown account or feature, a request over a limit) as a SuiteError with its
    message, not a traceback."""
    try:
        yield
    except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", None) or err
        detail = detail.decode() if isinstance(detail, bytes) else str(detail)
        raise SuiteError(f"sbatch refused the suite's jobs: {detail.strip()} ([slurm] of the suite, or --set "
                         "slurm.KEY=VALUE)") from None


def held(jobs: Iterable[Any]) -> tuple[str, str, str] | None:
    """(job id, reason, why) of the first job pending for a reason that never clears, from the watcher's last
    reading."""
    for job in jobs:
        info = SqueueJob.watcher.get_info(job.job_id, mode="cache")
        if info.get("State") == "PENDING" and (why := never_clears(info.get("Reason", ""))):
            return job.job_id, info["Reason"], why
    return None


def pending(jobs: Iterable[Any]) -> dict[str, int]:
    """How many of `jobs` are pending, by reason, from the watcher's last reading."""
    counts: dict[str, int] = {}
    for job in jobs:
        info = SqueueJob.watcher.get_info(job.job_id, mode="cache")
        if info.get("State") == "PENDING":
            counts[info.get("Reason", "")] = counts.get(info.get("Reason", ""), 0) + 1
    return counts


def cancel(jobs: Iterable[Any]) -> None:
    ids = sorted({str(job.job_id).split("_")[0] for job in jobs})
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, check=False)


class QueueWatch:
    """What the runner checks while it waits for a suite's jobs: one held for a reason that never clears is an error
    (every job of the suite is cancelled first: `SuiteError` with SLURM's reason and what to change); jobs that are
    all still pending are said once a minute with their reasons, so a wait is never silent."""

    def __init__(self, partition: str, every_s: float = 60.0) -> None:
        self.partition = partition
        self.every_s = every_s
        self._said = time.monotonic()

    def check(self, jobs: list[Any]) -> None:
        if (stuck := held(jobs)) is not None:
            cancel(jobs)
            job_id, reason, why = stuck
            raise SuiteError(
                f"SLURM will never start job {job_id}: it is pending with reason {reason} ({why}); every job of this "
                f"suite was cancelled. Change the request ([slurm] of the suite, or --set slurm.KEY=VALUE; "
                f"`scontrol show partition {self.partition}` lists the partition's limits) and run again: finished "
                "runs are kept"
            )
        if time.monotonic() - self._said >= self.every_s:
            self._said = time.monotonic()
            counts = pending(jobs)
            if counts and sum(counts.values()) == len(jobs):
                reasons = ", ".join(f"{n} {r or 'no reason given'}" for r, n in sorted(counts.items()))
                print(f"waiting: {len(jobs)} job{'s' * (len(jobs) != 1)} pending in SLURM ({reasons})", flush=True)
