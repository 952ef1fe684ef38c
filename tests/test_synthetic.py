"""The synthetic biased-boats generator: determinism, split definitions, mask/label agreement, counterfactual pairs,
atomic generation and the errors a user sees."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.execute.datasets import synthetic
from benchmark.execute.datasets.render import render
from benchmark.execute.datasets.synthetic import (
    CLASSES,
    SPLITS,
    VERSION_SPLITS,
    SyntheticConfig,
    ensure_generated,
    load,
    load_split,
)
from benchmark.execute.datasets.tensors import TensorSplit

SMALL = SyntheticConfig(n_train=200, n_val=40, n_shifted=30, n_counterfactual=20)
BOAT = CLASSES.index("boat")


def _hashes(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_generated(SMALL, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def small(small_dir: Path) -> dict[str, TensorSplit]:
    splits = load(SMALL, small_dir.parent.parent)
    assert tuple(splits) == VERSION_SPLITS[2] == SPLITS[:8]
    return splits


def test_layout_and_manifest(small_dir: Path) -> None:
    assert small_dir.name == SMALL.digest() and small_dir.parent.name == "synthetic-boats"
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationContext", "ImageSets/Segmentation"):
        assert (small_dir / sub).is_dir()
    assert (small_dir / "COMPLETE").is_file() and (small_dir / "config.json").is_file()
    with (small_dir / "manifest.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == (
        "id",
        "split",
        "labels",
        "context",
        "has_context",
        "pair",
        "path",
        "mask_path",
        "context_mask_path",
    )
    assert rows[0]["id"] == "train_000000"
    for row in rows[::37]:
        for key in ("path", "mask_path", "context_mask_path"):
            assert (small_dir / row[key]).is_file()
        assert row["context"] in (synthetic.CONTEXTS if row["split"] != "cf_object_only" else ("neutral",))
        assert row["has_context"] == str(int(row["context"] == "water"))
    ids = (small_dir / "ImageSets/Segmentation/val.txt").read_text().split()
    assert ids == [f"val_{i:06d}" for i in range(SMALL.n_val)]
    with Image.open(small_dir / "SegmentationClass" / "train_000000.png") as mask:
        assert mask.mode == "P" and mask.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]


def test_same_config_is_byte_identical_and_other_configs_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = SyntheticConfig(n_train=12, n_val=4, n_shifted=3, n_counterfactual=3)
    first = _hashes(ensure_generated(tiny, tmp_path / "first"))
    with monkeypatch.context() as m:
        m.setattr(synthetic, "fork_workers", lambda: 1)
        again = _hashes(ensure_generated(tiny, tmp_path / "again"))
    assert again == first, "files must not depend on the number of worker processes"

    reseeded = _hashes(ensure_generated(dataclasses.replace(tiny, seed=1), tmp_path / "seed1"))
    images = [k for k in first if k.startswith("JPEGImages/")]
    assert sum(first[k] != reseeded[k] for k in images) == len(images)

    bigger_val = _hashes(ensure_generated(dataclasses.replace(tiny, n_val=5), tmp_path / "val5"))
    train = [k for k in first if k.startswith("JPEGImages/train_")]
    assert all(first[k] == bigger_val[k] for k in train), "resizing val must not change train"
    assert len(images) == 12 + 4 + 2 * 3 + 4 * 3


def test_digest_changes_with_every_field() -> None:
    changed = {
        "image_size": 64,
        "n_train": 201,
        "boat_fraction": 0.4,
        "rho": 0.9,
        "q": 0.1,
        "n_val": 41,
        "n_shifted": 31,
        "n_counterfactual": 21,
        "seed": 7,
        "generator_version": 3,
    }
    assert set(changed) == {f.name for f in dataclasses.fields(SyntheticConfig)}
    digests = {SMALL.digest()} | {dataclasses.replace(SMALL, **{k: v}).digest() for k, v in changed.items()}
    assert len(digests) == len(changed) + 1
    assert all(len(d) == 12 and int(d, 16) >= 0 for d in digests)
    assert SyntheticConfig(rho=1).digest() == SyntheticConfig(rho=1.0).digest()


def test_split_sizes_and_group_definitions(small: dict[str, TensorSplit]) -> None:
    sizes = {
        "train": 200,
        "val": 40,
        "boat_without_water": 30,
        "water_without_boat": 30,
        "cf_original": 20,
        "cf_context_swapped": 20,
        "cf_object_removed": 20,
        "cf_object_only": 20,
    }
    assert {k: len(v) for k, v in small.items()} == sizes
    assert small["train"].labels[:, BOAT].sum() == round(200 * SMALL.boat_fraction)
    assert small["val"].labels[:, BOAT].sum() == round(40 * SMALL.boat_fraction)
    bww, wwb = small["boat_without_water"], small["water_without_boat"]
    assert bww.labels[:, BOAT].all() and not bww.has_context.any()
    assert not wwb.labels[:, BOAT].any() and wwb.has_context.all()
    for split in small.values():
        n_objects = split.labels.sum(1)
        assert split.name.startswith("cf_") or ((n_objects >= 1) & (n_objects <= 2)).all()
        assert split.ids == [f"{split.name}_{i:06d}" for i in range(len(split))]
        expected_pair = torch.arange(len(split)) if split.name.startswith("cf_") else torch.full((len(split),), -1)
        assert torch.equal(split.pair, expected_pair)


def test_tensor_types(small: dict[str, TensorSplit]) -> None:
    s = small["train"]
    n, k, size = len(s), len(CLASSES), SMALL.image_size
    assert s.images.dtype == torch.uint8 and s.images.shape == (n, 3, size, size)
    assert s.labels.dtype == torch.float32 and s.labels.shape == (n, k)
    assert s.masks.dtype == torch.int64 and s.masks.shape == (n, size, size)
    assert s.context is not None and s.context.dtype == torch.int64 and s.context.shape == (n, size, size)
    assert s.has_context.dtype == torch.bool and s.pair.dtype == torch.int64
    assert s.classes == CLASSES and s.name == "train"


def test_masks_agree_with_labels(small: dict[str, TensorSplit]) -> None:
    for split in small.values():
        present = torch.stack([(split.masks == c + 1).flatten(1).any(1) for c in range(len(CLASSES))], 1)
        assert torch.equal(present, split.labels.bool()), split.name
        assert int(split.masks.max()) <= len(CLASSES) and int(split.masks.min()) >= 0


def test_context_mask_marks_uncovered_water(small: dict[str, TensorSplit]) -> None:
    for split in small.values():
        assert split.context is not None
        water_px = split.context.flatten(1).sum(1)
        assert (water_px[split.has_context] > 0).all(), split.name
        assert (water_px[~split.has_context] == 0).all(), split.name
        assert not (split.context.bool() & (split.masks > 0)).any(), "water mask must exclude object pixels"


def test_counterfactual_pairs_change_one_thing(small: dict[str, TensorSplit]) -> None:
    _check_counterfactual_pairs(small)


def test_at_the_papers_224_px_the_scenes_bias_and_pairs_are_the_48_px_ones_at_a_finer_grain(tmp_path: Path) -> None:
    """The image size changes no draw: the same boats on the same grounds (the bias is exact as before), each scene
    the same at a finer grain (object sizes and textures scale with it; an area-averaged 224 px render is close to
    the 48 px one), and the counterfactual pairs change one thing, as at 48 px."""
    coarse, fine = SyntheticConfig(image_size=48), SyntheticConfig(image_size=224)
    for split in ("train", "val", "boat_without_water"):
        a, b = synthetic._plan(coarse, split), synthetic._plan(fine, split)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)), split
    diffs, shares, overlaps = [], [], []
    for small_scene, large_scene in zip(
        synthetic.scenes(coarse, "train", 0, 60), synthetic.scenes(fine, "train", 0, 60), strict=True
    ):
        image, mask, _ = render(small_scene)
        big_image, big_mask, _ = render(large_scene)
        pooled = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(big_image).permute(2, 0, 1).float(), 48)
        diffs.append(float(np.abs(pooled.permute(1, 2, 0).numpy() - image).mean()))
        boat = mask == BOAT + 1
        if boat.any():
            big_boat = torch.from_numpy((big_mask == BOAT + 1).astype(np.float32))[None]
            pooled_boat = torch.nn.functional.adaptive_avg_pool2d(big_boat, 48)[0].numpy() > 0.5
            overlaps.append((boat & pooled_boat).sum() / (boat | pooled_boat).sum())
            shares.append((boat.mean(), (big_mask == BOAT + 1).mean()))
    assert np.mean(diffs) < 12, f"an area-averaged 224 px scene should look like its 48 px render: {np.mean(diffs)}"
    small_share, large_share = np.mean(shares, axis=0)
    assert abs(large_share / small_share - 1) < 0.15, "boats cover the same share of the image at both sizes"
    assert np.mean(overlaps) > 0.5, "the boat is where it was"
    config = SyntheticConfig(image_size=224, n_train=4, n_val=2, n_shifted=2, n_counterfactual=6)
    _check_counterfactual_pairs(synthetic.load(config, tmp_path))


def _check_counterfactual_pairs(small: dict[str, TensorSplit]) -> None:
    original, swapped, removed = small["cf_original"], small["cf_context_swapped"], small["cf_object_removed"]
    assert original.context is not None
    assert original.labels[:, BOAT].all() and original.has_context.all()

    changed = (swapped.images != original.images).any(1)
    assert not (changed & ~original.context.bool()).any(), "swap changed pixels off the visible ground"
    assert changed.flatten(1).any(1).all(), "every swapped scene must differ"
    assert torch.equal(swapped.masks, original.masks) and torch.equal(swapped.labels, original.labels)
    assert not swapped.has_context.any()

    boat_px = original.masks == BOAT + 1
    changed = (removed.images != original.images).any(1)
    assert not (changed & ~boat_px).any(), "boat removal changed pixels outside the boat"
    assert changed.flatten(1).any(1).all()
    assert not (removed.masks == BOAT + 1).any()
    assert torch.equal(removed.masks[~boat_px], original.masks[~boat_px])
    expected = original.labels.clone()
    expected[:, BOAT] = 0
    assert torch.equal(removed.labels, expected) and (removed.labels.sum(1) == 1).all()
    assert removed.has_context.all()


def test_reuse_does_not_regenerate(small_dir: Path) -> None:
    marker, image = small_dir / "COMPLETE", small_dir / "JPEGImages" / "train_000000.png"
    before = (marker.stat().st_mtime_ns, image.stat().st_mtime_ns)
    assert ensure_generated(SMALL, small_dir.parent.parent) == small_dir
    assert (marker.stat().st_mtime_ns, image.stat().st_mtime_ns) == before


def test_interrupted_generation_is_regenerated_cleanly(tmp_path: Path) -> None:
    config = SyntheticConfig(n_train=12, n_val=4, n_shifted=3, n_counterfactual=2)
    parent = tmp_path / "synthetic-boats"
    final = parent / config.digest()
    (final / "JPEGImages").mkdir(parents=True)
    (final / "JPEGImages" / "train_000000.png").write_bytes(b"half written")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale_tmp = parent / f".{config.digest()}.tmp-{int(dead.stdout)}-deadbeef"
    (stale_tmp / "JPEGImages").mkdir(parents=True)

    with pytest.raises(FileNotFoundError, match="ensure_generated"):
        load_split(final, "train")
    assert ensure_generated(config, tmp_path) == final
    assert not stale_tmp.exists()
    assert sorted(p.name for p in parent.iterdir()) == [config.digest()]
    assert len(load_split(final, "train")) == 12


def test_concurrent_generator_that_finishes_first_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = SyntheticConfig(n_train=6, n_val=2, n_shifted=2, n_counterfactual=2)
    real = synthetic._generate

    def racing(config: SyntheticConfig, tmp: Path) -> None:
        real(config, tmp)
        shutil.copytree(tmp, tmp.parent / config.digest())

    monkeypatch.setattr(synthetic, "_generate", racing)
    final = ensure_generated(config, tmp_path)
    assert (final / "COMPLETE").is_file()
    assert [p.name for p in final.parent.iterdir()] == [config.digest()]


def test_corrupt_png_names_the_file(tmp_path: Path) -> None:
    config = SyntheticConfig(n_train=6, n_val=2, n_shifted=2, n_counterfactual=2)
    directory = ensure_generated(config, tmp_path)
    bad = directory / "SegmentationClass" / "val_000001.png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        load_split(directory, "val")
    garbage = directory / "JPEGImages" / "train_000003.png"
    garbage.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=re.escape(str(garbage))):
        load_split(directory, "train")


def test_unknown_split_and_missing_dir_errors(small_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'test'") as info:
        load_split(small_dir, "test")
    assert all(split in str(info.value) for split in SPLITS)
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="gain-bench train") as info:
        load_split(missing, "train")
    assert str(missing) in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rho", 1.5),
        ("q", -0.1),
        ("boat_fraction", float("nan")),
        ("n_train", 0),
        ("n_val", 2.5),
        ("image_size", 8),
        ("seed", -1),
        ("n_counterfactual", True),
    ],
)
def test_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"data\.{field} = .* \(synthetic-boats\): allowed"):
        SyntheticConfig(**{field: value})


def test_default_root_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GAIN_BENCH_DATA", str(tmp_path))
    assert synthetic.default_root() == tmp_path
    monkeypatch.delenv("GAIN_BENCH_DATA")
    assert synthetic.default_root() == Path.cwd() / "datasets"


def test_default_config_bias_and_boat_size() -> None:
    """Checked on the split plan and on scenes rendered in memory: writing 16k files costs seconds on slow disks."""
    config = SyntheticConfig()
    boat, ground, _ = synthetic._plan(config, "train")
    water = np.array([g == "water" for g in ground])
    assert int(boat.sum()) == round(config.n_train * config.boat_fraction) >= 1464
    assert abs(water[boat].mean() - config.rho) < 0.01
    assert abs(water[~boat].mean() - config.q) < 0.02
    scenes = synthetic.scenes(config, "train", 0, 400)
    masks = np.stack([render(scene)[1] for scene, has_boat in zip(scenes, boat[:400], strict=True) if has_boat])
    share = float((masks == BOAT + 1).mean())
    assert 0.02 < share < 0.04, f"boats should cover ~3% of their images, got {share:.3f}"


def test_rho_and_q_set_the_water_rates() -> None:
    config = SyntheticConfig(n_train=20000, rho=0.9, q=0.2, seed=3)
    boat, ground, _ = synthetic._plan(config, "train")
    water = np.array([g == "water" for g in ground])
    assert abs(water[boat].mean() - 0.9) < 0.015 and abs(water[~boat].mean() - 0.2) < 0.015
    land = {g for g in ground if g != "water"}
    assert land == {"grass", "sand", "road"}
