"""The equal hyperparameter search: same trials for every method entry, trial 0 = the defaults, stable draws,
validated `[search]` tables, and suites without one left exactly as they were."""

import dataclasses
import re
from collections import Counter

import pytest

from benchmark.execute import search
from benchmark.execute.methods import METHODS, HParam, build_method
from benchmark.execute.methods.gain import GAINExt
from benchmark.execute.suites import SuiteError, from_dict, load

SEARCHED = {
    "name": "s",
    "seeds": [0, 1],
    "budgets": [9, 78],
    "methods": {
        "gradcam": {},
        "gain": {},
        "gain_ext": {},
        "energy": {"method": "gain_ext", "e_loss": "outside_energy", "omega_e": 3.0},
        "rrr": {"budgets": [78]},
        "copy_paste": {},
    },
    "search": {"trials": 4, "seed": 7},
}


def _trials(runs):
    """(group -> trial index -> seeds) of a suite's runs."""
    found: dict[str, dict[int, list[int]]] = {}
    for r in runs:
        found.setdefault(r.search["group"], {}).setdefault(r.trial, []).append(r.seed)
    return found


def test_every_method_entry_and_budget_gets_the_same_trials_and_seeds():
    suite = from_dict(SEARCHED)
    runs = suite.runs()
    trials = _trials(runs)
    expected_groups = (
        1 + 1 + 2 + 2 + 1 + 2
    )  # gradcam, gain (no pixel labels), gain_ext x2, energy x2, rrr, copy_paste x2
    assert len(trials) == expected_groups
    assert all(sorted(t) == [0, 1, 2, 3] for t in trials.values()), "the same number of trials for every entry"
    assert all(seeds == [0, 1] for t in trials.values() for seeds in t.values()), "every trial runs every seed"
    assert len(runs) == expected_groups * 4 * 2 == len({r.run_id for r in runs})
    assert Counter(r.search["entry"] for r in runs) == {
        "gradcam": 8, "gain": 8, "gain_ext": 16, "energy": 16, "rrr": 8, "copy_paste": 16
    }  # fmt: skip
    assert len({r.config_hash for r in runs if r.seed == 0}) == expected_groups * 4, "trials are distinct runs"


def test_trial_zero_is_the_defaults_and_the_entry_values_stay_fixed():
    searched = from_dict(SEARCHED)
    plain = from_dict({k: v for k, v in SEARCHED.items() if k != "search"})
    by_config = {(r.method, r.budget, r.seed, str(r.method_params.get("e_loss"))): r for r in plain.runs()}
    for run in searched.runs():
        twin = by_config[(run.method, run.budget, run.seed, str(run.method_params.get("e_loss")))]
        if run.trial == 0:
            assert dataclasses.replace(run, search={}).config_hash == twin.config_hash, "trial 0 trains the defaults"
            assert run.train == plain.train
        if run.search["entry"] == "energy":
            assert run.method_params["e_loss"] == "outside_energy" and run.method_params["omega_e"] == 3.0
            assert "omega_e" not in run.search["hparams"] and "alpha" in run.search["hparams"]
        assert "search" in run.to_dict() and run.config_hash != twin.config_hash, "a trial is never a plain run"
    assert all("search" not in r.to_dict() and r.trial is None for r in plain.runs())


def test_draws_are_stable_when_a_hyperparameter_is_added_or_trials_grow(monkeypatch):
    def drawn(suite):
        return {
            (r.budget, r.seed, r.trial): r.search["hparams"] for r in suite.runs() if r.search["entry"] == "gain_ext"
        }

    suite = from_dict(SEARCHED)
    before = drawn(suite)
    more = from_dict(SEARCHED | {"search": {"trials": 6, "seed": 7}})
    assert {r.run_id for r in suite.runs()} <= {r.run_id for r in more.runs()}, "raising trials keeps the first ones"
    monkeypatch.setattr(GAINExt, "HPARAMS", GAINExt.HPARAMS | {"new_knob": HParam(0.5, 0.0, 1.0)})
    after = drawn(from_dict(SEARCHED))
    assert after.keys() == before.keys()
    for key, values in before.items():
        assert {k: v for k, v in after[key].items() if k != "new_knob"} == values, "the others' draws are unchanged"
    assert {v["new_knob"] for k, v in after.items() if k[2] == 0} == {0.5}, "trial 0: the new default"
    assert len({v["new_knob"] for v in after.values()}) == 4, "one value per trial, shared by budgets and seeds"
    monkeypatch.undo()
    other_seed = from_dict(SEARCHED | {"search": {"trials": 4, "seed": 8}})
    assert {r.run_id for r in other_seed.runs() if r.trial == 0} == {r.run_id for r in suite.runs() if r.trial == 0}
    assert {r.run_id for r in other_seed.runs() if r.trial == 1}.isdisjoint(r.run_id for r in suite.runs())


def test_keys_limit_what_is_searched():
    suite = from_dict(SEARCHED | {"search": {"trials": 3, "keys": ["lr", "alpha"]}})
    for run in suite.runs():
        assert set(run.search["hparams"]) == {"lr", "alpha"} & set(search.searchable(run.method))
        assert run.train.weight_decay == 0.0 and run.method_params.get("sigma", 0.5) == 0.5
    only_alpha = _trials(from_dict(SEARCHED | {"search": {"trials": 3, "keys": ["alpha"]}}).runs())
    assert {g.split("-")[0]: len(t) for g, t in only_alpha.items()} == {
        "gradcam": 1, "gain": 3, "gain_ext": 3, "energy": 3, "rrr": 1, "copy_paste": 1
    }, "nothing to draw: one trial, not the same run again"  # fmt: skip


def test_every_method_declares_valid_search_distributions():
    gain_family = {"alpha", "sigma", "omega", "warmup_epochs"}
    assert gain_family <= set(search.searchable("gain")) and gain_family | {"omega_e"} <= set(
        search.searchable("gain_ext")
    )
    assert {"lam"} <= set(search.searchable("rrr"))
    assert {"blend", "scale_jitter", "scale_low", "scale_high"} <= set(search.searchable("copy_paste"))
    assert {"fill", "fill_sigma", "dilate"} <= set(search.searchable("object_removal"))
    assert set(search.searchable("gradcam")) == {"lr", "weight_decay"}
    for name in METHODS:
        for trial in range(1, 25):
            values = {
                k: search.draw(h, seed=0, trial=trial, entry=name, name=k) for k, h in search.searchable(name).items()
            }
            for key, value in values.items():
                h = search.searchable(name)[key]
                assert value in h.choices if h.choices else h.low <= value <= h.high, (name, key, value)
            build_method(name, **{k: v for k, v in values.items() if k not in search.TRAIN_HPARAMS})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"trials": 2, "bogus": 1}, "unknown key search.bogus; allowed: trials, rule, seed, keys"),
        ({"trials": 0}, "search.trials = 0: allowed: an integer >= 1"),
        ({"trials": 2, "rule": "test"}, "search.rule = 'test': allowed: in-distribution-val, worst-group-val, oracle"),
        ({"rule": "oracle"}, "missing key search.trials"),
        ({"trials": 2, "keys": ["lam"]}, "search.keys: 'lam' is searched by no method of this suite; allowed: lr"),
    ],
)
def test_invalid_search_tables_name_the_file_key_and_what_is_allowed(tmp_path, table, message):
    lines = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in table.items())
    path = tmp_path / "bad.toml"
    path.write_text(f'name = "t"\n[methods.gradcam]\n[methods.gain]\n[search]\n{lines}')
    with pytest.raises(SuiteError) as err:
        load(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_search_overrides_are_validated_like_the_file(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text('name = "t"\n[methods.gradcam]\n[search]\ntrials = 2\n')
    assert load(path, ["search.trials=3", "search.rule=oracle"]).search.rule == "oracle"
    with pytest.raises(SuiteError, match=re.escape("search.trials = -1: allowed: an integer >= 1")):
        load(path, ["search.trials=-1"])


def test_the_shipped_search_suite_is_equal_and_pretrained():
    suite = load("search")
    assert suite.search is not None and suite.search.rule == "in-distribution-val"
    assert suite.model_params.get("init") == "pretrained-synthetic"
    trials = _trials(suite.runs())
    assert {len(t) for t in trials.values()} == {suite.search.trials}
