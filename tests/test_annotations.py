"""Annotation types (`data.annotation`): each derived label by hand on small masks, seeded and the same for every
loader, the spec and suite spelling (the true masks keep every run id), the refusals, and a run that records it."""

from __future__ import annotations

import re
import tomllib

import numpy as np
import pandas as pd
import pytest
import torch
from test_mask_controls import BOAT, CAR, IGNORE, ROWS, _masks, _split
from test_tables import _images, _predictions
from tiny import TINY_DATA

from benchmark.analyse.names import Names
from benchmark.analyse.report import write_report
from benchmark.analyse.report.build import label_figure
from benchmark.analyse.results import read_suite
from benchmark.cli import main
from benchmark.core.label_costs import LABEL_COSTS, images_for
from benchmark.core.predictions import audited_view, predictions_csv
from benchmark.core.settings import ANNOTATIONS
from benchmark.core.spec import RunSpec
from benchmark.core.store import run_dir, write_atomic, write_record
from benchmark.execute.datasets.annotations import annotate, annotated_split, iou, objects, rng_for
from benchmark.execute.datasets.files import FileSplit, ViewSettings
from benchmark.execute.datasets.images import ImageItem
from benchmark.execute.methods import METHODS
from benchmark.execute.metrics import audit_metrics
from benchmark.execute.run_data import cached_data
from benchmark.execute.run_record import new_record
from benchmark.execute.suite_file import write_suite_file
from benchmark.execute.suites import SuiteError, from_dict
from benchmark.execute.train import run


def render_report(root):
    html = write_report(root, n_resamples=50)
    return html, None


def _one() -> np.ndarray:
    """10 x 10: an L-shaped boat, a car, an ignore pixel inside the boat's box, the rest background."""
    m = np.zeros((10, 10), np.uint8)
    m[2:6, 2] = BOAT  # the L's stem
    m[5, 2:6] = BOAT  # and foot: its box is rows 2-5, columns 2-5
    m[3, 4] = IGNORE
    m[8:10, 7:9] = CAR
    return m


def test_box_fills_each_objects_tight_box_and_keeps_ignore():
    m = _one()
    out = annotate(m, "box", np.random.default_rng(0))
    expected = m.copy()
    expected[2:6, 2:6] = BOAT
    expected[3, 4] = IGNORE
    assert np.array_equal(out, expected)
    assert iou(out, m, BOAT) == pytest.approx(7 / 15), "7 boat pixels of a 16-pixel box, one of them ignore"


def test_boxes_are_painted_largest_first():
    m = np.zeros((8, 8), np.uint8)
    m[0:6, 0] = m[5, 0:6] = BOAT  # an L: box rows 0-5, columns 0-5
    m[1:3, 2:4] = CAR  # a small car inside the boat's box
    out = annotate(m, "box", np.random.default_rng(0))
    assert (out[1:3, 2:4] == CAR).all() and (out[0:6, 0:6][out[0:6, 0:6] != CAR] == BOAT).all()


def test_points_click_one_pixel_inside_each_object_and_one_on_the_background():
    m = _one()
    for seed in range(20):
        out = annotate(m, "points", np.random.default_rng(seed))
        boat, car, bg = np.argwhere(out == BOAT), np.argwhere(out == CAR), np.argwhere(out == 0)
        assert len(boat) == len(car) == len(bg) == 1
        assert m[tuple(boat[0])] == BOAT and m[tuple(car[0])] == CAR and m[tuple(bg[0])] == 0
        assert (out == IGNORE).sum() == m.size - 3, "every other pixel unknown"


def test_a_scribble_is_a_stroke_inside_each_object():
    m = np.zeros((12, 12), np.uint8)
    m[5:7, 1:11] = BOAT  # a long horizontal boat: its principal axis is horizontal
    for seed in range(10):
        out = annotate(m, "scribble", np.random.default_rng(seed))
        stroke = out == BOAT
        assert stroke.sum() >= 8 and (m[stroke] == BOAT).all(), "long, and inside the boat"
        assert len(set(np.argwhere(stroke)[:, 0])) == 1, "along the boat's long axis: one row"
        assert (out == 0).sum() >= 1 and (m[out == 0] == 0).all(), "a background stroke on the background"
    small = _one()
    out = annotate(small, "scribble", np.random.default_rng(1))
    assert (small[out == BOAT] == BOAT).all() and (small[out == CAR] == CAR).all() and (out == CAR).any()


def test_coarse_contains_the_true_mask_and_grows_over_background_only():
    m = np.zeros((9, 9), np.uint8)
    m[4, 4] = BOAT
    out = annotate(m, "coarse", np.random.default_rng(0), dilate=1)
    expected = np.zeros_like(m)
    expected[3:6, 3:6] = BOAT
    assert np.array_equal(out, expected), "one pixel grown by one: a 3 x 3 square"
    m = _one()
    for dilate in (1, 2, 3):
        out = annotate(m, "coarse", np.random.default_rng(0), dilate=dilate)
        assert ((out == BOAT) >= (m == BOAT)).all() and ((out == CAR) >= (m == CAR)).all(), "contains the true masks"
        assert np.array_equal(out[m != 0], m[m != 0]), "never over another object or ignore"
    assert (annotate(m, "coarse", np.random.default_rng(0), dilate=3) == BOAT).sum() > (
        annotate(m, "coarse", np.random.default_rng(0), dilate=1) == BOAT).sum()  # fmt: skip


def test_objects_are_the_connected_regions_of_each_class():
    m = np.zeros((6, 6), np.uint8)
    m[0, 0] = m[1, 1] = BOAT  # diagonal neighbours: one object
    m[4, 4] = BOAT
    assert [(v, int(r.sum())) for v, r in objects(m)] == [(BOAT, 2), (BOAT, 1)]


@pytest.mark.parametrize("kind", ANNOTATIONS[1:])
def test_annotations_are_seeded_by_budget_seed_and_row_and_the_same_for_every_loader(tmp_path, kind):
    from PIL import Image

    masks = _masks()
    split = _split(masks)
    annotated, summary = annotated_split(split, ROWS, 0, {"type": kind}, budget_seed=3)
    again, _ = annotated_split(split, ROWS, 0, {"type": kind}, budget_seed=3)
    assert torch.equal(annotated.masks, again.masks), "seeded"
    assert torch.equal(annotated.masks[2], split.masks[2]) and torch.equal(split.masks, torch.from_numpy(masks))
    for row in ROWS.tolist():
        by_hand = annotate(masks[row], kind, rng_for(3, row))
        assert np.array_equal(annotated.masks[row].numpy(), by_hand), "the row's own generator"
    assert summary["type"] == kind and summary["images"] == 4 and 0 <= summary["mean_iou_with_true"] <= 1
    items = []
    for i, mask in enumerate(masks):
        Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tmp_path / f"{i}.png")
        Image.fromarray(mask.astype(np.uint8)).save(tmp_path / f"{i}_mask.png")
        items.append(ImageItem(id=str(i), image=tmp_path / f"{i}.png", mask=tmp_path / f"{i}_mask.png",
                               labels=(0, 1) if (mask == CAR).any() else (0,)))  # fmt: skip
    files = FileSplit("train", items, ("boat", "car"), ViewSettings(image_size=12, augment=False, workers=1))
    from_files, file_summary = annotated_split(files, ROWS, 0, {"type": kind}, budget_seed=3)
    assert np.array_equal(from_files.batch(torch.arange(5))["mask"].numpy(), annotated.masks.numpy())
    assert file_summary == summary


def test_the_true_masks_keep_every_run_id_and_an_annotation_changes_hash_and_label_not_pairing():
    default = RunSpec(method="gain_ext", budget=9)
    assert "annotation" not in default.to_dict()
    assert RunSpec.from_dict({**default.to_dict(), "annotation": {}}).run_id == default.run_id
    box = RunSpec(method="gain_ext", budget=9, annotation={"type": "box"})
    assert box.config_hash != default.config_hash and box.label == "gain_ext-9 annotation=box"
    assert box.keys()["pairing"] == default.keys()["pairing"], "compared with the same baseline"
    coarse = RunSpec(method="gain_ext", budget=9, annotation={"type": "coarse", "dilate": 3})
    assert coarse.method_label == "gain_ext-9 annotation=coarse-3px" == coarse.label
    with pytest.raises(ValueError, match="its type must be one of box, points, scribble, coarse"):
        RunSpec(method="gain_ext", budget=9, annotation={"type": "mask"})


def _suite(**data):
    raw = {"name": "s", "seeds": [0], "budgets": [9], "data": {"n_train": 160, **data.pop("top", {})},
           "methods": {"gradcam": {}, "gain_ext": {}, **data}}  # fmt: skip
    return from_dict(raw)


def test_suites_read_the_annotation_from_data_and_entries():
    suite = _suite(top={"annotation": "coarse", "annotation_dilate": 3}, boxes={"method": "gain_ext", "data": {
        "annotation": "box"}})  # fmt: skip
    annotations = sorted(str(s.annotation) for s in suite.runs())
    assert annotations == ["{'type': 'box'}", "{'type': 'coarse', 'dilate': 3}", "{}"], "gradcam has none"
    assert all("annotation" not in s.dataset_params for s in suite.runs())
    swept = from_dict(_suite().raw | {"sweep": {"data.annotation": ["mask", "points"]}})
    assert sorted(str(s.annotation) for s in swept.runs()) == ["{'type': 'points'}", "{}", "{}"], "baseline shared"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"top": {"annotation": "polygon"}}, "data.annotation = 'polygon': allowed: mask, box, points, scribble"),
        ({"top": {"annotation": "box", "annotation_dilate": 3}}, "only with annotation = 'coarse'"),
        ({"top": {"annotation": "coarse", "annotation_dilate": 0}}, "allowed: an integer from 1 to 64"),
        ({"gradcam": {"data": {"annotation": "box"}}}, "method 'gradcam' uses no pixel labels"),
        ({"copy_paste": {"data": {"annotation": "points"}}},
         "methods.copy_paste: method 'copy_paste' cannot train with 'points' annotations: it cuts each object out"),
        ({"top": {"annotation": "scribble"}, "object_removal": {}},
         "method 'object_removal' cannot train with 'scribble' annotations"),
        ({"top": {"annotation": "box", "mask_control": "shuffled"}}, "a placebo replaces the true masks"),
    ],
)
def test_bad_annotations_are_suite_errors_naming_the_key(data, message):
    with pytest.raises(SuiteError, match=re.escape(message)):
        _suite(**data)


def test_copy_paste_takes_boxes_and_coarse_masks_and_says_why_not_points():
    method = METHODS.entry("copy_paste").obj
    assert method.annotations == ("mask", "box", "coarse")
    assert "the boat would stay in place" in method.annotation_refusal
    assert METHODS.entry("gain_ext").obj.annotations == ANNOTATIONS


def test_a_run_records_its_annotation(tmp_path):
    suite = from_dict({"name": "a", "seeds": [0], "budgets": [9], "data": tomllib.loads(TINY_DATA)["data"],
                       "train": {"epochs": 1, "batch_size": 32},
                       "methods": {"gain_ext": {"data": {"annotation": "box"}}}})  # fmt: skip
    spec = suite.runs()[0]
    data_root = tmp_path / "data"
    record = run(spec, tmp_path / "out", data_root=data_root, progress=False, data=cached_data(spec, data_root))
    assert record["status"] == "complete" and " annotation=box" in record["label"]
    kept = record["annotation"]
    assert kept["type"] == "box" and kept["images"] == 9 and kept["budget_seed"] == 0
    assert 0.2 < kept["mean_iou_with_true"] < 1, "a box holds the boat and some of what is around it"
    refused = RunSpec.from_dict({**spec.to_dict(), "method": "object_removal", "annotation": {"type": "points"}})
    with pytest.raises(ValueError, match="cannot train with 'points' annotations"):
        run(refused, tmp_path / "out", data_root=data_root, progress=False)


def test_budgets_in_seconds_buy_each_entry_the_images_its_labels_time_buys():
    raw = {"name": "s", "seeds": [0], "budget_seconds": [439.4, 1977.3], "data": {"n_train": 160},
           "methods": {"gradcam": {}, "gain_ext": {}, "boxes": {"method": "gain_ext", "data": {"annotation": "box"}},
                       "clicks": {"method": "gain_ext", "data": {"annotation": "points"}}, "dfr": {},
                       "own": {"method": "gain_ext", "budgets": [5]}}}  # fmt: skip
    budgets = {e.key: e.budgets for e in from_dict(raw).methods}
    assert LABEL_COSTS["mask"].seconds == 219.7 and LABEL_COSTS["box"].seconds == 19.5
    assert LABEL_COSTS["points"].seconds == 2.1 and LABEL_COSTS["group"].seconds == 1.0
    assert budgets == {"gradcam": (0,), "gain_ext": (2, 9), "boxes": (22, 101), "clicks": (209, 941),
                       "dfr": (439, 1977), "own": (5,)}, "439.4 / 19.5 = 22.5: whole images only"  # fmt: skip
    cheaper = from_dict(raw | {"label_costs": {"mask": 100}})
    assert {e.key: e.budgets for e in cheaper.methods}["gain_ext"] == (4, 19), "the suite's [label_costs] override"
    assert images_for(3600, 219.7) == 16 and images_for(2 * 219.7, 219.7) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"budgets": [9]}, "budgets and budget_seconds both given"),
        ({"budget_seconds": [100]}, "methods.gain_ext: budget_seconds 100 buys 0 image(s) of 'mask' labels at 219.7 s"),
        ({"budget_seconds": [-1]}, "budget_seconds"),
        ({"label_costs": {"polygon": 3}}, "polygon"),
        ({"label_costs": {"box": 0}}, "label_costs.box"),
    ],
)
def test_bad_second_budgets_are_suite_errors(extra, message):
    raw = {"name": "s", "seeds": [0], "budget_seconds": [2000], "methods": {"gradcam": {}, "gain_ext": {}}} | extra
    with pytest.raises(SuiteError, match=re.escape(message)):
        from_dict(raw)


def test_the_results_folder_knows_what_each_runs_labels_cost(tmp_path):
    raw = {"name": "s", "seeds": [0, 1], "budget_seconds": [439.4], "data": {"n_train": 160},
           "label_costs": {"box": 20.0},
           "methods": {"gradcam": {}, "gain_ext": {}, "boxes": {"method": "gain_ext", "data": {"annotation": "box"}},
                       "dfr": {}}}  # fmt: skip
    suite = from_dict(raw)
    write_suite_file(suite, tmp_path)
    view = read_suite(tmp_path)
    assert view.label_costs["box"] == 20.0 and view.label_costs["mask"] == 219.7, "the suite's override kept"
    by_method = {}
    for spec in suite.runs():
        by_method.setdefault(spec.method_label, view.label_time().get(spec.run_id))
    assert by_method == {"gradcam": None, "gain_ext-2": ("mask", 2, pytest.approx(439.4)),
                         "gain_ext-21 annotation=box": ("box", 21, 420.0),
                         "dfr-439": ("group", 439, 439.0)}  # fmt: skip


def _fake_labels_folder(root):
    """A results folder of a suite with budgets in seconds and two annotation types: suite.json as the runner writes
    it, and complete runs (records and predictions, test_tables' fakes) for each of its specs."""
    raw = {"name": "lab", "seeds": [0, 1, 2], "budget_seconds": [439.4, 1318.2], "data": {"n_train": 160},
           "train": {"epochs": 1}, "unbiased_reference": False,
           "methods": {"gradcam": {}, "gain": {}, "gain_ext": {},
                       "boxes": {"method": "gain_ext", "data": {"annotation": "box"}}}}  # fmt: skip
    suite = from_dict(raw)
    write_suite_file(suite, root)
    skill = {"gradcam": 0.6, "gain": 0.65}
    for spec in suite.runs():
        rng = np.random.default_rng([spec.seed, spec.budget, len(spec.method)])
        level = skill.get(spec.method, 0.7 + spec.budget / 2000)
        sizes = {"val": 60, "class_without_context": 40, "context_without_class": 40}
        preds = {role: _predictions(_images(role, n, spec.seed), role, rng, level, False) for role, n in sizes.items()}
        out = run_dir(root, spec.run_id)
        record = new_record(spec, "complete")
        record["metrics"] = audit_metrics({r: audited_view(p, 0) for r, p in preds.items()}, 0.5,
                                          classes=("boat", "car"))  # fmt: skip
        write_atomic(out / "predictions.csv", predictions_csv(preds, ("boat", "car")))
        write_record(out / "record.json", record)
    return suite


def test_the_labels_view_and_figure_read_the_annotation_time(tmp_path, capsys):
    _fake_labels_folder(tmp_path)
    assert main(["table", str(tmp_path), "--view", "labels", "--plot", str(tmp_path / "labels.png")]) == 0
    printed = capsys.readouterr().out
    assert "labels" in printed.splitlines()[0]
    assert re.search(r"gain_ext-67 annotation=box\s+3\s+67 box, 22 min", printed), "67 x 19.5 s"
    assert re.search(r"gain_ext-22 annotation=box\s+3\s+22 box, 7 min", printed), "22 x 19.5 s"
    assert re.search(r"gain_ext-6\s+3\s+6 mask, 22 min", printed) and re.search(r"\ngain\s+3\s+-\s", printed)
    assert (tmp_path / "labels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html, _ = render_report(tmp_path)
    assert 'id="annotation-time"' in html.read_text(), "the report draws it for more than one kind of label"
    assert main(["table", str(tmp_path), "--view", "rows", "--plot", str(tmp_path / "x.png")]) == 2


def test_one_kind_of_label_draws_no_annotation_time_figure(tmp_path, capsys):
    suite = from_dict({"name": "one", "seeds": [0], "budgets": [9], "data": {"n_train": 160},
                       "methods": {"gradcam": {}, "gain_ext": {}}})  # fmt: skip
    write_suite_file(suite, tmp_path)
    view = read_suite(tmp_path)
    assert {v[0] for v in view.label_time().values()} == {"mask"}
    tables = {"tidy": pd.DataFrame({"run_id": [s.run_id for s in suite.runs()],
                                    "config": [s.method_label for s in suite.runs()]}),
              "aggregated": pd.DataFrame(columns=["config", "metric"])}  # fmt: skip
    assert label_figure(view, tables, Names(), {}) is None
