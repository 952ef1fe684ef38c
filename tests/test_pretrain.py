import dataclasses

import pytest
import torch
from tiny import tiny_suite
from torch import nn

import benchmark.execute.train
from benchmark.core.registry import MODELS
from benchmark.core.spec import RunSpec, TrainSettings, configuration_key
from benchmark.core.store import run_dir
from benchmark.execute import runner
from benchmark.execute.checkpoints import load_start
from benchmark.execute.datasets.voc_export import ExportSettings, export
from benchmark.execute.models import IMAGENET_MEAN, IMAGENET_STD, SplitModel, build_model, build_model_params
from benchmark.execute.pretrain import SEED_OFFSET, cache_root, ensure_pretrained, pretrain_spec, start_checkpoint
from benchmark.execute.suites import load
from benchmark.execute.train import run

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
    assert pre.train == TrainSettings(diagnostics=False), "the findings' pre-training: 8 epochs, Adam one-cycle 3e-3"


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
    assert checkpoint.parent.name.startswith("pretrain-b0-s"), "the cache names a pre-training, not a Grad-CAM run"
    assert pretrain_spec(spec()).config_hash[:6] in checkpoint.parent.name
    stamp = checkpoint.stat().st_mtime_ns
    monkeypatch.setattr(benchmark.execute.train, "fit", lambda *args, **kwargs: [])  # no fine-tuning: the start is kept
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


def tiny_vgg(num_classes: int, *, attention_layer: str = "conv2") -> SplitModel:
    """A VGG-like stand-in small enough for a CPU test: conv-ReLU blocks without BatchNorm, a two-layer classifier."""
    features = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()
    )
    head = nn.Sequential(
        nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes)
    )
    return SplitModel(
        features, head, name="tiny_vgg", attention_layer=attention_layer, mean=IMAGENET_MEAN, std=IMAGENET_STD
    )


def test_a_vgg_like_model_pretrains_once_by_its_recipe_and_starts_runs_on_voc_format_data(tmp_path, monkeypatch):
    monkeypatch.setitem(MODELS, "tiny_vgg", tiny_vgg)
    export(tmp_path, ExportSettings(image_size=32, train_aug=64, seg_train=24, val=20, shifted=10))
    recipe = {"lr": 1e-3, "epochs": 1, "precision": "bf16"}
    data = {"train_split": "train_aug", "image_size": 32, "biased_split": "voc-biased-boats/manifest.csv"}
    voc_spec = RunSpec(method="gain_ext", budget=9, dataset="voc", dataset_params=data, model="tiny_vgg",
                       model_params={"init": "pretrained-synthetic", "pretrain": recipe},
                       train=TrainSettings(epochs=1, batch_size=16))  # fmt: skip
    pre = pretrain_spec(voc_spec)
    assert pre.dataset == "synthetic-boats" and pre.model_params == {}, "the architecture, from scratch"
    assert pre.dataset_params["image_size"] == 32 and pre.dataset_params["rho"] == pre.dataset_params["q"] == 0.5
    assert (pre.train.lr, pre.train.epochs, pre.train.precision) == (1e-3, 1, "bf16"), "model.pretrain's recipe"
    builtin = RunSpec(method="gradcam", dataset_params={"image_size": 32}, model="tiny_vgg",
                      model_params={"init": "pretrained-synthetic", "pretrain": recipe})  # fmt: skip
    assert pretrain_spec(builtin).run_id == pre.run_id, "one corpus per image size: one pre-trained model for both"
    other = dataclasses.replace(voc_spec, model_params={"init": "pretrained-synthetic", "pretrain": {"lr": 2e-3}})
    assert other.config_hash != voc_spec.config_hash and pretrain_spec(other).run_id != pre.run_id

    start = start_checkpoint(voc_spec, tmp_path)
    stamp = start.stat().st_mtime_ns
    record = run(voc_spec, tmp_path / "out", data_root=tmp_path, progress=False, start=start)
    assert record["status"] == "complete" and record["pretrained_from"] == pre.run_id
    assert record["pretrained_fresh"] == ["head.5.bias", "head.5.weight"], "VOC's 20 classes: a fresh last layer"
    again = dataclasses.replace(voc_spec, seed=1)
    assert start_checkpoint(again, tmp_path) == start and start.stat().st_mtime_ns == stamp, "reused, not retrained"


def test_a_start_fits_where_only_the_classes_differ(tmp_path):
    five = build_model("small_cnn", 5)
    path = tmp_path / "model.pt"
    torch.save(five.state_dict(), path)
    twenty = build_model("small_cnn", 20)
    fresh_head = twenty.head[-1].weight.detach().clone()
    assert load_start(path, twenty, 20) == ["head.2.bias", "head.2.weight"]
    assert torch.equal(twenty.features[0][0].weight, five.features[0][0].weight), "the features are the start's"
    assert torch.equal(twenty.head[-1].weight, fresh_head), "the last layer keeps its fresh initialisation"
    assert load_start(path, build_model("small_cnn", 5), 5) == [], "same classes: everything loaded"
    with pytest.raises(ValueError, match="does not fit this one"):
        load_start(path, build_model("small_cnn", 5, widths=(16, 32, 64, 128)), 5)
