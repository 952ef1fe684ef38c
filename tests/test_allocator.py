"""benchmark/execute/allocator.py: the malloc settings a run trains with, compared with glibc's defaults in fresh
processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import tiny_suite

from benchmark.execute.allocator import retain_freed_memory
from benchmark.execute.suites import load
from benchmark.execute.train import run

ROOT = Path(__file__).resolve().parents[1]

# A GAIN step on the small CNN, batch 64 at 48 px, as tests/perf/test_train_step.py times it: the median of the minor
# page faults of ten steps after ten warm-up steps, in a process that did or did not apply the settings. (With three
# warm-up steps and a mean over five, the retained heap was still growing in the measured steps: 583 faults a step
# against 1,400-18,000 for glibc's defaults, a ratio that failed a 0.2 bound by chance. The median of single steps
# is ~0 once the heap is warm, while the defaults fault thousands of pages in every step.)
FAULTS_PER_STEP = """
import json, resource, statistics, sys, torch
from benchmark.execute.allocator import retain_freed_memory
from benchmark.execute.methods import build_method
from benchmark.execute.models import build_model
from benchmark.execute.timing import example_batch
applied = retain_freed_memory()
torch.manual_seed(0)
model = build_model("small_cnn", 5).train().to(memory_format=torch.channels_last)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
method, batch = build_method("gain", warmup_epochs=0), example_batch(64, 48, 5)
def step():
    parts = method.training_loss(model, batch, epoch=1)
    optimizer.zero_grad(set_to_none=True)
    parts["total"].backward()
    optimizer.step()
for _ in range(10):
    step()
per_step = []
for _ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    per_step.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": statistics.median(per_step), "per_step": per_step}))
"""


def _faults_per_step(malloc: str) -> dict:
    env = {**os.environ, "GAIN_BENCH_MALLOC": malloc, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(retain_freed_memory() is None, reason="glibc's malloc settings (Linux with glibc)")
def test_the_settings_stop_the_per_step_page_faults_of_a_gain_step():
    default, kept = _faults_per_step("default"), _faults_per_step("")
    assert default["applied"] is None and kept["applied"].startswith("glibc")
    assert "mmap_threshold=32 MiB" in kept["applied"] and "trim_threshold=1024 MiB" in kept["applied"]
    if default["faults"] < 1000:
        pytest.skip(f"glibc's defaults fault only {default['faults']:.0f} pages a step here: nothing to compare")
    assert kept["faults"] < 0.2 * default["faults"], (default, kept)


def test_a_run_records_the_allocator_settings(tmp_path):
    (tmp_path / "tiny.toml").write_text(tiny_suite(timing=False))
    spec = load(tmp_path / "tiny.toml").runs()[0]
    record = run(spec, tmp_path / "out", data_root=tmp_path / "data", progress=False)
    assert record["status"] == "complete"
    assert record["environment"]["allocator"] == retain_freed_memory()
