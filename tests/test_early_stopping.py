"""`early_stopping`, the third forgetting control: the baseline's steps, then the weights of the epoch with the best
held-out score under a selection rule. Its trajectory is the baseline's step for step, with one epoch it is the
baseline bit for bit, the epoch it keeps is the best one (ties the earliest, a non-finite score never), and a
dataset without held-out selection splits is refused with the reason."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from real_data import real_data_root

from benchmark.cli import main
from benchmark.core.selection_rules import RULES
from benchmark.core.spec import RunSpec, TrainSettings
from benchmark.execute.checkpoints import load_checkpoint
from benchmark.execute.heldout import evaluate
from benchmark.execute.methods import build_method
from benchmark.execute.models import build_model
from benchmark.execute.train import run

DATA = {"n_train": 96, "n_val": 24, "n_shifted": 12, "n_counterfactual": 8, "image_size": 24}


def _spec(method: str, epochs: int, **params: object) -> RunSpec:
    return RunSpec(method, seed=3, dataset_params=DATA, method_params=params,
                   train=TrainSettings(epochs=epochs, batch_size=32, diagnostics=False))  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[RunSpec, dict, Path]]:
    root = tmp_path_factory.mktemp("early")
    out = {}
    for key, spec in {"base1": _spec("gradcam", 1), "early1": _spec("early_stopping", 1),
                      "base4": _spec("gradcam", 4), "early4": _spec("early_stopping", 4)}.items():  # fmt: skip
        record = run(spec, root / "out", data_root=root / "data", progress=False)
        out[key] = (spec, record, root / "out" / "runs" / spec.run_id)
    return out


def test_with_one_epoch_it_is_the_baseline_bit_for_bit(runs) -> None:
    (_, base, base_dir), (_, early, early_dir) = runs["base1"], runs["early1"]
    assert early["status"] == base["status"] == "complete"
    assert (early_dir / "predictions.csv").read_bytes() == (base_dir / "predictions.csv").read_bytes()
    assert early["after_training"]["epoch"] == 0 and early["after_training"]["rule"] == "in-distribution-val"
    assert early["after_training"]["metric"] == RULES["in-distribution-val"].metric == "val_map"


def test_it_trains_as_the_baseline_and_keeps_the_best_epochs_weights(runs) -> None:
    (_, base, _), (spec, early, early_dir) = runs["base4"], runs["early4"]
    assert [e["cl"] for e in early["curve"]] == [e["cl"] for e in base["curve"]], "the baseline's steps, bit for bit"
    chosen = early["after_training"]
    scores = chosen["scores"]
    assert chosen["epochs"] == len(scores) == 4 and chosen["metric"] == "val_map"
    assert scores[chosen["epoch"]] == max(scores) and all(s < max(scores) for s in scores[: chosen["epoch"]])
    assert [e["heldout_val_map"] for e in early["curve"]] == scores and len(set(scores)) > 1
    model = load_checkpoint(early_dir / "model.pt", build_model(spec.model, 5, **spec.model_params))
    rescored = evaluate(model, spec, early_dir.parent.parent.parent / "data")
    assert rescored["in-distribution-val"]["val_map"] == max(scores), "the saved weights are the chosen epoch's"
    if chosen["epoch"] < 3:
        assert early["metrics"] != base["metrics"]


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def _chosen(scores: list[float]) -> tuple[int, float]:
    method, model = build_method("early_stopping", rule="oracle"), _Tiny()
    for epoch, score in enumerate(scores):
        with torch.no_grad():
            model.w.fill_(epoch)
        method.epoch_end(model, epoch, {"oracle": {"worst_shifted_group_accuracy": score}})
    with torch.no_grad():
        model.w.fill_(99)
    out = method.after_training(model, None, torch.empty(0), None)
    return out["epoch"], float(model.w.detach())


def test_the_chosen_epoch_is_the_best_the_earliest_of_ties_and_never_a_non_finite_one() -> None:
    assert _chosen([0.5, 0.7, 0.6]) == (1, 1.0)
    assert _chosen([0.7, 0.5, 0.7]) == (0, 0.0), "a tie: the earliest"
    assert _chosen([math.nan, 0.2, math.nan]) == (1, 1.0)
    assert _chosen([math.nan, math.nan]) == (1, 99.0), "no finite score: the last epoch's weights stay"
    with pytest.raises(ValueError, match="rule must be one of in-distribution-val, worst-group-val, oracle"):
        build_method("early_stopping", rule="best")


def test_a_dataset_without_held_out_selection_splits_is_refused_with_the_reason(tmp_path: Path) -> None:
    data_root = real_data_root(tmp_path / "real")
    args = ["train", "--data", "voc", "--method", "early_stopping", "--epochs", "1", "--data-root", str(data_root),
            "--out", str(tmp_path / "out"), "--set", "data.image_size=32", "--quiet"]  # fmt: skip
    assert main(args) != 0
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").glob("*/record.json")]
    assert record["status"] == "failed"
    assert "only the built-in data (synthetic-boats) draws; dataset 'voc' has none" in record["error"]
