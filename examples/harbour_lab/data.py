"""A dataset on files: PNG images and masks listed in CSV manifests, `<data root>/harbour-csv/`.

`train.csv` and `val.csv` list `path,labels,mask_path,context_mask_path,id`; `biased.csv` is gain-bench's biased-split
manifest (`path,labels,group,...`, groups `boat_without_water` and `water_without_boat`). A lab would point `root` at
its own export; so that this example runs anywhere, `prepare` writes one from the built-in generator if it is absent.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.api import (
    PATH_KEY_DOC,
    BadImages,
    Dataset,
    FileDataConfig,
    FileSplit,
    ImageItem,
    ViewSettings,
    boolean,
    build,
    data_path,
    integer,
    manifest,
    register_dataset,
    resolved,
    synthetic,
    text,
)

NAME = "harbour-csv"
CLASSES = synthetic.CLASSES


@dataclass(frozen=True)
class HarbourConfig(FileDataConfig):
    root: text("the export's folder", PATH_KEY_DOC) = "harbour-csv"
    image_size: integer(16, "the side of the square model input") = 48
    augment: boolean("random crops and flips in training") = False
    n_train: integer(64, "training images, when `prepare` writes the example export") = 320


def config(params: dict) -> HarbourConfig:
    return build(HarbourConfig, params, NAME)


def _export(cfg: HarbourConfig, folder: Path) -> None:
    """PNGs and CSV manifests from the built-in generator (the stand-in for a lab's own data)."""
    splits = synthetic.load(synthetic.SyntheticConfig(n_train=cfg.n_train, n_val=80, n_shifted=40, n_counterfactual=8))
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for role, split_name in [("train", "train"), ("val", "val"), ("class_without_context", None),
                             ("context_without_class", None)]:
        split = splits[split_name or synthetic.ROLES[role]]
        rows = []
        for i, image_id in enumerate(split.ids):
            stem = f"{role}/{image_id}"
            (tmp / role).mkdir(exist_ok=True)
            Image.fromarray(split.images[i].permute(1, 2, 0).numpy()).save(tmp / f"{stem}.png")
            Image.fromarray(split.masks[i].numpy().astype(np.uint8)).save(tmp / f"{stem}_mask.png")
            Image.fromarray(split.context[i].numpy().astype(np.uint8) * 255).save(tmp / f"{stem}_context.png")
            labels = ";".join(c for c, on in zip(CLASSES, split.labels[i].tolist(), strict=True) if on)
            group = {"class_without_context": "boat_without_water", "context_without_class": "water_without_boat"}
            rows.append({"path": f"{stem}.png", "labels": labels, "mask_path": f"{stem}_mask.png",
                         "context_mask_path": f"{stem}_context.png", "id": image_id}
                        | ({"group": group[role]} if role in group else {}))
        name = "biased.csv" if role in ("class_without_context", "context_without_class") else f"{role}.csv"
        with (tmp / name).open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            if fh.tell() == 0:
                writer.writeheader()
            writer.writerows(rows)
    tmp.rename(folder)


def prepare(cfg: HarbourConfig, data_root: Path | None) -> None:
    folder = data_path(cfg.root, data_root)
    if not (folder / "train.csv").is_file():
        _export(cfg, folder)


def _items(path: Path) -> list[ImageItem]:
    with path.open(newline="") as fh:
        return [
            ImageItem(id=row["id"], image=manifest.inside(path.parent, row["path"], f"{path} line {n}"),
                      labels=tuple(CLASSES.index(c) for c in row["labels"].split(";") if c),
                      mask=path.parent / row["mask_path"], context=path.parent / row["context_mask_path"],
                      has_context=True, origin=f"{path} line {n}")
            for n, row in enumerate(csv.DictReader(fh), start=2)
        ]


def load(cfg: HarbourConfig, data_root: Path | None, roles: tuple[str, ...] | None = None) -> dict[str, FileSplit]:
    folder = data_path(cfg.root, data_root)
    biased = manifest.read_manifest(folder / "biased.csv", CLASSES)
    members = {"train": _items(folder / "train.csv"), "val": _items(folder / "val.csv")} | biased.groups
    settings = ViewSettings(cfg.image_size, cfg.augment, cfg.crop_scale, cfg.cache, cfg.workers)
    return {role: FileSplit.checked(role, items, CLASSES, settings, BadImages(cfg.skip_bad_images), source=str(folder))
            for role, items in members.items() if roles is None or role in roles}


register_dataset(Dataset(NAME, "PNGs and CSV manifests under <data root>/harbour-csv (example plugin)", "boat",
                         config, lambda c: resolved(c, 1), CLASSES, lambda _: "water", prepare, load))
