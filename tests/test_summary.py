"""The report's Markdown summary (`summary.md`, `gain-bench report DIR --summary`): what a pull request or a CI job
shows of a results folder, made from the same tables as the report."""

from __future__ import annotations

import pandas as pd
from test_tables import fabricated_folder
from tiny import tiny_suite

from benchmark.cli import main
from benchmark.execute.suites import load

SUITE = tiny_suite("pr", ("gradcam", "gain", "gain_ext"), timing=False, seeds=tuple(range(8)), seed_scope="full")


def test_the_summary_says_the_verdict_per_group_and_each_configuration_against_the_baseline(tmp_path, capsys):
    (tmp_path / "pr.toml").write_text(SUITE)
    out = tmp_path / "out"
    skill = {"gradcam": 0.55, "gain": 0.56, "gain_ext": 0.95}
    failed = [s.run_id for s in load(tmp_path / "pr.toml").runs() if s.method == "gain" and s.seed == 7]
    fabricated_folder(tmp_path / "pr.toml", out, lambda spec: skill[spec.method], failed)  # one failed run, listed
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


def test_the_table_can_show_chosen_methods(tmp_path, capsys):
    (tmp_path / "pr.toml").write_text(SUITE)
    out = tmp_path / "out"
    skill = {"gradcam": 0.55, "gain": 0.56, "gain_ext": 0.95}
    fabricated_folder(tmp_path / "pr.toml", out, lambda spec: skill[spec.method])
    capsys.readouterr()
    assert main(["table", str(out), "--rows", "--method", "gradcam", "--method", "gain_ext"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    rows = [line.split()[0] for line in lines if line and not line.startswith("mean")]
    assert rows == ["gradcam", "gain_ext-9"], "the chosen methods only, paired with the baseline"
