"""Placebo-mask controls (`data.mask_control`): the controls' exact properties on hand-built masks, the spec and suite
spelling, a run that records its control, and the content effect (true minus shuffled masks) in the tables and the
report."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib

import numpy as np
import pandas as pd
import pytest
import torch
from test_tables import TRAIN, _images, _predictions
from tiny import tiny_suite

from benchmark.analyse.report import write_report
from benchmark.analyse.report.views import content_view
from benchmark.analyse.runs import load_runs
from benchmark.analyse.stats import holm
from benchmark.analyse.studies import CONTENT_COLUMNS, content_effect_table
from benchmark.analyse.tables import build_tables
from benchmark.analyse.text import format_content_effect
from benchmark.cli import main
from benchmark.core.predictions import audited_view, predictions_csv
from benchmark.core.settings import MASK_CONTROLS
from benchmark.core.spec import RunSpec
from benchmark.core.store import read_record, run_dir, write_atomic, write_record
from benchmark.execute import run_data, runner
from benchmark.execute.datasets.files import FileSplit, ViewSettings
from benchmark.execute.datasets.images import ImageItem
from benchmark.execute.datasets.mask_controls import control_regions, controlled_split, derangement, rng_for
from benchmark.execute.datasets.tensors import TensorSplit
from benchmark.execute.methods import METHODS, build_method
from benchmark.execute.metrics import audit_metrics
from benchmark.execute.models import build_model
from benchmark.execute.run_record import new_record
from benchmark.execute.suites import SuiteError, from_dict
from benchmark.execute.train import run

BOAT, CAR, IGNORE = 1, 2, 255  # class index + 1 of the audited class (boat) and another (car)


def _masks() -> np.ndarray:
    """Five 12 x 12 masks: a boat of a different place and size in each, a car in three, ignore pixels in two."""
    m = np.zeros((5, 12, 12), np.int64)
    m[0, 1:4, 1:4] = BOAT
    m[1, 6:12, 6:10] = BOAT
    m[2, 0:2, 0:12] = BOAT
    m[3, 5:7, 5:7] = BOAT
    m[4, 2:9, 3:5] = BOAT
    m[0, 8:11, 8:11] = CAR
    m[1, 0:3, 0:3] = CAR
    m[3, 0:12, 0] = CAR
    m[0, 0, 11] = m[2, 11, 11] = IGNORE
    return m


def _split(masks: np.ndarray) -> TensorSplit:
    n, h, w = masks.shape
    return TensorSplit(
        name="train",
        images=torch.zeros(n, 3, h, w, dtype=torch.uint8),
        labels=torch.tensor([[1.0, float((m == CAR).any())] for m in masks]),
        masks=torch.from_numpy(masks.copy()),
        context=None,
        has_context=torch.zeros(n, dtype=torch.bool),
        ids=[f"img{i}" for i in range(n)],
        classes=("boat", "car"),
        pair=torch.full((n,), -1),
    )


ROWS = torch.tensor([0, 1, 3, 4])  # the budget: row 2 is outside it


@pytest.mark.parametrize("kind", MASK_CONTROLS[1:])
def test_every_control_keeps_other_objects_ignore_and_rows_outside_the_budget(kind):
    masks = _masks()
    split = _split(masks)
    controlled, summary = controlled_split(split, ROWS, 0, kind, budget_seed=0, seed=0)
    assert torch.equal(split.masks, torch.from_numpy(masks)), "the given (shared) split is not changed"
    assert controlled is not split and controlled.images is split.images
    new = controlled.masks.numpy()
    assert np.array_equal(new[2], masks[2]), "a row outside the budget keeps its mask"
    for row in ROWS.tolist():
        kept = (masks[row] != BOAT) & (masks[row] != 0)
        assert np.array_equal(new[row][kept], masks[row][kept]), "other objects and ignore stay"
        assert set(np.unique(new[row])) <= {0, BOAT, CAR, IGNORE}
    assert summary["kind"] == kind and summary["images"] == 4 and (summary["budget_seed"], summary["seed"]) == (0, 0)
    again, _ = controlled_split(split, ROWS, 0, kind, budget_seed=0, seed=0)
    assert torch.equal(again.masks, controlled.masks), "seeded: the same run gets the same placebo"


def test_shuffled_is_a_derangement_giving_each_image_another_budget_images_region():
    masks = _masks()
    controlled, summary = controlled_split(_split(masks), ROWS, 0, "shuffled", budget_seed=3, seed=1)
    new = controlled.masks.numpy()
    donors = summary["donors"]
    assert sorted(donors) == ROWS.tolist() and all(d != r for d, r in zip(donors, ROWS.tolist(), strict=True))
    for row, donor in zip(ROWS.tolist(), donors, strict=True):
        eligible = (masks[row] == 0) | (masks[row] == BOAT)
        assert np.array_equal(new[row] == BOAT, (masks[donor] == BOAT) & eligible), "the donor's region, clipped"
        assert (new[row][(masks[row] == BOAT) & (masks[donor] != BOAT)] == 0).all(), "left pixels: background"
    assert summary["fixed"] == 0 and summary["mean_iou_with_true"] < 0.5
    draws = {tuple(controlled_split(_split(masks), ROWS, 0, "shuffled", budget_seed=b, seed=s)[1]["donors"])
             for b in range(3) for s in range(3)}  # fmt: skip
    assert len(draws) > 1, "the draw depends on the run's seeds"


def test_derangements_are_uniform_enough_and_a_single_image_keeps_its_mask():
    rng = np.random.default_rng(0)
    seen = {tuple(derangement(3, rng)) for _ in range(50)}
    assert seen == {(1, 2, 0), (2, 0, 1)}, "the two derangements of three, and no permutation with a fixed point"
    masks = _masks()
    controlled, summary = controlled_split(_split(masks), torch.tensor([1]), 0, "shuffled", budget_seed=0, seed=0)
    assert torch.equal(controlled.masks, torch.from_numpy(masks)) and summary["fixed"] == 1 and "note" in summary


def test_random_is_a_blob_of_exactly_the_true_area_that_may_sit_anywhere():
    masks = _masks()
    centres = set()
    for seed in range(6):
        controlled, summary = controlled_split(_split(masks), ROWS, 0, "random", budget_seed=0, seed=seed)
        new = controlled.masks.numpy()
        for row in ROWS.tolist():
            assert (new[row] == BOAT).sum() == (masks[row] == BOAT).sum(), "exactly the true area"
        assert summary["true_pixels"] == summary["control_pixels"]
        ys, xs = np.nonzero(new[1] == BOAT)
        centres.add((round(ys.mean()), round(xs.mean())))
        assert len(set(zip(ys, xs, strict=True))) == (masks[1] == BOAT).sum()
    assert len(centres) > 3, "placed at random"


def test_inverted_is_the_complement_within_the_image_less_other_objects_and_ignore():
    masks = _masks()
    new = controlled_split(_split(masks), ROWS, 0, "inverted", budget_seed=0, seed=0)[0].masks.numpy()
    for row in ROWS.tolist():
        assert np.array_equal(new[row] == BOAT, masks[row] == 0)
        assert not (new[row][masks[row] == BOAT] != 0).any(), "the true object becomes background"
    regions, _ = control_regions(list(masks), BOAT, "true", rng_for(0, 0))
    assert all(np.array_equal(r, m == BOAT) for r, m in zip(regions, masks, strict=True))


def test_empty_takes_the_object_out_of_every_budget_mask_and_nothing_else():
    masks = _masks()
    controlled, summary = controlled_split(_split(masks), ROWS, 0, "empty", budget_seed=0, seed=0)
    new = controlled.masks.numpy()
    for row in ROWS.tolist():
        expected = np.where(masks[row] == BOAT, 0, masks[row])
        assert np.array_equal(new[row], expected), "the object's pixels become background; the rest stays"
    assert (new[2] == BOAT).any(), "a row outside the budget keeps its object"
    assert summary["control_pixels"] == 0 and summary["true_pixels"] == int((masks[ROWS.numpy()] == BOAT).sum())
    assert summary["mean_iou_with_true"] == 0.0


def test_file_splits_are_controlled_on_their_decoded_masks(tmp_path):
    from PIL import Image

    items = []
    for i, mask in enumerate(_masks()):
        Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tmp_path / f"{i}.png")
        Image.fromarray(mask.astype(np.uint8)).save(tmp_path / f"{i}_mask.png")
        items.append(ImageItem(id=str(i), image=tmp_path / f"{i}.png", mask=tmp_path / f"{i}_mask.png",
                               labels=(0, 1) if (mask == CAR).any() else (0,)))  # fmt: skip
    split = FileSplit("train", items, ("boat", "car"), ViewSettings(image_size=12, augment=False, workers=1))
    controlled, summary = controlled_split(split, ROWS, 0, "inverted", budget_seed=0, seed=0)
    batch = controlled.batch(torch.arange(5))["mask"].numpy()
    masks = _masks()
    assert np.array_equal(batch[1] == BOAT, masks[1] == 0) and np.array_equal(batch[2], masks[2])
    assert np.array_equal(split.batch(torch.arange(5))["mask"].numpy(), masks), "the given split is not changed"
    assert summary["images"] == 4


def test_the_spec_keeps_every_earlier_hash_and_a_control_changes_hash_label_not_pairing():
    default = RunSpec(method="gain_ext", budget=9)
    data = default.to_dict()
    assert "mask_control" not in data and "mask_control" not in default.resolved()
    spelled = RunSpec.from_dict({**data, "mask_control": "true"})
    assert spelled.config_hash == default.config_hash == RunSpec.from_dict(data).config_hash
    assert spelled.run_id == default.run_id and spelled.label == default.label
    control = dataclasses.replace(default, mask_control="shuffled")
    assert control.config_hash != default.config_hash and control.to_dict()["mask_control"] == "shuffled"
    assert control.label == "gain_ext-9 mask_control=shuffled" and control.method_label == control.label
    assert control.keys()["pairing"] == default.keys()["pairing"], "compared with the same baseline"
    assert control.keys()["configuration"] != default.keys()["configuration"]
    with pytest.raises(ValueError, match=re.escape("data.mask_control = 'placebo': allowed: true, shuffled, random")):
        RunSpec(method="gain_ext", budget=9, mask_control="placebo")


def _suite(**data):
    raw = {"name": "s", "seeds": [0], "budgets": [9], "data": {"n_train": 160, **data.pop("top", {})},
           "methods": {"gradcam": {}, "gain_ext": {}, **data}}  # fmt: skip
    return from_dict(raw)


def test_suites_read_the_control_from_data_and_entries_and_leave_the_dataset_params_alone():
    suite = _suite(top={"mask_control": "shuffled"})
    by_method = {s.method: s for s in suite.runs()}
    assert by_method["gain_ext"].mask_control == "shuffled" and by_method["gradcam"].mask_control == "true"
    assert "mask_control" not in by_method["gain_ext"].dataset_params
    plain = _suite()
    assert {s.run_id for s in plain.runs()} < {s.run_id for s in _suite(placebo={"method": "gain_ext", "data": {
        "mask_control": "random"}}).runs()}, "an entry's control adds its runs beside the true-mask ones"  # fmt: skip
    entry = _suite(top={"mask_control": True}, placebo={"method": "gain_ext", "data": {"mask_control": "inverted"}})
    assert sorted(s.mask_control for s in entry.runs()) == ["inverted", "true", "true"], "`true` as a TOML boolean"
    swept = from_dict(_suite().raw | {"sweep": {"data.mask_control": ["true", "shuffled"]}})
    assert sorted(s.mask_control for s in swept.runs()) == ["shuffled", "true", "true"], "baseline run shared"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"top": {"mask_control": "placebo"}}, "data.mask_control = 'placebo': allowed: true, shuffled, random"),
        ({"x": {"method": "gain_ext", "data": {"mask_control": 1}}}, "methods.x.data.mask_control = 1: allowed: true"),
        ({"gradcam": {"data": {"mask_control": "shuffled"}}}, "method 'gradcam' uses no pixel labels"),
        ({"top": {"mask_control": "empty"}, "dfr_counterfactual": {}},
         "methods.dfr_counterfactual: mask_control = 'empty' leaves method 'dfr_counterfactual' nothing to do"),
        ({"x": {"method": "dfr_counterfactual", "data": {"mask_control": "empty"}}},
         "an empty mask has no object to paste or remove; allowed for it: true, shuffled, random, inverted"),
    ],
)
def test_bad_controls_are_suite_errors_naming_the_key(data, message):
    with pytest.raises(SuiteError, match=re.escape(message)):
        _suite(**data)
    with pytest.raises(SuiteError, match="no method entry uses pixel labels"):
        from_dict({"name": "s", "data": {"mask_control": "shuffled"}, "methods": {"gradcam": {}}})
    assert set(MASK_CONTROLS) == {"true", "shuffled", "random", "inverted", "empty"}


def _fake(root, method, seed, skill, *, budget=9, control="true"):
    """A complete run folder as `train.run` writes it (see test_tables.fake_run), with a mask control."""
    spec = RunSpec(method=method, budget=budget, seed=seed, train=TRAIN, mask_control=control)
    rng = np.random.default_rng([seed, budget, len(method), len(control)])
    sizes = {"val": 60, "class_without_context": 40, "context_without_class": 40}
    preds = {role: _predictions(_images(role, n, seed), role, rng, skill, False) for role, n in sizes.items()}
    out = run_dir(root, spec.run_id)
    record = new_record(spec, "complete")
    record["metrics"] = audit_metrics({r: audited_view(p, 0) for r, p in preds.items()}, 0.5, classes=("boat", "car"))
    write_atomic(out / "predictions.csv", predictions_csv(preds, ("boat", "car")))
    write_record(out / "record.json", record)


def test_the_content_effect_pairs_true_and_shuffled_by_seed_with_the_right_sign_and_holm(tmp_path):
    for seed in range(4):
        _fake(tmp_path, "gradcam", seed, 0.6, budget=0)
        _fake(tmp_path, "gain_ext", seed, 0.95)  # true masks: much better
        _fake(tmp_path, "gain_ext", seed, 0.95, budget=23)
        _fake(tmp_path, "gain_ext", seed, 0.6, budget=23, control="random")
        if seed < 3:  # seed 3 has no shuffled twin
            _fake(tmp_path, "gain_ext", seed, 0.6, control="shuffled")
    _fake(tmp_path, "gain_ext", 0, 0.6, budget=78, control="shuffled")  # no true-mask twin: no row
    runs, _ = load_runs([tmp_path], short=True)
    table = content_effect_table(runs, n_resamples=200)
    assert list(table.columns) == CONTENT_COLUMNS
    assert set(zip(table["budget"], table["control"], strict=True)) == {(9, "shuffled"), (23, "random")}
    shuffled = table[table["control"] == "shuffled"].set_index("metric")
    assert set(shuffled.index) == {"shifted_auroc", "worst_group_accuracy", "overall", "relevance_mass"}
    assert (shuffled["n_seeds"] == 3).all() and (shuffled["label"] == "gain_ext-9").all()
    assert (shuffled["control_label"] == "gain_ext-9 mask_control=shuffled").all()
    assert (shuffled["difference"] > 0.1).all() and (shuffled["ci_low"] > 0).all(), "true masks better: positive"
    np.testing.assert_allclose(shuffled["difference"], shuffled["true_mean"] - shuffled["control_mean"])
    assert (shuffled["control_mean"] < shuffled["true_mean"]).all()
    for _, family in table.groupby("control"):
        np.testing.assert_allclose(family["p_holm"], holm(family["p_value"].to_numpy()))
    assert (shuffled["p_holm"] >= shuffled["p_value"]).all() and (shuffled["p_holm"] > shuffled["p_value"]).any()
    tables = build_tables([tmp_path], n_resamples=200, short=True)
    pd.testing.assert_frame_equal(tables["content_effect"], table)
    assert "gain_ext-9 mask_control=shuffled" in set(tables["paired"]["label"]), "compared with the baseline too"
    view = content_view(table, [r.record for r in runs], {"shifted_auroc": "AUROC"})
    assert view["sentence"] == ("4 content-effect tests (true minus shuffled masks): not enough replicates to call "
                                'any (3 seeds that redraw the fine-tuning only (seed_scope = "train"), not full '
                                "replicates)"), "3 seeds of one world: never called significant"
    assert {r["effect"] for r in view["rows"] if r["control"] == "shuffled"} == {"few"}
    text = format_content_effect(table, markdown=True)
    (line,) = [row for row in text.splitlines() if row.startswith("| gain_ext-9 ")]
    auroc = shuffled.loc["shifted_auroc"]
    cell = f"{auroc['difference']:+.3f} [{auroc['ci_low']:+.3f}, {auroc['ci_high']:+.3f}] p{auroc['p_holm']:.3f}"
    assert cell in line
    assert "random" not in text, "the content effect is the shuffled control's"


def test_table_views_print_the_content_effect_correlation_and_backgrounds(tmp_path, capsys):
    for seed in range(2):
        _fake(tmp_path, "gradcam", seed, 0.6, budget=0)
        _fake(tmp_path, "gain_ext", seed, 0.95)
        _fake(tmp_path, "gain_ext", seed, 0.6, control="shuffled")
    assert main(["table", str(tmp_path), "--view", "content", "--markdown"]) == 0
    out = capsys.readouterr().out
    (line,) = [row for row in out.splitlines() if row.startswith("| gain_ext-9 ")]
    assert line.split(" | ")[1] == "2" and "true minus shuffled masks" in out and "Runs: 6" in out
    assert main(["table", str(tmp_path), "--view", "correlation", "--markdown"]) == 0
    out = capsys.readouterr().out  # 3 configurations: too few for a rank correlation, shown as -
    assert "| all | relevance mass | AUROC | 3 | - | - |" in out
    assert main(["table", str(tmp_path), "--view", "backgrounds"]) == 0
    assert "background gap" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["table", str(tmp_path), "--view", "nope"])


def test_the_content_view_holds_the_true_masks_against_the_placebo_asked_for(tmp_path, capsys):
    for seed in range(2):
        _fake(tmp_path, "gain_ext", seed, 0.95)
        _fake(tmp_path, "gain_ext", seed, 0.6, control="shuffled")
        _fake(tmp_path, "gain_ext", seed, 0.9, control="random")
        _fake(tmp_path, "gain_ext", seed, 0.8, control="empty")
    table = build_tables([tmp_path], short=True)["content_effect"]
    for control in ("shuffled", "random", "empty"):  # each placebo on request, with its own numbers
        assert main(["table", str(tmp_path), "--view", "content", "--control", control, "--markdown"]) == 0
        out = capsys.readouterr().out
        (line,) = [row for row in out.splitlines() if row.startswith("| gain_ext-9 ")]
        auroc = table[(table["control"] == control) & (table["metric"] == "shifted_auroc")].iloc[0]
        assert f"{auroc['difference']:+.3f} [{auroc['ci_low']:+.3f}, {auroc['ci_high']:+.3f}]" in line
        assert f"true minus {control} masks" in out
    assert main(["table", str(tmp_path), "--view", "content", "--control", "inverted"]) == 0
    assert 'no configuration has a twin with inverted masks (data.mask_control = "inverted")' in capsys.readouterr().out
    assert main(["table", str(tmp_path), "--control", "random"]) == 2
    assert "--control: only with --view content" in capsys.readouterr().err


def test_an_empty_content_effect_says_so():
    empty = pd.DataFrame(columns=CONTENT_COLUMNS)
    assert "has no placebo-mask control runs" in content_view(empty, [], {})["sentence"]
    records = [{"spec": {"method": "gain_ext", "mask_control": "random"}}]
    assert "no control run has a complete true-mask twin" in content_view(empty, records, {})["sentence"]


def test_a_suite_with_shuffled_masks_records_its_control_and_reports_its_content_effect(tmp_path):
    text = tiny_suite("placebo", ("gradcam", "gain_ext"), timing=False)
    text += '[methods.gain_ext_shuffled]\nmethod = "gain_ext"\nwarmup_epochs = 0\n'
    text += 'data = { mask_control = "shuffled" }\n'
    suite = from_dict(tomllib.loads(text))
    out, data_root = tmp_path / "out", tmp_path / "data"
    result = runner.run_suite(suite, out, quiet=True, data_root=data_root, threads=1)
    assert [f["status"] for f in result.finished] == ["complete"] * 6
    shared = run_data.cached_data(suite.runs()[0], data_root)["train"]
    before = shared.masks.clone()
    records = {p.parent.name: read_record(p) for p in out.glob("runs/*/record.json")}
    controlled = [r for r in records.values() if r["spec"].get("mask_control") == "shuffled"]
    assert len(controlled) == 2 and all("mask_control" not in r for r in records.values() if r not in controlled)
    for record in controlled:
        control = record["mask_control"]
        assert control["kind"] == "shuffled" and control["images"] == 9 and control["fixed"] == 0
        assert control["seed"] == record["spec"]["seed"] and control["budget_seed"] == 0
        assert " mask_control=shuffled " in record["label"]
    spec = next(s for s in suite.runs() if s.mask_control == "shuffled")
    shared_data = run_data.cached_data(spec, data_root)
    again = run(spec, tmp_path / "again", data_root=data_root, progress=False, data=shared_data)
    assert again["mask_control"] == records[spec.run_id]["mask_control"], "seeded: the same placebo again"
    assert torch.equal(shared.masks, before), "the runner's shared split is never changed"
    html = write_report(out, n_resamples=50).read_text()
    section = html[html.index('id="mask-content"') : html.index('id="training"')]
    assert '<table id="content-effect">' in section and "shuffled" in section
    effect = pd.read_csv(out / "results_content_effect.csv")
    assert set(effect["metric"]) >= {"shifted_auroc", "worst_group_accuracy", "overall"}
    assert (effect["n_seeds"] == 2).all() and (effect["control"] == "shuffled").all()
    suite_json = json.loads((out / "suite.json").read_text())
    assert suite_json["raw"]["methods"]["gain_ext_shuffled"]["data"] == {"mask_control": "shuffled"}


@pytest.mark.parametrize(
    "name", [n for n, m in METHODS.items() if m.uses_pixel_labels and m.budget_in_training]
)
def test_every_method_that_trains_on_masks_takes_a_finite_step_on_empty_ones(name):
    """`mask_control = "empty"` may be set for every method that trains on masks: each of them trains on budget
    images whose masks hold no object (nothing to paste, erase or point at) without a NaN or an error (a method that
    reads the masks only after training refuses it: `test_bad_controls_are_suite_errors_naming_the_key`)."""
    torch.manual_seed(0)
    model = build_model("small_cnn", 2)
    batch = {
        "image": torch.rand(4, 3, 48, 48),
        "labels": torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]),
        "mask": torch.zeros(4, 48, 48, dtype=torch.long),
        "has_mask": torch.tensor([True, True, False, False]),
        "index": torch.arange(4),
    }
    parts = build_method(name).training_loss(model, batch, epoch=10)
    assert torch.isfinite(parts["total"]), {k: float(v.detach()) for k, v in parts.items()}
    parts["total"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
