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
    assert "device cpu" in result.stdout and "x base" in result.stdout and "dense peak TFLOPS" in result.stdout
    payload = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = payload["rows"]
    assert [(r["precision"], r["method"]) for r in rows] == [
        (p, m) for p in ("fp32", "bf16") for m in ("gradcam", "gain", "gain_ext", "floor")
    ]
    assert all(r["train_images_per_s"] > 0 and r["image_size"] == [48, 48] and r["batch_size"] == 6 for r in rows)
    assert [r["train_step_ratio_to_gradcam"] for r in rows if r["method"] == "gradcam"] == [1.0, 1.0]
    assert payload["tests_exit_status"] is None and payload["device"] == "cpu"
    flops = {r["method"]: r["step_gflop"] for r in rows if r["precision"] == "fp32"}
    assert 0 < flops["gradcam"] < flops["floor"] < flops["gain"], "GAIN's step does the floor's work and more"
    assert all(r["mfu"] is None and r["achieved_tflops"] > 0 for r in rows), "no peak known for a CPU"
    assert all(r["cudnn_benchmark"] for r in rows)


def test_the_peak_of_known_cards_is_looked_up_by_name():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert gpu_check.peak_tflops("NVIDIA H200", "bf16") == 989.4
    assert gpu_check.peak_tflops("NVIDIA H100 80GB HBM3", "fp32") == 494.7, "fp32 convolutions run as TF32"
    assert gpu_check.peak_tflops("x86_64", "bf16") is None


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
        figures = {"train_step_seconds": 1.0, "compiled": settings.compile, "precision": settings.precision}
        figures |= {"batch_size": 2, "train_images_per_s": 2.0, "peak_memory_mb": 1.0}
        return dict.fromkeys(contenders, figures)

    monkeypatch.setattr(gpu_check, "measure_interleaved", recorded)
    args = ["--device", "cpu", "--model", "small_cnn", "--size", "48", "--batches", "2", "--precisions", "fp32"]
    assert [r["compiled"] for r in gpu_check.measure_all(gpu_check.parse_args([*args, "--compile"]))] == [True] * 4
    gpu_check.measure_all(gpu_check.parse_args(args))
    assert seen == [True, False]
