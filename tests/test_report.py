import pandas as pd

from benchmark.analyse.report.verdict import verdict
from benchmark.analyse.runs import row_name as _config_name  # the one fallback of every view
from benchmark.core.metric_defs import labels as metric_names
from benchmark.core.registry import display


def _aggregated(rows):
    columns = ["config", "label", "method", "display", "budget", "audited_class", "metric", "n_seeds", "mean", "sd",
               "ci_low", "ci_high", "degenerate_seeds", "excluded_runs"]  # fmt: skip
    return pd.DataFrame(
        [
            {
                "config": f"{m}-{b}",
                "label": m + (f"-{b}" if b else ""),
                "method": m,
                "display": display(m),  # as the tables carry it, from the runs' records
                "budget": b,
                "audited_class": "boat",
                "metric": metric,
                "n_seeds": 4,
                "mean": mean,
                "sd": 0.01,
                "ci_low": lo,
                "ci_high": hi,
                "degenerate_seeds": deg,
                "excluded_runs": 0,
            }
            for m, b, metric, mean, lo, hi, deg in rows
        ],
        columns=columns,
    )


def _paired(rows, n_seeds=8, full=True):
    """Paired rows as `paired.paired_table` gives them; `p` stands for both the bootstrap's and the replicate-level
    test's Holm-adjusted p; 8 full replicates unless said."""
    return pd.DataFrame(
        [
            {
                "n_seeds": n_seeds,
                "full_replicates": full,
                "p_replicates": p,
                "p_replicates_holm": p,
                "config": f"{m}-{b}",
                "label": m + (f"-{b}" if b else ""),
                "method": m,
                "display": display(m),  # as the tables carry it, from the runs' records
                "budget": b,
                "metric": metric,
                "difference": d,
                "ci_low": lo,
                "ci_high": hi,
                "p_value": p,
                "p_holm": p,
            }
            for m, b, metric, d, lo, hi, p in rows
        ]
    )


BASELINE = [
    ("gradcam", 0, "val_accuracy", 0.97, 0.96, 0.98, 0),
    ("gradcam", 0, "class_without_context", 0.02, 0.0, 0.03, 0),
    ("gradcam", 0, "context_without_class", 0.26, 0.22, 0.30, 0),
    ("gradcam", 0, "shifted_auroc", 0.02, 0.01, 0.04, 0),
]


def test_verdict_names_the_shortcut_and_what_is_not_significant():
    aggregated = _aggregated([*BASELINE, ("gain_ext", 78, "shifted_auroc", 0.05, 0.04, 0.07, 0)])
    paired = _paired(
        [
            ("gain_ext", 78, "context_without_class", 0.21, 0.14, 0.29, 0.006),
            ("gain_ext", 78, "class_without_context", 0.002, -0.01, 0.02, 1.0),
            ("gain_ext", 78, "val_accuracy", -0.2, -0.22, -0.17, 0.006),
        ]
    )
    out = verdict(aggregated, paired, n_seeds=4)
    text = " ".join(out["summary"])
    assert "calls 74% [70, 78] of water-only images “boat”" in text
    assert "it has learned the water, not the boat" in text
    assert "Water-only images called “boat”: significantly fewer for GAIN_ext-78 (by 21 points)" in text
    assert "Boats without water recognised: no significant change for GAIN_ext-78" in text
    assert "In-distribution accuracy: significantly lower for GAIN_ext-78 (by 20 points)" in text
    assert "No configuration beats the baseline significantly on the AUROC and both shifted groups" in text
    assert "significantly better than the baseline on both shifted groups" not in text.lower(), "said once, not twice"
    assert "none has unlearned the shortcut" in text, "every AUROC interval lies below 0.5"
    assert "not enough replicates" not in text, "8 full replicates are enough to call a difference"
    assert out["summary"][0].startswith("Boats without water recognised"), "a plain answer per group comes first"
    assert out["summary"][1].startswith("Water-only images called")
    assert out["details"] == [
        "GAIN_ext-78: boat without water ±0 points [−1, +2] (sign-flip Holm p 1.000, not significant); water without "
        "boat +21 points [+14, +29] (sign-flip Holm p 0.006, significant); in-distribution accuracy −20 points [−22, "
        "−17] (sign-flip Holm p 0.006, significant)."
    ]


def test_verdict_credits_a_configuration_better_on_both_groups_and_warns_on_few_seeds():
    aggregated = _aggregated([*BASELINE, ("gain", 0, "overall", 0.5, 0.5, 0.5, 2)])
    rows = [
        ("gain", 0, "context_without_class", 0.3, 0.2, 0.4, 0.001),
        ("gain", 0, "class_without_context", 0.4, 0.3, 0.5, 0.001),
    ]
    summary = verdict(aggregated, _paired(rows), n_seeds=8)["summary"]
    assert "Significantly better than the baseline on both shifted groups, but not on the AUROC: GAIN." in summary
    assert any(s.startswith("Degenerate") and "GAIN" in s for s in summary)
    assert not any("not enough replicates" in s for s in summary)
    for few in (_paired(rows, n_seeds=3, full=False), _paired(rows, n_seeds=7)):
        text = " ".join(verdict(aggregated, few, n_seeds=3)["summary"])
        called = ("significantly more", "significantly fewer", "significantly better")
        assert not any(w in text.lower() for w in called), "never called with too few replicates"
        assert "Boats without water recognised: not enough replicates to tell for GAIN" in text
        assert "No difference from the baseline can be called significant here" in text
    text = " ".join(verdict(aggregated, _paired(rows, n_seeds=3, full=False), n_seeds=3)["summary"])
    assert "3 seeds that redraw the fine-tuning only (seed_scope = \"train\"), not full replicates" in text
    text = " ".join(verdict(aggregated, _paired(rows, n_seeds=7), n_seeds=7)["summary"])
    assert "7 full replicates; a claim needs 8" in text
    interval_crosses = _paired([(m, b, metric, d, -0.01, hi, p) for m, b, metric, d, lo, hi, p in rows])
    text = " ".join(verdict(aggregated, interval_crosses, n_seeds=8)["summary"])
    assert "no significant change for GAIN" in text, "a p below 0.05 with an interval across 0 is not significant"


def test_the_verdict_first_answers_its_heading_with_the_maps_the_decisions_and_the_budget():
    """The heading asks whether the model still looks at the water: the first sentence says where the map of the
    configuration with the most pixel labels lies and whether its decisions follow, from the numbers."""
    aggregated = _aggregated(
        [
            *BASELINE,
            ("gradcam", 0, "pointing_game", 0.20, 0.15, 0.25, 0),
            ("gain_ext", 9, "shifted_auroc", 0.30, 0.2, 0.4, 0),
            ("gain_ext", 1464, "pointing_game", 0.58, 0.50, 0.66, 0),
            ("gain_ext", 1464, "shifted_auroc", 0.03, 0.01, 0.05, 0),
            ("gain_ext", 1464, "class_without_context", 0.02, 0.0, 0.04, 0),
            ("gain_ext", 1464, "context_without_class", 0.40, 0.3, 0.5, 0),
        ]
    )
    paired = _paired(
        [
            ("gain_ext", 9, "shifted_auroc", 0.28, 0.2, 0.36, 0.001),  # the better result, at a smaller budget
            ("gain_ext", 1464, "pointing_game", 0.38, 0.30, 0.46, 0.004),
            ("gain_ext", 1464, "shifted_auroc", 0.01, -0.01, 0.03, 0.6),
            ("gain_ext", 1464, "class_without_context", 0.0, -0.02, 0.02, 0.9),
            ("gain_ext", 1464, "context_without_class", 0.14, 0.1, 0.2, 0.001),
        ]
    )
    shares = {"gradcam-0": 0.64, "gain_ext-1464": 0.57}
    summary = verdict(aggregated, paired, n_seeds=4, shares=shares, unbiased=0.58)["summary"]
    first = next(s for s in summary if s.startswith("With 1464"))
    assert first.startswith("With 1464 pixel-labelled images, GAIN_ext-1464 moves the boat map onto the boat "
                            "(pointing game 0.20 → 0.58, sign-flip Holm p 0.004; share of the map on the water 0.64 "
                            "→ 0.57, a model trained without the bias 0.58)"), "the most pixel labels, whatever results"
    assert "finds about as many boats without water (0.02 → 0.02, not significant)" in first
    assert "calls fewer water-only images “boat” (share called not boat 0.26 → 0.40, sign-flip Holm p 0.001)" in first
    worse_maps = paired.assign(difference=lambda f: f["difference"].where(f["metric"] != "pointing_game", -0.1))
    first = next(s for s in verdict(aggregated, worse_maps, n_seeds=8)["summary"] if s.startswith("With 1464"))
    assert "moves the boat map off the boat" in first
    flat = paired.assign(p_replicates_holm=0.5)
    first = next(s for s in verdict(aggregated, flat, n_seeds=8)["summary"] if s.startswith("With 1464"))
    assert "leaves the boat map about where the baseline's is" in first and "calls about as many" in first
    assert "share of the map" not in first, "no shares given: none said"


def test_verdict_without_runs_or_baseline():
    assert verdict(_aggregated([]), _paired([]), n_seeds=3)["summary"] == ["No complete runs yet: nothing to conclude."]
    only = verdict(_aggregated([("gain", 0, "val_accuracy", 0.9, 0.8, 0.95, 0)]), _paired([]), n_seeds=4)
    assert only["summary"][0].startswith("There is no Grad-CAM baseline")


def test_names_for_the_reader():
    row = {"method": "gain_ext", "display": "GAIN_ext", "budget": 78, "label": "gain_ext-78 alpha=0.3"}
    assert _config_name(row) == "GAIN_ext-78 alpha=0.3"
    assert _config_name({"method": "gradcam", "display": "Grad-CAM", "budget": 0, "label": "gradcam"}) == "Grad-CAM"
    assert _config_name({"method": "my_method", "budget": 0, "label": "my_method"}) == "my_method", "no display"
    names = metric_names("bird", "land")
    assert names["context_without_class"] == "land without bird (share called not bird)"


def test_beating_the_baseline_takes_the_auroc_and_both_groups_each_significant():
    from benchmark.analyse.report.verdict import beaters, beats_baseline_sentence

    rows = [
        ("gain_ext", 78, "shifted_auroc", 0.05, 0.02, 0.08, 0.004),
        ("gain_ext", 78, "class_without_context", 0.10, 0.05, 0.15, 0.001),
        ("gain_ext", 78, "context_without_class", 0.08, 0.03, 0.12, 0.01),
        # better on both groups but the AUROC difference is not significant: not a beater
        ("gain_ext", 9, "shifted_auroc", 0.02, -0.01, 0.05, 0.2),
        ("gain_ext", 9, "class_without_context", 0.10, 0.05, 0.15, 0.001),
        ("gain_ext", 9, "context_without_class", 0.08, 0.03, 0.12, 0.01),
        # significant on all three but worse on one group: not a beater
        ("gain", 0, "shifted_auroc", 0.05, 0.02, 0.08, 0.004),
        ("gain", 0, "class_without_context", -0.10, -0.15, -0.05, 0.001),
        ("gain", 0, "context_without_class", 0.08, 0.03, 0.12, 0.01),
    ]
    paired = _paired(rows)
    assert [b["name"] for b in beaters(paired)] == ["GAIN_ext-78"]
    sentence = beats_baseline_sentence(paired)
    assert sentence.startswith("Beats the baseline on the AUROC and both shifted groups")
    assert "GAIN_ext-78 (AUROC +5 hundredths [+2, +8] (sign-flip Holm p 0.004, significant)" in sentence
    assert "GAIN_ext-9" not in sentence and "GAIN " not in sentence
    none = beats_baseline_sentence(_paired(rows[3:]))
    assert none.startswith("No configuration beats the baseline significantly on the AUROC and both shifted groups "
                           "(boat without")
    assert none in verdict(_aggregated(BASELINE), _paired(rows[3:]), n_seeds=4)["summary"]
