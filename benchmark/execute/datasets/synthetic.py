"""Synthetic biased boats: a seeded, procedural dataset written once to disk in a VOC-like layout.

The bias mirrors the real one the benchmark audits: in photographs, boats are almost always on water and water is
rarely seen without a boat. Here ``rho = P(water | boat)`` and ``q = P(water | no boat)`` set it exactly, and two
shifted groups (boat without water, water without boat) plus four counterfactual splits (same scene, ground swapped,
boat removed, or the objects alone on a neutral grey) test whether a classifier uses the boat or the water.

Each split draws from its own random stream derived from ``(seed, split name)``, so resizing one split never changes
another, and one config always yields byte-identical files.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from benchmark.core.phases import Counter, phase
from benchmark.core.settings import SettingsError, check, integer, number
from benchmark.core.spec import BUILTIN_DATA
from benchmark.execute.datasets.render import (
    CLASSES,
    CONTEXTS,
    LAND,
    Scene,
    object_only,
    render,
    sample_ground,
    sample_scene,
)
from benchmark.execute.datasets.tensors import TensorSplit

__all__ = [
    "CLASSES",
    "CONTEXTS",
    "GENERATOR_VERSION",
    "ROLES",
    "SPLITS",
    "VERSION_SPLITS",
    "SyntheticConfig",
    "default_root",
    "ensure_generated",
    "load",
    "load_split",
    "roles",
    "splits",
]

_SPLITS_1 = (
    "train",
    "val",
    "boat_without_water",
    "water_without_boat",
    "cf_original",
    "cf_context_swapped",
    "cf_object_removed",
)
# What each generator version writes; every file of an earlier version's splits is byte-identical in a later one.
# 2 added `cf_object_only`; 3 added `cf_object_swapped` and `cf_object_swapped_land` (the boat replaced, at its
# place, by an object of another class: on the water, and on the land of `cf_context_swapped`).
VERSION_SPLITS: dict[int, tuple[str, ...]] = {
    1: _SPLITS_1,
    2: (*_SPLITS_1, "cf_object_only"),
    3: (*_SPLITS_1, "cf_object_only", "cf_object_swapped", "cf_object_swapped_land"),
}
SPLITS: tuple[str, ...] = VERSION_SPLITS[max(VERSION_SPLITS)]
"""Every split some version writes (a folder holds its version's: `splits`)."""
# The role each evaluation split plays (docs/layout.md, "Contracts") -> its name here.
ROLES: dict[str, str] = {
    "val": "val",
    "class_without_context": "boat_without_water",
    "context_without_class": "water_without_boat",
    **{split: split for split in SPLITS if split.startswith("cf_")},
}
GENERATOR_VERSION: int = 2
"""The default generator version (`data.generator_version`); the version is part of the data folder's digest."""
NAME = BUILTIN_DATA
T = TypeVar("T")
CHUNK = 200
MANIFEST_FIELDS = ("id", "split", "labels", "context", "has_context", "pair", "path", "mask_path", "context_mask_path")


@dataclass(frozen=True)
class SyntheticConfig:
    """Every knob of the generator; ``digest()`` names the folder the data is written to."""

    image_size: integer(16, "image side, pixels") = 48
    n_train: integer(1, "training images") = 3200
    boat_fraction: number("share of training images that hold a boat", ge=0, le=1) = 0.5
    rho: number("P(water | boat) in training: the bias", ge=0, le=1) = 0.99
    q: number("P(water | no boat) in training", ge=0, le=1) = 0.05
    n_val: integer(1, "in-distribution validation images") = 600
    n_shifted: integer(1, "images per shifted group") = 300
    n_counterfactual: integer(1, "counterfactual pairs") = 300
    seed: integer(0, "generator seed") = 0
    generator_version: integer(
        1, "generator version: 2, or 3 for the object-swapped splits (1: before the object-only split)", high=3
    ) = GENERATOR_VERSION

    def __post_init__(self) -> None:
        try:
            check(SyntheticConfig, dataclasses.asdict(self), "data", owner=NAME)
        except SettingsError as err:
            raise ValueError(str(err)) from None
        for name in ("boat_fraction", "rho", "q"):  # 1 and 1.0 are one configuration (and one data folder)
            object.__setattr__(self, name, float(getattr(self, name)))

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """12 hex chars of sha256 over the sorted JSON of the fields and the generator version."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def splits(config: SyntheticConfig) -> tuple[str, ...]:
    """The splits `config`'s generator version writes, in order."""
    return VERSION_SPLITS[config.generator_version]


def roles(config: SyntheticConfig) -> dict[str, str]:
    """The evaluation roles `config`'s folder holds -> their split names (`ROLES`, less the later versions')."""
    return {role: split for role, split in ROLES.items() if split in splits(config)}


def data_config(dataset: str, params: dict[str, object]) -> SyntheticConfig:
    """The built-in data's config from a run's `dataset` name and parameters, with errors naming the key."""
    if dataset != NAME:
        raise ValueError(f"unknown dataset {dataset!r}; available: {NAME}")
    try:
        check(SyntheticConfig, params, "data", owner=NAME)
    except SettingsError as err:
        raise ValueError(str(err)) from None
    return SyntheticConfig(**params)


def default_root() -> Path:
    """``$GAIN_BENCH_DATA`` if set, else ``./datasets`` (the repository's data root when run from its top level)."""
    env = os.environ.get("GAIN_BENCH_DATA")
    return Path(env).expanduser() if env else Path.cwd() / "datasets"


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    """A stream keyed by the seed, names and indices; names via sha256, not ``hash()``, which changes per process."""
    words = [
        k if isinstance(k, int) else int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "little") for k in keys
    ]
    return np.random.default_rng(np.random.SeedSequence([seed, *words]))


def _scene(config: SyntheticConfig, split: str, i: int, boat: bool, ground: str, n_objects: int) -> Scene:
    rng = _rng(config.seed, split, i)
    others = [str(c) for c in rng.choice(CLASSES[1:], size=n_objects - boat)]
    return sample_scene(rng, config.image_size, ["boat"] * boat + others, ground)


def _split_size(config: SyntheticConfig, split: str) -> int:
    sizes = {
        "train": config.n_train,
        "val": config.n_val,
        "boat_without_water": config.n_shifted,
        "water_without_boat": config.n_shifted,
    }
    return sizes.get(split, config.n_counterfactual)


def _plan(config: SyntheticConfig, split: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Per image of a non-counterfactual split: has a boat, ground type, number of objects (1 or 2).

    Train/val hold exactly round(n * boat_fraction) boats; the ground is water with probability rho given a boat
    and q without, else a uniformly drawn land type. The shifted groups fix boat and ground by definition.
    """
    n = _split_size(config, split)
    rng = _rng(config.seed, split)
    if split in ("train", "val"):
        boat = np.zeros(n, dtype=bool)
        boat[rng.permutation(n)[: round(n * config.boat_fraction)]] = True
        water = rng.random(n) < np.where(boat, config.rho, config.q)
    else:
        boat = np.full(n, split == "boat_without_water")
        water = ~boat
    land = rng.choice(LAND, size=n)
    ground = ["water" if w else str(g) for w, g in zip(water, land, strict=True)]
    return boat, ground, rng.integers(1, 3, size=n)


def scenes(config: SyntheticConfig, split: str, start: int, stop: int) -> list[Scene]:
    """Scenes ``start:stop`` of a split; each is seeded by (seed, split, index), so any chunk can be made alone.

    Counterfactual scenes are boat-on-water with one other object, then the same scene with the ground swapped
    for a land type, with the boat removed, with sky and ground one flat neutral grey (`render.object_only`), or
    with the boat replaced by an object of another class (`_swap_boat`), on the water or on the swapped land.
    The second object keeps the boat-removed image in distribution (one labelled object), never an empty scene
    unlike any training image.
    """
    if split.startswith("cf_"):
        scenes = [_scene(config, "cf_original", i, True, "water", 2) for i in range(start, stop)]
        if split in ("cf_context_swapped", "cf_object_swapped_land"):
            rngs = [_rng(config.seed, "cf_context_swapped", i) for i in range(start, stop)]
            scenes = [
                dataclasses.replace(s, ground=sample_ground(r, str(r.choice(LAND))))
                for s, r in zip(scenes, rngs, strict=True)
            ]
        if split == "cf_object_removed":
            return [dataclasses.replace(s, objects=tuple(o for o in s.objects if o.cls != "boat")) for s in scenes]
        if split == "cf_object_only":
            return [object_only(s) for s in scenes]
        if split in ("cf_object_swapped", "cf_object_swapped_land"):
            return [_swap_boat(s, _rng(config.seed, "cf_object_swapped", i)) for i, s in enumerate(scenes, start)]
        return scenes
    boat, ground, count = _plan(config, split)
    return [_scene(config, split, i, bool(boat[i]), ground[i], int(count[i])) for i in range(start, stop)]


def _swap_boat(scene: Scene, rng: np.random.Generator) -> Scene:
    """The scene with its boat replaced by an object of a class drawn uniformly from the others: the same place,
    size, colours, flip and variant, so the object's shape is all that changes (every class draws its colours from
    one palette). A pair's water and land versions draw the same class (one stream per pair)."""
    other = str(rng.choice(CLASSES[1:]))
    return dataclasses.replace(
        scene, objects=tuple(dataclasses.replace(o, cls=other) if o.cls == "boat" else o for o in scene.objects)
    )


def _voc_palette() -> list[int]:
    """The standard PASCAL VOC colour map (bit-interleaved label index), as a flat 768-entry list."""
    palette = []
    for label in range(256):
        r = g = b = 0
        c = label
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


VOC_PALETTE = _voc_palette()


def save_png(image: Image.Image, path: Path) -> None:
    """Encode in memory at zlib level 1, then write: a third of Pillow's default cost here, and no larger."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    path.write_bytes(buf.getbuffer())


def _write_chunk(config: SyntheticConfig, tmp: Path, split: str, start: int, stop: int) -> list[dict[str, object]]:
    """Render and write images ``start:stop`` of a split; returns their manifest rows.

    Labels are the classes visible in the mask, so labels and masks agree by construction.
    """
    rows: list[dict[str, object]] = []
    for i, scene in enumerate(scenes(config, split, start, stop), start):
        sid = f"{split}_{i:06d}"
        image, seg, water = render(scene)
        mask = Image.fromarray(seg, "L").convert("P")
        mask.putpalette(VOC_PALETTE)
        save_png(Image.fromarray(image, "RGB"), tmp / "JPEGImages" / f"{sid}.png")
        save_png(mask, tmp / "SegmentationClass" / f"{sid}.png")
        save_png(Image.fromarray(water, "L"), tmp / "SegmentationContext" / f"{sid}.png")
        rows.append(
            {
                "id": sid,
                "split": split,
                "labels": ";".join(CLASSES[k - 1] for k in np.unique(seg) if k),
                "context": scene.ground.kind,
                "has_context": int(scene.ground.kind == "water"),
                "pair": i if split.startswith("cf_") else -1,
                "path": f"JPEGImages/{sid}.png",
                "mask_path": f"SegmentationClass/{sid}.png",
                "context_mask_path": f"SegmentationContext/{sid}.png",
            }
        )
    return rows


def write_chunks(
    write: Callable[[Any, Path, str, int, int], list[T]], config: Any, tmp: Path, sizes: dict[str, int], chunk: int
) -> list[list[T]]:
    """`write(config, tmp, split, start, stop)` for every `chunk` images of every split, over forked workers where
    there is more than one CPU, saying the images done at each quarter; the results in chunk order, so what is
    written never depends on the number of workers or the order chunks finish in."""
    chunks = [(config, tmp, split, a, min(a + chunk, n)) for split, n in sizes.items() for a in range(0, n, chunk)]
    counter = Counter(sum(sizes.values()), "images")
    workers = min(fork_workers(), len(chunks))
    parts: list[list[T]] = []
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")))
            done: Iterable[list[T]] = pool.map(write, *zip(*chunks, strict=True))
        else:
            done = (write(*c) for c in chunks)
        for (*_, start, stop), part in zip(chunks, done, strict=True):
            parts.append(part)
            counter.add(stop - start)
    return parts


def fork_workers() -> int:
    """CPUs to fork onto; 1 where fork is missing or in a daemonic worker, which may not have children."""
    if "fork" not in multiprocessing.get_all_start_methods() or multiprocessing.current_process().daemon:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cpus, 8)


def _generate(config: SyntheticConfig, tmp: Path) -> None:
    """Write the whole dataset into ``tmp``, in chunks over forked workers where there is more than one CPU.

    Fork, not spawn: workers need only numpy and Pillow, and a spawned one would re-import torch first. File
    contents depend only on the config, never on the number of workers or the order chunks finish in.
    """
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationContext", "ImageSets/Segmentation"):
        (tmp / sub).mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps(config.to_dict(), sort_keys=True, indent=2) + "\n")
    sizes = {split: _split_size(config, split) for split in splits(config)}
    rows = [row for part in write_chunks(_write_chunk, config, tmp, sizes, CHUNK) for row in part]
    for split in splits(config):
        ids = "".join(f"{r['id']}\n" for r in rows if r["split"] == split)
        (tmp / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(ids)
    with (tmp / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (tmp / "COMPLETE").write_text(config.digest() + "\n")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_stale(parent: Path, digest: str) -> None:
    """Remove temp dirs of dead generators and a final dir that lacks COMPLETE (both only from a crash or a user)."""
    for tmp in parent.glob(f".{digest}.tmp-*"):
        pid = tmp.name.split("-")[1]
        if not pid.isdigit() or not _pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
    final = parent / digest
    if final.exists() and not (final / "COMPLETE").exists():
        trash = parent / f".{digest}.tmp-{os.getpid()}-{uuid.uuid4().hex}-stale"
        try:
            os.replace(final, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)


def ensure_generated(config: SyntheticConfig, root: Path | None = None) -> Path:
    """The dataset folder for ``config``, generating it first if it is absent or incomplete.

    Generation writes to a temp dir beside the target and renames it into place, so a crash never leaves a half
    dataset; if another process finishes first, its copy is kept and this one discarded.
    """
    parent = Path(root if root is not None else default_root()) / NAME
    digest = config.digest()
    final = parent / digest
    if (final / "COMPLETE").is_file():
        return final
    parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(parent, digest)
    tmp = parent / f".{digest}.tmp-{os.getpid()}-{uuid.uuid4().hex}"
    total = sum(_split_size(config, split) for split in splits(config))
    try:
        with phase(f"generating the built-in data: {total} images of {config.image_size} px under {final} (once)"):
            _generate(config, tmp)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "COMPLETE").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _read_png(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode != mode:
                raise ValueError(f"mode {im.mode!r}, expected {mode!r}")
            if size is not None and im.size != size:
                raise ValueError(f"size {im.size}, expected {size}")
            return np.asarray(im)
    except FileNotFoundError:
        raise ValueError(f"missing image file {path}; regenerate the dataset (delete its folder)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot read image file {path}: {e}; regenerate the dataset (delete its folder)") from e


def _manifest(dataset_dir: Path) -> dict[str, dict[str, str]]:
    with (dataset_dir / "manifest.csv").open(newline="") as f:
        return {row["id"]: row for row in csv.DictReader(f)}


def load_split(dataset_dir: Path, split: str) -> TensorSplit:
    """One split of a generated dataset folder as tensors (images, multi-hot labels, class and water masks).

    Raises ValueError for an unknown split or an unreadable image (naming the file), FileNotFoundError when the
    folder holds no complete dataset.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed splits: {', '.join(SPLITS)}")
    dataset_dir = Path(dataset_dir)
    if not (dataset_dir / "COMPLETE").is_file():
        raise FileNotFoundError(
            f"no complete synthetic-boats dataset at {dataset_dir} (expected {dataset_dir / 'COMPLETE'}); "
            "benchmark.execute.datasets.synthetic.ensure_generated() or `gain-bench train` creates it"
        )
    version = json.loads((dataset_dir / "config.json").read_text()).get("generator_version", 1)
    if split not in VERSION_SPLITS.get(version, ()):
        raise ValueError(
            f"split {split!r} is not in the data at {dataset_dir}: generator version {version} writes "
            f"{', '.join(VERSION_SPLITS.get(version, ()))}; set data.generator_version = {_first_version(split)} for it"
        )
    return _load_split(dataset_dir, split, _manifest(dataset_dir))


def _load_split(dataset_dir: Path, split: str, manifest: dict[str, dict[str, str]]) -> TensorSplit:
    ids = (dataset_dir / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
    rows = [manifest[i] for i in ids]
    first = _read_png(dataset_dir / rows[0]["path"], "RGB", None)
    size = (first.shape[1], first.shape[0])

    def read(row: dict[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            _read_png(dataset_dir / row["path"], "RGB", size),
            _read_png(dataset_dir / row["mask_path"], "P", size),
            _read_png(dataset_dir / row["context_mask_path"], "L", size),
        )

    with ThreadPoolExecutor(fork_workers()) as pool:  # Pillow's PNG decoder releases the GIL
        images, masks, context = zip(*pool.map(read, rows), strict=True)
    labels = torch.zeros(len(rows), len(CLASSES), dtype=torch.float32)
    for r, row in enumerate(rows):
        for name in filter(None, row["labels"].split(";")):
            labels[r, CLASSES.index(name)] = 1.0
    return TensorSplit(
        name=split,
        images=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
        labels=labels,
        masks=torch.from_numpy(np.stack(masks).astype(np.int64)),
        context=torch.from_numpy(np.stack(context).astype(np.int64)),
        has_context=torch.tensor([row["has_context"] == "1" for row in rows], dtype=torch.bool),
        ids=list(ids),
        classes=CLASSES,
        pair=torch.tensor([int(row["pair"]) for row in rows], dtype=torch.int64),
    )


def load(config: SyntheticConfig, root: Path | None = None) -> dict[str, TensorSplit]:
    """Generate the dataset if needed and return every split of its version, keyed by name in order (`splits`)."""
    dataset_dir = ensure_generated(config, root)
    manifest = _manifest(dataset_dir)
    return {split: _load_split(dataset_dir, split, manifest) for split in splits(config)}


def _first_version(split: str) -> int:
    return min(v for v, names in VERSION_SPLITS.items() if split in names)
