import json

import numpy as np
import pytest
import torch

from benchmark.analyse.summary import load_records, summarise
from benchmark.cli import main
from benchmark.core.predictions import audited_view, read_predictions
from benchmark.core.spec import RunSpec, TrainSettings
from benchmark.execute.checkpoints import load_checkpoint
from benchmark.execute.datasets.budgets import PAPER_BUDGETS, budget_pool, nested_budget
from benchmark.execute.methods import METHODS
from benchmark.execute.methods.gradcam import GradCAMBaseline
from benchmark.execute.metrics import audit_metrics
from benchmark.execute.models import build_model
from benchmark.execute.prediction import predict
from benchmark.execute.train import load_data, run

SMALL = {"n_train": 240, "n_val": 60, "n_shifted": 40, "n_counterfactual": 30}
FAST = TrainSettings(epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def spec(**kw) -> RunSpec:
    base = {"method": "gradcam", "dataset_params": SMALL, "train": FAST}
    return RunSpec(**(base | kw))


def test_one_run_end_to_end(tmp_path, data_root):
    s = spec(method="gain_ext", budget=9, method_params={"warmup_epochs": 1})
    record = run(s, tmp_path, data_root=data_root, progress=False)
    out = tmp_path / "runs" / s.run_id
    assert s.run_id.startswith("gain_ext-b9-s0-") and record["status"] == "complete"
    on_disk = json.loads((out / "record.json").read_text())
    assert on_disk["config_hash"] == s.config_hash and on_disk["schema"] == 1
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
        "context_flip_rate",
        "object_removal_flip_rate",
        "object_only_accuracy",
        "usual_background_accuracy",
        "random_background_accuracy",
    ):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["background_gap"] == metrics["usual_background_accuracy"] - metrics["random_background_accuracy"]
    assert (
        metrics["context_attention_share"] == metrics["context_attention_share"]
        or metrics["context_attention_zero_maps"] > 0
    )

    preds, classes = read_predictions(out / "predictions.csv")
    assert classes == ("boat", "car", "bird", "person", "tree")
    assert {k: len(v["ids"]) for k, v in preds.items()} == {
        "val": 60,
        "class_without_context": 40,
        "context_without_class": 40,
        "cf_original": 30,
        "cf_context_swapped": 30,
        "cf_object_removed": 30,
        "cf_object_only": 30,
    }
    recomputed = audit_metrics({role: audited_view(p, 0) for role, p in preds.items()}, 0.5, classes=classes)
    assert json.loads(json.dumps(recomputed)) == metrics, "metrics must be recomputable from predictions.csv"

    model = load_checkpoint(out / "model.pt", build_model("small_cnn", 5))
    again = predict(model, {"val": load_data(s, data_root)["val"]}, 0, s)
    np.testing.assert_allclose(again["val"]["logits"], preds["val"]["logits"], rtol=1e-5, atol=1e-5)


def test_same_seed_same_results_and_other_seed_differs(tmp_path, data_root):
    s = spec(
        method="gain_ext",
        budget=9,
        seed=3,
        method_params={"warmup_epochs": 1},
        train=TrainSettings(epochs=2, batch_size=32, mask_batch=4),
    )
    first = run(s, tmp_path / "a", data_root=data_root, progress=False)
    second = run(s, tmp_path / "b", data_root=data_root, progress=False)
    third = run(
        spec(
            method="gain_ext",
            budget=9,
            seed=4,
            method_params={"warmup_epochs": 1},
            train=TrainSettings(epochs=2, batch_size=32, mask_batch=4),
        ),
        tmp_path / "c",
        data_root=data_root,
        progress=False,
    )
    assert first["metrics"] == second["metrics"]
    files = [(tmp_path / d / "runs" / s.run_id / "predictions.csv").read_bytes() for d in ("a", "b")]
    assert files[0] == files[1]
    assert first["curve"][-1]["total"] != third["curve"][-1]["total"]
    assert first["config_hash"] != third["config_hash"]


def test_config_hash_covers_results_not_spelling():
    base = spec(method="gain")
    assert spec(method="gain", method_params={"alpha": 1.0}).config_hash == base.config_hash
    assert spec(method="gain", dataset_params=SMALL | {"rho": 0.99}).config_hash == base.config_hash
    assert spec(method="gain", suite="other").config_hash == base.config_hash
    changed = [
        spec(method="gain", method_params={"alpha": 0.3}),
        spec(method="gain", model="resnet18"),
        spec(method="gain", dataset_params=SMALL | {"rho": 0.95}),
        spec(method="gain", budget_seed=1),
        spec(method="gain", train=TrainSettings(epochs=3, batch_size=32)),
    ]
    hashes = {c.config_hash for c in changed} | {base.config_hash}
    assert len(hashes) == len(changed) + 1
    assert len({c.run_id for c in changed} | {base.run_id}) == len(changed) + 1, "run ids must not collide"


class _Exploding(GradCAMBaseline):
    name = "exploding"

    def training_loss(self, model, batch, *, epoch):
        parts = super().training_loss(model, batch, epoch=epoch)
        if epoch == 1:
            parts["total"] = parts["total"] * float("nan")
        return parts


def test_non_finite_loss_fails_the_run_with_its_reason_and_leaves_no_stale_files(tmp_path, data_root, monkeypatch):
    monkeypatch.setitem(METHODS, "exploding", _Exploding)
    s = spec(method="exploding")
    out = tmp_path / "runs" / s.run_id
    out.mkdir(parents=True)
    (out / "model.pt").write_bytes(b"an earlier attempt")
    (out / "predictions.csv").write_text("an earlier attempt")
    record = run(s, tmp_path, data_root=data_root, progress=False)
    assert record["status"] == "failed"
    assert "non-finite loss at epoch 1, step 0: total=nan" in record["error"]
    on_disk = json.loads((out / "record.json").read_text())
    assert on_disk["status"] == "failed" and on_disk["error"] == record["error"]
    assert not (out / "model.pt").exists() and not (out / "predictions.csv").exists()
    assert not torch.tensor(1e-40).eq(0).item(), "flush-denormal must not leak out of a run"


def test_budget_errors_are_raised_before_anything_is_written(tmp_path, data_root):
    with pytest.raises(ValueError, match="uses no pixel labels"):
        run(spec(method="gain", budget=9), tmp_path, data_root=data_root, progress=False)
    with pytest.raises(ValueError, match=r"budget 1464 is larger than its pool of \d+ images"):
        run(spec(method="gain_ext", budget=1464), tmp_path, data_root=data_root, progress=False)
    assert not (tmp_path / "runs").exists()


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
            seen.append((batch["index"].clone(), batch["has_mask"].clone()))
            return super().training_loss(model, batch, epoch=epoch)

    monkeypatch.setitem(METHODS, "spy", Spy)
    settings = TrainSettings(epochs=1, batch_size=32, mask_batch=4, diagnostics=False)  # no probe batches
    run(spec(method="spy", budget=9, train=settings), tmp_path, data_root=data_root, progress=False)
    train = load_data(spec(), data_root)["train"]
    budget = nested_budget(budget_pool(train.labels, 0), 9, seed=0)
    assert len(seen) == 240 // 32 + 1
    for index, has_mask in seen:
        assert torch.equal(has_mask, torch.isin(index, budget)), "has_mask must mark exactly the budget images"
        assert has_mask[-4:].all()


def _cli(tmp_path, data_root, *args):
    return main(
        [
            "train",
            "--out",
            str(tmp_path),
            "--quiet",
            "--data-root",
            str(data_root),
            "--epochs",
            "1",
            *[f"--set=data.{k}={v}" for k, v in SMALL.items()],
            *args,
        ]
    )


def test_cli_train_prints_the_paper_row(tmp_path, data_root, capsys):
    assert _cli(tmp_path, data_root, "--method", "gain_ext", "--budget", "9", "--seed", "0") == 0
    out = capsys.readouterr().out
    record = json.loads(next((tmp_path / "runs").glob("gain_ext-b9-s0-*/record.json")).read_text())
    assert "boat w/o water" in out and "water w/o boat" in out
    row = out.splitlines()[-1].split()
    assert row[0] == record["run_id"]
    assert float(row[1]) == pytest.approx(record["metrics"]["val_accuracy"], abs=5e-4)
    assert float(row[3]) == pytest.approx(record["metrics"]["context_without_class"], abs=5e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "gain", "--set", "method.alhpa=2"], "unknown parameter(s) alhpa"),
        (["--method", "gain", "--set", "train.epoch=2"], "unknown key train.epoch; allowed: epochs,"),
        (["--method", "gain", "--set", "train.lr=true"], "train.lr = True: allowed: a number > 0"),
        (["--method", "gain", "--set", "train.batch_size=2.5"], "train.batch_size = 2.5: allowed: an integer >= 1"),
        (["--method", "gain", "--set", "data.rh0=0.9"], "unknown data key(s) rh0 for dataset synthetic-boats"),
        (["--method", "gain", "--set", "model.attention_layr=block3"], "unknown model (small_cnn) key(s)"),
        (["--method", "gain", "--set", "oops"], "expected KEY=VALUE"),
        (["--method", "gain", "--budget", "9"], "uses no pixel labels"),
    ],
)
def test_cli_reports_bad_input_with_exit_code_2(tmp_path, data_root, capsys, args, message):
    assert _cli(tmp_path, data_root, *args) == 2
    assert message in capsys.readouterr().err


def test_cli_failed_run_exits_1(tmp_path, data_root, capsys, monkeypatch):
    monkeypatch.setitem(METHODS, "exploding", _Exploding)
    assert _cli(tmp_path, data_root, "--method", "exploding", "--epochs", "2") == 1
    assert "failed: non-finite loss at epoch 1" in capsys.readouterr().err


def test_predict_restores_the_models_mode(data_root):
    s = spec()
    data = {k: v for k, v in load_data(s, data_root).items() if k in ("train", "val")}
    model = build_model("small_cnn", 5).eval()
    out = predict(model, data, 0, s)
    assert not model.training
    assert set(out) == {"val"} and out["val"]["scores"].shape == (60, 5)
    model.train()
    predict(model, data, 0, s)
    assert model.training


def test_table_summarises_seeds_per_configuration(tmp_path, data_root, capsys):
    for seed in (0, 1):
        run(
            spec(seed=seed, train=TrainSettings(epochs=1, batch_size=32)), tmp_path, data_root=data_root, progress=False
        )
    run(
        spec(method="gain", train=TrainSettings(epochs=1, batch_size=32)), tmp_path, data_root=data_root, progress=False
    )
    summary = summarise(load_records([tmp_path]))
    assert [r["config"].split()[0] for r in summary] == ["gradcam", "gain"], "baseline first, registry order"
    rows = {r["config"].split()[0]: r for r in summary}
    assert set(rows) == {"gradcam", "gain"}
    assert (rows["gradcam"]["seeds"], rows["gain"]["seeds"]) == (2, 1)
    mean, sd = rows["gradcam"]["val_accuracy"]
    assert 0 <= mean <= 1 and sd >= 0
    assert main(["table", str(tmp_path)]) == 0
    assert "gradcam" in capsys.readouterr().out
    assert main(["table", str(tmp_path), "--rows"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["configuration", "n", "AUROC"]
    assert lines[1].startswith("gradcam ") and " / " not in lines[1], "the baseline has no difference to itself"
    gain_auroc = summarise(load_records([tmp_path]))[1]["shifted_auroc"][0]
    assert lines[2].startswith("gain ") and " / " in lines[2]
    assert f"{gain_auroc:.3f} [" in lines[2] or f"{gain_auroc:.3f} (constant)" in lines[2]
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "record.json").write_text("{not json")
    assert main(["table", str(tmp_path)]) == 0, "a damaged record is left out, the rest tabled"
    printed = capsys.readouterr()
    assert "broken/record.json: truncated (it ends after 9 bytes; not a whole JSON document)" in printed.err
    assert "gain-bench: warning: left out (damaged): " in printed.err and "gradcam" in printed.out


def test_channels_last_is_the_same_training_up_to_float_rounding(tmp_path, data_root):
    settings = {"epochs": 1, "batch_size": 32}
    fast = run(spec(train=TrainSettings(**settings)), tmp_path, data_root=data_root, progress=False)
    plain = run(
        spec(train=TrainSettings(**settings, channels_last=False)), tmp_path, data_root=data_root, progress=False
    )
    assert fast["run_id"] != plain["run_id"], "the setting is part of the configuration"
    assert fast["curve"][0]["cl"] == pytest.approx(plain["curve"][0]["cl"], rel=1e-4)
    assert fast["metrics"]["shifted_auroc"] == pytest.approx(plain["metrics"]["shifted_auroc"], abs=0.02)


class _ExplodingLate(GradCAMBaseline):
    """NaN from the 6th step of the first epoch on: inside the first window of losses read together."""

    name = "exploding_late"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.steps = 0

    def training_loss(self, model, batch, *, epoch):
        parts = super().training_loss(model, batch, epoch=epoch)
        self.steps += 1
        if self.steps > 5:
            parts["total"] = parts["total"] * float("nan")
        return parts


def test_losses_read_in_windows_still_name_the_first_non_finite_step(tmp_path, data_root, monkeypatch):
    monkeypatch.setitem(METHODS, "exploding_late", _ExplodingLate)
    s = spec(method="exploding_late", train=TrainSettings(epochs=1, batch_size=16, diagnostics=False))
    record = run(s, tmp_path, data_root=data_root, progress=False)
    assert record["status"] == "failed"
    assert "non-finite loss at epoch 0, step 5: total=nan" in record["error"]


def test_bf16_training_records_its_precision_and_is_its_own_configuration(tmp_path, data_root):
    fp32 = spec(method="gain_ext", budget=9, method_params={"warmup_epochs": 1})
    bf16 = spec(method="gain_ext", budget=9, method_params={"warmup_epochs": 1},
                train=TrainSettings(epochs=2, batch_size=32, precision="bf16"))  # fmt: skip
    assert "precision" not in fp32.to_dict()["train"], "fp32 runs keep the hashes they had before the key"
    assert bf16.to_dict()["train"]["precision"] == "bf16" and bf16.config_hash != fp32.config_hash
    assert "train.precision=bf16" in bf16.label
    record = run(bf16, tmp_path, data_root=data_root, progress=False)
    assert record["status"] == "complete" and record["spec"]["train"]["precision"] == "bf16"
    preds, _ = read_predictions(tmp_path / "runs" / bf16.run_id / "predictions.csv")
    assert all(np.isfinite(p["scores"]).all() for p in preds.values()), "bf16 maps and scores stored as floats"
    share = preds["val"]["context_share"]  # NaN where the map is all zero (points nowhere), as in fp32
    assert np.isfinite(share).sum() > len(share) / 4 and ((share >= 0) & (share <= 1))[np.isfinite(share)].all()
    assert record["metrics"]["val_accuracy"] > 0.5
