"""The report's verdict: a few generated sentences with the numbers behind them, and the paper's own Table 4.

Every sentence is built from the aggregated and paired tables (intervals from the two-level bootstrap; the
replicate-level exact sign-flip test, Holm-adjusted across the configurations compared on a metric). A difference is
called significant only as `paired.significance` allows: at least `MIN_REPLICATES` full replicates, the adjusted p
below `ALPHA` and the interval excluding 0; with fewer, or with seeds that redraw only the fine-tuning, the sentence
says "not enough replicates" instead. The verdict opens with a plain answer per shifted group, never with the AUROC.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from benchmark.analyse.paired import NOT_ENOUGH, replicates_note, significance
from benchmark.analyse.runs import row_name
from benchmark.analyse.stats import ALPHA, MIN_REPLICATES
from benchmark.core.metric_defs import METRIC, SHIFTED
from benchmark.core.settings import BN_MODES
from benchmark.core.spec import BASELINE

# Li et al., "Tell Me Where to Look", CVPR 2018, Table 4 (arXiv v1): VOC 2012-trained, boat accuracy on 50 + 50
# internet images. Shares, not percentages, to sit beside this suite's numbers.
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


def _names(frame: pd.DataFrame) -> list[str]:
    """Each row's configuration name (`runs.row_name`)."""
    return [row_name(r) for r in frame.to_dict("records")]


def _cell(aggregated: pd.DataFrame, config: str, metric: str) -> dict[str, Any] | None:
    rows = aggregated[(aggregated["config"] == config) & (aggregated["metric"] == metric)]
    return rows.iloc[0].to_dict() if len(rows) else None


def _call(row: dict[str, Any]) -> str:
    """"significant", "not significant" or "not enough replicates" (`paired.significance`)."""
    return significance(row, ALPHA)


def _p(row: dict[str, Any]) -> str:
    """The replicate-level test's adjusted p, or why there is none to read."""
    call = _call(row)
    if call == NOT_ENOUGH:
        return NOT_ENOUGH
    return f"sign-flip Holm p {p_text(row['p_replicates_holm'])}, {call}"


def _comparison(row: dict[str, Any], what: str) -> str:
    """`what +5 points [+2, +8] (sign-flip Holm p 0.016, significant)`; AUROC differences are in hundredths."""
    unit = "hundredths" if row.get("metric") == "shifted_auroc" else "points"
    if not all(math.isfinite(row[k]) for k in ("difference", "ci_low", "ci_high")):
        return f"{what}: not computable (a value is missing)"
    return (
        f"{what} {signed_points(row['difference'], zero='±0')} {unit} "
        f"[{signed_points(row['ci_low'])}, {signed_points(row['ci_high'])}] ({_p(row)})"
    )


def signed_points(x: float, *, zero: str = "0") -> str:
    """A difference of shares in points (hundredths), signed with a true minus: `+5`, `−3`, `zero` when it rounds
    to 0."""
    points = round(100 * x)
    return zero if points == 0 else f"{points:+d}".replace("-", "−")


def p_text(p: Any, missing: str = "n/a") -> str:
    """A p-value to three decimals; below 0.001 (the two-level bootstrap's floor with 2,000 resamples is about
    0.0005) as "< 0.001"; `missing` where there is none."""
    if not isinstance(p, int | float) or not math.isfinite(p):
        return missing
    return f"{p:.3f}" if p >= 0.001 else "< 0.001"


def _moved(
    paired: pd.DataFrame, metric: str, subject: str, better: str, worse: str, unit: str = "points"
) -> str | None:
    """One sentence on a metric across configurations: which moved it significantly, which way, by how much; which
    did not; which have too few replicates to say."""
    rows = paired[(paired["metric"] == metric) & paired["difference"].notna()]
    if rows.empty:
        return None
    calls = [_call(r) for r in rows.to_dict("records")]
    called = rows.assign(call=calls)
    significant = called["call"] == "significant"
    up = called[significant & (called["difference"] > 0)]
    down = called[significant & (called["difference"] < 0)]
    flat = called[called["call"] == "not significant"]
    few = called[called["call"] == NOT_ENOUGH]

    def names(frame: pd.DataFrame) -> str:
        return ", ".join(_names(frame))

    def span(frame: pd.DataFrame) -> str:
        values = sorted(abs(100 * frame["difference"]))
        low, high = values[0], values[-1]
        return f"{low:.0f} {unit}" if round(low) == round(high) else f"{low:.0f}–{high:.0f} {unit}"

    parts = [f"{better} for {names(up)} (by {span(up)})"] if len(up) else []
    parts += [f"{worse} for {names(down)} (by {span(down)})"] if len(down) else []
    parts += [f"no significant change for {names(flat)}"] if len(flat) else []
    parts += [f"not enough replicates to tell for {names(few)}"] if len(few) else []
    return f"{subject}: " + "; ".join(parts)


def group_sentence_subjects(cls: str = "boat", context: str = "water") -> tuple[str, str, str]:
    """How the verdict's per-group sentences begin (`verdict`; the third only where the data has the third group),
    for a sweep's one-line answer per regime and the summary."""
    water = f"{context.capitalize()}-only images called \u201c{cls}\u201d"
    third = (f"{context.capitalize()} images with another object in the {cls}\u2019s place called \u201c{cls}\u201d "
             "(the third shifted group)")  # fmt: skip
    return f"{cls.capitalize()}s without {context} recognised", water, third


def neither_sentence(paired: pd.DataFrame, cls: str = "boat", context: str = "water") -> str | None:
    """The configurations that moved neither shifted group significantly (each tested with enough replicates)."""
    neither = []
    for _, group in paired.groupby("config", sort=False):
        rows = [r for r in group.to_dict("records") if r["metric"] in SHIFTED]
        if len(rows) == 2 and all(_call(r) == "not significant" for r in rows):
            neither.append(_names(group.iloc[:1])[0])
    if not neither:
        return None
    return f"Neither more {cls}s without {context} found nor fewer {context}-only images called \u201c{cls}\u201d: " \
        f"{', '.join(neither)}."


def replicates_sentence(paired: pd.DataFrame) -> str | None:
    """Where no difference can be called for want of replicates, why (once, for the comparisons that have too
    few)."""
    rows = [r for r in paired.to_dict("records") if _call(r) == NOT_ENOUGH]
    if not rows:
        return None
    notes = sorted({replicates_note(r) for r in rows})
    scope = "No difference" if len(rows) == len(paired) else "Some differences"
    return (
        f"{scope} from the baseline can be called significant here: {'; '.join(notes)}. The numbers are estimates; "
        f"a claim needs at least {MIN_REPLICATES} full replicates (seed_scope = \"full\": each seed redraws the data, "
        f"the budget, the held-out data and the pre-training)."
    )


HEADLINE = ("shifted_auroc", "class_without_context", "context_without_class")


def beaters(paired: pd.DataFrame) -> list[dict[str, Any]]:
    """The configurations that beat the baseline on all of the threshold-free AUROC and both shifted groups, each
    significantly (`paired.significance`, difference > 0); each with its three paired rows."""
    out = []
    for _, group in paired.groupby("config", sort=False):
        rows = {r["metric"]: r for r in group.to_dict("records")}
        if all(m in rows and _call(rows[m]) == "significant" and rows[m]["difference"] > 0 for m in HEADLINE):
            out.append({"name": _names(group.iloc[:1])[0], "rows": rows})
    return out


def beats_baseline_sentence(paired: pd.DataFrame, cls: str = "boat", context: str = "water") -> str:
    """The suite's question in one sentence: which configurations beat the baseline on the AUROC and on both shifted
    groups at once, with each difference, interval and Holm-adjusted p; or that none does."""
    found = beaters(paired)
    what = f"the AUROC and both shifted groups ({cls} without {context}, {context} without {cls})"
    if not found:
        return f"No configuration beats the baseline significantly on {what} at once."
    parts = []
    for item in found:
        rows = item["rows"]
        parts.append(
            f"{item['name']} ("
            + "; ".join(
                _comparison(rows[m], label)
                for m, label in (("shifted_auroc", "AUROC"), ("class_without_context", f"{cls} without {context}"),
                                 ("context_without_class", f"{context} without {cls}"))
            )
            + ")"
        )  # fmt: skip
    return f"Beats the baseline on {what} at once: " + "; ".join(parts) + "."


def masked_bn_sentence(configs: pd.DataFrame) -> str | None:
    """One line on GAIN's `masked_bn` where a configuration sets it: what each value the suite ran means."""
    modes = sorted({t.split("=", 1)[1] for label in configs.get("label", []) for t in str(label).split()
                    if t.startswith("masked_bn=")})  # fmt: skip
    if not modes:
        return None
    what = "; ".join(f"{m} = {BN_MODES.get(m, m)}" for m in modes)
    return f"masked_bn is what BatchNorm normalises GAIN's erased pass with: {what} (the public implementations: eval)."


def effect(row: dict[str, Any] | None) -> str | None:
    """"better" or "worse" where a paired difference is significant (`paired.significance`), in the metric's
    direction (the row's `higher_is_better`, else the metric table's), "ns" where it is not, "few" where there are
    too few replicates to say; None without one."""
    if row is None or not all(isinstance(row.get(k), int | float) and math.isfinite(row[k]) for k in
                              ("difference", "ci_low", "ci_high")):  # fmt: skip
        return None
    call = _call(row)
    if call != "significant":
        return "few" if call == NOT_ENOUGH else "ns"
    metric = METRIC.get(row.get("metric", ""))
    higher = bool(row.get("higher_is_better", metric.higher_is_better if metric else True))
    return "better" if (row["difference"] > 0) == higher else "worse"


def subject(aggregated: pd.DataFrame) -> dict[str, Any] | None:
    """The configuration the verdict's first sentence is about, chosen by the design, not by its results: the one
    with the most pixel labels (the largest budget; the first in the suite's order among equals), else the first
    configuration that is not the baseline."""
    configs = aggregated.drop_duplicates("config")
    others = configs[configs["method"] != BASELINE]
    if others.empty:
        return None
    budgets = others["budget"].astype(int)
    chosen = others[budgets == budgets.max()].iloc[0] if budgets.max() > 0 else others.iloc[0]
    return chosen.to_dict()


def answer(
    aggregated: pd.DataFrame,
    paired: pd.DataFrame,
    shares: dict[str, float] | None = None,
    unbiased: float = float("nan"),
    cls: str = "boat",
    context: str = "water",
) -> str | None:
    """The report's heading answered in one sentence, generated from the numbers: where `subject`'s {cls} map lies
    against the baseline's (pointing game, paired; the map's share on the {context} beside the unbiased model's) and
    whether the decisions follow (the shifted groups' AUROC, paired), with the budget it took. None without a
    baseline or a configuration to compare."""
    chosen = subject(aggregated)
    configs = aggregated.drop_duplicates("config")
    base = configs[configs["method"] == BASELINE]
    if chosen is None or base.empty or paired.empty:
        return None
    base_config, config = base["config"].iloc[0], chosen["config"]
    rows = {r["metric"]: r for r in paired[paired["config"] == config].to_dict("records")}
    name = _names(pd.DataFrame([chosen]))[0]

    def means(metric: str) -> str:
        b, c = _cell(aggregated, base_config, metric), _cell(aggregated, config, metric)
        return f"{b['mean']:.2f} \u2192 {c['mean']:.2f}" if b and c else "n/a"

    def holm(row: dict[str, Any]) -> str:
        call = _call(row)
        return f"sign-flip Holm p {p_text(row['p_replicates_holm'])}" if call == "significant" else call

    maps = effect(rows.get("pointing_game"))
    groups = {m: effect(rows.get(m)) for m in ("class_without_context", "context_without_class")}
    if any(g is None for g in groups.values()):
        return None
    parts = []
    if maps is not None:
        verb = {"better": f"moves the {cls} map onto the {cls}", "worse": f"moves the {cls} map off the {cls}",
                "ns": f"leaves the {cls} map about where the baseline's is",
                "few": f"cannot be told from the baseline on where its {cls} map lies"}[maps]  # fmt: skip
        numbers = f"pointing game {means('pointing_game')}, {holm(rows['pointing_game'])}"
        shares = shares or {}
        if math.isfinite(shares.get(base_config, math.nan)) and math.isfinite(shares.get(config, math.nan)):
            numbers += f"; share of the map on the {context} {shares[base_config]:.2f} \u2192 {shares[config]:.2f}"
            if math.isfinite(unbiased):
                numbers += f", a model trained without the bias {unbiased:.2f}"
        parts.append(f"{verb} ({numbers})")
    found = {"better": f"finds more {cls}s without {context}", "worse": f"finds fewer {cls}s without {context}",
             "ns": f"finds about as many {cls}s without {context}",
             "few": f"cannot be told from the baseline on {cls}s without {context}"}[groups["class_without_context"]]
    called = {"better": f"calls fewer {context}-only images \u201c{cls}\u201d",
              "worse": f"calls more {context}-only images \u201c{cls}\u201d",
              "ns": f"calls about as many {context}-only images \u201c{cls}\u201d",
              "few": f"cannot be told from the baseline on {context}-only images"}[groups["context_without_class"]]
    parts.append(f"{found} ({means('class_without_context')}, {holm(rows['class_without_context'])})")
    parts.append(f"{called} (share called not {cls} {means('context_without_class')}, "
                 f"{holm(rows['context_without_class'])})")  # fmt: skip
    budget = int(chosen["budget"])
    lead = f"With {budget} pixel-labelled images, {name} " if budget else f"{name} "
    arrows = f"; each arrow goes from the Grad-CAM baseline to {name}."
    return lead + ", ".join(parts[:-1]) + " and " + parts[-1] + arrows


def verdict(
    aggregated: pd.DataFrame,
    paired: pd.DataFrame,
    *,
    n_seeds: int,
    cls: str = "boat",
    context: str = "water",
    shares: dict[str, float] | None = None,
    unbiased: float = float("nan"),
) -> dict[str, list[str]]:
    """`summary`: first a plain answer per shifted group (which configurations find more {cls}s without {context},
    which call fewer {context}-only images "{cls}", and fewer images of another object in the {cls}'s place where
    the data has that third group, which do neither, and where there are too few replicates to
    say), then the heading's answer for one configuration (`answer`), the baseline's shortcut, the AUROC and
    in-distribution accuracy; `details`: one sentence per configuration with every difference, interval and
    replicate-level p. `shares`: each configuration's share of the map on the context (mean over seeds),
    `unbiased`: the unbiased model's. `n_seeds` is kept for callers; the replicates are read from the rows."""
    if aggregated.empty:
        return {"summary": ["No complete runs yet: nothing to conclude."], "details": []}
    summary: list[str] = []
    boats, water, third = group_sentence_subjects(cls, context)
    if len(paired):
        for sentence in (
            _moved(paired, "class_without_context", boats, "significantly more", "significantly fewer"),
            _moved(paired, "context_without_class", water, "significantly fewer", "significantly more"),
            _moved(paired, "object_swapped_accuracy", third, "significantly fewer", "significantly more"),
            neither_sentence(paired, cls, context),
            replicates_sentence(paired),
        ):  # fmt: skip
            if sentence:
                summary.append(sentence if sentence.endswith(".") else sentence + ".")
    first = answer(aggregated, paired, shares, unbiased, cls, context) if len(paired) else None
    if first:
        summary.append(first)
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
                    f"(AUROC {auroc['mean']:.2f}; 0.5 = no separation): it has learned the {context}, not the {cls}"
                )
            summary.append(text + ".")
    else:
        summary.append("There is no Grad-CAM baseline in this suite, so no method is compared against one.")
    details: list[str] = []
    if len(paired):
        for sentence in (
            _moved(paired, "shifted_auroc", "Threshold-free separation of the two groups (AUROC; read it with the "
                   "two groups above, never alone)", "significantly better", "significantly worse", unit="hundredths"),
            _moved(paired, "val_accuracy", "In-distribution accuracy", "significantly higher", "significantly lower"),
        ):  # fmt: skip
            if sentence:
                summary.append(sentence + ".")
        still = aggregated[(aggregated["metric"] == "shifted_auroc") & (aggregated["ci_high"] < 0.5)]
        if len(still) == len(configs):
            summary.append(
                f"Every configuration still ranks {context}-only images above {cls}s without {context} "
                "(AUROC interval below 0.5 for all): none has unlearned the shortcut."
            )
        improved = []
        for _, group in paired.groupby("config", sort=False):
            rows = {r["metric"]: r for r in group.to_dict("records")}
            name = _names(group.iloc[:1])[0]
            parts = [
                _comparison(rows[m], what)
                for m, what in (
                    ("class_without_context", f"{cls} without {context}"),
                    ("context_without_class", f"{context} without {cls}"),
                    ("object_swapped_accuracy", f"another object in the {cls}\u2019s place on {context}"),
                    ("shifted_auroc", "AUROC"),
                    ("val_accuracy", "in-distribution accuracy"),
                )
                if m in rows
            ]
            if parts:
                details.append(f"{name}: " + "; ".join(parts) + ".")
            shifted = [rows[m] for m in ("context_without_class", "class_without_context") if m in rows]
            if shifted and all(_call(r) == "significant" and r["difference"] > 0 for r in shifted):
                improved.append(name)
        summary.append(beats_baseline_sentence(paired, cls, context))
        beating = {item["name"] for item in beaters(paired)}
        extra = [name for name in improved if name not in beating]
        if extra:  # better on both groups without beating it on the AUROC too: said once, not twice
            summary.append(
                f"Significantly better than the baseline on both shifted groups, but not on the AUROC: "
                f"{', '.join(extra)}."
            )
    below = aggregated[(aggregated["metric"] == "shifted_auroc") & (aggregated["ci_high"] < 0.5)]
    below = below[below["method"] != BASELINE]
    if 0 < len(below) < len(configs) - len(base):  # "every configuration" is said above
        cells = [f"{n} ({r['mean']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}])"
                 for n, r in zip(_names(below), below.to_dict("records"), strict=True)]  # fmt: skip
        summary.append(
            f"Below chance on the AUROC (its interval under 0.5: it ranks {context}-only images above {cls}s without "
            f"{context}, so the {context} decides): {', '.join(cells)}."
        )
    if sentence := masked_bn_sentence(configs):
        summary.append(sentence)
    degenerate = aggregated[aggregated["degenerate_seeds"] > 0]
    if len(degenerate):
        names = sorted(set(_names(degenerate)))
        summary.append(
            f"Degenerate (a constant decision on a split in some seed; such a classifier scores 0.5 on \u201coverall"
            f"\u201d while telling nothing apart): {', '.join(names)}."
        )
    return {"summary": summary, "details": details}
