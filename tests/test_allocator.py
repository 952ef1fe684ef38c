import resource
import sys

import pytest
import torch
from tiny import tiny_suite

from benchmark.allocator import retain_freed_memory
from benchmark.suites import load
from benchmark.train import run


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_freed_buffers_are_reused_without_page_faults():
    described = retain_freed_memory()
    if described is None:
        pytest.skip("not glibc")
    assert described.startswith("glibc") and "mmap_threshold=32 MiB" in described
    assert retain_freed_memory() == described, "applied once per process"
    for _ in range(10):  # 20 MiB, below the raised mmap threshold: from the heap; glibc settles in a few rounds
        torch.empty(5 * 2**20).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.empty(5 * 2**20).fill_(1.0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 500, f"{faults} page faults for 10 reused 20 MiB buffers (5120 pages each when faulted in)"


def test_a_run_records_the_allocator_settings(tmp_path):
    (tmp_path / "tiny.toml").write_text(tiny_suite(timing=False))
    spec = load(tmp_path / "tiny.toml").runs()[0]
    record = run(spec, tmp_path / "out", data_root=tmp_path / "data", progress=False)
    assert record["status"] == "complete"
    assert record["environment"]["allocator"] == retain_freed_memory()
