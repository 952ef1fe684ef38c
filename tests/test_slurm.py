"""The SLURM launcher's reading of the cluster, without one: sinfo's fields, the request check, the pending reasons
that never clear, and the squeue-based job watcher (tests/test_slurm_cluster.py runs the same against a real one)."""

from __future__ import annotations

import math

import pytest

from benchmark.core.settings import SlurmSettings
from benchmark.execute import slurm
from benchmark.execute.suites import SuiteError


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [("(null)", 0), ("gpu:4", 4), ("gpu:a100:8(S:0-1)", 8), ("gpu:a100:2,gpu:v100:1", 3), ("shard:8,gpu:h100:4", 4),
     ("mps:100", 0)],
)
def test_gpus_are_read_from_the_gres_field(gres, gpus):
    assert slurm._gpus(gres) == gpus


@pytest.mark.parametrize(
    ("limit", "minutes"),
    [("infinite", math.inf), ("30:00", 30), ("2:00:00", 120), ("1-12:00:00", 36 * 60), ("45", 45), ("0:30", 0.5),
     ("2-06", 54 * 60), ("1-00:30", 24 * 60 + 30)],
)
def test_time_limits_are_read_in_minutes(limit, minutes):
    assert slurm._minutes(limit) == minutes


CLUSTER = (
    [
        slurm.Node("cpu1", "cpu", 32, 128_000, 0, 24 * 60),
        slurm.Node("gpu1", "gpu", 16, 64_000, 4, 48 * 60),
        slurm.Node("gpu2", "gpu", 64, 512_000, 0, 48 * 60),
    ],
    "cpu",
)


def _settings(**values) -> SlurmSettings:
    return SlurmSettings(**values)


def test_a_request_that_fits_goes_to_the_named_or_default_partition():
    assert slurm.check_request(_settings(cpus_per_task=32, mem_gb=100), CLUSTER) == "cpu"
    assert slurm.check_request(_settings(partition="gpu", gpus_per_node=4, cpus_per_task=8), CLUSTER) == "gpu"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cpus_per_task": 33}, "[slurm] cpus_per_task = 33: no node of partition 'cpu' has that many; the most it "
                                "offers is 32 CPUs (--set slurm.cpus_per_task=32, or a partition that has it: "
                                "--set slurm.partition=gpu)"),
        ({"mem_gb": 200}, "[slurm] mem_gb = 200: no node of partition 'cpu' has that many; the most it offers is "
                          "128000 MB of memory (--set slurm.mem_gb=125, or a partition that has it: --set "
                          "slurm.partition=gpu)"),
        ({"gpus_per_node": 1}, "[slurm] gpus_per_node = 1: no node of partition 'cpu' has that many; the most it "
                               "offers is 0 GPUs (--set slurm.gpus_per_node=0, or a partition that "
                               "has it: --set slurm.partition=gpu)"),
        ({"timeout_min": 2000}, "[slurm] timeout_min = 2000: no node of partition 'cpu' has that many; the most it "
                                "offers is 1440 minutes (its time limit) (--set slurm.timeout_min=1440, or a "
                                "partition that has it: --set slurm.partition=gpu)"),
        ({"cpus_per_task": 100}, "[slurm] cpus_per_task = 100: no node of partition 'cpu' has that many; the most it "
                                 "offers is 32 CPUs (--set slurm.cpus_per_task=32)"),
        ({"partition": "big"}, "[slurm] partition = 'big': no such partition on this cluster; its partitions: cpu "
                               "(default), gpu (--set slurm.partition=NAME)"),
        ({"partition": "gpu", "gpus_per_node": 4, "cpus_per_task": 32},
         "[slurm] no single node of partition 'gpu' has 32 CPUs, 16 GB and 4 GPUs at once; its nodes: gpu1 (16 "
         "CPUs, 64000 MB, 4 GPUs), gpu2 (64 CPUs, 512000 MB, 0 GPUs)"),
    ],
)
def test_a_request_no_node_can_run_names_the_key_what_the_cluster_has_and_what_to_set(values, message):
    with pytest.raises(SuiteError) as caught:
        slurm.check_request(_settings(**values), CLUSTER)
    assert str(caught.value) == message


def test_without_a_partition_or_a_default_one_the_choice_is_asked_for():
    with pytest.raises(SuiteError, match=r"partition is empty and the cluster has no default partition; its "
                                         r"partitions: cpu, gpu"):
        slurm.check_request(_settings(), (CLUSTER[0], None))


def test_reasons_that_never_clear_are_told_from_those_that_do():
    assert slurm.never_clears("PartitionConfig") == "the request exceeds what the partition allows"
    assert slurm.never_clears("QOSMaxGRESPerJob") == "the request exceeds a per-job limit of the cluster"
    for reason in ("Resources", "Priority", "JobArrayTaskLimit", "ReqNodeNotAvail", "None", ""):
        assert slurm.never_clears(reason) is None, reason


def test_the_watcher_reads_squeue_and_a_task_that_left_the_queue_is_finished():
    watcher = slurm.SqueueWatcher()
    for job_id in ("7_0", "7_1", "7_2"):
        watcher.register_job(job_id)
    first = "7_0|RUNNING|None|node1\n7_1|PENDING|JobArrayTaskLimit|\n7_2|PENDING|PartitionConfig|\n9|RUNNING|None|x\n"
    watcher._info_dict.update(watcher.read_info(first, {"7"}))
    assert watcher.get_info("7_1", mode="cache") == {"JobID": "7_1", "State": "PENDING",
                                                    "Reason": "JobArrayTaskLimit", "NodeList": ""}
    assert "9" not in watcher._info_dict, "other jobs of the user are not the suite's"
    assert not watcher.is_done("7_0", mode="cache") and not watcher.is_done("7_1", mode="cache")
    jobs = [type("J", (), {"job_id": j})() for j in ("7_0", "7_1", "7_2")]
    slurm.SqueueJob.watcher, saved = watcher, slurm.SqueueJob.watcher
    try:
        assert slurm.held(jobs) == ("7_2", "PartitionConfig", "the request exceeds what the partition allows")
        assert slurm.pending(jobs) == {"JobArrayTaskLimit": 1, "PartitionConfig": 1}
    finally:
        slurm.SqueueJob.watcher = saved
    # 7_0 left the queue (aged out of squeue's view); 7_1 runs; 7_2 was cancelled
    watcher._info_dict.update(watcher.read_info("7_1|RUNNING|None|node1\n7_2|CANCELLED|None|\n", {"7"}))
    assert watcher.get_state("7_0", mode="cache") == "FINISHED" and watcher.is_done("7_0", mode="cache")
    assert watcher.get_state("7_2", mode="cache") == "CANCELLED" and watcher.is_done("7_2", mode="cache")
    assert not watcher.is_done("7_1", mode="cache")


def test_a_task_squeue_has_not_listed_yet_is_not_taken_for_finished():
    watcher = slurm.SqueueWatcher()
    watcher.register_job("8_0")
    watcher._info_dict.update(watcher.read_info("", {"8"}))
    assert watcher.get_state("8_0", mode="cache") == "UNKNOWN" and not watcher.is_done("8_0", mode="cache")


def test_the_submission_line_says_every_resource_it_assumes():
    line = slurm.describe(_settings(cpus_per_task=1, mem_gb=2), "debug", 3)
    assert line == ("submitting 3 runs as one SLURM job array to partition debug: 1 CPU, 2 GB, 0 GPUs, 60 min per "
                    "job, at most 64 at once ([slurm] of the suite; --set slurm.KEY=VALUE)")
