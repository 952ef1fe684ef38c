"""A metric is one definition (`metric_defs.Metric`), and a plugin adds one with `register_metric`: every consumer
(the prediction columns, the record, the tables, the correlation study, the report, the docs list) reads it from
there, and a results folder carries a plugin's declaration so that the analysis knows it without the plugin."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import tiny_suite

from benchmark import docs
from benchmark.analyse import metric_groups
from benchmark.analyse.correlation import pairs
from benchmark.cli import main
from benchmark.core import metric_defs, predictions
from benchmark.core.plugins import PluginError
from benchmark.core.registry import RegistryError, load_plugins, register_metric
from benchmark.execute.metrics import localise

ROOT = Path(__file__).resolve().parent.parent

PLUGIN = '''
import torch

from benchmark.api import register_metric


@register_metric(label="map peak {tag}", short="peak {tag}", definition="the largest value of the class map")
def peak_{tag}(maps, region, valid):
    peak = maps.flatten(1).amax(1)
    has_object = (region & valid).flatten(1).any(1)
    return torch.where(has_object, peak, torch.full_like(peak, float("nan")))
'''


def _plugin(folder: Path, tag: str, body: str = PLUGIN) -> Path:
    path = folder / f"metric_{tag}.py"
    path.write_text(body.format(tag=tag))
    return path


def test_a_plugin_metric_reaches_every_consumer_from_its_one_definition(tmp_path: Path) -> None:
    before = pairs()
    (plugin,) = load_plugins([str(_plugin(tmp_path, "one"))])
    metric = metric_defs.METRIC["peak_one"]
    assert metric.origin == str(plugin.origin) and metric.origin.startswith("plugin ")
    assert metric.kind == "localisation" and metric.column == "peak_one" and metric.roles == ("val",)
    assert "peak_one" in predictions.localisation_columns()
    assert metric_groups.METRIC["peak_one"].roles == ("val",) and "peak_one" in metric_groups.METRIC
    assert metric_defs.short_label("peak_one") == "peak one"
    assert metric_defs.labels("boat", "water")["peak_one"] == "map peak one"
    assert "| `peak_one` | map peak one | the largest value of the class map |" in docs.metrics_reference()
    assert pairs() == before, "not `correlated`: the correlation study keeps its pairs"
    maps = torch.tensor([[[0.0, 0.5], [0.25, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])
    region = torch.tensor([[[True, False], [False, False]], [[False, False], [False, False]]])
    columns = localise(maps, region, torch.ones_like(region))
    assert set(columns) == {"relevance_mass", "pointing_hit", "iou_at_tau", "peak_one"}
    assert columns["peak_one"][0] == 0.5 and math.isnan(columns["peak_one"][1])
    assert metric_defs.declared() == [metric.declaration()] and "per_image" not in metric.declaration()


def test_list_names_every_metric_with_its_origin(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    plugin = _plugin(tmp_path, "listed")
    assert main(["list", "--plugin", str(plugin)]) == 0
    out = capsys.readouterr().out
    assert "  pointing_game (localisation; built-in)" in out and "  shifted_auroc (robustness; built-in)" in out
    assert f"  peak_listed (localisation; plugin {plugin} (metric_listed.py@sha256:" in out


def test_a_metric_name_or_column_taken_is_refused_and_a_failed_plugin_leaves_none(
    tmp_path: Path
) -> None:
    clash = _plugin(tmp_path, "clash", PLUGIN.replace("def peak_{tag}", "def pointing_hit"))
    with pytest.raises(PluginError, match=r"metric 'pointing_hit'.* clashes with metric 'pointing_game' from built-in"):
        load_plugins([str(clash)])
    assert metric_defs.METRIC["pointing_game"].origin == "built-in" and "pointing_hit" not in metric_defs.METRIC
    broken = _plugin(tmp_path, "broken", PLUGIN + "\nraise RuntimeError('half-way')\n")
    with pytest.raises(PluginError, match="failed to import: RuntimeError: half-way"):
        load_plugins([str(broken)])
    assert "peak_broken" not in metric_defs.METRIC


def test_registering_a_built_in_name_is_refused_from_any_origin() -> None:
    """Even outside a plugin's import (origin built-in, as a direct `import` of a plugin module gives), a built-in
    metric's name or column is never replaced: its results would move."""
    for name in ("pointing_game", "pointing_hit"):
        with pytest.raises(RegistryError, match="clashes with metric 'pointing_game' from built-in"):
            register_metric(lambda maps, region, valid: maps.flatten(1).amax(1), name=name)
    assert metric_defs.METRIC["pointing_game"].column == "pointing_hit" and metric_defs.METRIC["pointing_game"].binary


def test_a_folders_declaration_is_read_never_computed_written_or_listed(tmp_path: Path) -> None:
    """What one results folder declared stays analysis: no run here computes it, no suite.json written here
    carries it, the docs list leaves it out, and another folder's report and correlation study do not show it."""
    metric_defs.declare([{"name": "spread", "label": "spread", "column": "spread", "correlated": True,
                          "origin": "plugin lab (lab==1.0)"}])  # fmt: skip
    assert "spread" in metric_defs.METRIC and "spread" not in {m.name for m in metric_defs.computed()}
    assert metric_defs.declared() == [] and "`spread`" not in docs.metrics_reference()
    maps = torch.rand(2, 4, 4)
    assert "spread" not in localise(maps, maps > 0.5, torch.ones_like(maps, dtype=torch.bool))
    other_folder = {"relevance_mass", "shifted_auroc"}
    assert "spread" not in {m.name for m in metric_defs.localisation(other_folder)}
    assert all("spread" not in pair for pair in pairs(other_folder))
    assert ("spread", "shifted_auroc") in pairs(other_folder | {"spread"})
    load_plugins([str(_plugin(tmp_path, "spread", PLUGIN.replace("def peak_{tag}", "def spread")))])
    assert metric_defs.METRIC["spread"].per_image is not None, "the plugin itself replaces what a folder declared"


def test_a_failing_metric_fails_the_run_naming_it(tmp_path: Path) -> None:
    load_plugins([str(_plugin(tmp_path, "bad", PLUGIN.replace("peak = maps", "peak = 1 / 0 * maps")))])
    maps = torch.rand(2, 4, 4)
    with pytest.raises(RuntimeError, match=r"metric 'peak_bad' \(plugin .*metric_bad.py.*\) failed: ZeroDivisionError"):
        localise(maps, maps > 0.5, torch.ones_like(maps, dtype=torch.bool))


def test_a_declaration_makes_the_metric_known_without_its_function() -> None:
    declaration = {"name": "spread", "label": "spread", "roles": ["val"], "column": "spread", "short": "spread",
                   "higher_is_better": False, "origin": "plugin lab (lab==1.0)", "unknown_key_of_a_later_version": 1}
    metric_defs.declare([declaration])
    metric = metric_defs.METRIC["spread"]
    assert metric.per_image is None and not metric.higher_is_better and metric.roles == ("val",)
    assert not metric_groups.METRIC["spread"].higher_is_better
    metric_defs.declare([declaration | {"label": "something else"}])
    assert metric_defs.METRIC["spread"].label == "spread", "a known metric keeps its definition"


def test_a_metric_the_tables_cannot_read_is_a_clear_error_not_a_key_error() -> None:
    metric_defs.declare([{"name": "no_column", "label": "no column"}])
    assert "no_column" not in metric_defs.METRIC, "a declaration without a column is not a plugin's metric"
    metric_defs.METRIC["by_hand"] = metric_defs.Metric("by_hand", "by hand", ("val",))
    with pytest.raises(ValueError, match=r"'by_hand' is neither read by metric_groups._GROUPS nor a localisation"):
        metric_groups.METRIC["by_hand"]


def test_the_example_map_entropy() -> None:
    """harbour_lab's metric (docs/plugins.md): 0 for a map on one pixel, 1 for an even or an all-zero map, NaN
    without the class."""
    spec = importlib.util.spec_from_file_location("harbour_metric", ROOT / "examples" / "harbour_lab" / "metric.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    maps = torch.zeros(4, 4, 4)
    maps[0, 1, 2] = 1.0
    maps[1] = 0.3
    region = torch.ones(4, 4, 4, dtype=torch.bool)
    region[3] = False
    entropy = module.map_entropy(maps, region, torch.ones_like(region))
    assert entropy[:3].tolist() == pytest.approx([0.0, 1.0, 1.0]) and math.isnan(entropy[3])
    assert not metric_defs.METRIC["map_entropy"].higher_is_better


@pytest.mark.slow
def test_a_plugin_metric_is_in_the_record_the_predictions_the_table_and_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _plugin(tmp_path, "e2e")
    suite = tmp_path / "suite.toml"
    suite.write_text('plugins = ["metric_e2e.py"]\n' + tiny_suite(methods=("gradcam",), timing=False, seeds=(0,)))
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--quiet"]) == 0
    (record_path,) = out.glob("runs/*/record.json")
    record = json.loads(record_path.read_text())
    assert 0 < record["metrics"]["peak_e2e"] <= 1
    with (record_path.parent / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    val = [float(r["peak_e2e"]) for r in rows if r["role"] == "val" and r["peak_e2e"] not in ("", "nan")]
    assert val and record["metrics"]["peak_e2e"] == pytest.approx(sum(val) / len(val), rel=1e-5)
    assert json.loads((out / "suite.json").read_text())["view"]["metrics"][0]["name"] == "peak_e2e"
    assert "map peak e2e" in (out / "index.html").read_text()
    capsys.readouterr()
    assert main(["table", str(out), "--view", "localisation"]) == 0
    assert "peak e2e" in capsys.readouterr().out.splitlines()[0]
    # another process that never imports the plugin: the folder's declaration is enough
    code = f"from benchmark.cli import main; raise SystemExit(main(['table', {str(out)!r}, '--view', 'localisation']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "peak e2e" in done.stdout.splitlines()[0]
