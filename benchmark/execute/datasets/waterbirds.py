"""Waterbirds (Sagawa et al., ICLR 2020): CUB-200 birds pasted on Places water or land backgrounds, the standard real
benchmark of the boat-and-water bias. Waterbirds are on water 95% of the time in training, landbirds on land.

`metadata.csv` (`img_filename,y,split,place`; y 1 = waterbird, place 1 = water, split 0/1/2 = train/val/test) gives
everything: classes `landbird`, `waterbird` (one label per image), audited class `waterbird`, context `water`. The
shifted groups are the test split's minority groups: "waterbird on land" (class without context) and "landbird on
water" (context without class); `val` is the official validation split. CUB's segmentations (optional,
`data.segmentations`) are the pixel labels; on a water image every non-bird pixel is context (the background is the
water photograph).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from benchmark.core.settings import text
from benchmark.execute.datasets.files import FileSplit, ViewSettings
from benchmark.execute.datasets.images import BadImages, DataError, ImageItem
from benchmark.execute.datasets.manifest import inside
from benchmark.execute.datasets.params import ROOT, FileDataConfig, build, data_path

NAME = "waterbirds"
LOADER_VERSION = 1
CLASSES: tuple[str, ...] = ("landbird", "waterbird")
AUDITED_CLASS = "waterbird"
CONTEXT = "water"
COLUMNS = ("img_filename", "y", "split", "place")
URL = "https://github.com/kohpangwei/group_DRO (waterbird_complete95_forest2water2.tar.gz)"
CUB_URL = "https://www.vision.caltech.edu/datasets/cub_200_2011/ (segmentations.tgz)"


@dataclass(frozen=True)
class WaterbirdsConfig(FileDataConfig):
    """The `[data]` keys of `name = "waterbirds"`: its own and the shared `FileDataConfig` ones (datasets/README.md)."""

    root: text("the Waterbirds folder (metadata.csv)", ROOT) = "waterbird_complete95_forest2water2"
    segmentations: text("CUB-200's segmentations (the pixel labels)", "CUB-200's segmentations/ folder (relative to "
                        "the data root, or absolute); empty: none") = ""  # fmt: skip


def config(params: dict[str, object]) -> WaterbirdsConfig:
    return build(WaterbirdsConfig, params, NAME)


def _int(row: dict[str, str], key: str, allowed: tuple[int, ...], where: str) -> int:
    value = (row.get(key) or "").strip()
    try:
        number = int(float(value))
    except ValueError:
        number = -1
    if number not in allowed:
        raise DataError(f"{where}: {key} = {value!r}; allowed: {', '.join(map(str, allowed))}")
    return number


def read_metadata(root: Path) -> list[tuple[dict[str, str], str]]:
    """The rows of `metadata.csv` with where each is (file and line), after checking the columns are there."""
    path = root / "metadata.csv"
    if not path.is_file():
        raise DataError(
            f"Waterbirds not found: no {path} (data.root under the data root, set by --data-root or "
            f"$GAIN_BENCH_DATA). Expected: <root>/metadata.csv (img_filename,y,split,place) beside the image folders "
            f"it names; Waterbirds comes from {URL}, CUB's segmentations from {CUB_URL}. gain-bench downloads "
            "nothing; see datasets/README.md"
        )
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
        return [(row, f"{path} line {line}") for line, row in enumerate(reader, start=2)]


def load(cfg: WaterbirdsConfig, data_root: Path | None, roles: tuple[str, ...] | None = None) -> dict[str, FileSplit]:
    """train, val and the test split's two minority groups as the shifted groups, by role; each file checked."""
    root = data_path(cfg.root, data_root)
    segmentations = data_path(cfg.segmentations, data_root) if cfg.segmentations else None
    if segmentations is not None and not segmentations.is_dir():
        raise DataError(f"data.segmentations: {segmentations} is not a folder (CUB-200's segmentations/, {CUB_URL})")
    members: dict[str, list[ImageItem]] = {"train": [], "val": [], "class_without_context": [],
                                           "context_without_class": []}  # fmt: skip
    for row, where in read_metadata(root):
        y = _int(row, "y", (0, 1), where)
        split = _int(row, "split", (0, 1, 2), where)
        place = _int(row, "place", (0, 1), where)
        name = (row["img_filename"] or "").strip()
        if not name:
            raise DataError(f"{where}: empty img_filename")
        role = {0: "train", 1: "val"}.get(split)
        if split == 2:
            role = {(1, 0): "class_without_context", (0, 1): "context_without_class"}.get((y, place))
        if role is None:
            continue
        mask = inside(segmentations, str(Path(name).with_suffix(".png")), where) if segmentations else None
        members[role].append(
            ImageItem(
                id=name,
                image=inside(root, name, where),
                labels=(y,),
                mask=mask,
                mask_kind="object",
                has_context=place == 1,
                context_is_background=True,
                origin=where,
            )
        )
    settings = ViewSettings(cfg.image_size, cfg.augment, cfg.crop_scale, cfg.cache, cfg.workers)
    bad = BadImages(cfg.skip_bad_images)
    source = str(root / "metadata.csv")
    return {
        role: FileSplit.checked(role, items, CLASSES, settings, bad, source=source)
        for role, items in members.items()
        if roles is None or role in roles
    }
