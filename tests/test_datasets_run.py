"""Runs on real-format data, through the code a user runs: `gain-bench train --data voc ...`, a Waterbirds run, a
suite with its report, and the shipped VOC and Waterbirds suites (which need no data to validate or dry-run)."""

import json
from pathlib import Path

import pytest
from real_data import BOAT, TRAIN, real_data_root, voc_tree

from benchmark.cli import main
from benchmark.core.predictions import audited_view, read_predictions
from benchmark.core.spec import RunSpec, TrainSettings, pairing_key
from benchmark.execute import suites
from benchmark.execute.metrics import audit_metrics
from benchmark.execute.train import run

TINY = ["--set", "data.image_size=32", "--set", "data.workers=1", "--set", "train.batch_size=4", "--quiet"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return real_data_root(tmp_path_factory.mktemp("real"))


def train(data_root, out, *args):
    where = ["--data-root", str(data_root), "--out", str(out)]
    return main(["train", "--data", "voc", "--epochs", "1", *where, *TINY, *args])


def only_record(out: Path) -> tuple[dict, Path]:
    (folder,) = (out / "runs").iterdir()
    return json.loads((folder / "record.json").read_text()), folder


def test_cli_trains_and_evaluates_on_a_vocdevkit(tmp_path, data_root, capsys):
    args = ["--method", "gain_ext", "--budget", "2", "--set", "method.warmup_epochs=0"]
    args += ["--set", "data.biased_split=biased"]
    assert train(data_root, tmp_path, *args) == 0
    printed = capsys.readouterr().out
    record, folder = only_record(tmp_path)
    assert record["status"] == "complete" and record["spec"]["dataset"] == "voc" and f"run {folder.name}" in printed
    assert "val mAP" in printed and "budget pool: 3 images (data.pool = class)" in printed
    assert record["curve"][0]["e"] > 0, "the budget images' masks reach L_e"
    data = record["data"]
    listing = data_root / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt"
    assert data["splits"]["train"] == {"images": 6, "pixel_labelled": 6, "skipped": 0, "source": str(listing)}
    assert len(data["budget"]["ids"]) == 2 and Path(data["budget"]["manifest"]).is_file()
    assert data["skipped_images"] == {"count": 0, "files": []} and data["notes"] == []
    preds, classes = read_predictions(folder / "predictions.csv")
    assert {role: len(p["ids"]) for role, p in preds.items()} == {
        "val": 4,
        "class_without_context": 2,
        "context_without_class": 2,
    }
    metrics = record["metrics"]
    assert 0 <= metrics["class_without_context"] <= 1 and 0 <= metrics["val_map"] <= 1
    assert metrics["localisation_images"] == 2 and "cam_miou" in metrics
    recomputed = audit_metrics({role: audited_view(p, BOAT) for role, p in preds.items()}, 0.5, classes=classes)
    assert json.loads(json.dumps(recomputed)) == metrics, "metrics must be recomputable from predictions.csv"


def test_without_a_biased_split_the_run_says_what_it_does_not_measure(tmp_path, data_root, capsys):
    assert train(data_root, tmp_path, "--method", "gradcam") == 0
    assert "note: no biased split (data.biased_split is empty)" in capsys.readouterr().out
    record, _ = only_record(tmp_path)
    assert "class_without_context" not in record["metrics"] and "val_accuracy" in record["metrics"]


def test_a_bad_image_stops_the_run_unless_skipping_was_asked_for(tmp_path, data_root, capsys):
    root = voc_tree(tmp_path / "data")
    bad = root / "JPEGImages" / "2008_000004.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    assert train(tmp_path / "data", tmp_path / "a", "--method", "gradcam") == 2
    assert f"{bad} (listed in " in capsys.readouterr().err
    assert not (tmp_path / "a").exists(), "nothing is written before the data is good"
    assert train(tmp_path / "data", tmp_path / "b", "--method", "gradcam", "--set", "data.skip_bad_images=true") == 0
    assert "skipped 1 bad image(s)" in capsys.readouterr().out
    record, _ = only_record(tmp_path / "b")
    skipped = record["data"]["skipped_images"]
    assert skipped["count"] == 1 and skipped["files"][0]["path"] == str(bad) and skipped["files"][0]["split"] == "train"
    assert record["data"]["splits"]["train"]["images"] == len(TRAIN) - 1


def test_budget_larger_than_its_pool_names_both_numbers(tmp_path, data_root, capsys):
    assert train(data_root, tmp_path, "--method", "gain_ext", "--budget", "9") == 2
    assert "budget 9 is larger than its pool of 3 pixel-labelled boat images" in capsys.readouterr().err


def test_waterbirds_run_audits_waterbird_on_water(tmp_path, data_root):
    spec = RunSpec(
        "gain_ext",
        budget=2,
        dataset="waterbirds",
        dataset_params={"image_size": 32, "segmentations": "segmentations", "workers": 1},
        audited_class="waterbird",
        method_params={"warmup_epochs": 0},
        train=TrainSettings(epochs=1, batch_size=4),
    )
    record = run(spec, tmp_path, data_root=data_root, progress=False)
    assert record["status"] == "complete" and record["data"]["budget"]["pool_size"] == 3
    metrics = record["metrics"]
    assert {"class_without_context", "context_without_class", "context_attention_share"} <= set(metrics)
    assert 0 < metrics["context_area_share"] < 1, "the water's share of val waterbird-on-water images"


def test_a_suite_runs_on_voc_and_renders_its_report(tmp_path, data_root):
    suite = tmp_path / "voc-tiny.toml"
    suite.write_text(
        'name = "voc-tiny"\nseeds = [0]\nbudgets = [2]\n[data]\nname = "voc"\nimage_size = 32\nworkers = 1\n'
        'biased_split = "biased"\n[train]\nepochs = 1\nbatch_size = 4\n[methods.gradcam]\n[methods.gain_ext]\n'
        'warmup_epochs = 0\n[methods.gain_ext_all]\nmethod = "gain_ext"\nwarmup_epochs = 0\nbudgets = [5]\n'
        'data = { pool = "pixel" }\n[timing]\nenabled = false\n'
    )
    out = tmp_path / "out"
    assert main(["run", str(suite), "--data-root", str(data_root), "--out", str(out), "--quiet"]) == 0
    records = [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/record.json"))]
    assert sorted((r["spec"]["method"], r["data"]["budget"]["pool"]) for r in records) == [
        ("gain_ext", "class"),
        ("gain_ext", "pixel"),
        ("gradcam", "class"),
    ]
    html = (out / "index.html").read_text()
    assert 'alt="attention maps of every configuration on the same images"' in html, "the gallery shows VOC images"
    assert "boat without water" in html and "3 complete" in html


def test_shipped_real_data_suites_validate_and_dry_run_without_data(tmp_path, capsys, monkeypatch):
    paper = suites.load("voc-paper")
    runs = paper.runs()
    assert paper.model == "vgg16" and paper.dataset_params["image_size"] == 224 and paper.device == "cuda"
    pools = {(r.budget, r.dataset_params["pool"]) for r in runs if r.method == "gain_ext"}
    assert pools == {(9, "class"), (23, "class"), (78, "class"), (200, "pixel"), (1464, "pixel")}
    birds = suites.load("waterbirds")
    assert birds.model == "resnet50" and birds.audited_class == "waterbird"
    assert main(["run", "voc-paper", "--dry-run", "--out", str(tmp_path / "dry")]) == 0
    assert "21 of 21 runs would run" in capsys.readouterr().out
    monkeypatch.setenv("GAIN_BENCH_DATA", str(tmp_path / "nodata"))
    assert main(["run", "voc-paper", "--out", str(tmp_path / "real"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"PASCAL VOC 2012 not found at {tmp_path / 'nodata/VOCdevkit/VOC2012'}" in err
    assert not list((tmp_path / "real").glob("runs/*")), "no run starts when the data is not there"


def test_the_pool_does_not_separate_a_method_from_its_baseline():
    base = RunSpec("gradcam", dataset="voc").to_dict()
    method = RunSpec("gain_ext", budget=200, dataset="voc", dataset_params={"pool": "pixel"}).to_dict()
    assert pairing_key(base) == pairing_key(method)
    other_size = RunSpec("gain_ext", dataset="voc", dataset_params={"image_size": 64}).to_dict()
    assert pairing_key(base) != pairing_key(other_size)
