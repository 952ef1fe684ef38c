"""`gain-bench compare MAIN PR --paired`: the same configurations trained by two versions of the code, per group,
with what moved beyond the seeds' noise."""

from __future__ import annotations

from test_tables import fabricated_folder
from tiny import tiny_suite

from benchmark.analyse.versions import versions_table
from benchmark.cli import main

SUITE = tiny_suite("pr", ("gradcam", "gain_ext"), timing=False, seeds=(0, 1, 2, 3))


def test_what_a_pull_request_moved_and_what_it_left_alone(tmp_path, capsys):
    (tmp_path / "pr.toml").write_text(SUITE)
    fabricated_folder(tmp_path / "pr.toml", tmp_path / "main", lambda spec: 0.55)
    better = {"gradcam": 0.55, "gain_ext": 0.95}  # the pull request changed GAIN_ext only
    fabricated_folder(tmp_path / "pr.toml", tmp_path / "pr", lambda spec: better[spec.method])
    table = versions_table(tmp_path / "main", tmp_path / "pr", n_resamples=200)
    assert list(table["name"].unique()) == ["Grad-CAM", "GAIN_ext-9"], "the registry's order"
    assert set(table["metric"]) == {"class_without_context", "context_without_class", "shifted_auroc", "val_accuracy"}
    same = table[table["name"] == "Grad-CAM"]
    assert (same["difference"] == 0).all() and not same["moved"].any(), "the same runs made twice: nothing moved"
    moved = table[(table["name"] == "GAIN_ext-9") & (table["metric"] == "class_without_context")].iloc[0]
    assert moved["moved"] and moved["difference"] > 0.2 and moved["n_seeds"] == 4
    assert moved["call"] == "not enough replicates", "4 seeds of the fine-tuning alone carry no claim"
    assert abs(moved["pr"] - moved["main"] - moved["difference"]) < 0.05, "the means and their difference agree"
    assert main(["compare", str(tmp_path / "main"), str(tmp_path / "pr"), "--paired"]) == 0
    out = capsys.readouterr().out
    assert "moved beyond the seeds' noise" in out and "yes, not enough replicates" in out
    assert main(["compare", str(tmp_path / "main"), str(tmp_path / "nothing"), "--paired"]) == 2
