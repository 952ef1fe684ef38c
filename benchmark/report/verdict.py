"""The report's verdict: a few generated sentences with the numbers behind them, and the paper's own Table 4.

Every sentence is built from the aggregated and paired tables (intervals from the two-level bootstrap, p-values
Holm-adjusted across the configurations compared on a metric); a difference is called significant only when its
adjusted p is below `ALPHA`, and the sentence says so plainly either way.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from benchmark.tables import BASELINE, DISPLAY

ALPHA = 0.05
MIN_SEEDS_FOR_CLAIMS = 4

# Li et al., "Tell Me Where to Look", CVPR 2018, Table 4 (arXiv v1): VOC 2012-trained, boat accuracy on 50 + 50
# internet images; from ../shared/PAPER.md. Shares, not percentages, to sit beside this suite's numbers.
PAPER_TABLE4: dict[str, Any] = {
    "columns": ["Grad-CAM", "GAIN", "GAIN_ext-9", "GAIN_ext-23", "GAIN_ext-78"],
    "rows": [
        ("VOC val (in-distribution)", [0.83, 0.90, 0.93, 0.93, 0.94]),
        ("boat without water", [0.42, 0.48, 0.64, 0.74, 0.84]),
        ("water without boat", [0.30, 0.62, 0.68, 0.76, 0.84]),
        ("overall", [0.36, 0.55, 0.66, 0.75, 0.84]),
    ],
    "source": "Li et al., CVPR 2018, Table 4: VOC 2012 training, VGG-16, 50 + 50 internet test images",
}


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _interval_pct(low: float, high: float) -> str:
    return f"[{100 * low:.0f}, {100 * high:.0f}]"


def _name(method: str, budget: int) -> str:
    return DISPLAY.get(method, method) + (f"-{int(budget)}" if budget else "")


def _cell(aggregated: pd.DataFrame, config: str, metric: str) -> dict[str, Any] | None:
    rows = aggregated[(aggregated["config"] == config) & (aggregated["metric"] == metric)]
    return rows.iloc[0].to_dict() if len(rows) else None


def _comparison(row: dict[str, Any], what: str) -> str:
    sign = "+" if row["difference"] >= 0 else "−"
    significant = row["p_holm"] < ALPHA
    return (
        f"{what} {sign}{abs(100 * row['difference']):.0f} points "
        f"[{100 * row['ci_low']:+.0f}, {100 * row['ci_high']:+.0f}], Holm-adjusted p = {_p(row['p_holm'])}"
        f" ({'significant' if significant else 'not significant'})"
    )


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.3f}" if p >= 0.001 else "< 0.001"


def verdict(
    aggregated: pd.DataFrame, paired: pd.DataFrame, *, n_seeds: int, cls: str = "boat", context: str = "water"
) -> list[str]:
    """Plain sentences: the baseline's shortcut, how far each configuration moves it, and what is significant."""
    if aggregated.empty:
        return ["No complete runs yet: nothing to conclude."]
    sentences: list[str] = []
    configs = aggregated.drop_duplicates("config")
    base = configs[configs["method"] == BASELINE]
    if len(base):
        config = base["config"].iloc[0]
        val = _cell(aggregated, config, "val_accuracy")
        xwc = _cell(aggregated, config, "context_without_class")
        cwc = _cell(aggregated, config, "class_without_context")
        auroc = _cell(aggregated, config, "shifted_auroc")
        if val and xwc and cwc:
            text = (
                f"The Grad-CAM baseline is right on {_pct(val['mean'])} {_interval_pct(val['ci_low'], val['ci_high'])}"
                f" of in-distribution images, but calls {_pct(1 - xwc['mean'])} "
                f"{_interval_pct(1 - xwc['ci_high'], 1 - xwc['ci_low'])} of {context}-only images \u201c{cls}\u201d "
                f"and recognises {_pct(cwc['mean'])} {_interval_pct(cwc['ci_low'], cwc['ci_high'])} of {cls}s "
                f"without {context}"
            )
            if auroc and math.isfinite(auroc["ci_high"]) and auroc["ci_high"] < 0.5:
                text += (
                    f"; its {cls} score ranks {context}-only images above {cls}s without {context} "
                    f"(AUROC {auroc['mean']:.2f}, 0.5 = no separation): it has learned the {context}, not the {cls}"
                )
            sentences.append(text + ".")
    else:
        sentences.append("There is no Grad-CAM baseline in this suite, so no method is compared against one.")
    improved: list[str] = []
    if len(paired):
        for _, group in paired.groupby("config", sort=False):
            rows = {r["metric"]: r for r in group.to_dict("records")}
            name = _name(group["method"].iloc[0], group["budget"].iloc[0])
            parts = [
                _comparison(rows[m], what)
                for m, what in (
                    ("context_without_class", f"{context} without {cls}"),
                    ("class_without_context", f"{cls} without {context}"),
                    ("shifted_auroc", "AUROC"),
                    ("val_accuracy", "in-distribution accuracy"),
                )
                if m in rows
            ]
            if parts:
                sentences.append(f"{name} against the baseline: " + "; ".join(parts) + ".")
            shifted = [rows[m] for m in ("context_without_class", "class_without_context") if m in rows]
            if shifted and all(r["p_holm"] < ALPHA and r["difference"] > 0 for r in shifted):
                improved.append(name)
        if improved:
            sentences.append(f"Significantly better than the baseline on both shifted groups: {', '.join(improved)}.")
        else:
            sentences.append(
                f"No configuration is significantly better than the baseline on both shifted groups "
                f"({cls} without {context} and {context} without {cls}) at Holm-adjusted p < {ALPHA}."
            )
    degenerate = aggregated[aggregated["degenerate_seeds"] > 0]
    if len(degenerate):
        names = sorted({_name(m, b) for m, b in zip(degenerate["method"], degenerate["budget"], strict=True)})
        sentences.append(
            f"Degenerate (a constant decision on a split in some seed; such a classifier scores 0.5 on \u201coverall"
            f"\u201d while telling nothing apart): {', '.join(names)}."
        )
    if n_seeds < MIN_SEEDS_FOR_CLAIMS:
        sentences.append(
            f"With {n_seeds} seed(s) these differences are indicative only; run at least {MIN_SEEDS_FOR_CLAIMS} "
            "seeds (e.g. --seeds 0,1,2,3) before claiming one."
        )
    return sentences
