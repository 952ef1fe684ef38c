"""Tiny datasets in the real formats, written by the tests: a VOCdevkit tree (JPEGs, XML annotations, palette PNG
masks, split lists, SBD's train_aug list and grey masks), a biased split folder and CSV manifest, and a Waterbirds
tree (metadata.csv, CUB-style grey silhouettes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.execute.datasets.synthetic import VOC_PALETTE
from benchmark.execute.datasets.voc import CLASSES

W, H = 40, 30
BOAT, PERSON, CAR = CLASSES.index("boat"), CLASSES.index("person"), CLASSES.index("car")
# id -> boxes; the boat images are on water (blue lower half).
TRAIN = {
    "2008_000001": [(BOAT, 0, 5, 8, 20, 20)],
    "2008_000002": [(BOAT, 0, 15, 10, 35, 22), (PERSON, 0, 2, 2, 8, 14)],
    "2008_000003": [(BOAT, 1, 10, 10, 20, 18), (PERSON, 0, 22, 4, 30, 20)],
    "2008_000004": [(CAR, 0, 4, 14, 24, 26)],
    "2008_000005": [(PERSON, 0, 12, 3, 22, 27)],
    "2008_000006": [(CAR, 0, 20, 12, 36, 25), (PERSON, 0, 4, 4, 10, 20)],
}
VAL = {
    "2008_000101": [(BOAT, 0, 6, 10, 22, 21)],
    "2008_000102": [(CAR, 0, 8, 12, 30, 25)],
    "2008_000103": [(PERSON, 0, 10, 2, 20, 28)],
    "2008_000104": [(BOAT, 0, 18, 12, 36, 24), (CAR, 0, 1, 16, 12, 26)],
}
AUG_ONLY = {  # train_aug images outside VOC's segmentation train: SBD masks only
    "2009_000201": [(BOAT, 0, 8, 10, 28, 22)],
    "2009_000202": [(CAR, 0, 5, 12, 25, 26)],
}


Box = tuple[int, int, int, int, int, int]  # class index, difficult, x0, y0, x1, y1


def image(seed: int, water: bool, boxes: list[Box], w: int = W, h: int = H) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.empty((h, w, 3), np.uint8)
    pixels[: h // 2] = (150, 190, 235)
    pixels[h // 2 :] = (30, 80, 160) if water else (90, 150, 60)
    for cls, _, x0, y0, x1, y1 in boxes:
        pixels[y0:y1, x0:x1] = (40 + 10 * cls, 200 - 5 * cls, 30)
    pixels = np.clip(pixels.astype(int) + rng.integers(-8, 9, pixels.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def index_mask(boxes: list[Box], w: int = W, h: int = H) -> np.ndarray:
    """Class index + 1 inside each box, a 1 px ignore (255) border around it, 0 elsewhere."""
    mask = np.zeros((h, w), np.uint8)
    for cls, _, x0, y0, x1, y1 in boxes:
        mask[max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1] = 255
        mask[y0:y1, x0:x1] = cls + 1
    return mask


def palette_png(mask: np.ndarray, path: Path) -> None:
    im = Image.fromarray(mask, "L").convert("P")
    im.putpalette(VOC_PALETTE)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def annotation(image_id: str, boxes: list[Box]) -> str:
    objects = "".join(
        f"<object><name>{CLASSES[cls]}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
        f"<ymax>{y1}</ymax></bndbox><part><name>head</name></part></object>"
        for cls, difficult, x0, y0, x1, y1 in boxes
    )
    return (
        f"<annotation><folder>VOC2012</folder><filename>{image_id}.jpg</filename>"
        f"<size><width>{W}</width><height>{H}</height><depth>3</depth></size>{objects}</annotation>"
    )


def voc_tree(data_root: Path, *, aug: bool = False) -> Path:
    """`<data_root>/VOCdevkit/VOC2012` with TRAIN and VAL (and with `aug`, SBD's train_aug list and masks)."""
    root = data_root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    everything = TRAIN | VAL | (AUG_ONLY if aug else {})
    for n, (image_id, boxes) in enumerate(everything.items()):
        water = any(cls == BOAT for cls, *_ in boxes)
        image(n, water, boxes).save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
        (root / "Annotations" / f"{image_id}.xml").write_text(annotation(image_id, boxes))
        if image_id not in AUG_ONLY:
            palette_png(index_mask(boxes), root / "SegmentationClass" / f"{image_id}.png")
    (root / "ImageSets/Segmentation/train.txt").write_text("".join(f"{i}\n" for i in TRAIN))
    (root / "ImageSets/Segmentation/val.txt").write_text("".join(f"{i}\n" for i in VAL))
    if aug:
        aug_dir = root / "SegmentationClassAug"
        aug_dir.mkdir(exist_ok=True)
        for image_id, boxes in (TRAIN | AUG_ONLY).items():
            Image.fromarray(index_mask(boxes), "L").save(aug_dir / f"{image_id}.png")
        lists = root / "ImageSets" / "SegmentationAug"
        lists.mkdir(parents=True, exist_ok=True)
        lines = [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in (TRAIN | AUG_ONLY)]
        (lists / "train_aug.txt").write_text("".join(lines))
    return root


def biased_folder(data_root: Path, name: str = "biased", n: int = 2) -> Path:
    """`<data_root>/<name>/{boat_without_water,water_without_boat}/` with `n` JPEGs each (and a stray README)."""
    folder = data_root / name
    for k, group in enumerate(("boat_without_water", "water_without_boat")):
        (folder / group).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            boxes = [(BOAT, 0, 10, 10, 25, 20)] if k == 0 else []
            image(100 + 10 * k + i, k == 1, boxes).save(folder / group / f"img{i}.jpg")
    (folder / "README.txt").write_text("not an image\n")
    return folder


def biased_manifest(data_root: Path, rows: list[str] | None = None) -> Path:
    """`<data_root>/manifest/biased.csv` over images in `images/`, with pixel and context masks for the first row."""
    folder = data_root / "manifest"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    boxes = [(BOAT, 0, 10, 10, 25, 20)]
    image(1, False, boxes).save(folder / "images" / "b0.jpg")
    image(2, False, boxes).save(folder / "images" / "b1.jpg")
    image(3, True, []).save(folder / "images" / "w0.jpg")
    image(4, True, [(PERSON, 0, 2, 2, 8, 14)]).save(folder / "images" / "w1.jpg")
    palette_png(index_mask(boxes), folder / "masks" / "b0.png")
    water = np.zeros((H, W), np.uint8)
    water[H // 2 :] = 1
    Image.fromarray(water * 255, "L").save(folder / "masks" / "w0_water.png")
    rows = rows or [
        "images/b0.jpg,boat,boat_without_water,masks/b0.png,",
        "images/b1.jpg,boat,boat_without_water,,",
        "images/w0.jpg,,water_without_boat,,masks/w0_water.png",
        "images/w1.jpg,person,water_without_boat,,",
    ]
    path = folder / "biased.csv"
    path.write_text("path,labels,group,mask_path,context_mask_path\n" + "\n".join(rows) + "\n")
    return path


# img_filename, y (1 waterbird), split (0 train, 1 val, 2 test), place (1 water)
WATERBIRDS = [
    ("001.Albatross/a1.jpg", 1, 0, 1),
    ("001.Albatross/a2.jpg", 1, 0, 1),
    ("001.Albatross/a3.jpg", 1, 0, 0),
    ("002.Sparrow/s1.jpg", 0, 0, 0),
    ("002.Sparrow/s2.jpg", 0, 0, 0),
    ("002.Sparrow/s3.jpg", 0, 0, 1),
    ("001.Albatross/a4.jpg", 1, 1, 1),
    ("002.Sparrow/s4.jpg", 0, 1, 0),
    ("001.Albatross/a5.jpg", 1, 2, 0),
    ("001.Albatross/a6.jpg", 1, 2, 1),
    ("002.Sparrow/s5.jpg", 0, 2, 1),
    ("002.Sparrow/s6.jpg", 0, 2, 0),
]


def waterbirds_tree(data_root: Path, *, segmentations: bool = True) -> Path:
    """`<data_root>/waterbird_complete95_forest2water2/` and (optionally) CUB's `<data_root>/segmentations/`."""
    root = data_root / "waterbird_complete95_forest2water2"
    lines = ["img_id,img_filename,y,split,place,place_filename"]
    for n, (name, y, split, place) in enumerate(WATERBIRDS):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        image(200 + n, bool(place), [(BOAT, 0, 12, 8, 28, 20)]).save(root / name)
        lines.append(f"{n + 1},{name},{y},{split},{place},/x/place{n}.jpg")
        if segmentations:
            silhouette = np.zeros((H, W), np.uint8)
            silhouette[8:20, 12:28] = 255
            silhouette[8, 12] = 100  # soft annotator disagreement: below 128 is background
            seg = data_root / "segmentations" / Path(name).with_suffix(".png")
            seg.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(silhouette, "L").save(seg)
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def real_data_root(root: Path, *, manifest: bool = False) -> Path:
    """`root` holding a VOCdevkit tree, a biased-split folder (and, with `manifest`, a CSV manifest) and a Waterbirds
    tree: the data the real-dataset tests share."""
    voc_tree(root)
    biased_folder(root)
    if manifest:
        biased_manifest(root)
    waterbirds_tree(root)
    return root
