"""The rank agreement across a search's selection rules, by hand on a small table of chosen trials' means."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmark.analyse import rule_ranks


def _means(values: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    groups = ["gradcam", "gain", "copy_paste", "dfr"]
    rows = [{"rule": rule, "setting": "{}", "group": g, "metric": metric, "value": v}
            for (rule, metric), column in values.items() for g, v in zip(groups, column, strict=True)]  # fmt: skip
    return pd.DataFrame(rows)


def test_tau_across_rules_and_metrics_by_hand(monkeypatch):
    means = _means({
        ("in-distribution-val", "class_without_context"): [0.1, 0.2, 0.3, 0.4],
        ("oracle", "class_without_context"): [0.1, 0.2, 0.4, 0.3],   # one swap: tau (5 - 1) / 6
        ("in-distribution-val", "context_without_class"): [0.4, 0.3, 0.2, 0.1],  # reversed: -1
        ("oracle", "context_without_class"): [0.4, 0.3, 0.2, 0.1],
    })
    trials = pd.DataFrame({"rule": ["in-distribution-val"] * 4 + ["oracle"] * 4, "group": ["a", "b", "c", "d"] * 2,
                           "trial": [0, 1, 2, 0, 0, 2, 2, 1]})  # fmt: skip
    monkeypatch.setattr(rule_ranks, "rule_means", lambda folder: (means, trials))
    table, _ = rule_ranks.rule_rank_agreement("folder")
    tau = {(r.x_metric, r.x_rule, r.y_metric, r.y_rule): r.tau for r in table.itertuples()}
    cwc, wc = "class_without_context", "context_without_class"
    assert tau[(cwc, "in-distribution-val", cwc, "oracle")] == pytest.approx(4 / 6)
    assert tau[(cwc, "in-distribution-val", wc, "in-distribution-val")] == pytest.approx(-1)
    assert tau[(wc, "in-distribution-val", wc, "oracle")] == pytest.approx(1)
    assert len(table) == 6 and set(table["n_configurations"]) == {4}, "every pair of the 4 (metric, rule) points"
    text = rule_ranks.format_rule_ranks(table, trials)
    lines = text.splitlines()
    assert "in-distribution-val / oracle" in lines[0] and "+0.67" in lines[1] and "+1.00" in lines[2]
    assert "median tau" in text and "lowest -1.00" in text
    assert "in-distribution-val and oracle chose the same trial in 2 of 4 searched configurations." in text


def test_a_folder_without_a_search_is_refused(tmp_path):
    (tmp_path / "suite.json").write_text("{}")
    with pytest.raises(Exception, match="suite"):
        rule_ranks.rule_means(tmp_path)
