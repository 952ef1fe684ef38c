"""Full replicates draw what they say (data, budget, held-out data, pre-training), the pre-training corpora hold what
they say, and the start evaluated as it is ("before fine-tuning") is the pre-trained model."""

import json

import pytest
import torch
from tiny import tiny_suite

from benchmark.core.spec import RunSpec, TrainSettings, build_model_params, configuration_key, pairing_key
from benchmark.core.store import run_dir
from benchmark.execute import post_run, runner
from benchmark.execute.datasets.synthetic import data_config
from benchmark.execute.heldout import SEED_OFFSET as HELDOUT_OFFSET
from benchmark.execute.heldout import selection_config
from benchmark.execute.pretrain import SEED_OFFSET, cache_root, corpus_config, pretrain_spec
from benchmark.execute.suites import load

SMALL = {"n_train": 160, "n_val": 40, "n_shifted": 20, "n_counterfactual": 20}


def _suite(tmp_path, *overrides):
    (tmp_path / "s.toml").write_text(tiny_suite(methods=("gradcam", "gain_ext"), timing=False))
    return load(tmp_path / "s.toml", ["model.init=pretrained-synthetic", *overrides])


def test_a_full_replicate_redraws_the_data_the_budget_the_heldout_data_and_the_pretraining(tmp_path):
    train = _suite(tmp_path).runs()
    full = _suite(tmp_path, 'seed_scope="full"', "data.seed=100", "budget_seed=7").runs()
    assert [s.seed for s in full] == [s.seed for s in train] == [0, 1, 0, 1]
    for spec in train:
        assert spec.seed_scope == "train" and "seed_scope" not in spec.to_dict(), "hashes as before the key"
        assert spec.dataset_params.get("seed", 0) == 0 and spec.budget_seed == 0 and spec.pretrain_seed == 0
    for spec in full:
        assert spec.dataset_params["seed"] == 100 + spec.seed and spec.budget_seed == 7 + spec.seed
        assert spec.replicate() == {"seed_scope": "full", "seed": spec.seed, "data_seed": 100 + spec.seed,
                                    "budget_seed": 7 + spec.seed, "pretrain_seed": spec.seed}  # fmt: skip
        pre = pretrain_spec(spec)
        assert pre.seed == spec.seed and pre.dataset_params["seed"] == 100 + spec.seed + SEED_OFFSET
        assert selection_config(_data(spec)).seed == 100 + spec.seed + HELDOUT_OFFSET
    by_method = {}
    for spec in full:
        by_method.setdefault(spec.method, []).append(spec)
    for method, specs in by_method.items():
        keys = {configuration_key(s.to_dict()) for s in specs}
        assert len(keys) == 1, f"{method}: the replicates of one configuration share its key"
        assert len({s.run_id for s in specs}) == 2
        assert all(f" {part}" in specs[0].label for part in ("seed_scope=full", "data.seed=100", "budget_seed=7"))
    assert len({pairing_key(s.to_dict()) for s in full}) == 1, "GAIN_ext pairs with the baseline of its replicate"
    assert not {s.run_id for s in full} & {s.run_id for s in train}


def _data(spec):
    return data_config(spec.dataset, spec.dataset_params)


def test_seed_scope_is_checked():
    with pytest.raises(ValueError, match="seed_scope = 'all': allowed: train, full"):
        RunSpec(method="gradcam", seed_scope="all")


def test_the_corpora_hold_what_they_say():
    def spec(pretrain):
        return RunSpec(method="gradcam", dataset_params=SMALL | {"seed": 4},
                       model_params={"init": "pretrained-synthetic", "pretrain": pretrain},
                       train=TrainSettings(epochs=1))  # fmt: skip

    unbiased = corpus_config(spec({}))
    assert (unbiased.rho, unbiased.q, unbiased.boat_fraction, unbiased.seed) == (0.5, 0.5, 0.5, 4 + SEED_OFFSET)
    without = corpus_config(spec({"corpus": "without-class"}))
    assert without.boat_fraction == 0.0 and without.seed == unbiased.seed
    biased = corpus_config(spec({"corpus": "biased"}))
    assert (biased.rho, biased.q) == (0.9, pytest.approx(0.1)), "the default bias"
    biased = corpus_config(spec({"corpus": "biased", "rho": 0.99}))
    assert (biased.rho, biased.q) == (0.99, pytest.approx(0.01))
    assert spec({"corpus": "unbiased"}).config_hash == spec({}).config_hash, "the default spelled out"
    assert spec({"corpus": "biased"}).config_hash == spec({"corpus": "biased", "rho": 0.9}).config_hash
    assert len({spec(p).config_hash for p in ({}, {"corpus": "without-class"}, {"corpus": "biased"})}) == 3
    assert pretrain_spec(spec({"corpus": "biased", "epochs": 2})).train.epochs == 2, "train keys beside corpus keys"
    for bad, message in (
        ({"corpus": "imagenet"}, "model.pretrain.corpus = 'imagenet': allowed: unbiased, without-class, biased"),
        ({"rho": 0.9}, "model.pretrain.rho sets the bias of corpus = 'biased', not of 'unbiased'"),
        ({"corpus": "biased", "rho": 0.2}, "model.pretrain.rho = 0.2: allowed: a number from 0.5 to 1"),
        ({"corpus": "biased", "seed": 1}, "unknown key(s) seed; allowed: epochs"),
    ):
        with pytest.raises(ValueError, match=None) as err:
            build_model_params("small_cnn", {"init": "pretrained-synthetic", "pretrain": bad})
        assert message in str(err.value)


def test_a_full_replicate_suite_records_its_own_draws_and_before_finetuning_is_the_start(tmp_path):
    (tmp_path / "s.toml").write_text(tiny_suite(methods=("gradcam", "no_finetune"), timing=False))
    suite = load(tmp_path / "s.toml", ["model.init=pretrained-synthetic", 'seed_scope="full"',
                                       'model.pretrain={corpus="biased", epochs=1}'])  # fmt: skip
    data = tmp_path / "data"
    result = runner.run_suite(suite, tmp_path / "out", quiet=True, data_root=data, threads=1, launcher="inprocess")
    assert sorted(f["status"] for f in result.finished) == ["complete"] * 4
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").glob("*/record.json")]
    draws = {(r["spec"]["method"], r["replicate"]["seed"]): r for r in records}
    for seed in (0, 1):
        assert draws[("gradcam", seed)]["replicate"] == {"seed_scope": "full", "seed": seed, "data_seed": seed,
                                                         "budget_seed": seed, "pretrain_seed": seed}  # fmt: skip
    assert draws[("gradcam", 0)]["pretrained_from"] != draws[("gradcam", 1)]["pretrained_from"], "one per replicate"
    assert len(list((cache_root(data) / "runs").iterdir())) == 2
    for seed in (0, 1):
        before = draws[("no_finetune", seed)]
        assert before["curve"] == [] and before["pretrained_from"] == draws[("gradcam", seed)]["pretrained_from"]
        saved = torch.load(run_dir(tmp_path / "out", before["run_id"]) / "model.pt", weights_only=True)
        start = torch.load(run_dir(cache_root(data), before["pretrained_from"]) / "model.pt", weights_only=True)
        assert all(torch.equal(saved[k], start[k]) for k in start), "no step taken: the start as it is"
        pre = json.loads((run_dir(cache_root(data), before["pretrained_from"]) / "record.json").read_text())
        assert pre["spec"]["seed"] == seed and pre["spec"]["dataset_params"]["rho"] == 0.9
    timed = post_run.measure_throughput(suite, tmp_path / "out", data_root=data)
    assert timed is not None and {r["method"] for r in timed["rows"]} == {"gradcam"}, "no step of no_finetune to time"
