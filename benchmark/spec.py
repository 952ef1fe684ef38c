"""RunSpec: everything that defines one run, its readable `run_id` and the `config_hash` of what changes its result."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation and evaluation settings; the defaults train the small CNN on the built-in data in seconds."""

    epochs: int = 8
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 3e-3
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    mask_batch: int = 0
    threshold: float = 0.5
    eval_batch_size: int = 256
    flush_denormal: bool = True

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "mask_batch": self.mask_batch >= 0,
            "threshold": 0.0 < self.threshold < 1.0,
            "eval_batch_size": self.eval_batch_size >= 1,
            "optimizer": self.optimizer in ("adam", "sgd"),
            "schedule": self.schedule in ("onecycle", "constant"),
        }
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"train.{key}: invalid value {getattr(self, key)!r}")


@dataclass(frozen=True)
class RunSpec:
    """One run: dataset, model, method and its parameters, pixel-label budget, seed and training settings."""

    method: str
    budget: int = 0
    seed: int = 0
    method_params: dict[str, Any] = field(default_factory=dict)
    dataset: str = "synthetic-boats"
    dataset_params: dict[str, Any] = field(default_factory=dict)
    model: str = "small_cnn"
    model_params: dict[str, Any] = field(default_factory=dict)
    train: TrainSettings = field(default_factory=TrainSettings)
    audited_class: str = "boat"
    context: str = "water"
    budget_seed: int = 0
    suite: str = "adhoc"

    @property
    def run_id(self) -> str:
        return f"{self.method}-b{self.budget}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def config_hash(self) -> str:
        """sha256 of everything that changes the result (the suite's name does not)."""
        payload = {k: v for k, v in self.to_dict().items() if k != "suite"}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        data = dict(data)
        data["train"] = TrainSettings(**data.get("train", {}))
        return cls(**data)
