"""Biased splits (folder convention and CSV manifest) and Waterbirds, loaded through the registry as a run does."""

import pytest
import torch
from real_data import (
    BOAT,
    PERSON,
    WATERBIRDS,
    biased_manifest,
    real_data_root,
    waterbirds_tree,
)

from benchmark.execute.datasets import registry
from benchmark.execute.datasets.images import DataError
from benchmark.execute.datasets.manifest import read_biased_split
from benchmark.execute.datasets.voc import CLASSES

SHIFTED = ("class_without_context", "context_without_class")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return real_data_root(tmp_path_factory.mktemp("biased"), manifest=True)


def shifted(data_root, biased_split):
    return registry.load("voc", {"image_size": 32, "biased_split": biased_split}, data_root, roles=SHIFTED)


def test_folder_convention_gives_both_groups(data_root):
    data = shifted(data_root, "biased")
    boats, water = data["class_without_context"], data["context_without_class"]
    assert boats.ids == ["boat_without_water/img0.jpg", "boat_without_water/img1.jpg"], "README.txt is ignored"
    assert water.ids == ["water_without_boat/img0.jpg", "water_without_boat/img1.jpg"]
    assert boats.labels[:, BOAT].tolist() == [1, 1] and boats.labels.sum() == 2 and water.labels.sum() == 0
    assert boats.has_context.tolist() == [False, False] and water.has_context.tolist() == [True, True]
    assert not bool(boats.pixel_labelled.any())


def test_csv_manifest_with_masks_and_context_masks(data_root):
    data = shifted(data_root, "manifest/biased.csv")
    boats, water = data["class_without_context"], data["context_without_class"]
    assert boats.ids == ["images/b0.jpg", "images/b1.jpg"] and water.ids == ["images/w0.jpg", "images/w1.jpg"]
    assert water.labels[1, PERSON] == 1 and water.labels[0].sum() == 0
    assert boats.pixel_labelled.tolist() == [True, False]
    batch = boats.batch(torch.arange(2))
    assert set(batch["mask"][0].unique().tolist()) == {0, BOAT + 1, 255} and bool((batch["mask"][1] == 255).all())
    context = water.batch(torch.arange(2))["context"]
    assert context[0, :14].sum() == 0 and bool((context[0, 18:] == 1).all()), "the lower half is water"
    assert context[1].sum() == 0, "no context mask: no context pixels known"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("images/b0.jpg,boaat,boat_without_water,,", r"line 2: unknown class 'boaat' in labels; classes: aeroplane"),
        ("../escape.jpg,boat,boat_without_water,,", r"line 2: path '../escape.jpg' escapes the manifest's folder"),
        ("images/../../x.jpg,boat,boat_without_water,,", r"path 'images/../../x.jpg' escapes"),
        ("/etc/passwd,boat,boat_without_water,,", r"path '/etc/passwd' escapes the manifest's folder"),
        ("images/b0.jpg,boat,boat_without_sky,,", r"the groups disagree: boat_without_sky and water_without_boat"),
        ("images/b0.jpg,boat,boats_near_water,,", r"group 'boats_near_water' is not <class>_without_<context>"),
        ("images/b0.jpg,person,boat_without_water,,", r"labels 'person' must hold 'boat'"),
    ],
)
def test_bad_manifest_rows_name_the_file_line_and_value(tmp_path, row, message):
    path = biased_manifest(tmp_path, [row, "images/w0.jpg,,water_without_boat,,"])
    with pytest.raises(DataError, match=message) as err:
        read_biased_split(path, CLASSES)
    assert str(path) in str(err.value)


def test_manifest_columns_and_missing_groups_are_checked(tmp_path):
    path = biased_manifest(tmp_path)
    path.write_text("path,label,group\nimages/b0.jpg,boat,boat_without_water\n")
    with pytest.raises(DataError, match=r"biased\.csv: unknown column\(s\) label; columns: path, labels, group"):
        read_biased_split(path, CLASSES)
    path.write_text("path,labels,group\nimages/b0.jpg,boat,boat_without_water\n")
    with pytest.raises(DataError, match=r"biased\.csv: no context_without_class group"):
        read_biased_split(path, CLASSES)
    with pytest.raises(DataError, match=r"biased split .*nowhere not found: expected a folder holding"):
        read_biased_split(tmp_path / "nowhere", CLASSES)


def test_waterbirds_groups_labels_and_masks(data_root):
    data = registry.load("waterbirds", {"image_size": 32, "segmentations": "segmentations"}, data_root)
    assert {role: len(split) for role, split in data.items()} == {
        "train": 6,
        "val": 2,
        "class_without_context": 1,
        "context_without_class": 1,
    }
    assert data["class_without_context"].ids == ["001.Albatross/a5.jpg"], "waterbird on land, from test"
    assert data["context_without_class"].ids == ["002.Sparrow/s5.jpg"], "landbird on water, from test"
    train = data["train"]
    assert train.classes == ("landbird", "waterbird")
    assert train.labels.tolist() == [[0, 1], [0, 1], [0, 1], [1, 0], [1, 0], [1, 0]]
    assert train.has_context.tolist() == [w[3] == 1 for w in WATERBIRDS[:6]]
    batch = train.batch(torch.arange(6))
    assert batch["mask"][0].unique().tolist() == [0, 2] and batch["mask"][3].unique().tolist() == [0, 1]
    assert bool((batch["context"][0] == (batch["mask"][0] == 0)).all()), "on water, the background is context"
    assert batch["context"][3].sum() == 0, "on land, no context"
    plain = registry.load("waterbirds", {"image_size": 32}, data_root, roles=("train",))["train"]
    assert not bool(plain.pixel_labelled.any()) and "context" not in plain.batch(torch.arange(2))


def test_waterbirds_metadata_errors_name_the_file(tmp_path):
    root = waterbirds_tree(tmp_path, segmentations=False)
    with pytest.raises(DataError, match=r"no .*nowhere/metadata\.csv .*Waterbirds comes from"):
        registry.load("waterbirds", {"root": "nowhere"}, tmp_path)
    lines = (root / "metadata.csv").read_text().splitlines()
    (root / "metadata.csv").write_text("\n".join([lines[0], lines[1].replace(",1,0,1,", ",2,0,1,")]) + "\n")
    with pytest.raises(DataError, match=r"metadata\.csv line 2: y = '2'; allowed: 0, 1"):
        registry.load("waterbirds", {}, tmp_path)
    (root / "metadata.csv").write_text("img_filename,y,split\n")
    with pytest.raises(DataError, match=r"metadata\.csv: missing column\(s\) place"):
        registry.load("waterbirds", {}, tmp_path)
    with pytest.raises(DataError, match=r"data\.segmentations: .*segs is not a folder"):
        registry.load("waterbirds", {"segmentations": "segs"}, tmp_path)
