"""Background swaps on the built-in data (the Backgrounds Challenge's variants, Xiao et al., ICLR 2021): the
object-only split of generator version 2, the other splits unchanged from version 1, the background metrics in the
record and in the tables, and results folders from before the split still reporting."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import test_tables
from PIL import Image
from test_tables import fake_run

from benchmark.analyse.metric_groups import METRIC
from benchmark.analyse.paired import paired_table
from benchmark.analyse.runs import Run, load_runs
from benchmark.analyse.tables import build_tables
from benchmark.analyse.text import format_paper_table
from benchmark.execute.datasets import synthetic
from benchmark.execute.datasets.render import NEUTRAL_GREY, render
from benchmark.execute.datasets.synthetic import SyntheticConfig, ensure_generated, load
from benchmark.execute.metrics import audit_metrics

TINY = SyntheticConfig(image_size=24, n_train=6, n_val=4, n_shifted=3, n_counterfactual=4)
BOAT = synthetic.CLASSES.index("boat")
# Per split of TINY: sha256 (16 hex) over each manifest row and its three images' pixels, as generator version 1
# wrote them (before the object-only split existed); version 2 must leave every one of them as it was.
VERSION_1 = {
    "train": "c27dd0cb602dfd41",
    "val": "6239dc0d0c4cdd19",
    "boat_without_water": "5bac5446b0e8ca92",
    "water_without_boat": "676a87841296fd9e",
    "cf_original": "a3932680741e7861",
    "cf_context_swapped": "bdaf9bc898576446",
    "cf_object_removed": "b94dac13adc56a36",
}
VERSION_1_DIGEST = "d11b3c18375c"  # TINY's folder name under version 1


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_generated(TINY, tmp_path_factory.mktemp("data"))


def _split_digest(folder: Path, split: str) -> str:
    h = hashlib.sha256()
    for line in (folder / "manifest.csv").read_text().splitlines()[1:]:
        row = dict(zip(synthetic.MANIFEST_FIELDS, line.split(","), strict=True))
        if row["split"] != split:
            continue
        h.update(line.encode())
        for key in ("path", "mask_path", "context_mask_path"):
            with Image.open(folder / row[key]) as im:
                h.update(np.asarray(im).tobytes())
    return h.hexdigest()[:16]


def test_version_2_adds_the_object_only_split_and_leaves_every_other_file_as_version_1_wrote_it(
    tiny_dir: Path,
) -> None:
    assert synthetic.GENERATOR_VERSION == 2 and synthetic.splits(TINY)[-1] == "cf_object_only"
    assert synthetic.ROLES["cf_object_only"] == "cf_object_only"
    assert {split: _split_digest(tiny_dir, split) for split in VERSION_1} == VERSION_1
    ids = (tiny_dir / "ImageSets/Segmentation/cf_object_only.txt").read_text().split()
    assert ids == [f"cf_object_only_{i:06d}" for i in range(TINY.n_counterfactual)]
    assert TINY.digest() != VERSION_1_DIGEST, "a new version names a new folder"
    assert dataclasses.replace(TINY, generator_version=1).digest() == VERSION_1_DIGEST


def test_object_only_is_the_original_on_its_objects_and_flat_grey_plus_the_same_noise_elsewhere(
    tiny_dir: Path,
) -> None:
    n = TINY.n_counterfactual
    originals, alone = synthetic.scenes(TINY, "cf_original", 0, n), synthetic.scenes(TINY, "cf_object_only", 0, n)
    splits = load(TINY, tiny_dir.parent.parent)
    original, only = splits["cf_original"], splits["cf_object_only"]
    for i, (a, b) in enumerate(zip(originals, alone, strict=True)):
        image, seg, water = render(a)
        flat, seg_only, water_only = render(b)
        on_object = seg > 0
        assert on_object.any() and np.array_equal(flat[on_object], image[on_object])
        noise = 2.5 * np.random.default_rng(b.seed).standard_normal((TINY.image_size, TINY.image_size, 1))
        grey = np.clip(np.rint(np.asarray(NEUTRAL_GREY) + noise), 0, 255).astype(np.uint8)
        assert np.array_equal(flat[~on_object], grey[~on_object]), "neutral grey and the scene's own noise"
        assert np.array_equal(seg_only, seg) and water.any() and not water_only.any()
        assert np.array_equal(only.images[i].permute(1, 2, 0).numpy(), flat), "the file is the render"
    assert (only.masks == original.masks).all() and (only.labels == original.labels).all()
    assert only.labels[:, BOAT].all() and not only.has_context.any()
    assert only.context is not None and not only.context.any(), "no water in an object-only image"
    assert (only.pair == original.pair).all() and (only.pair == splits["cf_context_swapped"].pair).all()
    rows = [r for r in (tiny_dir / "manifest.csv").read_text().splitlines() if ",cf_object_only," in r]
    assert len(rows) == n and all(",neutral,0," in r for r in rows)


def _split(scores: list[float], labels: list[int] | None = None) -> dict[str, np.ndarray]:
    s = np.asarray(scores, float)
    return {
        "score": s,
        "logit": np.log(s / (1 - s)),
        "label": np.ones(s.size) if labels is None else np.asarray(labels, float),
        "has_context": np.zeros(s.size),
        "context_share": np.full(s.size, 0.5),
        "context_area": np.full(s.size, 0.4),
        "pair": np.arange(s.size),
    }


def test_background_metrics_by_hand() -> None:
    preds = {
        "val": _split([0.9, 0.2], labels=[1, 0]),
        "cf_original": _split([0.9, 0.8, 0.3, 0.5]),  # 3 of 4 called boat (0.5 is a positive decision)
        "cf_context_swapped": _split([0.2, 0.85, 0.6, 0.1]),  # 2 of 4
        "cf_object_removed": _split([0.1, 0.7, 0.2, 0.3], labels=[0, 0, 0, 0]),
        "cf_object_only": _split([0.7, 0.1, 0.2, 0.4]),  # 1 of 4
    }
    m = audit_metrics(preds, 0.5)
    assert m["usual_background_accuracy"] == 0.75 and m["random_background_accuracy"] == 0.5
    assert m["background_gap"] == 0.25 and m["object_only_accuracy"] == 0.25
    without = audit_metrics({k: v for k, v in preds.items() if k != "cf_object_only"}, 0.5)
    assert "object_only_accuracy" not in without and without["background_gap"] == 0.25
    assert "background_gap" not in audit_metrics({"val": preds["val"]}), "no counterfactuals: no gap"
    preds["cf_object_only"]["pair"] = np.array([1, 0, 2, 3])
    with pytest.raises(ValueError, match="cf_object_only: rows are not aligned by pair"):
        audit_metrics(preds)


def _run(decisions: dict[str, list[int]]) -> Run:
    """A run whose boat scores give these decisions (every counterfactual image holds a boat)."""
    preds = {}
    for role, called in decisions.items():
        n = len(called)
        scores = np.stack([np.where(np.asarray(called) > 0, 0.8, 0.2), np.full(n, 0.5)], 1)
        preds[role] = {
            "ids": np.asarray([f"{role}_{i}" for i in range(n)]),
            "pair": np.arange(n),
            "labels": np.stack([np.ones(n), np.zeros(n)], 1),
            "scores": scores,
        }
    return Run({"run_id": "r", "metrics": {}, "spec": {"train": {}}}, preds, ("boat", "car"), 0, "c", "c")


def test_table_groupers_pair_the_gap_by_scene() -> None:
    run = _run({"cf_original": [1, 1, 0, 1], "cf_context_swapped": [0, 1, 1, 0], "cf_object_only": [1, 0, 0, 0]})
    (gap,) = METRIC["background_gap"].groups(run)
    assert gap.tolist() == [1.0, 0.0, -1.0, 1.0] and gap.mean() == 0.25
    assert METRIC["usual_background_accuracy"].groups(run)[0].mean() == 0.75
    assert METRIC["object_only_accuracy"].groups(run)[0].tolist() == [True, False, False, False]
    assert not METRIC["background_gap"].higher_is_better and METRIC["object_only_accuracy"].higher_is_better
    assert METRIC["object_only_accuracy"].groups(_run({"cf_original": [1]})) is None


def test_tables_give_intervals_and_old_results_without_the_split_still_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new, old = tmp_path / "new", tmp_path / "old"
    for seed in range(2):
        fake_run(new, "gradcam", seed, 0.55)
        fake_run(new, "gain_ext", seed, 0.9, budget=9)
    monkeypatch.setattr(test_tables, "SIZES", {k: v for k, v in test_tables.SIZES.items() if k != "cf_object_only"})
    for seed in range(2):
        fake_run(old, "gradcam", seed, 0.55)
        fake_run(old, "gain_ext", seed, 0.9, budget=9)

    tables = build_tables([new], n_resamples=200)
    gap = tables["aggregated"].set_index(["method", "metric"]).loc[("gain_ext", "background_gap")]
    assert gap["n_seeds"] == 2 and gap["ci_low"] <= gap["mean"] <= gap["ci_high"] and gap["ci_low"] < gap["ci_high"]
    tidy = tables["tidy"]
    for _, row in tidy[tidy["metric"].isin(["background_gap", "object_only_accuracy"])].iterrows():
        record = json.loads((new / "runs" / row["run_id"] / "record.json").read_text())
        assert row["value"] == pytest.approx(record["metrics"][row["metric"]]), "the table recomputes the record"
    paired = paired_table(load_runs([new])[0], n_resamples=200)
    row = paired[paired["metric"] == "background_gap"].iloc[0]
    assert not row["higher_is_better"] and np.isfinite(row["p_value"])
    paper = tables["paper"]
    assert list(paper.index[-2:]) == [
        "background gap, usual − random (lower is better)",
        "objects on a neutral background (accuracy)",
    ]
    assert "-" not in paper.loc["objects on a neutral background (accuracy)"].tolist()
    assert not any("not measured" in n for n in paper.attrs["footnotes"])

    before = build_tables([old], n_resamples=200)
    paper = before["paper"]
    assert paper.loc["objects on a neutral background (accuracy)"].tolist() == ["-", "-"]
    assert "-" not in paper.loc["background gap, usual − random (lower is better)"].tolist()
    assert "object_only_accuracy" not in set(before["aggregated"]["metric"])
    text = format_paper_table(paper)
    assert "objects on a neutral background: not measured for Grad-CAM, GAIN_ext-9" in text
