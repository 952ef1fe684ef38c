"""The built-in data written as a VOC tree (`gain-bench export-voc`) and read back through the VOC loader: the
scenes, labels, masks, lists and bias are the generator's, the layout is VOC 2012's and SBD's."""

import csv
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark import cli
from benchmark.execute.datasets import synthetic, voc
from benchmark.execute.datasets.render import render
from benchmark.execute.datasets.voc_export import VOC_NAMES, ExportSettings, export, image_id

SMALL = ExportSettings(image_size=32, train_aug=120, seg_train=40, val=30, shifted=12)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    export(root, SMALL)
    return root


def test_the_tree_has_vocs_layout_and_sizes(exported):
    base = exported / "VOCdevkit" / "VOC2012"
    assert len(list((base / "JPEGImages").glob("*.jpg"))) == SMALL.train_aug + SMALL.val
    assert len(list((base / "Annotations").glob("*.xml"))) == SMALL.train_aug + SMALL.val
    assert len(list((base / "SegmentationClass").glob("*.png"))) == SMALL.seg_train + SMALL.val, "masks: seg only"
    train = (base / "ImageSets/Segmentation/train.txt").read_text().split()
    aug = (base / "ImageSets/SegmentationAug/train_aug.txt").read_text().splitlines()
    assert train == [image_id("train", i) for i in range(SMALL.seg_train)]
    assert len(aug) == SMALL.train_aug and aug[0] == f"/JPEGImages/{train[0]}.jpg /SegmentationClassAug/{train[0]}.png"
    provenance = json.loads((base / "EXPORT.json").read_text())
    assert provenance["settings"]["seg_train"] == SMALL.seg_train
    assert provenance["generator"] == SMALL.generator().to_dict()
    with Image.open(base / "SegmentationClass" / f"{train[0]}.png") as mask:
        assert mask.mode == "P" and mask.size == (32, 32)


def test_the_voc_loader_reads_it_back_with_the_generators_labels_masks_and_bias(exported):
    cfg = voc.config({"train_split": "train_aug", "image_size": 32, "augment": False,
                      "biased_split": "voc-biased-boats/manifest.csv"})  # fmt: skip
    splits = voc.load(cfg, exported)
    train = splits["train"]
    assert len(train) == SMALL.train_aug and int(train.pixel_labelled.sum()) == SMALL.seg_train
    source = synthetic.load(SMALL.generator(), exported / "gen")["train"]
    boat = voc.CLASSES.index("boat")
    assert torch.equal(train.labels[:, boat], source.labels[:, synthetic.CLASSES.index("boat")]), "same scenes"
    for name, voc_name in VOC_NAMES.items():
        assert torch.equal(
            train.labels[:, voc.CLASSES.index(voc_name)], source.labels[:, synthetic.CLASSES.index(name)]
        )
    assert train.labels.sum(0)[[i for i, c in enumerate(voc.CLASSES) if c not in VOC_NAMES.values()]].sum() == 0
    batch = train.batch(torch.arange(SMALL.seg_train), mean=(0, 0, 0), std=(1, 1, 1))
    expected = source.masks[: SMALL.seg_train]
    for name, voc_name in VOC_NAMES.items():  # the masks are the generator's, relabelled
        ours = expected == synthetic.CLASSES.index(name) + 1
        assert torch.equal(batch["mask"] == voc.CLASSES.index(voc_name) + 1, ours)
    pixels = (batch["image"] * 255).round()
    assert (pixels - source.images[: SMALL.seg_train].float()).abs().mean() < 4, "JPEG quality 95: close to the PNGs"
    shifted = splits["class_without_context"], splits["context_without_class"]
    assert [len(s) for s in shifted] == [SMALL.shifted, SMALL.shifted]
    assert bool((shifted[0].labels[:, boat] == 1).all()) and bool((shifted[1].labels[:, boat] == 0).all())
    assert bool(shifted[1].has_context.all()) and shifted[1].has_context_masks, "the manifest's context masks"


def test_annotations_box_each_visible_object(exported):
    scene = synthetic.scenes(SMALL.generator(), "val", 3, 4)[0]
    _, seg, _ = render(scene)
    root = ET.parse(exported / "VOCdevkit/VOC2012/Annotations" / f"{image_id('val', 3)}.xml").getroot()
    names = sorted(o.findtext("name") for o in root.findall("object"))
    assert names == sorted(VOC_NAMES[o.cls] for o in scene.objects)
    for obj in root.findall("object"):
        box = obj.find("bndbox")
        x0, y0, x1, y1 = (int(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        assert 1 <= x0 <= x1 <= 32 and 1 <= y0 <= y1 <= 32
        cls = next(c for c, v in VOC_NAMES.items() if v == obj.findtext("name"))
        inside = seg[y0 - 1 : y1, x0 - 1 : x1] == synthetic.CLASSES.index(cls) + 1
        assert inside.any(), "the box holds pixels of its class"


def test_the_biased_folder_and_manifest_agree(exported):
    folder = exported / "voc-biased-boats"
    with (folder / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * SMALL.shifted
    for row in rows:
        assert (folder / row["path"]).is_file() and (folder / row["mask_path"]).is_file()
        has_boat = "boat" in row["labels"].split(";")
        assert has_boat == (row["group"] == "boat_without_water")
        water = np.asarray(Image.open(folder / row["context_mask_path"]))
        assert water.any() != has_boat, "water only in the water-without-boat group"
    by_folder = voc.read_biased_split(folder, voc.CLASSES)
    assert {k: len(v) for k, v in by_folder.groups.items()} == {
        "class_without_context": SMALL.shifted,
        "context_without_class": SMALL.shifted,
    }


def test_an_export_never_overwrites_and_the_command_says_what_it_wrote(exported, tmp_path, capsys):
    with pytest.raises(FileExistsError, match="never overwrites"):
        export(exported, SMALL)
    argv = ["export-voc", "--data-root", str(tmp_path), "--image-size", "24", "--train-aug", "20", "--seg-train", "5"]
    assert cli.main([*argv, "--val", "6", "--shifted", "3"]) == 0
    out = capsys.readouterr().out
    assert "20 train_aug, 5 with masks, 6 val" in out and "gain-bench run voc-paper" in out
    assert not list(tmp_path.glob(".voc-export.tmp-*")), "the temporary folder is gone"
    assert cli.main([*argv, "--val", "6", "--shifted", "3"]) == 2, "a second export into the same root is refused"
    assert "exists" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"seg_train must be in 1\.\.train_aug"):
        ExportSettings(train_aug=10, seg_train=11)
