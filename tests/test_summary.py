"""The report's Markdown summary (`summary.md`, `gain-bench report DIR --summary`): what a pull request or a CI job
shows of a results folder, made from the same tables as the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
from test_tables import CLASSES, SIZES, _images, _predictions

from benchmark import runner
from benchmark.cli import main
from benchmark.metrics import audit_metrics
from benchmark.predictions import audited_view, predictions_csv
from benchmark.store import run_dir, write_atomic, write_record
from benchmark.suites import load
from benchmark.train import new_record

SUITE = """
name = "pr"
seeds = [0, 1, 2, 3, 4, 5, 6, 7]
seed_scope = "full"
budgets = [9]
[data]
n_train = 160
n_val = 40
n_shifted = 20
n_counterfactual = 20
[train]
epochs = 1
[methods.gradcam]
[methods.gain]
[methods.gain_ext]
[timing]
enabled = false
"""


def test_the_summary_says_the_verdict_per_group_and_each_configuration_against_the_baseline(tmp_path, capsys):
    (tmp_path / "pr.toml").write_text(SUITE)
    suite = load(tmp_path / "pr.toml")
    out = tmp_path / "out"
    runner.write_suite_file(suite, out)
    skill = {"gradcam": 0.55, "gain": 0.56, "gain_ext": 0.95}
    for spec in suite.runs():
        if spec.method == "gain" and spec.seed == 7:  # one failed run, listed
            write_record(run_dir(out, spec.run_id) / "record.json", new_record(spec, "failed", "non-finite loss"))
            continue
        rng = np.random.default_rng([spec.seed, spec.budget, len(spec.method)])
        preds = {r: _predictions(_images(r, n, spec.seed), r, rng, skill[spec.method], False) for r, n in SIZES.items()}
        record = new_record(spec, "complete", None)
        record["metrics"] = audit_metrics({r: audited_view(p, 0) for r, p in preds.items()}, 0.5, classes=CLASSES)
        write_atomic(run_dir(out, spec.run_id) / "predictions.csv", predictions_csv(preds, CLASSES))
        write_record(run_dir(out, spec.run_id) / "record.json", record)
    assert main(["report", str(out), "--summary"]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert text == (out / "summary.md").read_text(), "stdout carries the summary alone"
    assert "report: " in captured.err
    lines = text.splitlines()
    assert lines[0] == "## gain-bench: pr" and lines[2].startswith("24 runs: 23 complete, 1 failed, 0 missing.")
    assert any(line.startswith("- Boats without water recognised: significantly more for GAIN_ext-9") for line in lines)
    table = [line for line in lines if line.startswith("| ")]
    assert table[0].startswith("| configuration | boat without water") and len(table) == 4
    assert table[1].startswith("| Grad-CAM (baseline) |") and table[1].count("| – |") == 3
    paired = pd.read_csv(out / "results_paired.csv")
    row = paired[(paired["name"] == "GAIN_ext-9") & (paired["metric"] == "class_without_context")].iloc[0]
    cell = f"{row['difference']:+.3f}".replace("-", "−")
    ext = next(line for line in table if line.startswith("| GAIN_ext-9 |"))
    assert cell in ext and f"p {row['p_replicates_holm']:.3f} **\\***" in ext, "the paired table's own numbers"
    assert "- failed: `gain-b0-s7-" in text and "non-finite loss" in text
    assert len(lines) < 1000
