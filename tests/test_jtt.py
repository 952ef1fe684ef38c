"""JTT (Just Train Twice): its first phase is the baseline's run bit for bit, its error set is the training images
that phase gets wrong on the audited class, and those images weigh `upweight` times as much in the second phase's
loss (checked by hand on small inputs)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from benchmark.core.spec import RunSpec, TrainSettings
from benchmark.execute.checkpoints import load_checkpoint
from benchmark.execute.datasets.synthetic import SyntheticConfig, load
from benchmark.execute.methods import METHODS, build_method
from benchmark.execute.methods.jtt import audited_calls, upweights, weighted_loss
from benchmark.execute.models import build_model
from benchmark.execute.train import run

DATA = {"n_train": 96, "n_val": 24, "n_shifted": 12, "n_counterfactual": 8, "image_size": 24}


def test_the_weights_and_the_loss_by_hand() -> None:
    assert upweights(torch.tensor([True, False, True]), 20.0).tolist() == [20.0, 1.0, 20.0]
    logits = torch.tensor([[0.0, 0.0], [2.0, -1.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    l0 = math.log(2)  # both classes of image 0 at logit 0
    l1 = (math.log1p(math.exp(2.0)) + math.log1p(math.exp(-1.0))) / 2
    weights = torch.tensor([3.0, 1.0])
    assert float(weighted_loss(logits, labels, weights)) == pytest.approx((3 * l0 + l1) / 4, rel=1e-6)
    assert float(weighted_loss(logits, labels, torch.ones(2))) == pytest.approx((l0 + l1) / 2, rel=1e-6)


class _SaysBoat(torch.nn.Module):
    """Calls every image "boat" (class 0) and nothing else."""

    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = torch.full((len(images), 5), -5.0)
        logits[:, 0] = 5.0
        return logits


def test_the_error_set_is_what_the_identification_model_gets_wrong_and_weighs_upweight(tmp_path: Path) -> None:
    train = load(SyntheticConfig(**DATA), tmp_path)["train"]
    method = build_method("jtt", first_epochs=2, upweight=7.0)
    phases = []
    spec = RunSpec("jtt", dataset_params=DATA, train=TrainSettings(epochs=3))
    out = method.before_training(_SaysBoat(), train, spec, phase=lambda m, meth, n: phases.append((meth.name, n)) or [])
    assert phases == [("gradcam", 2)], "the first phase is the baseline's, for first_epochs epochs"
    without_boat = train.labels[:, 0] < 0.5
    assert out["error_set"] == out["error_set_without_class"] == int(without_boat.sum())
    assert out["error_set_with_class"] == 0
    batch = train.batch(torch.arange(len(train)))
    weights = method._weights[batch["index"]]
    assert torch.equal(weights, torch.where(without_boat, 7.0, 1.0)), "every image without a boat weighs 7, the rest 1"
    parts = method.training_loss(_SaysBoat(), batch, epoch=0)
    assert float(parts["total"]) == pytest.approx(float(weighted_loss(_SaysBoat()(batch["image"]), batch["labels"],
                                                                      weights)))  # fmt: skip


def test_its_first_phase_is_the_baselines_run_bit_for_bit(tmp_path: Path) -> None:
    settings = TrainSettings(epochs=3, batch_size=32, diagnostics=False)
    params = {"first_epochs": 2, "upweight": 5.0}
    jtt = RunSpec("jtt", seed=2, dataset_params=DATA, method_params=params, train=settings)
    base = RunSpec("gradcam", seed=2, dataset_params=DATA, train=dataclasses.replace(settings, epochs=2))
    records = {s.method: run(s, tmp_path / "out", data_root=tmp_path / "data", progress=False) for s in (jtt, base)}
    first = records["jtt"]["before_training"]
    assert [e["cl"] for e in first["curve"]] == [e["cl"] for e in records["gradcam"]["curve"]]
    model = load_checkpoint(tmp_path / "out" / "runs" / base.run_id / "model.pt", build_model(base.model, 5))
    train = load(SyntheticConfig(**DATA), tmp_path / "data")["train"]
    wrong = audited_calls(model, train, 0, 0.5, 256, "cpu") != (train.labels[:, 0] > 0.5)
    assert first["error_set"] == int(wrong.sum()) > 0 and first["training_images"] == len(train)
    assert len(records["jtt"]["curve"]) == 3 and records["jtt"]["status"] == "complete"


def test_jtt_is_listed_with_its_search_ranges_and_refuses_a_weight_below_one() -> None:
    h = METHODS["jtt"].HPARAMS
    assert (h["first_epochs"].describe(), h["upweight"].describe()) == ("integer [1, 4]", "log-uniform [2, 100]")
    with pytest.raises(ValueError, match="upweight at least 1"):
        build_method("jtt", upweight=0.5)
