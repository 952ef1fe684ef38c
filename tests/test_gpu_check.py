"""scripts/gpu_check.py's CPU dry path: the same code that runs on a GPU, on the small CNN."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_on_cpu_prints_and_saves_the_table(tmp_path):
    cmd = [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--device", "cpu", "--model", "small_cnn"]
    cmd += ["--size", "48", "--batch", "6", "--classes", "5", "--steps", "2", "--warmup", "1", "--skip-tests"]
    env = {**os.environ, "OUT": str(tmp_path)}
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "device cpu" in result.stdout and "x gradcam step" in result.stdout
    payload = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = payload["rows"]
    assert [(r["precision"], r["method"]) for r in rows] == [
        (p, m) for p in ("fp32", "bf16") for m in ("gradcam", "gain", "gain_ext")
    ]
    assert all(r["train_images_per_s"] > 0 and r["image_size"] == [48, 48] and r["batch_size"] == 6 for r in rows)
    assert [r["train_step_ratio_to_gradcam"] for r in rows if r["method"] == "gradcam"] == [1.0, 1.0]
    assert payload["tests_exit_status"] is None and payload["device"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_gpu_check_without_cuda_says_so():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--skip-tests"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "no CUDA device" in result.stderr


def test_gpu_check_compile_switch_reaches_the_timing_settings(monkeypatch):
    """`--compile` times compiled models: the flag reaches `TimingSettings.compile` (the compiled path itself is timed
    in tests/test_timing.py and, on CUDA, tests/test_cuda.py)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    seen = []

    def recorded(contenders, batch, class_index, settings):
        seen.append(settings.compile)
        return {m: {"train_step_seconds": 1.0, "compiled": settings.compile} for m in contenders}

    monkeypatch.setattr(gpu_check, "measure_interleaved", recorded)
    args = ["--device", "cpu", "--model", "small_cnn", "--size", "48", "--batch", "2", "--precisions", "fp32"]
    assert [r["compiled"] for r in gpu_check.measure_all(gpu_check.parse_args([*args, "--compile"]))] == [True] * 3
    gpu_check.measure_all(gpu_check.parse_args(args))
    assert seen == [True, False]
