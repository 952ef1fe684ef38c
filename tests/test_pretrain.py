import pytest
import torch
from tiny import tiny_suite

import benchmark.train
from benchmark import runner
from benchmark.models import build_model_params
from benchmark.pretrain import SEED_OFFSET, cache_root, ensure_pretrained, pretrain_spec, start_checkpoint
from benchmark.spec import RunSpec, TrainSettings, configuration_key
from benchmark.store import run_dir
from benchmark.suites import load
from benchmark.train import run

SMALL = {"n_train": 160, "n_val": 40, "n_shifted": 20, "n_counterfactual": 20}


def spec(**kw) -> RunSpec:
    base = {
        "method": "gradcam",
        "dataset_params": SMALL,
        "model_params": {"init": "pretrained-synthetic"},
        "train": TrainSettings(epochs=1, batch_size=32),
    }
    return RunSpec(**(base | kw))


def test_the_corpus_is_unbiased_and_disjoint_by_seed():
    pre = pretrain_spec(spec(dataset_params=SMALL | {"rho": 0.95, "seed": 3}))
    assert pre.dataset_params["rho"] == 0.5 and pre.dataset_params["q"] == 0.5
    assert pre.dataset_params["seed"] == 3 + SEED_OFFSET
    assert pre.dataset_params["image_size"] == 48 and pre.dataset_params["n_train"] == 160
    assert pre.method == "gradcam" and "init" not in pre.model_params
    assert pre.train == TrainSettings(diagnostics=False), "FINDINGS.md's pre-training: 8 epochs, Adam one-cycle lr 3e-3"


def test_init_is_validated_and_part_of_the_configuration():
    with pytest.raises(ValueError, match=r"model.init='random': allowed: scratch, pretrained-synthetic, imagenet"):
        build_model_params("small_cnn", {"init": "random"})
    with pytest.raises(ValueError, match=r"model.init='imagenet': small_cnn has no ImageNet weights"):
        build_model_params("small_cnn", {"init": "imagenet"})
    with pytest.raises(ValueError, match=r"model.init='scratch' contradicts model.weights='imagenet'"):
        build_model_params("resnet18", {"init": "scratch", "weights": "imagenet"})
    by_init = spec(model="resnet18", model_params={"init": "imagenet"})
    by_weights = spec(model="resnet18", model_params={"weights": "imagenet"})
    resolved = build_model_params("resnet18", {"init": "imagenet"})
    assert resolved == build_model_params("resnet18", {"weights": "imagenet"})
    assert by_init.config_hash == by_weights.config_hash, "init = imagenet is model.weights = imagenet"
    assert configuration_key(by_init.to_dict()) == configuration_key(by_weights.to_dict())
    assert build_model_params("small_cnn", {})["init"] == "scratch"
    scratch = spec(model_params={})
    assert scratch.config_hash == spec(model_params={"init": "scratch"}).config_hash, "a default spelled out"
    assert scratch.config_hash != spec().config_hash


def test_a_pretrained_run_starts_from_the_cached_pretraining(tmp_path, monkeypatch):
    data = tmp_path / "data"
    checkpoint = ensure_pretrained(spec(), data)
    assert checkpoint == run_dir(cache_root(data), pretrain_spec(spec()).run_id) / "model.pt"
    stamp = checkpoint.stat().st_mtime_ns
    monkeypatch.setattr(benchmark.train, "fit", lambda *args, **kwargs: [])  # no fine-tuning: the start is kept
    with pytest.raises(ValueError, match="starts from the pre-trained checkpoint"):
        run(spec(seed=1), tmp_path / "out", data_root=data, progress=False)  # the caller resolves the start
    start = start_checkpoint(spec(seed=1), data)
    assert start == checkpoint and start_checkpoint(spec(model_params={}), data) is None
    record = run(spec(seed=1), tmp_path / "out", data_root=data, progress=False, start=start)
    assert record["status"] == "complete" and record["pretrained_from"] == pretrain_spec(spec()).run_id
    saved = torch.load(run_dir(tmp_path / "out", spec(seed=1).run_id) / "model.pt", weights_only=True)
    pretrained = torch.load(checkpoint, weights_only=True)
    assert all(torch.equal(saved[k], pretrained[k]) for k in pretrained)
    assert checkpoint.stat().st_mtime_ns == stamp, "trained once, then reused"
    assert record["metrics"]["val_accuracy"] > 0.6, "the pre-trained model already tells boats apart"


def test_a_suite_pretrains_once_for_all_its_runs(tmp_path):
    (tmp_path / "s.toml").write_text(tiny_suite(timing=False))
    suite = load(tmp_path / "s.toml", ["model.init=pretrained-synthetic"])
    data = tmp_path / "data"
    result = runner.run_suite(suite, tmp_path / "out", quiet=True, data_root=data, threads=1, jobs=2, launcher="local")
    assert sorted(f["status"] for f in result.finished) == ["complete"] * 4
    assert len(list((cache_root(data) / "runs").iterdir())) == 1
