"""`gain-bench train` reads its options and `--set` through the suite schema: every key a suite takes at the top
level, in `[train]` and in `[data]`, it takes too, to the same run, and refuses a bad value with the same words."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from benchmark.commands import train_spec
from benchmark.core.settings import DataKeys, SuiteKeys, TrainSettings
from benchmark.execute.suites import SuiteError, resolve

# Top-level keys that are the one-run suite's own options (--seed, --budget ...) or name no setting of a run.
NOT_OVERRIDDEN = {"name", "description", "seeds", "budgets", "audited_class", "plugins", "device"}


def _args(**given: object) -> argparse.Namespace:
    defaults = {"method": "gain_ext", "budget": 9, "seed": 0, "data": "synthetic-boats", "model": "small_cnn",
                "epochs": None, "audited_class": None, "set": []}  # fmt: skip
    return argparse.Namespace(**(defaults | given))


def _toml(value: object) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def _keys() -> list[tuple[str, object]]:
    keys = [(f.name, f.default) for f in dataclasses.fields(SuiteKeys) if f.name not in NOT_OVERRIDDEN]
    keys += [(f"train.{f.name}", f.default) for f in dataclasses.fields(TrainSettings)]
    keys += [(f"data.{f.name}", f.default) for f in dataclasses.fields(DataKeys)]
    return [(k, v) for k, v in keys if v is not None and v is not dataclasses.MISSING]


SUITE = {"name": "adhoc", "seeds": [0], "budgets": [9], "data": {"name": "synthetic-boats"},
         "model": {"name": "small_cnn"}, "methods": {"gain_ext": {}}, "timing": {"enabled": False}}  # fmt: skip


@pytest.mark.parametrize(("key", "default"), _keys(), ids=[k for k, _ in _keys()])
def test_every_suite_key_is_a_train_key_with_the_same_meaning(key, default):
    item = f"{key}={_toml(default)}"
    spec = train_spec(_args(set=[item]))
    (suite_spec,) = resolve(SUITE, "a suite", [item]).runs()
    assert spec.run_id == suite_spec.run_id and spec.to_dict() == suite_spec.to_dict()


@pytest.mark.parametrize("item", ["train.lr=abc", "train.epochs=0", "seed_scope=\"all\"", "data.mask_control=7",
                                  "trian.lr=1", "model.pretrain.epochs=1", "methods.gain_ext.alpha=abc"])  # fmt: skip
def test_a_bad_key_or_value_gets_the_suites_words(item):
    with pytest.raises(SuiteError) as from_train:
        train_spec(_args(set=[item]))
    with pytest.raises(SuiteError) as from_suite:
        resolve(SUITE, "a suite", [item])
    said = str(from_train.value).replace("gain-bench train's options", "SOURCE")
    assert said == str(from_suite.value).replace("a suite", "SOURCE")


def test_the_method_keys_and_the_options_that_were_accepted_before():
    spec = train_spec(_args(method="gain", budget=0, epochs=2, set=["method.alpha=0.3", "train.lr=1e-3"]))
    assert spec.method_params == {"alpha": 0.3} and spec.train.epochs == 2 and spec.train.lr == 1e-3
    assert spec.budget == 0 and spec.suite == "adhoc"
    with pytest.raises(SuiteError, match=r"--method gain_ext uses pixel labels: .* --budget N"):
        train_spec(_args(budget=0))
    with pytest.raises(SuiteError, match="trains one run; these options make 2"):
        train_spec(_args(set=["seeds=[0, 1]"]))
