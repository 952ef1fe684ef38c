"""Throughput of a method's training step and of attention inference (forward + Grad-CAM), in images/s.

Timed after `warmup` untimed repetitions; on CUDA the clock is read only after `torch.cuda.synchronize()`, so queued
kernels are counted. Peak memory is `torch.cuda.max_memory_allocated` on a GPU and the process's peak resident set
(`ru_maxrss`, whole process so far) on a CPU.
"""

from __future__ import annotations

import copy
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from benchmark.attention import grad_cam
from benchmark.methods import Method
from benchmark.models import SplitModel


@dataclass(frozen=True)
class TimingSettings:
    """Throughput measured after each run: train steps and attention batches, after `warmup` untimed ones."""

    enabled: bool = True
    batch_size: int = 64
    warmup: int = 2
    iterations: int = 5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step: Any, device: torch.device, warmup: int, iterations: int) -> float:
    """Seconds per call of `step()`, the median of `iterations` timed calls."""
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - started)
    times.sort()
    return times[len(times) // 2]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine()


def measure(
    model: SplitModel,
    method: Method,
    batch: dict[str, torch.Tensor],
    class_index: int,
    settings: TimingSettings,
) -> dict[str, Any]:
    """Train-step and attention throughput of `method` on `batch` (a copy of the model is trained, so the caller's
    weights do not change). Every image of the batch counts as pixel-labelled for a method that uses pixel labels,
    the dearest case. Records the device, precision, batch size, image size and thread count beside the figures."""
    device = batch["image"].device
    model = copy.deepcopy(model).to(device)
    n = batch["image"].shape[0]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)
    model.train()

    def train_step() -> None:
        parts = method.training_loss(model, batch, epoch=10**6)
        optimizer.zero_grad(set_to_none=True)
        parts["total"].backward()
        optimizer.step()

    train_s = _timed(train_step, device, settings.warmup, settings.iterations)
    model.eval()
    classes = torch.full((n,), class_index, device=device)

    def attention_step() -> None:
        grad_cam(model, batch["image"], classes)

    attention_s = _timed(attention_step, device, settings.warmup, settings.iterations)
    if device.type == "cuda":
        peak_mb, memory = torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    else:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_mb, memory = (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "process_peak_rss"
    return {
        "train_images_per_s": n / train_s,
        "attention_images_per_s": n / attention_s,
        "train_step_seconds": train_s,
        "attention_batch_seconds": attention_s,
        "batch_size": n,
        "image_size": list(batch["image"].shape[-2:]),
        "device": str(device),
        "device_name": device_name(device),
        "precision": "fp32",
        "threads": torch.get_num_threads(),
        "warmup": settings.warmup,
        "iterations": settings.iterations,
        "peak_memory_mb": peak_mb,
        "memory_kind": memory,
    }
