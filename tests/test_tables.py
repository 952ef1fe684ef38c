import json
import re

import numpy as np
import pandas as pd
import pytest

from benchmark.analyse.aggregate import aggregate_table, paper_table, tidy_table
from benchmark.analyse.metric_groups import METRIC
from benchmark.analyse.paired import paired_table
from benchmark.analyse.runs import load_runs
from benchmark.analyse.tables import build_tables
from benchmark.analyse.text import format_paper_table
from benchmark.cli import main
from benchmark.core.predictions import audited_view, predictions_csv, read_predictions
from benchmark.core.spec import RunSpec, TrainSettings, replicate_seeds
from benchmark.core.store import run_dir, write_atomic, write_record
from benchmark.execute.metrics import audit_metrics
from benchmark.execute.run_record import new_record
from benchmark.execute.suite_file import write_suite_file
from benchmark.execute.suites import load

CLASSES = ("boat", "car")
SIZES = {
    "val": 40,
    "class_without_context": 30,
    "context_without_class": 30,
    "cf_original": 20,
    "cf_context_swapped": 20,
    "cf_object_removed": 20,
    "cf_object_only": 20,
}
TRAIN = TrainSettings(epochs=1)


def _images(role, n, seed):
    """What the data fixes, identical for every method of one seed: ids, labels, context, pairs."""
    rng = np.random.default_rng([seed, len(role), n])
    boat = {"val": rng.random(n) < 0.5, "class_without_context": np.ones(n, bool)}.get(role, np.zeros(n, bool))
    if role.startswith("cf_"):
        boat = (np.arange(n) % 2 == 0) & (role not in ("cf_object_removed", "cf_object_swapped",
                                                         "cf_object_swapped_land"))  # fmt: skip
    watery = ("context_without_class", "cf_original", "cf_object_swapped")
    has_context = boat if role == "val" else np.full(n, role in watery)
    return {
        "ids": np.asarray([f"{role}_{i:03d}" for i in range(n)]),
        "pair": np.arange(n) if role.startswith("cf_") else np.full(n, -1),
        "has_context": has_context.astype(np.int8),
        "labels": np.stack([boat, rng.random(n) < 0.3], 1).astype(np.float32),
    }


def _predictions(images, role, rng, skill, constant):
    """Per-image outputs as `prediction.predict` makes them; `skill` is how often the boat decision is right."""
    n = len(images["ids"])
    boat = images["labels"][:, 0] > 0.5
    right = rng.random(n) < skill
    boat_score = 0.1 if constant else np.where(right == boat, rng.uniform(0.55, 0.99, n), rng.uniform(0.01, 0.45, n))
    scores = np.stack([np.broadcast_to(boat_score, n), rng.uniform(0.01, 0.99, n)], 1).astype(np.float32)
    located = boat & (role == "val")
    out = images | {
        "logits": np.log(scores / (1 - scores)).astype(np.float32),
        "scores": scores,
        "context_share": np.where(rng.random(n) < 0.05, np.nan, rng.random(n)).astype(np.float32),
        "object_share": rng.random(n).astype(np.float32),
        "context_area": rng.random(n).astype(np.float32),
        "relevance_mass": np.where(located, rng.random(n) * skill, np.nan).astype(np.float32),
        "pointing_hit": np.where(located, rng.random(n) < skill, np.nan).astype(np.float32),
        "iou_at_tau": np.where(located, rng.random(n) * skill, np.nan).astype(np.float32),
    }
    if role == "val":
        out["cam_intersection"] = rng.integers(0, 50, (n, 3))
        out["cam_union"] = out["cam_intersection"] + rng.integers(0, 50, (n, 3))
    return out


def fake_run(
    root, method, seed, skill, *, budget=0, status="complete", predictions=True, constant=False, params=None,
    seed_scope="train",
):
    """A run folder as `train.run` writes it: record.json (metrics from `audit_metrics`) and predictions.csv."""
    drawn = replicate_seeds({"seed": seed}, 0, 0) if seed_scope == "full" else {}  # a full replicate's own seeds
    spec = RunSpec(method=method, budget=budget, seed=seed, train=TRAIN, method_params=params or {},
                   seed_scope=seed_scope, **drawn)  # fmt: skip
    rng = np.random.default_rng([seed, budget, len(method)])
    preds = {role: _predictions(_images(role, n, seed), role, rng, skill, constant) for role, n in SIZES.items()}
    out = run_dir(root, spec.run_id)
    record = new_record(spec, status, None if status == "complete" else "non-finite loss at epoch 0, step 3: total=nan")
    if status == "complete":
        audited = {role: audited_view(p, 0) for role, p in preds.items()}
        record["metrics"] = audit_metrics(audited, 0.5, classes=CLASSES)
        if predictions:
            write_atomic(out / "predictions.csv", predictions_csv(preds, CLASSES))
    write_record(out / "record.json", record)
    return spec, preds


def fabricated_folder(suite_file, out, skill, failed=()) -> None:
    """A results folder written as the runner writes it (`suite.json`, records, predictions), without training:
    each run of the suite in `suite_file` with predictions drawn at `skill(spec)`; the run ids in `failed` recorded
    as failed runs (a non-finite loss)."""
    suite = load(suite_file)
    write_suite_file(suite, out)
    for spec in suite.runs():
        if spec.run_id in failed:
            write_record(run_dir(out, spec.run_id) / "record.json", new_record(spec, "failed", "non-finite loss"))
            continue
        rng = np.random.default_rng([spec.seed, spec.budget, len(spec.method)])
        preds = {r: _predictions(_images(r, n, spec.seed), r, rng, skill(spec), False) for r, n in SIZES.items()}
        record = new_record(spec, "complete", None)
        record["metrics"] = audit_metrics({r: audited_view(p, 0) for r, p in preds.items()}, 0.5, classes=CLASSES)
        write_atomic(run_dir(out, spec.run_id) / "predictions.csv", predictions_csv(preds, CLASSES))
        write_record(run_dir(out, spec.run_id) / "record.json", record)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for seed in range(4):
        fake_run(root, "gradcam", seed, 0.55)
        fake_run(root, "gain", seed, 0.56)
        fake_run(root, "gain_ext", seed, 0.95, budget=9)
    fake_run(root, "gain_ext", 0, 0.5, budget=78, constant=True)
    fake_run(root, "gain_ext", 1, 0.5, budget=78, constant=True)
    fake_run(root, "gain_ext", 2, 0.5, budget=78, status="failed")
    fake_run(root, "gain_ext", 3, 0.5, budget=78, predictions=False)
    return root


def test_predictions_round_trip_with_localisation_and_cam_columns(tmp_path):
    spec, preds = fake_run(tmp_path, "gradcam", 0, 0.7)
    path = run_dir(tmp_path, spec.run_id) / "predictions.csv"
    back, classes = read_predictions(path)
    assert classes == CLASSES
    header = path.read_text().splitlines()[0].split(",")
    assert {"relevance_mass", "pointing_hit", "iou_at_tau", "cam_inter_background", "cam_union_car"} <= set(header)
    for role, p in preds.items():
        for key, value in p.items():
            np.testing.assert_array_equal(back[role][key], np.asarray(value).astype(back[role][key].dtype), err_msg=key)
        assert ("cam_intersection" in back[role]) == (role == "val"), "CAM counts only where computed"
    np.testing.assert_array_equal(back["val"]["relevance_mass"], preds["val"]["relevance_mass"].astype(np.float32))
    assert predictions_csv(back, classes) == path.read_text(), "9 significant digits round-trip exactly"


def test_old_predictions_without_the_new_columns_still_load(tmp_path):
    _, preds = fake_run(tmp_path, "gradcam", 0, 0.7)
    old = {
        r: {
            k: v
            for k, v in p.items()
            if k not in ("relevance_mass", "pointing_hit", "iou_at_tau", "cam_intersection", "cam_union")
        }
        for r, p in preds.items()
    }
    path = tmp_path / "old.csv"
    path.write_text(predictions_csv(old, CLASSES))
    back, _ = read_predictions(path)
    assert "iou_at_tau" not in back["val"] and "cam_intersection" not in back["val"]
    assert "relevance_mass" not in audit_metrics({r: audited_view(p, 0) for r, p in back.items()})


def test_load_runs_excludes_and_counts_incomplete_runs(root):
    runs, excluded = load_runs([root])
    assert len(runs) == 14
    assert sorted(excluded["reason"].str.split(":").str[0]) == ["no predictions.csv", "status 'failed'"]
    again, excluded_again = load_runs([root, root])
    assert len(again) == 14 and excluded_again["reason"].str.startswith("duplicate").sum() == 14


def test_tidy_table_recomputes_the_recorded_metrics(root):
    runs, _ = load_runs([root])
    tidy = tidy_table(runs)
    assert list(tidy.columns) == [
        "run_id",
        "config",
        "label",
        "method",
        "budget",
        "seed",
        "role",
        "metric",
        "value",
        "degenerate",
    ]
    for run in runs:
        mine = tidy[(tidy["run_id"] == run.record["run_id"]) & tidy["metric"].isin(list(METRIC))]
        for _, row in mine.iterrows():
            assert row["value"] == pytest.approx(run.record["metrics"][row["metric"]]), row["metric"]
    assert {"val_map", "cam_miou"} <= set(tidy.loc[tidy["role"] == "record", "metric"])
    assert tidy.loc[tidy["label"].str.startswith("gain_ext-78") & (tidy["metric"] == "overall"), "degenerate"].all()


def test_aggregated_table_intervals_are_seeded_and_hold_the_mean(root):
    runs, excluded = load_runs([root])
    first = aggregate_table(runs, excluded, n_resamples=500, seed=1)
    again = aggregate_table(runs, excluded, n_resamples=500, seed=1)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(aggregate_table(runs, excluded, n_resamples=500, seed=2))
    assert list(dict.fromkeys(first["method"])) == ["gradcam", "gain", "gain_ext"], "registry order"
    row = first[(first["method"] == "gradcam") & (first["metric"] == "val_accuracy")].iloc[0]
    values = [r.record["metrics"]["val_accuracy"] for r in runs if r.spec["method"] == "gradcam"]
    assert row["n_seeds"] == 4 and row["mean"] == pytest.approx(np.mean(values))
    assert row["sd"] == pytest.approx(np.std(values, ddof=1))
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    b78 = first[first["budget"] == 78]
    assert (b78["n_seeds"] == 2).all() and (b78["excluded_runs"] == 2).all()
    assert b78.set_index("metric").loc["class_without_context", "degenerate_seeds"] == 2


def test_paired_table_finds_the_better_method_and_not_the_equal_one(root):
    runs, _ = load_runs([root])
    paired = paired_table(runs, n_resamples=1000)
    assert set(paired["baseline"]) == {"gradcam train.epochs=1"}
    good = paired[(paired["label"].str.startswith("gain_ext-9 ")) & (paired["metric"] == "overall")].iloc[0]
    assert good["difference"] > 0.2 and good["ci_low"] > 0 and good["p_value"] < 0.01
    assert good["prob_improvement"] == 1.0 and good["n_seeds"] == 4
    same = paired[(paired["method"] == "gain") & (paired["metric"] == "overall")].iloc[0]
    assert same["ci_low"] < 0 < same["ci_high"] and same["p_value"] > 0.05
    assert (paired["p_holm"] >= paired["p_value"] - 1e-12).all() and (paired["p_holm"] <= 1).all()
    cwc = paired[(paired["label"].str.startswith("gain_ext-9 ")) & (paired["metric"] == "class_without_context")].iloc[
        0
    ]
    assert cwc["mcnemar_seeds"] == 4 and cwc["mcnemar_significant"] >= 3
    assert np.isnan(paired.loc[paired["metric"] == "shifted_auroc", "mcnemar_significant"]).all()
    flip = paired[(paired["label"].str.startswith("gain_ext-9 ")) & (paired["metric"] == "context_flip_rate")].iloc[0]
    assert not flip["higher_is_better"]


def test_paper_table_layout_and_cli(root, tmp_path, capsys):
    runs, excluded = load_runs([root])
    table = paper_table(aggregate_table(runs, excluded, n_resamples=300), excluded)
    assert list(table.columns) == ["Grad-CAM", "GAIN", "GAIN_ext-9", "GAIN_ext-78"]
    assert list(table.index[:4]) == [
        "in-distribution val accuracy",
        "boat without context",
        "context without boat",
        "overall",
    ]
    cell = re.compile(r"^-?\d\.\d{3} (\[-?\d\.\d{3}, -?\d\.\d{3}\]|\(constant\))†?$")  # a gap can be < 0
    assert all(cell.match(c) for c in table.to_numpy().ravel()), table
    assert table.loc["overall", "GAIN_ext-78"].endswith("†") and not table.loc["overall", "Grad-CAM"].endswith("†")
    text = format_paper_table(table)
    assert "† the decision is constant" in text
    assert "excluded: 2 runs: 1 incomplete or failed, 1 without predictions" in text
    assert "GAIN_ext-78: gain_ext-78 train.epochs=1, 2 seeds" in text
    narrow = format_paper_table(table, width=80)
    assert max(map(len, narrow.splitlines())) <= 80, "blocks of columns and wrapped notes fit the width"
    headers = [line for line in narrow.splitlines() if line.startswith("metric ")]
    assert len(headers) > 1 and sum(len(h.split("  ")) - 1 for h in headers) >= len(table.columns)
    assert all(name in narrow for name in table.columns), "no configuration lost to the split"
    assert "\n  boat without context: share of the images with the class" in narrow
    assert len([x for x in format_paper_table(table, width=None).splitlines() if x.startswith("metric ")]) == 1

    assert main(["table", str(root), "--csv", str(tmp_path / "csv")]) == 0
    out = capsys.readouterr().out
    assert "Grad-CAM" in out and "gradcam" in out and "overall" in out
    written = {p.name for p in (tmp_path / "csv").iterdir()}
    assert written == {"tidy.csv", "aggregated.csv", "paired.csv", "paper.csv", "correlation.csv",
                       "content_effect.csv", "rank_agreement.csv", "excluded.csv"}
    aggregated = pd.read_csv(tmp_path / "csv" / "aggregated.csv")
    assert {"n_seeds", "mean", "sd", "ci_low", "ci_high"} <= set(aggregated.columns)


def test_cli_table_without_complete_runs_exits_2(tmp_path, capsys):
    fake_run(tmp_path, "gradcam", 0, 0.5, status="failed")
    assert main(["table", str(tmp_path)]) == 2
    assert "no complete run records" in capsys.readouterr().err


def test_config_name_keeps_the_parameters_that_tell_configurations_apart():
    from benchmark.analyse.runs import config_name

    assert config_name("gain_ext", 78, display="GAIN_ext") == "GAIN_ext-78"
    assert config_name("gain", 0, "gain masked_bn=eval", "GAIN") == "GAIN masked_bn=eval"
    assert config_name("gain_ext", 78, "gain_ext-78 masked_bn=batch", "GAIN_ext") == "GAIN_ext-78 masked_bn=batch"
    assert config_name("my_method", 0, "my_method") == "my_method"


def test_records_from_before_components_take_their_names_and_order_from_suite_json(tmp_path):
    """A record written before records carried its method's display name and rank gets them from the folder's
    suite.json, as its keys: the table names and orders methods as the report does."""
    specs = [fake_run(tmp_path, method, seed, 0.6)[0] for method in ("gain", "gradcam") for seed in range(2)]
    for path in tmp_path.glob("runs/*/record.json"):
        record = json.loads(path.read_text())
        del record["components"]
        path.write_text(json.dumps(record))
    runs, excluded = load_runs([tmp_path])
    assert all("components" not in r.record for r in runs)
    labels = {"gradcam": {"display": "Grad-CAM", "rank": 0}, "gain": {"display": "GAIN", "rank": 1}}
    view = {"runs": [{"run_id": s.run_id, "spec": s.to_dict(), "keys": s.keys()} for s in specs],
            "components": {"method": labels}}
    (tmp_path / "suite.json").write_text(json.dumps({"name": "t", "view": view}))
    runs, excluded = load_runs([tmp_path])
    table = paper_table(aggregate_table(runs, excluded, n_resamples=50), excluded)
    assert list(table.columns) == ["Grad-CAM", "GAIN"]


def test_rows_against_another_baseline_hold_every_configuration_against_that_method(root, tmp_path, capsys):
    paired = build_tables([root], n_resamples=300, short=True, baseline="gain")["paired"]
    assert set(paired["method"]) == {"gradcam", "gain_ext"} and set(paired["baseline"]) == {"gain"}
    default = build_tables([root], n_resamples=300, short=True)["paired"]
    against_gain = paired.set_index(["method", "metric"]).loc[("gradcam", "shifted_auroc")]
    against_gradcam = default.set_index(["method", "metric"]).loc[("gain", "shifted_auroc")]
    assert against_gain["difference"] == pytest.approx(-against_gradcam["difference"]), "the same pairs, turned"
    assert main(["table", str(root), "--rows", "--baseline", "gain"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[1:4]}
    assert " / " not in rows["gain"] and " / " in rows["gradcam"], "the baseline has no difference to itself"
    assert f"{against_gain['difference']:+.3f}" in rows["gradcam"]
    assert "paired difference to gain (the configuration of that method with the same setting)" in out
    assert main(["table", str(root), "--view", "backgrounds", "--baseline", "gain"]) == 0
    assert main(["table", str(root), "--baseline", "gain"]) == 2
    assert "--baseline: only with --rows or --view rows|backgrounds" in capsys.readouterr().err
    assert main(["table", str(root), "--rows", "--baseline", "energy"]) == 2
    assert "--baseline energy: no run of that method under" in (err := capsys.readouterr().err)
    assert "its methods: gain, gain_ext, gradcam" in err
    for seed in range(2):  # two configurations of the baseline method with one setting: which one is meant?
        fake_run(tmp_path, "gradcam", seed, 0.55)
        fake_run(tmp_path, "gain", seed, 0.6)
        fake_run(tmp_path, "gain", seed, 0.6, params={"alpha": 0.5})
    assert main(["table", str(tmp_path), "--rows", "--baseline", "gain"]) == 2
    err = capsys.readouterr().err
    assert "baseline 'gain': 2 of its configurations share 'gradcam train.epochs=1''s setting" in err
    assert "a baseline must be one configuration" in err and "gain alpha=0.5 train.epochs=1" in err
