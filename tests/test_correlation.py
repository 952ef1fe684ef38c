"""Does localisation predict robustness? Spearman's rho across configurations with a hierarchical bootstrap
(`benchmark.analyse.correlation`), its table (`studies.correlation_table`, in `build_tables` and `gain-bench table
--csv`) and the report's section."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from test_tables import CLASSES, fabricated_folder, fake_run
from tiny import tiny_suite

from benchmark.analyse.aggregate import tidy_table
from benchmark.analyse.correlation import (
    MIN_CONFIGURATIONS,
    average_ranks,
    link_sentence,
    pairs,
    rank_correlation,
    spearman,
)
from benchmark.analyse.report import render
from benchmark.analyse.runs import load_runs, setting_labels
from benchmark.analyse.studies import CORRELATION_COLUMNS, correlation_table
from benchmark.analyse.tables import build_tables
from benchmark.cli import main
from benchmark.core.predictions import predictions_csv
from benchmark.core.store import run_dir, write_atomic

LOCALISATION_COLUMNS = ("relevance_mass", "pointing_hit", "iou_at_tau")


def test_average_ranks_and_spearman_agree_with_scipy_on_ties():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(2, 25))
        x, y = rng.integers(0, 4, n).astype(float), rng.integers(0, 6, n).astype(float)  # many ties
        np.testing.assert_allclose(average_ranks(x), sps.rankdata(x))
        expected = sps.spearmanr(x, y).statistic if np.ptp(x) and np.ptp(y) else np.nan
        np.testing.assert_allclose(spearman(x, y), expected, atol=1e-12, equal_nan=True)
    rows = rng.integers(0, 3, (50, 9)).astype(float), rng.normal(size=(50, 9))
    np.testing.assert_allclose(average_ranks(rows[0]), sps.rankdata(rows[0], axis=-1))  # vectorised over resamples
    scipy_rows = [sps.spearmanr(a, b).statistic if np.ptp(a) else np.nan for a, b in zip(*rows, strict=True)]
    np.testing.assert_allclose(spearman(*rows), scipy_rows, atol=1e-12, equal_nan=True)


def test_a_perfect_monotone_link_is_1_with_a_degenerate_interval():
    x = [np.full(3, float(c)) for c in range(8)]
    y = [np.exp(v) for v in x]  # monotone, not linear: a rank statistic
    found = rank_correlation(x, y, rng=0, n_resamples=500)
    assert (found.rho, found.low, found.high) == (1.0, 1.0, 1.0)
    assert found.excludes_zero and found.p_value == pytest.approx(2 / (found.distribution.size + 1))
    reverse = rank_correlation(x, [-v for v in y], rng=0, n_resamples=500)
    assert (reverse.rho, reverse.low, reverse.high) == (-1.0, -1.0, -1.0)


def test_independent_noise_gives_an_interval_over_0_and_the_same_seed_the_same_interval():
    rng = np.random.default_rng(7)
    x = [rng.normal(size=3) for _ in range(30)]
    y = [rng.normal(size=3) for _ in range(30)]
    found = rank_correlation(x, y, rng=1, n_resamples=1000)
    assert found.low < 0 < found.high and not found.excludes_zero and found.p_value > 0.05
    again = rank_correlation(x, y, rng=1, n_resamples=1000)
    assert (again.rho, again.low, again.high, again.p_value) == (found.rho, found.low, found.high, found.p_value)
    np.testing.assert_array_equal(again.distribution, found.distribution)
    assert rank_correlation(x, y, rng=2, n_resamples=1000).low != found.low


def test_configurations_are_the_unit_many_seeds_of_few_configurations_stay_wide():
    """Five configurations of 200 seeds each, their means nearly exact and rho = 0.8: drawing runs as if they were
    independent points would make the interval narrow; drawing configurations keeps it as wide as five points."""
    rng = np.random.default_rng(3)
    means_x, means_y = np.arange(5.0), np.array([0.0, 2.0, 1.0, 4.0, 3.0])
    x = [m + 0.01 * rng.normal(size=200) for m in means_x]
    y = [m + 0.01 * rng.normal(size=200) for m in means_y]
    found = rank_correlation(x, y, rng=0, n_resamples=2000)
    assert found.rho == pytest.approx(0.8)
    assert found.low <= 0.0 and found.high == 1.0 and not found.excludes_zero
    pooled = sps.spearmanr(np.concatenate(x), np.concatenate(y)).statistic  # the runs as points: near-certain
    assert pooled > 0.75


def test_the_seeds_within_each_configuration_are_resampled():
    """The same configuration means, once with identical seeds and once with seeds spread wider than the gaps
    between the means: only the second interval leaves 1."""
    means = np.arange(8.0)
    exact = [np.full(4, m) for m in means]
    spread = [m + np.array([-3.0, -1.0, 1.0, 3.0]) for m in means]
    tight = rank_correlation(exact, exact, rng=0, n_resamples=1000)
    assert (tight.low, tight.high) == (1.0, 1.0)
    y = [m + np.array([3.0, -1.0, 1.0, -3.0]) for m in means]  # same means, the seeds' order differs
    wide = rank_correlation(spread, y, rng=0, n_resamples=1000)
    assert wide.rho == 1.0 and wide.low < 0.9


def test_too_few_configurations_give_no_correlation_and_say_why():
    x = [np.array([0.1, 0.2]), np.array([0.5]), np.array([0.9, 0.8])]
    found = rank_correlation(x, x, rng=0)
    assert found.n_configurations == 3 == MIN_CONFIGURATIONS - 1
    assert math.isnan(found.rho) and math.isnan(found.low) and found.distribution.size == 0
    text = link_sentence(found.rho, found.low, found.high, 3, "x", "y", left_out=1)
    assert text.startswith("not computed: 3 configurations with both (1 without both left out), fewer than 4")
    with pytest.raises(ValueError, match="configuration 1"):
        rank_correlation(x, [x[0], np.array([0.1, 0.2]), x[2]], rng=0)


def test_the_sentence_is_read_from_the_numbers():
    assert link_sentence(0.31, -0.2, 0.7, 26, "a", "b") == (
        "ρ = 0.31 [-0.20, 0.70] across 26 configurations: no clear link (the interval includes 0)"
    )
    assert "a positive link (configurations with higher a have higher b)" in link_sentence(0.8, 0.2, 0.95, 9, "a", "b")
    assert "a negative link (configurations with higher a have lower b)" in link_sentence(-0.8, -0.9, -0.1, 9, "a", "b")
    assert link_sentence(math.nan, math.nan, math.nan, 6, "a", "b").startswith("not defined across 6 configurations")


def test_setting_labels_name_what_the_settings_differ_in():
    keys = [json.dumps({"dataset_params": {"rho": r}, "model": "small_cnn", "train": {"lr": 0.1}}) for r in (0.9, 0.5)]
    assert setting_labels(keys) == dict(zip(keys, ["rho=0.9", "rho=0.5"], strict=True))
    assert setting_labels(keys[:1]) == {keys[0]: ""}


def _drop_localisation(root, spec, preds):
    """Overwrite a run's predictions.csv as an old version wrote it: no localisation columns."""
    old = {r: {k: v for k, v in p.items() if k not in LOCALISATION_COLUMNS} for r, p in preds.items()}
    write_atomic(run_dir(root, spec.run_id) / "predictions.csv", predictions_csv(old, CLASSES))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Six configurations of two seeds whose skill rises with both localisation and robustness, and a seventh
    without localisation columns."""
    root = tmp_path_factory.mktemp("correlation")
    configurations = [("gradcam", 0, 0.5), ("gain", 0, 0.6), ("gain_ext", 9, 0.7), ("gain_ext", 23, 0.8),
                      ("gain_ext", 78, 0.9), ("gain_ext", 200, 0.97)]  # fmt: skip
    for method, budget, skill in configurations:
        for seed in range(2):
            fake_run(root, method, seed, skill, budget=budget)
    for seed in range(2):
        _drop_localisation(root, *fake_run(root, "gain_ext", seed, 0.6, budget=1464))
    return root


def test_the_table_correlates_configurations_and_counts_those_left_out(folder):
    runs, _ = load_runs([folder])
    table = correlation_table(runs, n_resamples=300)
    assert list(table.columns) == CORRELATION_COLUMNS
    assert list(zip(table["x"], table["y"], strict=True)) == list(pairs())
    assert (table["setting"] == "").all(), "one setting: no label"
    assert (table["n_configurations"] == 6).all() and (table["left_out"] == 1).all()
    assert ((table["ci_low"] <= table["rho"]) & (table["rho"] <= table["ci_high"])).all()
    rm_auroc = table[(table["x"] == "relevance_mass") & (table["y"] == "shifted_auroc")].iloc[0]
    tidy = tidy_table(runs)  # the per-run values recomputed from predictions.csv: the 7th has no relevance mass
    means = tidy.pivot_table(index="config", columns="metric", values="value", aggfunc="mean")
    means = means.dropna(subset=["relevance_mass", "shifted_auroc"])
    assert len(means) == 6
    assert rm_auroc["rho"] == pytest.approx(sps.spearmanr(means["relevance_mass"], means["shifted_auroc"]).statistic)
    assert rm_auroc["rho"] > 0.5
    assert rm_auroc["result"].startswith(f"ρ = {rm_auroc['rho']:.2f} [") and "(1 without both left out)" in rm_auroc[
        "result"
    ]
    again = correlation_table(runs, n_resamples=300)
    pd.testing.assert_frame_equal(table, again)


def test_too_few_configurations_in_the_table(tmp_path):
    for method, budget in (("gradcam", 0), ("gain", 0), ("gain_ext", 9)):
        fake_run(tmp_path, method, 0, 0.7, budget=budget)
    table = build_tables([tmp_path], n_resamples=50)["correlation"]
    assert (table["n_configurations"] == 3).all() and table["rho"].isna().all()
    assert table["result"].str.startswith("not computed: 3 configurations").all()


def test_gain_bench_table_writes_the_correlation_csv(folder, tmp_path, capsys):
    assert main(["table", str(folder), "--csv", str(tmp_path / "csv")]) == 0
    written = pd.read_csv(tmp_path / "csv" / "correlation.csv", keep_default_na=False)
    assert list(written.columns) == CORRELATION_COLUMNS and len(written) == len(pairs())
    assert "correlation.csv" in capsys.readouterr().out


SUITE = tiny_suite("corr", ("gradcam", "gain", "gain_ext"), timing=False, budgets=(9, 23))


def test_the_report_answers_the_question_with_the_table_and_the_scatter(tmp_path):
    """A results folder written as the runner writes it (suite.json, records, predictions; no training): the report
    has the section, its generated sentences, the table and a scatter, and writes results_correlation.csv."""
    (tmp_path / "corr.toml").write_text(SUITE)
    out = tmp_path / "out"
    skill = {"gradcam": 0.5, "gain": 0.65, "gain_ext": 0.8}
    fabricated_folder(tmp_path / "corr.toml", out, lambda spec: skill[spec.method] + spec.budget / 200)
    path, tables = render(out, n_resamples=100)
    html = path.read_text()
    assert 'id="localisation-robustness">Does localisation predict robustness?</h2>' in html
    assert 'href="#localisation-robustness"' in html
    section = html.split('id="localisation-robustness"', 1)[1].split("<h2", 1)[0]
    assert 'id="correlation"' in section and 'alt="localisation against robustness' in section
    assert section.count("data:image/png;base64,") == 1
    for sentence in tables["correlation"]["result"]:
        assert sentence in section, "every sentence generated from the table"
    assert (tables["correlation"]["n_configurations"] == 4).all(), "gradcam, gain, gain_ext-9, gain_ext-23"
    written = pd.read_csv(out / "results_correlation.csv", keep_default_na=False)
    assert list(written["result"]) == list(tables["correlation"]["result"])
