"""The built-in generator written as a PASCAL VOC 2012 tree, so the VOC code path (`data.name = "voc"`) runs on the
biased boats at any size, the paper's 224 px and data-set sizes included, without VOC itself.

`export(data_root, settings)` writes, under the data root:

- `VOCdevkit/VOC2012/JPEGImages/<id>.jpg` (JPEG, quality `settings.quality`) for the `train_aug` pool and val;
- `Annotations/<id>.xml`: one `<object>` per visible object, its box around its visible pixels, none difficult;
- `SegmentationClass/<id>.png`: palette PNGs (VOC class index + 1, 0 background) for the first `seg_train`
  images of the pool (VOC's segmentation `train`) and for val, as VOC has masks only for those; no 255 boundary
  band (VOC's hand-drawn outlines have one; these masks are exact);
- `ImageSets/Segmentation/{train,val}.txt` and SBD's `ImageSets/SegmentationAug/train_aug.txt` list
  (`/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png` lines; the masks it names are not written);
- `EXPORT.json`: the settings and the generator configuration the tree was drawn from;
- `voc-biased-boats/{boat_without_water,water_without_boat}/<id>.jpg` (the folder `suites/voc-paper.toml` names)
  and `voc-biased-boats/manifest.csv` (`path,labels,group,mask_path,context_mask_path,id`), whose masks give the
  shifted groups localisation scores too.

The generator's classes become VOC's: boat, car, bird and person keep their names; its trees become `pottedplant`,
VOC's only plant. The bias is the generator's (`rho`, `q`), drawn exactly as `synthetic` draws it, with the same
seeds: an export of `n` training images holds the scenes of the built-in data of `n_train = n`.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from benchmark.core.phases import phase
from benchmark.execute.datasets import synthetic
from benchmark.execute.datasets.render import CLASSES, Scene, object_parts, render
from benchmark.execute.datasets.voc import CLASSES as VOC_CLASSES

VOC_NAMES: dict[str, str] = {"boat": "boat", "car": "car", "bird": "bird", "person": "person", "tree": "pottedplant"}
"""Each generator class's VOC class."""
# generator label (class index + 1) -> VOC label (VOC class index + 1); 0 stays background
_LABELS = np.zeros(len(CLASSES) + 1, dtype=np.uint8)
for _i, _name in enumerate(CLASSES, start=1):
    _LABELS[_i] = VOC_CLASSES.index(VOC_NAMES[_name]) + 1

BIASED_FOLDER = "voc-biased-boats"
GROUPS = {"boat_without_water": "b", "water_without_boat": "w"}
SPLIT_CODE = {"train": "t", "val": "v", "boat_without_water": "b", "water_without_boat": "w"}
CHUNK = 100


@dataclass(frozen=True)
class ExportSettings:
    """Sizes and bias of an export; the defaults are VOC 2012's sizes (SBD's `train_aug` pool, VOC's 1,464
    pixel-labelled training images and 1,449 val images) at the paper's 224 px."""

    image_size: int = 224
    train_aug: int = 10582
    seg_train: int = 1464
    val: int = 1449
    shifted: int = 300
    rho: float = 0.99
    q: float = 0.05
    boat_fraction: float = 0.5
    seed: int = 0
    quality: int = 95

    def __post_init__(self) -> None:
        if not 0 < self.seg_train <= self.train_aug:
            raise ValueError(f"seg_train must be in 1..train_aug ({self.train_aug}), got {self.seg_train}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in 1..100 (JPEG), got {self.quality}")

    def generator(self) -> synthetic.SyntheticConfig:
        """The built-in data's configuration whose scenes the export holds (its counterfactual splits unused)."""
        return synthetic.SyntheticConfig(
            image_size=self.image_size,
            n_train=self.train_aug,
            n_val=self.val,
            n_shifted=self.shifted,
            rho=self.rho,
            q=self.q,
            boat_fraction=self.boat_fraction,
            seed=self.seed,
        )


def image_id(split: str, i: int) -> str:
    return f"synth_{SPLIT_CODE[split]}{i:06d}"


def _boxes(scene: Scene) -> list[tuple[str, int, int, int, int]]:
    """(VOC class, xmin, ymin, xmax, ymax) of each object's visible pixels (1-based, inclusive, as VOC's)."""
    n = scene.size
    silhouettes = [np.any([m for m, _ in object_parts(o, n)], axis=0) for o in scene.objects]
    boxes = []
    for k, (obj, shape) in enumerate(zip(scene.objects, silhouettes, strict=True)):
        visible = shape & ~np.any([np.zeros((n, n), bool), *silhouettes[k + 1 :]], axis=0)
        ys, xs = np.nonzero(visible)
        if ys.size:
            x0, y0, x1, y1 = (int(v) + 1 for v in (xs.min(), ys.min(), xs.max(), ys.max()))
            boxes.append((VOC_NAMES[obj.cls], x0, y0, x1, y1))
    return boxes


def annotation(image: str, size: int, boxes: list[tuple[str, int, int, int, int]]) -> str:
    objects = "".join(
        f"  <object>\n    <name>{escape(name)}</name>\n    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n"
        f"    <difficult>0</difficult>\n    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
        f"<ymax>{y1}</ymax></bndbox>\n  </object>\n"
        for name, x0, y0, x1, y1 in boxes
    )
    return (
        f"<annotation>\n  <folder>VOC2012</folder>\n  <filename>{image}.jpg</filename>\n"
        f"  <source><database>gain-bench synthetic biased boats</database></source>\n"
        f"  <size><width>{size}</width><height>{size}</height><depth>3</depth></size>\n"
        f"  <segmented>1</segmented>\n{objects}</annotation>\n"
    )


def _palette_png(labels: np.ndarray, path: Path) -> None:
    mask = Image.fromarray(labels, "L").convert("P")
    mask.putpalette(synthetic.VOC_PALETTE)
    synthetic.save_png(mask, path)


def _write_chunk(settings: ExportSettings, tmp: Path, split: str, start: int, stop: int) -> list[dict[str, str]]:
    """Render and write scenes `start:stop` of a split; returns manifest rows for the shifted groups."""
    voc = tmp / "VOCdevkit" / "VOC2012"
    rows = []
    for i, scene in enumerate(synthetic.scenes(settings.generator(), split, start, stop), start):
        ident = image_id(split, i)
        pixels, seg, water = render(scene)
        labels = _LABELS[seg]
        names = sorted({VOC_CLASSES[k - 1] for k in np.unique(labels) if k})
        if split in GROUPS:
            folder = tmp / BIASED_FOLDER
            Image.fromarray(pixels, "RGB").save(folder / split / f"{ident}.jpg", quality=settings.quality)
            _palette_png(labels, folder / "masks" / f"{ident}.png")
            synthetic.save_png(Image.fromarray(water * 255, "L"), folder / "context" / f"{ident}.png")
            rows.append({
                "path": f"{split}/{ident}.jpg", "labels": ";".join(names), "group": split,
                "mask_path": f"masks/{ident}.png", "context_mask_path": f"context/{ident}.png", "id": ident,
            })  # fmt: skip
            continue
        Image.fromarray(pixels, "RGB").save(voc / "JPEGImages" / f"{ident}.jpg", quality=settings.quality)
        (voc / "Annotations" / f"{ident}.xml").write_text(annotation(ident, scene.size, _boxes(scene)))
        if split == "val" or i < settings.seg_train:
            _palette_png(labels, voc / "SegmentationClass" / f"{ident}.png")
    return rows


def _sizes(settings: ExportSettings) -> dict[str, int]:
    return {"train": settings.train_aug, "val": settings.val, **dict.fromkeys(GROUPS, settings.shifted)}


def _write(settings: ExportSettings, tmp: Path) -> None:
    voc = tmp / "VOCdevkit" / "VOC2012"
    subs = ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation", "ImageSets/SegmentationAug")
    for sub in subs:
        (voc / sub).mkdir(parents=True)
    for sub in (*GROUPS, "masks", "context"):
        (tmp / BIASED_FOLDER / sub).mkdir(parents=True)
    sizes = _sizes(settings)
    parts = synthetic.write_chunks(_write_chunk, settings, tmp, sizes, CHUNK)
    ids = {s: [image_id(s, i) for i in range(n)] for s, n in sizes.items()}
    lists = voc / "ImageSets"
    (lists / "Segmentation" / "train.txt").write_text("".join(f"{i}\n" for i in ids["train"][: settings.seg_train]))
    (lists / "Segmentation" / "val.txt").write_text("".join(f"{i}\n" for i in ids["val"]))
    aug = "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ids["train"])
    (lists / "SegmentationAug" / "train_aug.txt").write_text(aug)
    with (tmp / BIASED_FOLDER / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["path", "labels", "group", "mask_path", "context_mask_path", "id"])
        writer.writeheader()
        writer.writerows(row for part in parts for row in part)
    provenance = {"settings": asdict(settings), "generator": settings.generator().to_dict(), "classes": VOC_NAMES}
    (voc / "EXPORT.json").write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")


def export(data_root: Path, settings: ExportSettings = ExportSettings()) -> Path:
    """Write the tree under `data_root` (see the module docstring) and return its `VOCdevkit/VOC2012` folder.

    Everything is written to a temporary folder beside it first and moved into place at the end, so an interrupted
    export leaves nothing half-written; an existing `VOCdevkit/VOC2012` or `voc-biased-boats` is never overwritten
    (a FileExistsError names it).
    """
    data_root = Path(data_root)
    targets = [data_root / "VOCdevkit" / "VOC2012", data_root / BIASED_FOLDER]
    for target in targets:
        if target.exists():
            raise FileExistsError(f"{target} exists; an export never overwrites data: remove it or choose another root")
    data_root.mkdir(parents=True, exist_ok=True)
    tmp = data_root / f".voc-export.tmp-{os.getpid()}-{uuid.uuid4().hex}"
    total = sum(_sizes(settings).values())
    try:
        with phase(f"exporting the built-in data as a VOC tree: {total} images of {settings.image_size} px under "
                   f"{data_root}"):  # fmt: skip
            _write(settings, tmp)
        (data_root / "VOCdevkit").mkdir(exist_ok=True)
        os.replace(tmp / "VOCdevkit" / "VOC2012", targets[0])
        os.replace(tmp / BIASED_FOLDER, targets[1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return targets[0]
