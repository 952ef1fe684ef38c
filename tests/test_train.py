import json

import pytest
import torch

from benchmark.cli import main
from benchmark.datasets.budgets import PAPER_BUDGETS, budget_pool, nested_budget
from benchmark.methods import METHODS
from benchmark.methods.gradcam import GradCAMBaseline
from benchmark.models import build_model
from benchmark.spec import RunSpec, TrainSettings
from benchmark.train import load_checkpoint, load_data, run

SMALL = {"n_train": 240, "n_val": 60, "n_shifted": 40, "n_counterfactual": 30}
FAST = TrainSettings(epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def spec(**kw) -> RunSpec:
    base = {"method": "gradcam", "dataset_params": SMALL, "train": FAST}
    return RunSpec(**(base | kw))


def test_one_run_end_to_end(tmp_path, data_root):
    record = run(
        spec(method="gain_ext", budget=9, method_params={"warmup_epochs": 1}),
        tmp_path,
        data_root=data_root,
        progress=False,
    )
    out = tmp_path / "runs" / "gain_ext-b9-s0"
    assert record["status"] == "complete"
    on_disk = json.loads((out / "record.json").read_text())
    assert on_disk["config_hash"] == record["config_hash"] and on_disk["schema"] == 1
    assert [c["epoch"] for c in on_disk["curve"]] == [0, 1]
    assert on_disk["curve"][0]["am"] == 0.0 and on_disk["curve"][1]["am"] > 0.0
    assert on_disk["curve"][0]["e"] == 0.0 and on_disk["curve"][1]["e"] > 0.0
    metrics = on_disk["metrics"]
    for key in (
        "val_accuracy",
        "class_without_context",
        "context_without_class",
        "overall",
        "shifted_auroc",
        "context_attention_share",
        "context_flip_rate",
    ):
        assert 0.0 <= metrics[key] <= 1.0, key
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0].startswith("role,id,row,pair,has_context,label_boat")
    assert len(lines) == 1 + 60 + 2 * 40 + 3 * 30
    model = load_checkpoint(out / "model.pt", build_model("small_cnn", 5))
    assert isinstance(model, torch.nn.Module)


def test_same_seed_same_metrics_and_other_seed_differs(tmp_path, data_root):
    first = run(spec(seed=3), tmp_path / "a", data_root=data_root, progress=False)
    second = run(spec(seed=3), tmp_path / "b", data_root=data_root, progress=False)
    third = run(spec(seed=4), tmp_path / "c", data_root=data_root, progress=False)
    assert first["metrics"] == second["metrics"]
    assert first["curve"][-1]["total"] == second["curve"][-1]["total"]
    assert first["curve"][-1]["total"] != third["curve"][-1]["total"]
    assert first["config_hash"] != third["config_hash"]


class _Exploding(GradCAMBaseline):
    name = "exploding"

    def training_loss(self, model, batch, *, epoch):
        parts = super().training_loss(model, batch, epoch=epoch)
        if epoch == 1:
            parts["total"] = parts["total"] * float("nan")
        return parts


def test_non_finite_loss_fails_the_run_with_its_reason(tmp_path, data_root, monkeypatch):
    monkeypatch.setitem(METHODS, "exploding", _Exploding)
    record = run(spec(method="exploding"), tmp_path, data_root=data_root, progress=False)
    assert record["status"] == "failed"
    assert "non-finite loss at epoch 1, step 0: total=nan" in record["error"]
    on_disk = json.loads((tmp_path / "runs" / "exploding-b0-s0" / "record.json").read_text())
    assert on_disk["status"] == "failed" and on_disk["error"] == record["error"]
    assert not (tmp_path / "runs" / "exploding-b0-s0" / "model.pt").exists()


def test_budget_errors(tmp_path, data_root):
    with pytest.raises(ValueError, match="uses no pixel labels"):
        run(spec(method="gain", budget=9), tmp_path, data_root=data_root, progress=False)
    with pytest.raises(ValueError, match=r"budget 1464 is larger than its pool of \d+ images"):
        run(spec(method="gain_ext", budget=1464), tmp_path, data_root=data_root, progress=False)


def test_budgets_are_nested_and_seeded(data_root):
    train = load_data(spec(), data_root)["train"]
    pool = budget_pool(train.labels, 0)
    assert (train.labels[pool, 0] == 1).all()
    subsets = [set(nested_budget(pool, b, seed=0).tolist()) for b in (9, 23, 78)]
    assert [len(s) for s in subsets] == [9, 23, 78]
    assert subsets[0] <= subsets[1] <= subsets[2]
    assert nested_budget(pool, 23, seed=0).tolist() == nested_budget(pool, 23, seed=0).tolist()
    assert set(nested_budget(pool, 23, seed=1).tolist()) != subsets[1]
    assert PAPER_BUDGETS == (9, 23, 78, 200, 1464)


def test_mask_batch_adds_budget_images_to_every_step(tmp_path, data_root, monkeypatch):
    seen = []

    class Spy(GradCAMBaseline):
        name = "spy"
        uses_pixel_labels = True

        def training_loss(self, model, batch, *, epoch):
            seen.append(int(batch["has_mask"].sum()))
            return super().training_loss(model, batch, epoch=epoch)

    monkeypatch.setitem(METHODS, "spy", Spy)
    settings = TrainSettings(epochs=1, batch_size=32, mask_batch=4)
    run(spec(method="spy", budget=9, train=settings), tmp_path, data_root=data_root, progress=False)
    assert len(seen) == 240 // 32 + 1 and min(seen) >= 4


def test_cli_train_prints_the_paper_row(tmp_path, data_root, capsys):
    args = [
        "train",
        "--method",
        "gradcam",
        "--seed",
        "0",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        "--quiet",
        "--data-root",
        str(data_root),
    ] + [f"--set=data.{k}={v}" for k, v in SMALL.items()]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "gradcam-b0-s0" in out and "boat w/o water" in out and "water w/o boat" in out


def test_cli_reports_bad_settings(tmp_path, data_root, capsys):
    args = [
        "train",
        "--method",
        "gain",
        "--out",
        str(tmp_path),
        "--quiet",
        "--data-root",
        str(data_root),
        "--set",
        "method.alhpa=2",
    ]
    assert main(args) == 2
    assert "unknown parameter(s) alhpa" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown train key 'epoch'"):
        main(["train", "--method", "gain", "--set", "train.epoch=2"])


def test_predict_restores_the_models_mode(data_root):
    from benchmark.train import predict

    s = spec()
    data = {k: v for k, v in load_data(s, data_root).items() if k in ("train", "val")}
    model = build_model("small_cnn", 5).eval()
    out = predict(model, data, 0, s)
    assert not model.training
    assert set(out) == {"val"} and out["val"]["scores"].shape == (60, 5)
    model.train()
    predict(model, data, 0, s)
    assert model.training
