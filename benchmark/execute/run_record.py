"""A run's record as it starts (`new_record`: spec, keys, components, status) with the environment it ran in
(`environment`: versions, device, threads, commit), and the error a run fails with when its loss or logits stop
being finite (`NonFiniteLoss`)."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from typing import Any

import torch

from benchmark import __version__
from benchmark.core.provenance import cpu_identity, git_commit
from benchmark.core.registry import labels
from benchmark.core.spec import RunSpec
from benchmark.core.store import RECORD_SCHEMA


class NonFiniteLoss(RuntimeError):
    """A loss part became NaN or infinite; the run stops and records this reason."""


def new_record(spec: RunSpec, status: str, error: str | None = None) -> dict[str, Any]:
    """A run record's common fields (schema-versioned), before anything is measured."""
    return {
        "schema": RECORD_SCHEMA,
        "run_id": spec.run_id,
        "config_hash": spec.config_hash,
        "spec": spec.to_dict(),
        "label": spec.label,
        "status": status,
        "error": error,
        "curve": [],
        "metrics": {},
        "timings": {},
        "components": labels({"method": spec.method, "model": spec.model, "dataset": spec.dataset}),
        "keys": spec.keys(),
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def environment(device: str) -> dict[str, Any]:
    return {
        "gain_bench": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": f"{cpu_identity()}, torch kernels {torch.backends.cpu.get_cpu_capability()}",
    } | (  # the CUDA facts only where CUDA ran
        {
            "cuda": torch.version.cuda,
            "device_name": torch.cuda.get_device_name(device),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
        }
        if torch.device(device).type == "cuda"
        else {}
    )
