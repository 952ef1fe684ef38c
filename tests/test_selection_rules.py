"""The `worst-group-val` selection rule (a few group labels at validation time) and one search read with several
rules: the balanced draw of its group-labelled split (sizes, determinism, disjoint from every test split), its metric
on hand-built logits, the choice it makes on fabricated records, its size setting (existing trials keep their ids)
and the records made before it existed."""

import dataclasses

import numpy as np
import pytest
import torch

from benchmark.core import selection
from benchmark.core.selection_rules import GROUP_VAL_SIZE, RULES
from benchmark.core.settings import SearchSettings, SettingsError
from benchmark.core.spec import RunSpec
from benchmark.execute import heldout
from benchmark.execute.datasets import synthetic
from benchmark.execute.datasets.tensors import TensorSplit
from benchmark.execute.metrics import GROUPS
from benchmark.execute.models import build_model
from benchmark.execute.suites import from_dict

PARAMS = {"image_size": 16, "n_train": 8, "n_val": 48, "n_shifted": 24, "n_counterfactual": 2}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def _splits(data_root):
    return heldout.load_splits(RunSpec("gradcam", dataset_params=PARAMS), "worst-group-val", data_root)


def test_the_rule_is_realistic_and_reads_the_held_out_groups():
    rule = RULES["worst-group-val"]
    assert (rule.metric, rule.upper_bound) == ("worst_group_accuracy", False)
    assert rule.roles == ("val", "class_without_context", "context_without_class")
    assert tuple(RULES) == ("in-distribution-val", "worst-group-val", "oracle")
    assert GROUP_VAL_SIZE == 78 and heldout.group_shares(78) == dict(zip(GROUPS, (20, 20, 19, 19), strict=True))
    assert list(heldout.group_shares(5).values()) == [2, 1, 1, 1] and sum(heldout.group_shares(81).values()) == 81


def test_the_balanced_draw_is_fixed_and_disjoint_from_every_test_split(data_root):
    splits = _splits(data_root)
    boat = synthetic.CLASSES.index("boat")
    rows = heldout.group_val_rows(splits, boat, 78)
    again = heldout.group_val_rows(splits, boat, 78)
    assert all(np.array_equal(rows[g], again[g]) for g in GROUPS), "the same images every time"
    assert {g: len(r) for g, r in rows.items()} == dict(zip(GROUPS, (20, 20, 19, 19), strict=True))
    for group, (role, with_class, with_context) in heldout.GROUP_ROLES.items():
        split = splits[role]
        assert len(set(rows[group].tolist())) == len(rows[group]), "drawn without replacement"
        assert bool((split.labels[rows[group], boat] > 0.5).eq(with_class).all()), group
        assert bool(split.has_context[rows[group]].eq(with_context).all()), group
    smaller = heldout.group_val_rows(splits, boat, 12)
    assert all(set(smaller[g].tolist()) <= set(rows[g].tolist()) for g in GROUPS), "a larger size keeps these"
    everything = heldout.group_val_rows(splits, boat, 10_000)  # each group capped at what the held-out data holds
    assert len(everything["class_without_context"]) == PARAMS["n_shifted"]
    in_val = int(((splits["val"].labels[:, boat] > 0.5) & splits["val"].has_context).sum())
    assert len(everything["class_with_context"]) == in_val < PARAMS["n_val"]

    test = synthetic.load(synthetic.SyntheticConfig(**PARAMS), data_root)
    test_images = {t.numpy().tobytes() for split in test.values() for t in split.images}
    drawn = [splits[heldout.GROUP_ROLES[g][0]].images[r] for g, r in rows.items()]
    assert not {t.numpy().tobytes() for images in drawn for t in images} & test_images, "no test image is drawn"


def _split(name: str, boats: list[bool], water: list[bool]) -> TensorSplit:
    n = len(boats)
    labels = torch.zeros(n, len(synthetic.CLASSES))
    labels[:, synthetic.CLASSES.index("boat")] = torch.tensor(boats, dtype=torch.float32)
    pixels, masks = torch.zeros(n, 3, 1, 1, dtype=torch.uint8), torch.zeros(n, 1, 1, dtype=torch.int64)
    ids = [f"{name}{i}" for i in range(n)]
    return TensorSplit(name, pixels, labels, masks, None, torch.tensor(water), ids, synthetic.CLASSES,
                       torch.full((n,), -1))  # fmt: skip


def _logits(scores: list[float]) -> torch.Tensor:
    out = torch.full((len(scores), len(synthetic.CLASSES)), -9.0)
    out[:, synthetic.CLASSES.index("boat")] = torch.logit(torch.tensor(scores))
    return out


def test_the_metric_is_the_worst_of_the_four_group_accuracies_at_the_threshold():
    boat = synthetic.CLASSES.index("boat")
    # val: 3 boats on water, 3 boatless land scenes and one boat on land (a minority image: never drawn)
    splits = {
        "val": _split("val", [True] * 3 + [False] * 3 + [True], [True] * 3 + [False] * 3 + [False]),
        "class_without_context": _split("cwc", [True] * 3, [False] * 3),
        "context_without_class": _split("xwc", [False] * 3, [True] * 3),
    }
    logits = {
        "val": _logits([0.9, 0.8, 0.7, 0.1, 0.2, 0.6, 0.01]),  # with context: 3/3 right; neither: 2/3 right
        "class_without_context": _logits([0.6, 0.3, 0.2]),  # 1/3 right at 0.5
        "context_without_class": _logits([0.4, 0.45, 0.1]),  # 3/3 right at 0.5
    }
    out = heldout.worst_group_metrics(logits, splits, boat, 0.5, 12)
    assert out["images"] == dict.fromkeys(GROUPS, 3) and out["size"] == 12
    assert out["group_accuracy"] == pytest.approx(
        {"class_with_context": 1.0, "neither": 2 / 3, "class_without_context": 1 / 3, "context_without_class": 1.0}
    )
    assert (out["worst_group"], out["worst_group_accuracy"]) == ("class_without_context", pytest.approx(1 / 3))
    high = heldout.worst_group_metrics(logits, splits, boat, 0.85, 12)  # the run's threshold decides
    assert high["group_accuracy"]["class_with_context"] == pytest.approx(1 / 3)
    assert high["group_accuracy"]["neither"] == 1.0 and high["worst_group_accuracy"] == 0.0
    two = heldout.worst_group_metrics(logits, splits, boat, 0.5, 8)
    assert two["images"] == dict.fromkeys(GROUPS, 2)


def test_a_trial_records_worst_group_val_at_its_size(data_root):
    model = build_model("small_cnn", len(synthetic.CLASSES))
    spec = RunSpec("gradcam", dataset_params=PARAMS, search={"group": "g", "entry": "gradcam", "trial": 0,
                                                               "hparams": {}})  # fmt: skip
    out = heldout.evaluate(model, spec, data_root)
    assert list(out) == list(RULES)
    entry = out["worst-group-val"]
    assert entry["metric"] == "worst_group_accuracy" and entry["size"] == GROUP_VAL_SIZE
    assert entry["images"] == dict(zip(GROUPS, (20, 20, 19, 19), strict=True))
    assert entry["worst_group_accuracy"] == min(entry["group_accuracy"].values())
    small = heldout.evaluate(model, dataclasses.replace(spec, search=spec.search | {"group_val_size": 8}), data_root)
    assert small["worst-group-val"]["images"] == dict.fromkeys(GROUPS, 2) and small["worst-group-val"]["size"] == 8
    assert small["oracle"] == out["oracle"], "the other rules do not depend on the size"


def _suite(**search):
    return from_dict({"name": "t", "seeds": [0, 1], "budgets": [9], "methods": {"gradcam": {}},
                      "search": {"trials": 2, **search}})  # fmt: skip


def test_the_size_is_a_setting_that_keeps_existing_trials():
    default = _suite()
    assert default.search.group_val_size == GROUP_VAL_SIZE
    assert [s.run_id for s in _suite(group_val_size=78).runs()] == [s.run_id for s in default.runs()]
    assert all("group_val_size" not in s.search for s in default.runs()), "at the default: the ids of before"
    other = _suite(group_val_size=40).runs()
    assert all(s.search["group_val_size"] == 40 for s in other)
    assert not {s.run_id for s in other} & {s.run_id for s in default.runs()}, "another size: other records"
    with pytest.raises(SettingsError, match="group_val_size"):
        SearchSettings(trials=2, group_val_size=3)


def _record(val_map: float, worst: float | None, status: str = "complete") -> dict:
    chosen = {"in-distribution-val": {"val_map": val_map}, "oracle": {"worst_shifted_group_accuracy": 0.5}}
    if worst is not None:
        chosen["worst-group-val"] = {"worst_group_accuracy": worst}
    return {"status": status, "selection": chosen}


def test_worst_group_val_and_in_distribution_val_choose_different_trials():
    specs = from_dict({"name": "t", "seeds": [0, 1], "budgets": [9], "methods": {"gradcam": {}},
                       "search": {"trials": 3}}).runs()  # fmt: skip
    scores = {0: (0.80, 0.50), 1: (0.75, 0.70), 2: (0.90, 0.20)}  # trial 1: best worst group, worse val mAP
    runs = [(s, _record(*scores[s.trial])) for s in specs]
    (by_wgv,) = selection.choose(runs, "worst-group-val").values()
    (by_val,) = selection.choose(runs, "in-distribution-val").values()
    assert (by_wgv.chosen.trial, by_val.chosen.trial) == (1, 2)
    assert by_wgv.chosen.score == pytest.approx(0.70) and by_wgv.unrecorded == 0


def test_records_without_the_rule_are_named_and_never_chosen():
    specs = from_dict({"name": "t", "seeds": [0, 1], "budgets": [9], "methods": {"gradcam": {}},
                       "search": {"trials": 3}}).runs()  # fmt: skip
    old = {0: None, 1: None, 2: 0.4}  # trials 0 and 1 recorded before worst-group-val existed
    runs = [(s, _record(0.8, old[s.trial])) for s in specs]
    (result,) = selection.choose(runs, "worst-group-val").values()
    assert result.chosen.trial == 2 and result.unrecorded == 4 and result.final
    assert [t.unrecorded for t in result.trials] == [(0, 1), (0, 1), ()]
    assert [t.failed for t in result.trials] == [(), (), ()], "not recorded is not failed"
    note = selection.unrecorded_note("worst-group-val", {"g": result})
    assert "worst-group-val was not recorded for 4 complete run(s) of 2 trial(s)" in note
    assert selection.unrecorded_note("in-distribution-val", selection.choose(runs, "in-distribution-val")) is None
    none = [(s, _record(0.8, None)) for s in specs]
    (nothing,) = selection.choose(none, "worst-group-val").values()
    assert nothing.chosen is None and nothing.unrecorded == 6
