"""The gallery's post-run step (`benchmark.execute.gallery_maps`: checkpoints and data in, `gallery.npz` and
`gallery.json`
out) and the report's renderer (`benchmark.analyse.report.gallery`), which draws from those two files alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_suite

from benchmark.analyse.report import gallery
from benchmark.core.store import GALLERY_JSON, GALLERY_NPZ
from benchmark.execute import gallery_maps, post_run, runner, suite_file
from benchmark.execute.attention import inference_cam, minmax_normalise, upsample_bilinear
from benchmark.execute.checkpoints import load_trained
from benchmark.execute.datasets import registry
from benchmark.execute.datasets.images import DataError
from benchmark.execute.suites import load

ROOT = Path(__file__).resolve().parent.parent
FILES = (GALLERY_JSON, GALLERY_NPZ)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny suite trained once (gradcam and gain_ext-9, seeds 0 and 1), without gallery files: folder, data root."""
    root = tmp_path_factory.mktemp("gallery_maps")
    path = root / "tiny.toml"
    path.write_text(tiny_suite("tiny-gallery-maps", timing=False))
    out, data_root = root / "out", root / "data"
    result = runner.run_suite(load(path), out, quiet=True, data_root=data_root, threads=1)
    assert all(f["status"] == "complete" for f in result.finished)
    for name in FILES:  # the runner's own post-run step wrote them: each test starts from the runs alone
        (out / name).unlink(missing_ok=True)
    return out, data_root


@pytest.fixture(scope="module")
def written(trained, tmp_path_factory) -> tuple[Path, Path]:
    """A copy of `trained` with its gallery written (not to be changed: tests that change it take a copy)."""
    out, data_root = trained
    copy = tmp_path_factory.mktemp("gallery_written") / "out"
    shutil.copytree(out, copy)
    assert gallery_maps.write_gallery(copy, _picks(copy), data_root) == copy / GALLERY_JSON
    return copy, data_root


def _picks(out: Path) -> list:
    return post_run.gallery_picks(suite_file.read_suite_file(out), out)


def _copy(out: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return copy


def test_the_files_hold_each_configurations_maps_images_and_scores(written):
    out, _ = written
    picks = _picks(out)
    meta = json.loads((out / GALLERY_JSON).read_text())
    assert [r["run_id"] for r in meta["rows"]] == [s.run_id for _, s, _ in picks]
    assert [r["run_id"].split("-")[::2] for r in meta["rows"]] == [["gradcam", "s0"], ["gain_ext", "s0"]]
    assert [r["config_hash"] for r in meta["rows"]] == [s.config_hash for _, s, _ in picks]
    assert meta["runs"] == [[s.run_id, s.config_hash] for _, s, _ in picks]
    assert [r["name"] for r in meta["rows"]] == ["Grad-CAM\nseed 0", "GAIN_ext-9\nwarmup_epochs=0\nseed 0"]
    assert list(meta["groups"]) == ["boat without water", "water without boat", "boat on water (val, in distribution)"]
    shown = [i for ids in meta["groups"].values() for i in ids]
    cells = meta["datasets"][0]["cells"]
    assert len(shown) == 12 and [c["id"] for c in cells] == shown
    assert {c["split"] for c in cells} == {"class_without_context", "context_without_class", "val"}
    for row in meta["rows"]:
        assert "skipped" not in row and row["data"] == 0 and row["ids"] == shown
        assert row["splits"] == [c["split"] for c in cells] and row["indices"] == [c["index"] for c in cells]
        assert len(row["scores"]) == 12 and all(0 < s < 1 for s in row["scores"])
    with np.load(out / GALLERY_NPZ, allow_pickle=False) as arrays:
        assert sorted(arrays.files) == ["images_0", "maps_0", "maps_1"]
        assert arrays["images_0"].dtype == np.uint8 and arrays["images_0"].shape == (12, 48, 48, 3)
        for key in ("maps_0", "maps_1"):
            maps = arrays[key]
            assert maps.shape[0] == 12 and maps.shape[1] < 48, "at the attention layer's resolution, not upsampled"
            assert maps.min() >= 0 and maps.max() <= 1


def test_the_renderer_shows_the_maps_the_gallery_computed_before(written):
    """Upsampled by the renderer (numpy), the stored maps are `inference_cam`'s at the image's size, as the gallery
    computed them from the checkpoint at report time before; the scores and images are the same too."""
    out, data_root = written
    data = gallery.read_gallery(out)
    assert data is not None and [r.run_id for r in data.rows] == [s.run_id for _, s, _ in _picks(out)]
    meta = json.loads((out / GALLERY_JSON).read_text())
    spec = next(s for _, s, _ in _picks(out))
    splits = registry.load(spec.dataset, spec.dataset_params, data_root, roles=("class_without_context", "val"))
    classes = splits["val"].classes
    for row, (_, spec, _) in zip(data.rows, _picks(out), strict=True):
        model = load_trained(spec, out / "runs" / spec.run_id / "model.pt", len(classes))
        k = classes.index(spec.audited_class)
        for i in (0, 11):  # the first "boat without water" and the last val image
            split = splits[meta["rows"][0]["splits"][i]]
            index = meta["rows"][0]["indices"][i]
            batch = split.batch(torch.tensor([index]), mean=model.mean, std=model.std)
            _, logits, maps = inference_cam(model, batch["image"], torch.tensor([k]))
            np.testing.assert_allclose(row.maps[i], maps[0].numpy(), atol=1e-5)
            assert row.scores[i] == pytest.approx(torch.sigmoid(logits[0, k]).item(), abs=1e-6)
            assert np.array_equal(row.images[i], split.pixels([index])[0].permute(1, 2, 0).numpy())


def test_upsampling_is_torchs_bilinear_then_min_max():
    maps = torch.rand(3, 6, 7)
    for size in ((48, 48), (50, 31), (6, 7)):
        want = minmax_normalise(upsample_bilinear(maps, size))
        np.testing.assert_allclose(gallery.upsample(maps.numpy(), size), want.numpy(), atol=1e-6)


def test_a_second_call_computes_nothing(written, monkeypatch):
    out, data_root = written
    stamps = [(out / name).stat().st_mtime_ns for name in FILES]

    def opened(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(gallery_maps, "_load_splits", opened)
    monkeypatch.setattr(gallery_maps, "load_trained", opened)
    assert gallery_maps.write_gallery(out, _picks(out), data_root) == out / GALLERY_JSON
    assert [(out / name).stat().st_mtime_ns for name in FILES] == stamps


def test_other_settings_or_a_damaged_npz_are_computed_again(written, tmp_path):
    out, data_root = written
    copy = _copy(out, tmp_path)
    gallery_maps.write_gallery(copy, _picks(copy), data_root, per_group=2)
    assert [len(ids) for ids in gallery.read_gallery(copy).groups.values()] == [2, 2, 2]
    (copy / GALLERY_NPZ).write_bytes(b"cut short")
    assert gallery.gallery(copy) is None and "inconsistent" in gallery.gallery_missing_reason(copy)
    gallery_maps.write_gallery(copy, _picks(copy), data_root, per_group=2)
    assert gallery.gallery_missing_reason(copy) is None
    json_path = copy / GALLERY_JSON
    json_path.write_bytes(json_path.read_bytes()[:40] + b"\xff\x00garbled" + json_path.read_bytes()[52:])
    assert gallery.gallery(copy) is None and "unreadable" in gallery.gallery_missing_reason(copy)
    gallery_maps.write_gallery(copy, _picks(copy), data_root, per_group=2)  # garbled, not UTF-8: computed again
    assert gallery.gallery_missing_reason(copy) is None


def test_the_report_draws_it_from_the_folder_alone(written, tmp_path):
    """With every model.pt removed and no data root, in a process where torch and every execute module cannot be
    imported (the package `benchmark.analyse.report` stubbed, so that its `__init__`, i.e. `build`, is not run): the
    same PNG, and no checkpoint or data file opened (an audit hook sees every open)."""
    out, data_root = written
    copy = _copy(out, tmp_path)
    expected = gallery.gallery(copy)
    assert expected is not None and gallery.gallery_missing_reason(copy) is None
    for path in copy.glob("runs/*/model.pt"):
        path.unlink()
    code = f"""
import importlib.abc, sys, types
BLOCKED = ("torch", "torchvision", "benchmark.execute")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"blocked: {{name}}")
        return None

sys.meta_path.insert(0, Block())
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" and args else None)
import benchmark
report = types.ModuleType("benchmark.analyse.report")
report.__path__ = [{str(ROOT / "benchmark" / "analyse" / "report")!r}]
sys.modules["benchmark.analyse.report"] = report
from benchmark.analyse.report import gallery
from benchmark.core.store import GALLERY_JSON, GALLERY_NPZ
uri = gallery.gallery({str(copy)!r})
bad = [p for p in opened if p.endswith(".pt") or p.startswith({str(data_root)!r}) or "/runs/" in p]
print("BAD", bad, "TORCH", "torch" in sys.modules)
print(uri)
"""
    env = os.environ | {"GAIN_BENCH_DATA": str(tmp_path / "no-data-here")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          cwd=tmp_path, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    check, uri = done.stdout.strip().split("\n")
    assert check == "BAD [] TORCH False"
    assert uri == expected


def test_importing_the_renderer_imports_no_torch():
    code = "import sys, benchmark.analyse.report.gallery; assert 'torch' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_without_a_gallery_the_report_says_why(written, tmp_path):
    out, _ = written
    empty = tmp_path / "empty"
    empty.mkdir()
    assert gallery.gallery(empty) is None and gallery.read_gallery(empty) is None
    assert gallery.gallery_missing_reason(empty) == gallery.MISSING
    assert "gallery.json" in gallery.MISSING and "`gain-bench run`" in gallery.MISSING
    copy = _copy(out, tmp_path)
    (copy / GALLERY_NPZ).unlink()
    assert gallery.gallery(copy) is None and "no gallery.npz" in gallery.gallery_missing_reason(copy)
    meta = json.loads((out / GALLERY_JSON).read_text())
    (copy / GALLERY_JSON).write_text(json.dumps(meta | {"schema": 0}))
    assert gallery.gallery(copy) is None and "format 0" in gallery.gallery_missing_reason(copy)
    (copy / GALLERY_JSON).write_text("{")
    assert gallery.gallery(copy) is None and "unreadable" in gallery.gallery_missing_reason(copy)


def test_skipped_configurations_say_why_and_none_left_removes_the_gallery(trained, tmp_path):
    out, data_root = trained
    copy = _copy(out, tmp_path)
    for path in copy.glob("runs/gradcam-*/model.pt"):
        path.unlink()
    assert gallery_maps.write_gallery(copy, _picks(copy), data_root, per_group=1) is not None
    rows = json.loads((copy / GALLERY_JSON).read_text())["rows"]
    assert rows[0]["run_id"] is None and rows[0]["skipped"] == "no checkpoint (model.pt) in its complete runs: skipped"
    assert rows[0]["name"] == "Grad-CAM" and "maps" not in rows[0]
    assert rows[1]["run_id"].startswith("gain_ext-b9-s0")
    data = gallery.read_gallery(copy)
    assert data.rows[0].scores is None and data.rows[0].note == rows[0]["skipped"]
    assert gallery.gallery(copy) is not None
    for path in copy.glob("runs/*/model.pt"):
        path.unlink()
    assert gallery_maps.write_gallery(copy, _picks(copy), data_root) is None
    assert not any((copy / name).exists() for name in FILES)
    assert gallery.gallery_missing_reason(copy) == gallery.MISSING


def test_data_that_cannot_be_loaded_is_an_error_naming_the_data_root(trained, tmp_path, monkeypatch):
    out, _ = trained
    copy = _copy(out, tmp_path)

    def missing(*args, **kwargs):
        raise DataError("VOCdevkit/VOC2012: no JPEGImages/ folder")

    monkeypatch.setattr(registry, "load", missing)
    root = tmp_path / "elsewhere"
    with pytest.raises(DataError, match=f"could not be loaded from the data root {root}: VOCdevkit"):
        gallery_maps.write_gallery(copy, _picks(copy), root)
    assert not any((copy / name).exists() for name in FILES)
