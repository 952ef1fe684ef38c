"""The third shifted group (`data.generator_version = 3`): the counterfactual scenes with the boat replaced, at its
place, size and colours, by an object of another class, on the water and on land. Version 3 leaves every file of
version 2 as it was; the record, the tables, the summary and the verdict report the group where it was measured and
read as before where it was not; a run on version-3 data scores it."""

from __future__ import annotations

import dataclasses
import filecmp
import json
from pathlib import Path

import numpy as np
import pytest
import test_tables
from test_tables import fabricated_folder
from tiny import tiny_suite

from benchmark.analyse.metric_groups import METRIC
from benchmark.analyse.tables import build_tables
from benchmark.analyse.text import format_rank_agreement
from benchmark.cli import main
from benchmark.core.spec import RunSpec, TrainSettings
from benchmark.execute.datasets import synthetic
from benchmark.execute.datasets.render import render
from benchmark.execute.datasets.synthetic import SyntheticConfig, ensure_generated, load, load_split
from benchmark.execute.metrics import audit_metrics
from benchmark.execute.train import run

TINY = SyntheticConfig(image_size=24, n_train=6, n_val=4, n_shifted=3, n_counterfactual=6)
V3 = dataclasses.replace(TINY, generator_version=3)
SWAPS = ("cf_object_swapped", "cf_object_swapped_land")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    return ensure_generated(TINY, root), ensure_generated(V3, root)


def test_version_3_adds_two_splits_and_leaves_every_file_of_version_2_as_it_was(folders: tuple[Path, Path]) -> None:
    v2, v3 = folders
    assert SyntheticConfig().digest() == "a555cb33b280", "the default folder name (and every run id) is unchanged"
    assert V3.digest() != TINY.digest() and synthetic.splits(V3) == (*synthetic.splits(TINY), *SWAPS)
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationContext", "ImageSets/Segmentation"):
        names = sorted(p.name for p in (v2 / sub).iterdir())
        assert names and all(filecmp.cmp(v2 / sub / n, v3 / sub / n, shallow=False) for n in names), sub
    rows2 = (v2 / "manifest.csv").read_text().splitlines()
    rows3 = (v3 / "manifest.csv").read_text().splitlines()
    assert rows3[: len(rows2)] == rows2 and len(rows3) == len(rows2) + 2 * TINY.n_counterfactual
    assert json.loads((v3 / "config.json").read_text())["generator_version"] == 3


def test_the_boat_is_replaced_at_its_place_by_one_other_class_on_water_and_on_land(folders) -> None:
    n = V3.n_counterfactual
    original = synthetic.scenes(V3, "cf_original", 0, n)
    landed = synthetic.scenes(V3, "cf_context_swapped", 0, n)
    water, land = (synthetic.scenes(V3, split, 0, n) for split in SWAPS)
    for o, c, w, g in zip(original, landed, water, land, strict=True):
        (boat,) = [x for x in o.objects if x.cls == "boat"]
        (swapped,) = [x for x in w.objects if x not in o.objects]
        assert swapped.cls != "boat" and dataclasses.replace(swapped, cls="boat") == boat, "place, size, colours kept"
        assert [x for x in w.objects if x != swapped] == [x for x in o.objects if x != boat]
        assert dataclasses.replace(w, objects=o.objects) == o, "only the boat changed"
        assert g.objects == w.objects and g.ground == c.ground and g.ground.kind != "water", "the pair's land twin"
    splits = load(V3, folders[1].parent.parent)
    boat = synthetic.CLASSES.index("boat")
    for split, on_water in zip(SWAPS, (True, False), strict=True):
        got = splits[split]
        assert not got.labels[:, boat].any() and got.labels.sum(1).min() >= 1, "no boat, every object labelled"
        assert bool(got.has_context.all()) is on_water and bool(got.has_context.any()) is on_water
        assert (got.pair == splits["cf_original"].pair).all()
        image, seg, _ = render((water if on_water else land)[0])
        assert np.array_equal(got.images[0].permute(1, 2, 0).numpy(), image) and (got.masks[0].numpy() == seg).all()


def test_a_version_3_split_asked_of_version_2_data_names_the_setting(folders) -> None:
    with pytest.raises(ValueError, match=r"generator version 2 writes .*set data.generator_version = 3"):
        load_split(folders[0], "cf_object_swapped")
    with pytest.raises(ValueError, match="generator_version"):
        SyntheticConfig(generator_version=4)


def _split(scores: list[float], labels: list[int]) -> dict[str, np.ndarray]:
    s = np.asarray(scores, float)
    return {"score": s, "logit": np.log(s / (1 - s)), "label": np.asarray(labels, float),
            "has_context": np.zeros(s.size), "context_share": np.full(s.size, 0.5),
            "context_area": np.full(s.size, 0.4), "pair": np.arange(s.size)}  # fmt: skip


def test_the_record_scores_the_share_called_not_boat_where_the_split_is_there() -> None:
    preds = {
        "val": _split([0.9, 0.2], [1, 0]),
        "cf_original": _split([0.9, 0.8, 0.3, 0.5], [1, 1, 1, 1]),
        "cf_context_swapped": _split([0.2, 0.85, 0.6, 0.1], [1, 1, 1, 1]),
        "cf_object_removed": _split([0.1, 0.7, 0.2, 0.3], [0, 0, 0, 0]),
        "cf_object_swapped": _split([0.9, 0.7, 0.2, 0.3], [0, 0, 0, 0]),  # 2 of 4 called "not boat"
        "cf_object_swapped_land": _split([0.1, 0.7, 0.2, 0.3], [0, 0, 0, 0]),  # 3 of 4
    }
    m = audit_metrics(preds, 0.5)
    assert m["object_swapped_accuracy"] == 0.5 and m["object_swapped_land_accuracy"] == 0.75
    assert "object_swapped_accuracy" not in audit_metrics({k: v for k, v in preds.items() if k not in SWAPS})
    preds["cf_object_swapped"]["pair"] = np.array([1, 0, 2, 3])
    with pytest.raises(ValueError, match="cf_object_swapped: rows are not aligned by pair"):
        audit_metrics(preds)
    third = METRIC["object_swapped_accuracy"]
    assert third.roles == ("cf_object_swapped",) and third.binary and third.higher_is_better


def _folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, third: bool) -> Path:
    if third:
        monkeypatch.setattr(test_tables, "SIZES", test_tables.SIZES | {split: 20 for split in SWAPS})
    suite = tmp_path / "third.toml"
    suite.write_text(tiny_suite("third", ("gradcam", "gain"), timing=False, seeds=tuple(range(8)), seed_scope="full"))
    out = tmp_path / ("v3" if third else "v2")
    skill = {"gradcam": 0.5, "gain": 0.97}
    fabricated_folder(suite, out, lambda spec: skill[spec.method])
    return out


def test_tables_summary_and_verdict_report_the_third_group_only_where_it_was_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v2 = _folder(tmp_path, monkeypatch, third=False)
    v3 = _folder(tmp_path, monkeypatch, third=True)
    old, new = build_tables([v2], n_resamples=200), build_tables([v3], n_resamples=200)
    third = "context, another object in the boat's place"
    assert third not in old["paper"].index and "object_swapped_accuracy" not in set(old["aggregated"]["metric"])
    assert list(new["paper"].index).index(third) == list(new["paper"].index).index("context without boat") + 1
    assert new["paper"].index[-1] == "land, another object in the boat's place"
    assert "other object" not in format_rank_agreement(old["rank_agreement"]), "a v2 folder's ranks as before"
    assert "other object on context" in format_rank_agreement(new["rank_agreement"])
    row = new["aggregated"].set_index(["method", "metric"]).loc[("gain", "object_swapped_accuracy")]
    assert row["n_seeds"] == 8 and 0.9 < row["mean"] <= 1.0
    paired = new["paired"].set_index(["method", "metric"]).loc[("gain", "object_swapped_accuracy")]
    assert paired["difference"] > 0.3 and paired["p_replicates"] == pytest.approx(2 / 256)

    assert main(["report", str(v3), "--summary"]) == 0
    summary = (v3 / "summary.md").read_text()
    assert "| configuration | boat without water" in summary and "another object in the boat's place" in summary
    assert "- Water images with another object in the boat’s place called “boat” (the third shifted group): " \
        "significantly fewer for GAIN" in summary, "the summary's verdict per group, the third included"
    html = (v3 / "index.html").read_text()
    assert "the third shifted group): significantly fewer for GAIN" in html
    assert main(["report", str(v2), "--summary"]) == 0
    assert "another object" not in (v2 / "summary.md").read_text() + (v2 / "index.html").read_text()


def test_a_run_on_version_3_data_scores_the_third_group(tmp_path: Path) -> None:
    spec = RunSpec("gradcam", seed=0, dataset_params={"n_train": 64, "n_val": 16, "n_shifted": 8,
                   "n_counterfactual": 8, "image_size": 24, "generator_version": 3},
                   train=TrainSettings(epochs=1, batch_size=32, diagnostics=False))  # fmt: skip
    record = run(spec, tmp_path / "out", data_root=tmp_path / "data", progress=False)
    assert record["status"] == "complete"
    metrics = record["metrics"]
    assert 0 <= metrics["object_swapped_accuracy"] <= 1 and 0 <= metrics["object_swapped_land_accuracy"] <= 1
    _, *rows = (tmp_path / "out" / "runs" / spec.run_id / "predictions.csv").read_text().splitlines()
    roles = [r.split(",", 1)[0] for r in rows]
    assert roles.count("cf_object_swapped") == roles.count("cf_object_swapped_land") == 8


def test_version_3_runs_score_every_other_metric_as_version_2_runs_do(tmp_path: Path, capsys) -> None:
    params = {"n_train": 64, "n_val": 16, "n_shifted": 8, "n_counterfactual": 8, "image_size": 24}
    settings = TrainSettings(epochs=1, batch_size=32, diagnostics=False)
    records = {}
    for version in (2, 3):
        spec = RunSpec("gradcam", seed=1, dataset_params=params | {"generator_version": version}, train=settings)
        records[version] = run(spec, tmp_path / f"v{version}", data_root=tmp_path / "data", progress=False)
    shared = set(records[2]["metrics"]) & set(records[3]["metrics"])
    assert {k for k in records[3]["metrics"] if k not in shared} == {"object_swapped_accuracy",
                                                                     "object_swapped_land_accuracy"}  # fmt: skip
    same = [json.dumps({k: records[v]["metrics"][k] for k in sorted(shared)}) for v in (2, 3)]
    assert same[0] == same[1], "every metric both record is equal, bit for bit"
    assert main(["compare", str(tmp_path / "v2"), str(tmp_path / "v3")]) == 2, "no run id is shared"
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "v2"), str(tmp_path / "v3"), "--except", "data.generator_version"]) == 0
    (row,) = capsys.readouterr().out.splitlines()[1:]
    assert row.startswith("gradcam") and row.count("0.000 (0.000)") == 7
