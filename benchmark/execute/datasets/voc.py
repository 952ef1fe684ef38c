"""PASCAL VOC 2012 from a local `VOCdevkit/VOC2012` (never downloaded): the segmentation splits `train` (1,464
images) and `val` (1,449), and `train_aug` (10,582, SBD's augmented list) when its list is there.

Image-level labels (all 20 classes) come from `Annotations/<id>.xml`, objects marked `difficult` counted or not as
`data.difficult` says; pixel labels from the palette PNGs in `SegmentationClass` (value = class index + 1, 0 background,
255 the ignored object boundary), or from SBD's `SegmentationClassAug` with `pixel_labels = "aug"`. The shifted groups
come from the biased split the user names (`data.biased_split`, a folder or a CSV manifest: `manifest.py`); without
one a run measures val accuracy, mAP and localisation only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from benchmark.core.settings import choice, text
from benchmark.execute.datasets.files import FileSplit, ViewSettings
from benchmark.execute.datasets.images import BadImages, DataError, ImageItem
from benchmark.execute.datasets.manifest import ROLES, read_biased_split
from benchmark.execute.datasets.params import ROOT, FileDataConfig, build, data_path

NAME = "voc"
LOADER_VERSION = 1
CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
TRAIN_SPLITS = ("train", "train_aug")
AUG_LISTS = ("ImageSets/SegmentationAug/train_aug.txt", "ImageSets/Segmentation/train_aug.txt")
VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ (VOCtrainval_11-May-2012.tar)"
SBD_URL = "http://home.bharathh.info/pubs/codes/SBD/download.html"
LAYOUT = (
    "VOCdevkit/VOC2012/{JPEGImages, Annotations, SegmentationClass, ImageSets/Segmentation/{train,val}.txt}, "
    "optionally SegmentationClassAug/ and ImageSets/SegmentationAug/train_aug.txt (SBD, for train_split = "
    '"train_aug")'
)


@dataclass(frozen=True)
class VOCConfig(FileDataConfig):
    """The `[data]` keys of `name = "voc"`: its own and the shared `FileDataConfig` ones (datasets/README.md)."""

    root: text("the VOC2012 folder", ROOT) = "VOCdevkit/VOC2012"
    train_split: choice(TRAIN_SPLITS, "the training split") = "train"
    pixel_labels: choice(("voc", "aug"), "VOC's own segmentations, or SBD's (train_aug)") = "voc"
    difficult: choice(("include", "exclude"), "objects marked difficult") = "include"
    biased_split: text("the biased split", "a folder or .csv manifest (relative to the data root, or absolute); "
                       "empty: none") = ""  # fmt: skip
    context: text("the audited context", "a context name, e.g. water", pattern=r"\S") = "water"


def config(params: dict[str, object]) -> VOCConfig:
    return build(VOCConfig, params, NAME)


def find_root(cfg: VOCConfig, data_root: Path | None) -> Path:
    """The VOC2012 folder; a missing one is a DataError that gives the expected layout and where VOC comes from."""
    root = data_path(cfg.root, data_root)
    if not root.is_dir():
        raise DataError(
            f"PASCAL VOC 2012 not found at {root} (data.root = {cfg.root!r} under the data root, set by --data-root "
            f"or $GAIN_BENCH_DATA, default ./datasets). Expected layout under the data root: {LAYOUT}. VOC 2012 comes "
            f"from {VOC_URL}; SBD's train_aug from {SBD_URL}. gain-bench downloads nothing; see datasets/README.md"
        )
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"):
        if not (root / sub).is_dir():
            raise DataError(f"{root}: no {sub}/ folder; expected layout: {LAYOUT}")
    return root


def read_list(path: Path) -> list[str]:
    """Ids of a split list: the first word of each line, or the file stem when it is a path (SBD's
    `/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png` lines); duplicates kept once."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise DataError(f"split list {path} is missing") from None
    ids = [Path(words[0]).stem if "/" in words[0] else words[0] for words in (line.split() for line in lines) if words]
    if not ids:
        raise DataError(f"split list {path} names no images")
    return list(dict.fromkeys(ids))


def read_labels(path: Path, difficult: str, origin: str = "") -> tuple[int, ...]:
    """Class indices of the objects in a VOC annotation; `difficult = "exclude"` leaves out objects marked difficult."""
    where = f"{path}" + (f" (listed in {origin})" if origin else "")
    try:
        tree = ET.parse(path)
    except FileNotFoundError:
        raise DataError(f"{where}: annotation file is missing") from None
    except (ET.ParseError, OSError) as err:
        raise DataError(f"{where}: not a readable VOC annotation ({err})") from None
    names: set[str] = set()
    for obj in tree.getroot().findall("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in CLASSES:
            raise DataError(f"{where}: unknown class {name!r}; VOC classes: {', '.join(CLASSES)}")
        if difficult == "exclude" and (obj.findtext("difficult") or "0").strip() == "1":
            continue
        names.add(name)
    return tuple(sorted(CLASSES.index(n) for n in names))


def _aug_list(root: Path) -> Path:
    for rel in AUG_LISTS:
        if (root / rel).is_file():
            return root / rel
    raise DataError(
        f'{root}: train_split = "train_aug" needs the list of its 10,582 ids at {root / AUG_LISTS[0]} (or '
        f"{root / AUG_LISTS[1]}): one id, or SBD's '/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png', per line; "
        f"from {SBD_URL}, see datasets/README.md"
    )


def split_items(root: Path, cfg: VOCConfig, split: str, bad: BadImages) -> tuple[list[ImageItem], Path]:
    """The items of `split` ("train", "val" or "train_aug") and the list file they come from."""
    listing = _aug_list(root) if split == "train_aug" else root / "ImageSets" / "Segmentation" / f"{split}.txt"
    ids = read_list(listing)
    if split == "train_aug":
        val = set(read_list(root / "ImageSets" / "Segmentation" / "val.txt"))
        leaked = [i for i in ids if i in val]
        if leaked:
            raise DataError(
                f"{listing}: {len(leaked)} of its ids are VOC val images (e.g. {leaked[0]}); train_aug must exclude "
                "val, or val accuracy is measured on training images"
            )
    masks = root / ("SegmentationClassAug" if cfg.pixel_labels == "aug" else "SegmentationClass")
    if cfg.pixel_labels == "aug" and split != "val" and not masks.is_dir():
        raise DataError(f'{root}: pixel_labels = "aug" needs SBD\'s SegmentationClassAug/ folder at {masks}')
    items = []
    for line, image_id in enumerate(ids, start=1):
        origin = f"{listing} line {line}"
        mask: Path | None = root / "SegmentationClass" / f"{image_id}.png"
        if split == "val" or cfg.pixel_labels == "aug":
            mask = (root / "SegmentationClass" if split == "val" else masks) / f"{image_id}.png"
        elif split == "train_aug" and not mask.is_file():
            mask = None  # image-level labels only: outside VOC's 1,464 pixel-labelled training images
        image = root / "JPEGImages" / f"{image_id}.jpg"
        try:
            labels = read_labels(root / "Annotations" / f"{image_id}.xml", cfg.difficult, origin)
        except DataError as err:
            bad(ImageItem(image_id, image, (), origin=origin), err, split)
            continue
        items.append(ImageItem(image_id, image, labels, mask=mask, origin=origin))
    return items, listing


def load(cfg: VOCConfig, data_root: Path | None, roles: tuple[str, ...] | None = None) -> dict[str, FileSplit]:
    """The training split, val and (with a biased split) the two shifted groups, by role; each file checked."""
    root = find_root(cfg, data_root)
    wanted = roles or ("train", "val", *ROLES)
    settings = ViewSettings(cfg.image_size, cfg.augment, cfg.crop_scale, cfg.cache, cfg.workers)
    bad = BadImages(cfg.skip_bad_images)
    out: dict[str, FileSplit] = {}
    for role, split in (("train", cfg.train_split), ("val", "val")):
        if role in wanted:
            items, listing = split_items(root, cfg, split, bad)
            out[role] = FileSplit.checked(role, items, CLASSES, settings, bad, source=str(listing))
    if cfg.biased_split and any(role in wanted for role in ROLES):
        biased = read_biased_split(data_path(cfg.biased_split, data_root), CLASSES)
        if biased.context != cfg.context:
            raise DataError(
                f"{biased.source}: its groups are about the context {biased.context!r}, but data.context = "
                f"{cfg.context!r}; set data.context = {biased.context!r} or rename the groups"
            )
        for role in ROLES:
            if role in wanted:
                out[role] = FileSplit.checked(role, biased.groups[role], CLASSES, settings, bad, source=biased.source)
    return out
