"""The report's figures, each returned as a `data:image/png;base64,...` URI so the HTML stays one self-contained file.

Figures are drawn on matplotlib `Figure` objects with an explicit Agg canvas (no pyplot, no global backend or style
change, nothing left open), styled by seaborn inside a local `rc_context`, and saved without a timestamp so the same
input gives the same bytes. Every method keeps one colour-blind-safe colour (Okabe & Ito) across all figures;
configurations of one method (its budgets) are shades of that colour, darker for larger budgets.

The throughput table's cost arithmetic is `costs`.
"""

from __future__ import annotations

import base64
import io
import json
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

from benchmark.analyse.cells import plural
from benchmark.analyse.correlation import MIN_CONFIGURATIONS, pairs
from benchmark.analyse.names import Names
from benchmark.analyse.report.costs import COSTS, THROUGHPUT_KEYS, row_budget, row_method, with_costs
from benchmark.core.curves import BOOKKEEPING, DIAGNOSTICS, LOSS_PARTS
from benchmark.core.metric_defs import METRIC
from benchmark.core.spec import BASELINE

DPI = 100


# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision deficiencies.
PAPER_BUDGETS = (9, 23, 78, 200, 1464)


NO_NAMES = Names()  # a results folder that names nothing: methods by their own names, stable colours


def method_colour(method: str, names: Names = NO_NAMES) -> str:
    """The method's colour in every figure: fixed for the paper's methods, a stable pick for any other."""
    return names.colour(method)


def shade(colour: str, i: int, n: int) -> tuple[float, float, float]:
    """The `i`-th of `n` shades of `colour`, light to dark (one configuration per budget of a method)."""
    rgb = np.array(to_rgb(colour))
    if n <= 1:
        return tuple(rgb)
    t = -0.4 + 0.75 * i / (n - 1)  # -0.4: 40% towards white ... +0.35: 35% towards black
    out = rgb + (1 - rgb) * -t if t < 0 else rgb * (1 - t)
    return tuple(float(c) for c in out)


def display_name(method: str, budget: int = 0, params: dict[str, Any] | None = None, names: Names = NO_NAMES) -> str:
    """ "GAIN_ext-78", plus any method parameters: a configuration's name within one suite."""
    name = names.display(method) + (f"-{budget}" if budget else "")
    return name + "".join(f" {k}={v}" for k, v in sorted((params or {}).items()))


def png_data_uri(fig: Figure, *, dpi: int = DPI) -> str:
    """Render `fig` with Agg to a base64 PNG data URI and close it; no timestamp, so the bytes are reproducible."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    if "matplotlib.pyplot" in sys.modules:  # a figure made with pyplot is registered there; free it
        sys.modules["matplotlib.pyplot"].close(fig)
    fig.clear()
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def write_png(uri: str, path: Path) -> None:
    """A `png_data_uri` figure written as a PNG file."""
    Path(path).write_bytes(base64.b64decode(uri.split(",", 1)[1]))


@contextmanager
def style(font_scale: float = 1.0) -> Iterator[None]:
    """seaborn's whitegrid look and readable fonts for the figures drawn inside, without touching global state."""
    rc = {
        **sns.axes_style("whitegrid"),
        **sns.plotting_context("notebook", font_scale=0.8 * font_scale),
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "legend.frameon": False,
        "axes.titleweight": "bold",
    }
    with mpl.rc_context(rc):
        yield


def _message(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.35", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def empty_figure(text: str, *, size: tuple[float, float] = (6.0, 1.2)) -> str:
    """A small figure that only says `text` (e.g. "no runs with a training curve yet")."""
    with style():
        fig = Figure(figsize=size)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        ax.text(0.5, 0.5, text, ha="center", va="center", color="0.35")
        return png_data_uri(fig)


@dataclass
class _Series:
    """The configurations of one method and parameter set: a curve over budgets, or a level (budget 0)."""

    method: str
    params: dict[str, Any]
    level: bool
    name: str
    configs: list[str] = field(default_factory=list)


def _spec_of(config: str) -> dict[str, Any]:
    """The spec behind an aggregated table's `config` key (JSON of the spec without seed), or {} for any other key."""
    try:
        spec = json.loads(config)
    except (TypeError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}


def _series(aggregated: pd.DataFrame, names: Names) -> list[_Series]:
    """Configurations grouped into series in table order: one per (method, parameters, budget 0 or not)."""
    found: dict[str, _Series] = {}
    for config, row in aggregated.drop_duplicates("config").set_index("config").iterrows():
        spec = _spec_of(str(config))
        params = spec.get("method_params", {}) if isinstance(spec.get("method_params"), dict) else {}
        rest = {k: v for k, v in spec.items() if k not in ("budget", "method")}
        level = int(row["budget"]) == 0
        key = json.dumps([row["method"], rest, level], sort_keys=True, default=str)
        name = display_name(str(row["method"]), 0, params, names)
        found.setdefault(key, _Series(str(row["method"]), params, level, name)).configs.append(str(config))
    return list(found.values())


def _ylim(values: np.ndarray, min_span: float = 0.1) -> tuple[float, float] | None:
    """Limits around `values` with a little room; rates (all in [0, 1]) keep at least `min_span` and stay in range."""
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    lo, hi = float(values.min()), float(values.max())
    rate = lo >= 0 and hi <= 1
    if rate and hi - lo < min_span:
        centre = min(max((lo + hi) / 2, min_span / 2), 1 - min_span / 2)
        lo, hi = centre - min_span / 2, centre + min_span / 2
    pad = max(0.06 * (hi - lo), 1e-3)
    lo, hi = lo - pad, hi + pad
    return (max(lo, -0.03), min(hi, 1.03)) if rate else (lo, hi)


def budget_curves(
    aggregated: pd.DataFrame, metrics: Sequence[tuple[str, str]], *, columns: int = 3, names: Names = NO_NAMES
) -> str:
    """One panel per metric `(key, label)`: each mask-using configuration's mean over seeds against its pixel-label
    budget (log axis, ticks at the budgets run) with its 95% interval as a band, and the budget-free methods
    (Grad-CAM, GAIN) as dashed levels with light bands, so one reads off where supervision starts to pay.

    `aggregated` is `aggregate.aggregate_table`'s frame (columns config, method, budget, metric, mean, ci_low,
    ci_high; `degenerate_seeds` optional). A metric without rows gets a panel that says so.
    """
    metrics = list(metrics)
    series = _series(aggregated, names) if len(aggregated) else []
    budgets = sorted({int(b) for b in aggregated.get("budget", pd.Series(dtype=int)) if int(b) > 0})
    ticks = budgets or list(PAPER_BUDGETS)
    xlim = (ticks[0] / 1.6, ticks[-1] * 1.6)
    n_panels = max(len(metrics), 1)
    ncols = 2 if n_panels == 4 and columns >= 2 else min(n_panels, columns)
    nrows = math.ceil(n_panels / ncols)
    by_method: dict[str, int] = {}
    styles: dict[int, tuple[str, str]] = {}
    for i, s in enumerate(series):
        k = by_method.get(s.method, 0)
        by_method[s.method] = k + 1
        styles[i] = (("--", ":", "-.")[k % 3], "o^sD"[k % 4]) if s.level else (("-", "--", ":")[k % 3], "os^D"[k % 4])
    with style():
        fig = Figure(figsize=(3.9 * ncols, 3.1 * nrows + 0.5), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        handles: dict[str, Any] = {}
        degenerate_shown = False
        for i_ax, (ax, (key, label)) in enumerate(zip(axes, metrics, strict=False)):
            ax.set_title(label)
            rows = aggregated[aggregated["metric"] == key] if len(aggregated) else aggregated
            if not len(rows):
                _message(ax, f"no results for\n{label}")
                continue
            ax.set_xscale("log")
            ax.set_xlim(*xlim)
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.set_xlabel("pixel-label budget (images)")
            if i_ax % ncols == 0:
                ax.set_ylabel("mean over seeds, 95% CI")
            for i, s in enumerate(series):
                points = rows[rows["config"].isin(s.configs)].sort_values("budget")
                if not len(points):
                    continue
                colour = method_colour(s.method, names)
                linestyle, marker = styles[i]
                if s.level:
                    for _, p in points.iterrows():
                        ax.axhspan(p["ci_low"], p["ci_high"], color=colour, alpha=0.10, lw=0)
                        line = ax.axhline(p["mean"], color=colour, ls=linestyle, lw=1.6)
                    handles.setdefault(s.name, line)
                    continue
                x = points["budget"].to_numpy(float)
                ax.fill_between(x, points["ci_low"], points["ci_high"], color=colour, alpha=0.18, lw=0)
                main = s.method == "gain_ext"
                (line,) = ax.plot(
                    x, points["mean"], color=colour, ls=linestyle, marker=marker, lw=2.2 if main else 1.6, ms=5
                )
                handles.setdefault(s.name, line)
                if "degenerate_seeds" in points:
                    bad = points[points["degenerate_seeds"] > 0]
                    if len(bad):
                        degenerate_shown = True
                        ax.plot(bad["budget"], bad["mean"], ls="", marker=marker, ms=7, mfc="white", mec=colour)
            chance = METRIC[key].chance if key in METRIC else None
            values = rows[["mean", "ci_low", "ci_high"]].to_numpy(float).ravel()
            limits = _ylim(np.append(values, chance) if chance is not None else values)
            if limits:
                ax.set_ylim(*limits)
            if chance is not None:  # chance visible: a value below it means the context wins
                line = ax.axhline(chance, color="0.35", ls=(0, (1, 2)), lw=1.2, zorder=1)
                handles.setdefault(f"chance ({chance:g}: no separation)", line)
        for ax in axes[len(metrics) :]:
            ax.set_visible(False)
        if degenerate_shown:
            handles["hollow: decision constant in some seed"] = Line2D(
                [], [], ls="", marker="o", mfc="white", mec="0.3", ms=7
            )
        if handles:
            fig.legend(
                handles.values(), handles.keys(), loc="outside lower center", ncols=min(len(handles), 5), fontsize=9
            )
        return png_data_uri(fig)


def _config_of(record: dict[str, Any]) -> tuple[str, str, int, dict[str, Any]]:
    """(key, method, budget, method params) of a run's configuration: its spec without the seed and suite."""
    spec = record["spec"]
    key = json.dumps({k: v for k, v in spec.items() if k not in ("seed", "suite")}, sort_keys=True, default=str)
    return key, spec["method"], int(spec.get("budget", 0)), dict(spec.get("method_params", {}))


def config_colours(configs: Sequence[tuple[str, int]], names: Names = NO_NAMES) -> list[tuple[float, float, float]]:
    """A colour per `(method, budget)` configuration: the method's colour, shaded by the rank of the budget."""
    budgets: dict[str, list[int]] = {}
    for method, budget in configs:
        budgets.setdefault(method, [])
        if budget not in budgets[method]:
            budgets[method].append(budget)
    out = []
    for method, budget in configs:
        ranks = sorted(budgets[method])
        out.append(shade(method_colour(method, names), ranks.index(budget), len(ranks)))
    return out


def training_curves(
    records: list[dict[str, Any]], *, diagnostics: bool = False, names: Names = NO_NAMES
) -> str | None:
    """Per-epoch curves, one panel per key, each configuration's seeds as thin lines in its colour: the loss parts
    (total, L_cl, L_am, L_e, then any other key the curves hold that is not a diagnostic), to see whether runs
    converged and whether a seed diverged; or, with `diagnostics`, the training diagnostics (`curves.DIAGNOSTICS`:
    erased share, gradient norms and cosines, BatchNorm shift, held-out scores per epoch). None when no run has a
    diagnostic to draw.

    Runs without a curve are left out; keys a configuration does not have are simply absent from its panel.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    meta: dict[str, tuple[str, int, dict[str, Any]]] = {}
    for record in records:
        if not record.get("curve"):
            continue
        key, method, budget, params = _config_of(record)
        groups.setdefault(key, []).append(record)
        meta[key] = (method, budget, params)
    if not groups:
        return None if diagnostics else empty_figure("no run has a training curve yet")
    names = names.merged(Names.of_records(records))
    order = sorted(groups, key=lambda k: (names.rank(meta[k][0]), meta[k][1], display_name(*meta[k], names)))
    colours = dict(zip(order, config_colours([meta[k][:2] for k in order], names), strict=True))
    styles: dict[str, str] = {}  # configurations that share a method and budget (other parameters): other dashes
    for key in order:
        siblings = [k for k in order if meta[k][:2] == meta[key][:2]]
        styles[key] = ("-", "--", ":", "-.")[siblings.index(key) % 4]
    seen = {p for g in groups.values() for r in g for e in r["curve"] for p in e if p not in BOOKKEEPING}
    if diagnostics:
        parts = [p for p in DIAGNOSTICS if p in seen]
        if not parts:
            return None
    else:
        parts = [p for p in LOSS_PARTS if p in seen] + sorted(seen - set(LOSS_PARTS) - set(DIAGNOSTICS))
    n = len(parts)
    ncols = 2 if n == 4 else min(n, 4 if diagnostics else 3)
    nrows = math.ceil(n / ncols)
    with style():
        fig = Figure(figsize=(3.6 * ncols + 2.2, 2.8 * nrows + 0.3), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        handles: dict[str, Any] = {}
        for ax, part in zip(axes, parts, strict=False):
            title, ylabel = DIAGNOSTICS.get(part, (LOSS_PARTS.get(part, part), "mean loss"))
            ax.set_title(title, fontsize=10 if diagnostics else None)
            for key in order:
                for record in sorted(groups[key], key=lambda r: r["spec"].get("seed", 0)):
                    points = [(e["epoch"] + 1, e[part]) for e in record["curve"] if part in e]
                    if not points:
                        continue
                    x, y = zip(*points, strict=True)
                    ax.plot(
                        x, y, color=colours[key], ls=styles[key], lw=1.1, alpha=0.85, marker="." if len(x) < 3 else ""
                    )
                    handles.setdefault(
                        display_name(*meta[key], names), Line2D([], [], color=colours[key], ls=styles[key], lw=2.2)
                    )
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
        for ax in axes[n:]:
            ax.set_visible(False)
        seeds = max(len(g) for g in groups.values())
        title = f"one line per seed ({seeds} at most)" if seeds > 1 else "one line per run"
        if any(len({b for m, b, _ in meta.values() if m == method}) > 1 for method, _, _ in meta.values()):
            title += "\ndarker: larger budget"
        fig.legend(handles.values(), handles.keys(), loc="outside right upper", fontsize=9, title=title)
        return png_data_uri(fig)


def _setting_note(rows: list[dict[str, Any]]) -> str:
    parts = []
    for key, fmt in (("device", "{}"), ("precision", "{}"), ("batch_size", "batch {}"), ("threads", "threads")):
        values = {r.get(key) for r in rows if r.get(key) is not None}
        if len(values) == 1:
            value = values.pop()
            parts.append(plural(value, "thread") if fmt == "threads" else fmt.format(value))
    return ", ".join(parts)


def throughput_chart(rows: list[dict[str, Any]], *, baseline: str = BASELINE, names: Names = NO_NAMES) -> str:
    """Horizontal bars of training and attention throughput per configuration (images/s, higher is faster), each
    labelled with its value and its cost (time per image over the baseline's, as the report's table gives it), with
    a tick at the baseline figure that cost is measured against (`with_costs`): for a paired timing the baseline's
    speed in the same rounds, so bar, tick and label agree with each other and with the table.

    `rows` are `{"config": "gain_ext-78", "train_images_per_s": ..., "attention_images_per_s": ...}` (a record's
    `timings.throughput` plus its configuration name; `method` and `budget` keys are used when given).
    """
    if not rows:
        return empty_figure("no throughput measured")
    rows = sorted(with_costs(rows, baseline=baseline), key=lambda r: (names.rank(row_method(r)), row_budget(r)))
    colours = config_colours([(row_method(r), row_budget(r)) for r in rows], names)
    labels = [str(r.get("config", "?")) for r in rows]
    labels = [
        display_name(row_method(r), 0, names=names) + label[len(row_method(r)) :]
        for r, label in zip(rows, labels, strict=True)
    ]
    y = np.arange(len(rows))
    with style():
        fig = Figure(figsize=(10.5, 0.36 * len(rows) + 1.5), layout="constrained")
        axes = fig.subplots(1, len(THROUGHPUT_KEYS), sharey=True, squeeze=False).ravel()
        for ax, (key, title) in zip(axes, THROUGHPUT_KEYS, strict=True):
            cost_key, against_key = COSTS[key]
            values = np.array([float(r[key]) if isinstance(r.get(key), int | float) else np.nan for r in rows])
            ax.barh(y, np.nan_to_num(values), color=colours, height=0.7)
            top = np.nanmax(values) if np.isfinite(values).any() else 1.0
            for yi, row in zip(y, rows, strict=True):
                against = row.get(against_key)
                if against is not None and row_method(row) != baseline:
                    ax.plot([against, against], [yi - 0.42, yi + 0.42], color="0.1", lw=1.6)
                    top = max(top, against)
            for yi, row, value in zip(y, rows, values, strict=True):
                cost = row.get(cost_key)
                text = "n/a" if not np.isfinite(value) else f"{value:,.0f}"
                if np.isfinite(value) and cost is not None:
                    text += f"  cost {cost:.2f}\N{MULTIPLICATION SIGN}"
                ax.text(max(np.nan_to_num(value), row.get(against_key) or 0) + 0.015 * top, yi, text,
                        va="center", ha="left", fontsize=8.5)  # fmt: skip
            ax.set_xlim(0, top * 1.5)
            ax.set_title(title)
            ax.set_xlabel("images/s")
            ax.grid(axis="y", visible=False)
        axes[0].set_yticks(y, labels)
        axes[0].invert_yaxis()
        note = _setting_note(rows)
        has_base = any(row_method(r) == baseline for r in rows)
        paired = any(r["paired"] for r in rows)
        if not has_base and not paired:
            ratio_note = "no baseline run: no costs"
        else:
            against = "the baseline's speed in the same rounds (paired)" if paired else f"{names.display(baseline)}"
            ratio_note = f"cost = time per image over the baseline's; tick: {against}"
        fig.suptitle(" · ".join(filter(None, [note, ratio_note])), fontsize=9, color="0.3")
        return png_data_uri(fig)


def sweep_curves(
    rows: pd.DataFrame, x_label: str, metrics: Sequence[tuple[str, str]], *, names: Names = NO_NAMES
) -> str:
    """Headline metrics against a numeric sweep axis (e.g. the bias strength rho): one row of panels per facet (the
    other sweep axes, e.g. init), one panel per metric `(key, label)`, one line per configuration (method and
    budget) with its 95% interval as error bars, so one reads off where a method departs from its own regime's
    baseline.

    `rows` holds the aggregated table's columns (method, budget, label, metric, mean, ci_low, ci_high) plus `x`
    (the axis value) and `facet` (the rest of the regime's label, "" when there is none).
    """
    metrics = list(metrics)
    if rows.empty:
        return empty_figure("no complete runs to plot against the sweep")
    facets = list(dict.fromkeys(rows["facet"]))
    configs = rows.drop_duplicates("label")[["label", "method", "budget"]]
    order = sorted(configs.itertuples(index=False), key=lambda c: (names.rank(c.method), int(c.budget), c.label))
    shades = config_colours([(c.method, int(c.budget)) for c in order], names)
    colours = dict(zip([c.label for c in order], shades, strict=True))
    xs = sorted(rows["x"].unique())
    offsets = {c.label: (i - (len(order) - 1) / 2) for i, c in enumerate(order)}
    step = min(np.diff(xs)) if len(xs) > 1 else 1.0
    with style():
        fig = Figure(figsize=(3.9 * len(metrics), 3.0 * len(facets) + 0.6), layout="constrained")
        axes = fig.subplots(len(facets), len(metrics), squeeze=False)
        handles: dict[str, Any] = {}
        for r, facet in enumerate(facets):
            for c, (key, label) in enumerate(metrics):
                ax = axes[r, c]
                ax.set_title(f"{label}" + (f"\n{facet}" if facet else ""), fontsize=9)
                panel = rows[(rows["facet"] == facet) & (rows["metric"] == key)]
                if panel.empty:
                    _message(ax, f"no results for\n{label}")
                    continue
                for config in order:
                    points = panel[panel["label"] == config.label].sort_values("x")
                    if points.empty:
                        continue
                    x = points["x"].to_numpy(float) + offsets[config.label] * step * 0.04
                    mean = points["mean"].to_numpy(float)
                    err = np.vstack([mean - points["ci_low"].to_numpy(float), points["ci_high"].to_numpy(float) - mean])
                    baseline = config.method == BASELINE
                    handle = ax.errorbar(
                        x, mean, yerr=np.clip(err, 0, None), color=colours[config.label], marker="o", ms=4,
                        lw=1.2 if baseline else 1.8, ls="--" if baseline else "-", capsize=2,
                    )  # fmt: skip
                    handles.setdefault(display_name(config.method, int(config.budget), names=names), handle)
                ax.set_xticks(xs, [f"{x:g}" for x in xs])
                ax.set_xlabel(x_label)
                limits = _ylim(panel[["mean", "ci_low", "ci_high"]].to_numpy(float).ravel())
                if limits:
                    ax.set_ylim(*limits)
                if c == 0:
                    ax.set_ylabel("mean over seeds, 95% CI")
        if handles:
            fig.legend(
                handles.values(), handles.keys(), loc="outside lower center", ncols=min(len(handles), 6), fontsize=9
            )
        return png_data_uri(fig)


def _correlation_title(rows: pd.DataFrame) -> str:
    """A panel's title from its rows of `studies.correlation_table`: rho and its interval, or why there is none."""
    if len(rows) != 1:
        return "ρ per setting: see the table"
    r = rows.iloc[0]
    n = int(r["n_configurations"])
    if n < MIN_CONFIGURATIONS:
        return f"n = {n}: too few configurations for ρ"
    if not math.isfinite(r["rho"]):
        return f"ρ undefined (ties), n = {n}"
    interval = f" [{r['ci_low']:.2f}, {r['ci_high']:.2f}]" if math.isfinite(r["ci_low"]) else ""
    return f"ρ = {r['rho']:.2f}{interval}, n = {n}"


def correlation_scatter(
    aggregated: pd.DataFrame,
    correlation: pd.DataFrame,
    labels: dict[str, str],
    *,
    shown: Sequence[tuple[str, str]] | None = None,
    names: Names = NO_NAMES,
) -> str:
    """Localisation against robustness: one panel per pair `(x, y)` (columns: the localisation metrics, rows: the
    robustness metrics), one point per configuration at its mean over seeds with its 95% interval on both axes as
    thin error bars, coloured by method (budgets as shades of it, as in every figure; the baseline a square), each
    panel titled with Spearman's rho, its interval and the number of configurations from `correlation`
    (`studies.correlation_table`), or why there is none. `aggregated` is `aggregate.aggregate_table`'s frame; `labels`
    the metrics' names."""
    wanted = list(pairs(set(aggregated.get("metric", ()))) if shown is None else shown)
    if aggregated.empty:
        return empty_figure("no complete runs to correlate")
    xs, ys = list(dict.fromkeys(x for x, _ in wanted)), list(dict.fromkeys(y for _, y in wanted))
    configs = aggregated.drop_duplicates("config")[["config", "method", "budget"]]
    order = sorted(configs.itertuples(index=False), key=lambda c: (names.rank(c.method), int(c.budget), c.config))
    colours = dict(zip([c.config for c in order], config_colours([(c.method, int(c.budget)) for c in order], names),
                       strict=True))  # fmt: skip
    by_metric = {m: g.set_index("config") for m, g in aggregated.groupby("metric")}
    with style():
        fig = Figure(figsize=(3.9 * len(xs) + 0.3, 3.2 * len(ys) + 0.6), layout="constrained")
        axes = fig.subplots(len(ys), len(xs), squeeze=False)
        handles: dict[str, Any] = {}
        for (r, y), (c, x) in ((ry, cx) for ry in enumerate(ys) for cx in enumerate(xs)):
            ax = axes[r, c]
            ax.set_xlabel(labels.get(x, x))
            ax.set_ylabel(labels.get(y, y))
            if (x, y) not in wanted:
                ax.set_visible(False)
                continue
            have = [p for p in order if x in by_metric and y in by_metric
                    and p.config in by_metric[x].index and p.config in by_metric[y].index]  # fmt: skip
            if not have:
                _message(ax, f"no configuration has\n{labels.get(x, x)} and {labels.get(y, y)}")
                continue
            for p in have:
                px, py = by_metric[x].loc[p.config], by_metric[y].loc[p.config]
                xerr = np.clip([[px["mean"] - px["ci_low"]], [px["ci_high"] - px["mean"]]], 0, None)
                yerr = np.clip([[py["mean"] - py["ci_low"]], [py["ci_high"] - py["mean"]]], 0, None)
                marker = "s" if p.method == BASELINE else "o"
                ax.errorbar(
                    px["mean"], py["mean"], xerr=np.nan_to_num(xerr), yerr=np.nan_to_num(yerr),
                    color=colours[p.config], marker=marker, ms=6, lw=0.8, elinewidth=0.8, alpha=0.9, capsize=0,
                )  # fmt: skip
                handles.setdefault(
                    names.display(p.method),
                    Line2D([], [], ls="", marker=marker, ms=7, color=method_colour(p.method, names)),
                )
            chance = METRIC[y].chance if y in METRIC else None
            if chance is not None:
                line = ax.axhline(chance, color="0.35", ls=(0, (1, 2)), lw=1.2, zorder=1)
                handles.setdefault(f"chance ({chance:g}: no separation)", line)
            for axis, metric in ((ax.set_xlim, x), (ax.set_ylim, y)):
                frame = by_metric[metric].loc[[p.config for p in have], ["mean", "ci_low", "ci_high"]]
                values = frame.to_numpy(float).ravel()
                limits = _ylim(np.append(values, chance) if metric == y and chance is not None else values)
                if limits:
                    axis(*limits)
            rows = correlation[(correlation["x"] == x) & (correlation["y"] == y)] if len(correlation) else correlation
            ax.set_title(_correlation_title(rows), fontsize=10)
        if handles:
            title = "one point per configuration: mean over seeds, 95% CI; darker: larger budget"
            fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=min(len(handles), 6),
                       fontsize=9, title=title, title_fontsize=9)  # fmt: skip
        return png_data_uri(fig)


def label_curves(
    aggregated: pd.DataFrame,
    metrics: Sequence[tuple[str, str]],
    labels: dict[str, tuple[str, float]],
    *,
    columns: int = 3,
    names: Names = NO_NAMES,
) -> str:
    """One panel per metric `(key, label)`: each configuration that pays for labels as a line over annotation
    hours (log axis), one line per method and label kind (`labels`: config -> (kind, seconds)), mean over seeds
    with its 95% interval as a band; the configurations without labels (GAIN, JTT, the baseline) as dashed levels.
    What a team reads off: at a given annotation time, which label and method find the most boats without water."""
    metrics = list(metrics)
    rows = aggregated[aggregated["metric"].isin([k for k, _ in metrics])] if len(aggregated) else aggregated
    kinds = sorted({kind for kind, _ in labels.values()})
    hours = sorted({seconds / 3600 for _, seconds in labels.values() if seconds > 0})
    n_panels = max(len(metrics), 1)
    ncols = min(n_panels, columns)
    nrows = math.ceil(n_panels / ncols)
    dashes = {kind: ("-", "--", ":", "-.", (0, (5, 1)), (0, (1, 1)))[i % 6] for i, kind in enumerate(kinds)}
    markers = {kind: "osv^Dx"[i % 6] for i, kind in enumerate(kinds)}
    with style():
        fig = Figure(figsize=(3.9 * ncols, 3.2 * nrows + 0.7), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        handles: dict[str, Any] = {}
        for i_ax, (ax, (key, title)) in enumerate(zip(axes, metrics, strict=False)):
            ax.set_title(title)
            panel = rows[rows["metric"] == key] if len(rows) else rows
            if not len(panel) or not hours:
                _message(ax, f"no results for\n{title}")
                continue
            ax.set_xscale("log")
            ax.set_xlim(hours[0] / 1.5, hours[-1] * 1.5)
            ticks = {(f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"): h for h in reversed(hours)}  # one per label
            ax.set_xticks(list(ticks.values()), list(ticks))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xlabel("annotation time")
            if i_ax % ncols == 0:
                ax.set_ylabel("mean over seeds, 95% CI")
            lines: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for row in panel.to_dict("records"):
                kind, seconds = labels.get(str(row["config"]), ("", 0.0))
                if not kind:
                    colour = method_colour(str(row["method"]), names)
                    ax.axhspan(row["ci_low"], row["ci_high"], color=colour, alpha=0.08, lw=0)
                    level = ax.axhline(row["mean"], color=colour, ls="--", lw=1.4)
                    handles.setdefault(display_name(str(row["method"]), 0, None, names) + " (no labels)", level)
                    continue
                lines.setdefault((str(row["method"]), kind), []).append(row | {"hours": seconds / 3600})
            for (method, kind), points in lines.items():
                points.sort(key=lambda p: p["hours"])
                x = np.array([p["hours"] for p in points])
                colour = method_colour(method, names)
                ax.fill_between(x, [p["ci_low"] for p in points], [p["ci_high"] for p in points], color=colour,
                                alpha=0.12, lw=0)  # fmt: skip
                (line,) = ax.plot(x, [p["mean"] for p in points], color=colour, ls=dashes[kind], marker=markers[kind],
                                  lw=1.8, ms=5)  # fmt: skip
                handles.setdefault(f"{display_name(method, 0, None, names)}, {kind}", line)
            values = panel[["mean", "ci_low", "ci_high"]].to_numpy(float).ravel()
            if limits := _ylim(values):
                ax.set_ylim(*limits)
        for ax in axes[len(metrics) :]:
            ax.set_visible(False)
        if handles:
            fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=min(len(handles), 4),
                       fontsize=8)  # fmt: skip
        return png_data_uri(fig)
