"""Selection rules: `in-distribution-val` never reads shifted-group data, the choice is the best mean score (ties to
the lower trial), and a searched suite's report shows the chosen trials only."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from tiny import tiny_suite

from benchmark.analyse.report import render
from benchmark.cli import main
from benchmark.core import selection
from benchmark.core.store import read_record
from benchmark.execute import heldout, runner
from benchmark.execute.datasets import synthetic
from benchmark.execute.suites import from_dict, load


class Poison(dict):
    """Stands in for shifted-group data: any read fails the test."""

    def _fail(self, *_: object, **__: object) -> None:
        raise AssertionError("the selection read shifted-group data")

    __getitem__ = get = __iter__ = __len__ = __contains__ = keys = values = items = _fail


def _specs(trials: int = 3):
    suite = from_dict(
        {"name": "t", "seeds": [0, 1], "budgets": [9], "methods": {"gradcam": {}, "gain_ext": {}},
         "search": {"trials": trials}}
    )  # fmt: skip
    return suite.runs()


def _record(in_dist: float, oracle: float, status: str = "complete") -> dict:
    return {
        "status": status,
        "selection": {
            "in-distribution-val": {"val_map": in_dist, "val_accuracy": 0.9},
            "oracle": {"worst_shifted_group_accuracy": oracle},
        },
        "metrics": {"class_without_context": oracle, "context_without_class": oracle, "val_accuracy": 0.9},
    }


# (in-distribution score, oracle score) per trial: the rules disagree (trial 2 vs trial 1)
SCORES = {0: (0.80, 0.30), 1: (0.70, 0.90), 2: (0.85, 0.10)}


def test_in_distribution_val_never_reads_shifted_group_labels():
    specs = _specs()
    clean = [(s, _record(SCORES[s.trial][0] + 0.01 * s.seed, SCORES[s.trial][1])) for s in specs]
    chosen = {g: s.chosen.trial for g, s in selection.choose(clean, "in-distribution-val").items()}
    assert set(chosen.values()) == {2} and len(chosen) == 2
    assert {s.chosen.trial for s in selection.choose(clean, "oracle").values()} == {1}, "the poison below matters"
    poisoned = []
    for spec, record in clean:
        record = dict(record, metrics=Poison(), predictions=Poison())
        record["selection"] = {"in-distribution-val": record["selection"]["in-distribution-val"], "oracle": Poison()}
        poisoned.append((spec, record))
    again = selection.choose(poisoned, "in-distribution-val")
    assert {g: s.chosen.trial for g, s in again.items()} == chosen, "same choice without any shifted-group data"
    assert all(math.isclose(again[g].chosen.score, 0.855) for g in chosen), "the mean over seeds"
    with pytest.raises(AssertionError, match="read shifted-group data"):
        selection.choose(poisoned, "oracle")


def test_ties_go_to_the_lower_trial_and_incomplete_trials_are_not_chosen():
    specs = _specs()
    tied = selection.choose([(s, _record(0.5, 0.5)) for s in specs], "in-distribution-val")
    assert {s.chosen.trial for s in tied.values()} == {0}
    best_fails = [
        (s, _record(SCORES[s.trial][0], 0, "failed" if s.trial == 2 and s.seed else "complete")) for s in specs
    ]
    result = selection.choose(best_fails, "in-distribution-val")
    assert {s.chosen.trial for s in result.values()} == {0} and all(s.final for s in result.values())
    waiting = selection.choose([(s, None if s.trial == 1 else _record(*SCORES[s.trial])) for s in specs], "oracle")
    assert {s.chosen.trial for s in waiting.values()} == {0} and not any(s.final for s in waiting.values())
    assert selection.choose([(s, None) for s in specs], "oracle")[specs[0].search["group"]].chosen is None


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def test_selection_data_is_held_out_from_every_test_split(data_root):
    config = synthetic.SyntheticConfig(n_train=40, n_val=20, n_shifted=20, n_counterfactual=4)
    held_out = heldout.selection_config(config)
    assert (held_out.rho, held_out.q, held_out.n_val, held_out.n_shifted) == (0.99, 0.05, 20, 20)
    test = synthetic.load(config, data_root)
    folder = heldout.ensure_data(synthetic.NAME, {"n_train": 40, "n_val": 20, "n_shifted": 20, "n_counterfactual": 4},
                                   data_root)  # fmt: skip
    test_images = {t.numpy().tobytes() for split in test.values() for t in split.images}
    for name in ("val", "boat_without_water", "water_without_boat"):
        split = synthetic.load_split(folder, name)
        assert len(split) == 20 and not {t.numpy().tobytes() for t in split.images} & test_images
    assert synthetic.load(config, data_root)["val"].images.equal(test["val"].images), "test data unchanged"


def test_a_searched_suite_reports_only_the_chosen_trials(tmp_path, data_root, monkeypatch, capsys):
    path = tmp_path / "searched.toml"
    path.write_text(tiny_suite("searched", timing=False) + "[search]\ntrials = 2\n")
    suite = load(path)
    out = tmp_path / "out"
    result = runner.run_suite(suite, out, quiet=True, data_root=data_root, threads=1)
    assert [f["status"] for f in result.finished] == ["complete"] * 8
    records = {p.parent.name: read_record(p) for p in out.glob("runs/*/record.json")}
    for record in records.values():
        kept = record["selection"]
        assert kept["in-distribution-val"]["images"] == {"val": 40}
        assert kept["oracle"]["images"] == {"class_without_context": 20, "context_without_class": 20}
        sizes = kept["worst-group-val"]["images"]  # 20/20/19/19 but where the tiny held-out val holds fewer
        assert sizes["class_without_context"] == sizes["context_without_class"] == 19
        assert 15 <= sizes["class_with_context"] <= 20 and 15 <= sizes["neither"] <= 20
    chosen = selection.select_suite(suite, out)
    reported = {s.run_id for s in selection.reported_specs(suite, out)}
    assert len(chosen) == 2 and all(s.final for s in chosen.values()) and len(reported) == 4
    unreported = set(records) - reported

    html, tables = render(out, n_resamples=50)
    assert set(tables["tidy"]["run_id"]) == reported, "headline tables read the chosen trials only"
    assert tables["aggregated"]["config"].nunique() == 2
    text = html.read_text() + "".join((out / f).read_text() for f in ("results.csv", "results_runs.csv",
                                                                       "results_paired.csv"))  # fmt: skip
    assert not any(run_id in text for run_id in unreported), "no unchosen trial reaches the report"
    assert 'id="search-table"' in html.read_text() and "in-distribution-val" in html.read_text()
    for rule in ("worst-group-val", "oracle"):  # the same search read with every other rule, each named
        assert f'id="search-{rule}"' in html.read_text() and f"metric (chosen by {rule})" in html.read_text()
    trials = pd.read_csv(out / "results_trials.csv")
    assert len(trials) == 12 and trials.groupby(["rule", "group"])["chosen"].sum().tolist() == [1] * 6
    assert list(trials["rule"].unique()) == ["in-distribution-val", "worst-group-val", "oracle"]
    assert "lr" in trials.columns and trials["seeds_unrecorded"].eq(0).all()
    capsys.readouterr()
    assert main(["table", str(out), "--csv", str(tmp_path / "csv")]) == 0
    assert set(pd.read_csv(tmp_path / "csv" / "tidy.csv")["run_id"]) == reported, "gain-bench table too"
    assert "chosen by in-distribution-val (realistic; the suite's [search] rule" in capsys.readouterr().out
    by_worst = {s.run_id for s in selection.reported_specs(suite, out, rule="worst-group-val")}
    assert main(["table", str(out), "--rule", "worst-group-val", "--csv", str(tmp_path / "wgv")]) == 0
    assert set(pd.read_csv(tmp_path / "wgv" / "tidy.csv")["run_id"]) == by_worst, "--rule reads its choice"
    assert "search trials chosen by worst-group-val (realistic)" in capsys.readouterr().out

    assert main(["table", str(out), "--view", "rules"]) == 0  # one search, every rule: same trial or not, per pair
    printed = capsys.readouterr().out
    by_rule = {rule: {g: s.chosen.trial for g, s in selection.select_suite(suite, out, rule).items()}
               for rule in ("in-distribution-val", "worst-group-val", "oracle")}  # fmt: skip
    same = sum(by_rule["in-distribution-val"][g] == by_rule["oracle"][g] for g in chosen)
    assert f"in-distribution-val and oracle chose the same trial in {same} of 2 searched configurations" in printed
    assert main(["table", str(tmp_path / "csv"), "--view", "rules"]) == 2

    first = sorted(records)[0]  # a record from before worst-group-val existed: named, never chosen by it
    old = dict(records[first], selection={k: v for k, v in records[first]["selection"].items()
                                           if k != "worst-group-val"})  # fmt: skip
    (out / "runs" / first / "record.json").write_text(json.dumps(old))
    assert main(["table", str(out), "--rule", "worst-group-val"]) == 0
    assert "worst-group-val was not recorded for 1 complete run(s) of 1 trial(s)" in capsys.readouterr().err
    assert first not in {s.run_id for s in selection.reported_specs(suite, out, rule="worst-group-val")}
    assert main(["table", str(tmp_path / "csv"), "--rule", "oracle"]) == 2
    assert "holds a searched suite" in capsys.readouterr().err

    for run_id in records:  # every test number and every shifted-group score gone; loading any split fails
        record = records[run_id]
        record["metrics"] = {k: float("nan") for k in record["metrics"]}
        record["selection"]["oracle"] = {"worst_shifted_group_accuracy": float(np.random.rand())}
        (out / "runs" / run_id / "record.json").write_text(json.dumps(record))
        predictions = out / "runs" / run_id / "predictions.csv"  # whole (else damaged, trained again), but no number
        header, *rows = predictions.read_text().splitlines()  # role, id, row, pair, has_context kept: all else NaN
        rows = [",".join(r.split(",")[:5] + ["nan"] * (len(r.split(",")) - 5)) for r in rows]
        predictions.write_text("\n".join([header, *rows]) + "\n")

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a split was loaded during selection")

    monkeypatch.setattr(synthetic, "load_split", refuse)
    monkeypatch.setattr(synthetic, "load", refuse)
    again = selection.select_suite(suite, out)
    assert {g: s.chosen.trial for g, s in again.items()} == {g: s.chosen.trial for g, s in chosen.items()}

    oracle = load(path, ["search.rule=oracle"])
    assert all(p.action == "skip" for p in runner.plan(oracle, out)), "another rule re-selects without retraining"
    assert set(selection.select_suite(oracle, out)) == set(chosen)


def test_rules_are_the_suite_rules():
    from benchmark.core.settings import SearchSettings, allowed

    assert tuple(selection.RULES) == ("in-distribution-val", "worst-group-val", "oracle")
    assert allowed(SearchSettings, "rule") == "in-distribution-val, worst-group-val, oracle", "exactly these"
    assert selection.RULES["oracle"].upper_bound and not selection.RULES["in-distribution-val"].upper_bound
    assert not selection.RULES["worst-group-val"].upper_bound
