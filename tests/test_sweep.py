"""Sweeps: `[sweep]` regimes in a suite, their runs, and a report that compares each method within its regime."""

from __future__ import annotations

import json
import tomllib

import pandas as pd
import pytest
from tiny import tiny_suite

from benchmark.analyse.report import write_report
from benchmark.execute import runner
from benchmark.execute.reference import REFERENCE_FILE, read_references, setting_key
from benchmark.execute.suites import SuiteError, from_dict, load

LINKED = [
    {"label": "pre", "model.init": "pretrained-synthetic", "train.lr": 1e-3},
    {"label": "scratch", "model": {"init": "scratch"}},
]


def _raw(**sweep):
    return {"name": "s", "seeds": [0, 1], "budgets": [9], "methods": {"gradcam": {}, "gain_ext": {}}, "sweep": sweep}


def test_regimes_are_the_product_of_the_axes_with_readable_labels():
    suite = from_dict(_raw(**{"data.rho": [0.9, 1.0], "init": LINKED}))
    assert [r.label for r in suite.regimes()] == [
        "rho=0.9 init=pre", "rho=0.9 init=scratch", "rho=1.0 init=pre", "rho=1.0 init=scratch",
    ]  # fmt: skip
    first = suite.regimes()[0]
    assert first.settings == {"data.rho": 0.9, "model.init": "pretrained-synthetic", "train.lr": 1e-3}
    assert first.suite.dataset_params == {"rho": 0.9} and first.suite.train.lr == 1e-3
    assert len(suite.runs()) == 4 * 2 * 2  # regimes x (gradcam, gain_ext-9) x seeds
    assert len({s.run_id for s in suite.runs()}) == 16
    assert suite.numeric_axis() == "data.rho"
    assert from_dict(_raw(init=LINKED)).numeric_axis() is None


def test_a_regime_runs_exactly_the_runs_of_a_suite_that_sets_its_keys():
    swept = from_dict(_raw(**{"data.rho": [0.95]}))
    plain = from_dict({k: v for k, v in _raw().items() if k != "sweep"} | {"data": {"rho": 0.95}})
    assert [s.run_id for s in swept.runs()] == [s.run_id for s in plain.runs()]
    # and a suite without [sweep] is one unlabelled regime
    assert [r.label for r in plain.regimes()] == [""]


def test_unquoted_dotted_axis_is_the_same_axis():
    text = 'name = "s"\n[methods.gradcam]\n[sweep]\ndata.rho = [0.9, 1.0]\n'
    suite = from_dict(tomllib.loads(text))
    assert [r.label for r in suite.regimes()] == ["rho=0.9", "rho=1.0"]


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"data.rho": []}, "sweep.data.rho = []: allowed: a non-empty list"),
        ({"seeds": [[0], [1]]}, "sweep.seeds: a plain axis name takes tables of keys"),
        ({"methods.gain.alpha": [0.1]}, "key 'methods.gain.alpha' cannot be swept; allowed: data.*"),
        ({"data.name": ["voc"]}, "key 'data.name' cannot be swept"),
        ({"init": [{"label": "x"}]}, "sweep.init[0]: sets no key"),
        ({"data.rho": [0.9], "r": [{"data.rho": 1.0}]}, "key(s) data.rho set by two axes"),
        ({"data.rho": [0.9, 1.5]}, "regime 'rho=1.5': [data]"),
        ({"model.attention_layer": ["block9"]}, "regime 'attention_layer=block9': [model]"),
    ],
)
def test_bad_sweeps_name_the_axis_and_what_is_allowed(sweep, message):
    with pytest.raises(SuiteError) as err:
        from_dict(_raw(**sweep))
    assert message in str(err.value)


def test_shipped_bias_sweep_suite():
    suite = load("bias-sweep")
    assert len(suite.regimes()) == 8
    assert {r.settings["data.rho"] for r in suite.regimes()} == {0.9, 0.95, 0.99, 1.0}
    assert len(suite.runs()) == 8 * (3 + 3 + 9)
    assert suite.numeric_axis() == "data.rho"


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A tiny swept suite, run and reported: two rho regimes x (gradcam, gain_ext-9) x 2 seeds, with the reference."""
    root = tmp_path_factory.mktemp("sweep")
    path = root / "swept.toml"
    path.write_text(tiny_suite("swept", timing=False, reference=True) + '[sweep]\n"data.rho" = [0.9, 1.0]\n')
    suite = load(path)
    out, data = root / "out", root / "data"
    result = runner.run_suite(suite, out, quiet=True, data_root=data, threads=1)
    assert not result.failed
    html = write_report(out, n_resamples=200).read_text()
    return suite, out, html


def test_swept_suite_reports_each_regime_against_its_own_baseline(swept):
    suite, out, html = swept
    assert "Regime rho=0.9" in html and "Regime rho=1.0" in html
    assert html.count('class="paper-table"') == 2
    assert 'alt="headline metrics against the swept axis"' in html
    assert html.count("metrics against the pixel-label budget, regime") == 2
    verdicts = html.split('<ul id="sweep-verdict">')[1].split("</ul>")[0]
    assert verdicts.count("<li>") == 2 and "<b>rho=0.9</b>" in verdicts and "<b>rho=1.0</b>" in verdicts
    assert verdicts.count("beats the baseline significantly on the AUROC and both shifted groups") == 2
    assert verdicts.count("Boats without water recognised") == 2, "each regime answers per shifted group first"
    paired = pd.read_csv(out / "results_paired.csv")
    assert set(paired["regime"]) == {"rho=0.9", "rho=1.0"}
    for regime in suite.regimes():
        runs = {s.run_id: s for s in regime.suite.runs()}
        base = next(s for s in runs.values() if s.method == "gradcam")
        rows = paired[paired["regime"] == regime.label]
        assert len(rows) and set(rows["baseline"]) == {base.method_label}
        # the paired configuration's key carries this regime's rho only
        assert all(json.loads(c)["dataset_params"]["rho"] == regime.settings["data.rho"] for c in rows["config"])
    aggregated = pd.read_csv(out / "results.csv")
    assert set(aggregated["regime"]) == {"rho=0.9", "rho=1.0"}


def test_swept_suite_measures_the_unbiased_reference_once_per_setting(swept):
    suite, out, html = swept
    references = read_references(out)
    assert set(references) == {setting_key(r.suite.runs()[0]) for r in suite.regimes()}
    for value in references.values():
        assert 0.0 <= value["context_attention_share"] <= 1.0
        assert 0.0 < value["context_area_share"] < 1.0
    assert "same, model trained without bias" in html
    assert (out / REFERENCE_FILE).is_file()


def test_records_name_the_attention_layer_and_map_size(swept):
    _, out, html = swept
    record = json.loads(next((out / "runs").glob("*/record.json")).read_text())
    assert record["attention"] == {"layer": "block4", "map_size": [6, 6], "image_size": [48, 48]}
    assert "Maps are taken at block4: 6 × 6" in html


def test_shipped_resolution_sweep_suite_varies_the_map_size():
    import torch

    from benchmark.execute.models import build_model

    suite = load("resolution-sweep")
    sizes = set()
    for regime in suite.regimes():
        s = regime.suite
        model = build_model(s.model, 6, **{k: v for k, v in s.model_params.items() if k != "init"})
        size = s.dataset_params["image_size"]
        sizes.add((regime.parts[0], tuple(model.features(torch.zeros(1, 3, size, size)).shape[-2:])))
    assert sizes == {("maps=48px-block4-6x6", (6, 6)), ("maps=48px-block3-12x12", (12, 12)),
                     ("maps=96px-block4-12x12", (12, 12))}  # fmt: skip
    assert suite.numeric_axis() is None  # no numeric axis: no figure against it, one section per regime


def test_a_default_spelled_out_does_not_split_a_configuration():
    from benchmark.core.spec import RunSpec, configuration_key

    def key(**kw):
        return configuration_key(RunSpec(**kw).to_dict())

    assert key(method="gradcam") == key(method="gradcam", model_params={"init": "scratch"})
    assert key(method="gradcam") != key(method="gradcam", model_params={"init": "pretrained-synthetic"})
    assert key(method="gain") == key(method="gain", dataset_params={"rho": 0.99}, method_params={"alpha": 1.0})
    assert key(method="gain") != key(method="gain", dataset_params={"rho": 0.9})
    assert key(method="gain") != key(method="gain", method_params={"alpha": 0.5})
    # as with the config hash, which never depended on the spelling
    spelled = RunSpec("gradcam", model_params={"init": "scratch"}, dataset_params={"rho": 0.99})
    assert spelled.config_hash == RunSpec("gradcam").config_hash


def test_timing_passes_are_a_validated_suite_key():
    assert load("quick").timing.passes == 2
    assert from_dict({"name": "t", "methods": {"gradcam": {}}}).timing.passes == 3
    with pytest.raises(SuiteError, match=r"timing.passes = 0: allowed: an integer >= 1"):
        from_dict({"name": "t", "methods": {"gradcam": {}}, "timing": {"passes": 0}})
