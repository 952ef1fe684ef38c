"""PASCAL VOC 2012 from a tiny VOCdevkit in the real formats: labels from the XML, palette masks, train_aug, aligned
transforms, cache, and budget pools with their manifests."""

import pytest
import torch
from real_data import AUG_ONLY, BOAT, CAR, PERSON, TRAIN, VAL, biased_folder, voc_tree

from benchmark.core.spec import RunSpec
from benchmark.execute.datasets import registry, voc
from benchmark.execute.datasets.budgets import nested_budget, pool_rows
from benchmark.execute.datasets.images import DataError
from benchmark.execute.datasets.transforms import eval_view, train_view
from benchmark.execute.train import select_budget


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    voc_tree(root, aug=True)
    biased_folder(root)
    return root


def load(data_root, **params):
    return registry.load("voc", {"image_size": 32, "workers": 2} | params, data_root)


def test_labels_come_from_the_xml_and_masks_from_the_palette_pngs(data_root):
    splits = load(data_root)
    assert set(splits) == {"train", "val"}, "no biased split given: train and val only"
    train, val = splits["train"], splits["val"]
    assert train.ids == list(TRAIN) and val.ids == list(VAL) and train.classes == voc.CLASSES
    expected = torch.zeros(len(TRAIN), 20)
    for row, boxes in enumerate(TRAIN.values()):
        for cls, *_ in boxes:
            expected[row, cls] = 1
    assert torch.equal(train.labels, expected), "difficult objects count by default"
    assert bool(train.pixel_labelled.all()) and not bool(train.has_context.any())
    batch = val.batch(torch.arange(len(val)))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["mask"].dtype == torch.int64
    assert "context" not in batch, "VOC has no context masks"
    values = set(batch["mask"].unique().tolist())
    assert values <= {0, BOAT + 1, CAR + 1, PERSON + 1, 255} and {0, BOAT + 1, 255} <= values
    assert batch["mask"][0, 16, 12] == BOAT + 1 and batch["mask"][0, 2, 2] == 0


def test_difficult_objects_can_be_left_out(data_root):
    train = load(data_root, difficult="exclude")["train"]
    row = train.ids.index("2008_000003")
    assert train.labels[row, BOAT] == 0 and train.labels[row, PERSON] == 1


def test_train_aug_reads_sbds_list_and_its_masks_when_asked(data_root):
    voc_masks = load(data_root, train_split="train_aug")["train"]
    assert voc_masks.ids == list(TRAIN | AUG_ONLY), "SBD's '/JPEGImages/<id>.jpg ...' lines give the ids"
    assert voc_masks.pixel_labelled.tolist() == [True] * len(TRAIN) + [False] * len(AUG_ONLY)
    no_mask = voc_masks.batch(torch.tensor([len(TRAIN)]))["mask"]
    assert bool((no_mask == 255).all()), "an image without pixel labels has an all-ignore mask"
    aug = load(data_root, train_split="train_aug", pixel_labels="aug")["train"]
    assert bool(aug.pixel_labelled.all())
    assert aug.batch(torch.tensor([len(TRAIN)]))["mask"].unique().tolist() == [0, BOAT + 1, 255]


def test_train_aug_may_not_hold_val_images(tmp_path):
    root = voc_tree(tmp_path, aug=True)
    listing = root / "ImageSets/SegmentationAug/train_aug.txt"
    listing.write_text(listing.read_text() + "2008_000102\n")
    with pytest.raises(DataError, match=r"train_aug\.txt: 1 of its ids are VOC val images \(e\.g\. 2008_000102\)"):
        load(tmp_path, train_split="train_aug")


def test_transforms_keep_image_and_mask_aligned():
    h, w = 37, 53
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    mask = ((xx // 13 + yy // 9) % 3).to(torch.uint8)  # a checkerboard of three labels
    image = torch.stack([mask * 100, mask * 100, mask * 100]).to(torch.uint8)
    planes = torch.stack([mask, (mask == 2).to(torch.uint8)])
    generator = torch.Generator().manual_seed(0)
    views = [eval_view(image, planes, 24)]
    views += [train_view(image, planes, 24, torch.rand(5, generator=generator), 0.3) for _ in range(20)]
    for out_image, out_planes in views:
        assert out_image.shape == (3, 24, 24) and out_planes.shape == (2, 24, 24)
        assert set(out_planes[0].unique().tolist()) <= {0, 1, 2}, "masks are resampled nearest, never blended"
        assert torch.equal(out_planes[1], (out_planes[0] == 2).to(torch.uint8)), "context follows the mask"
        agree = ((out_image[0].float() - out_planes[0].float() * 100).abs() <= 20).float().mean()
        shifted = ((out_image[0].float() - out_planes[0].flip(-1).float() * 100).abs() <= 20).float().mean()
        assert agree > 0.7 and agree > shifted + 0.25, "the image shows the mask's label where the mask has it"
    flipped = train_view(image, planes, 24, torch.tensor([1.0, 0.5, 0.0, 0.0, 0.0]), 1.0)
    straight = train_view(image, planes, 24, torch.tensor([1.0, 0.5, 0.0, 0.0, 0.9]), 1.0)
    assert torch.equal(flipped[1], straight[1].flip(-1)) and torch.equal(flipped[0], straight[0].flip(-1))


def test_augmentation_is_seeded_and_the_cache_changes_nothing(data_root):
    plain = load(data_root)["train"]
    cached = load(data_root, cache=True)["train"]
    assert len(cached._cache) == len(cached), "the check's decode fills the cache"
    rows = torch.arange(len(plain))
    first = plain.batch(rows, generator=torch.Generator().manual_seed(3))
    again = cached.batch(rows, generator=torch.Generator().manual_seed(3))
    other = plain.batch(rows, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["mask"], again["mask"])
    assert not torch.equal(first["image"], other["image"])
    assert torch.equal(plain.batch(rows)["image"], cached.batch(rows)["image"]), "evaluation is deterministic"
    fixed = load(data_root, augment=False)["train"]
    assert torch.equal(fixed.batch(rows, generator=torch.Generator())["image"], plain.batch(rows)["image"])


def test_budget_pools_are_nested_and_written_as_manifests(data_root):
    data = load(data_root, train_split="train_aug")
    train = data["train"]
    boats = pool_rows(train.labels, train.pixel_labelled, BOAT, "class").tolist()
    assert boats == [0, 1, 2], "boat images with pixel labels (the SBD-only boat has none)"
    assert pool_rows(train.labels, train.pixel_labelled, BOAT, "pixel").tolist() == list(range(len(TRAIN)))
    order = [nested_budget(torch.tensor(boats), b, 0).tolist() for b in (1, 2, 3)]
    assert set(order[0]) <= set(order[1]) <= set(order[2])
    spec = RunSpec("gain_ext", budget=2, dataset="voc", dataset_params={"image_size": 32, "train_split": "train_aug"})
    rows, info = select_budget(spec, data, BOAT, data_root)
    manifest = info["budget"]["manifest"]
    assert manifest.startswith(str(data_root / "voc" / "budgets" / "train-class-boat-seed0-"))
    lines = open(manifest).read().splitlines()
    assert lines[0] == "rank,id" and len(lines) == 4
    assert sorted(line.split(",")[1] for line in lines[1:3]) == sorted(info["budget"]["ids"])
    assert info["budget"]["ids"] == [train.ids[r] for r in rows.tolist()] and info["budget"]["pool_size"] == 3
    assert select_budget(spec, data, BOAT, data_root)[0].tolist() == rows.tolist(), "the same file, the same rows"
    with pytest.raises(ValueError, match=r"budget 4 is larger than its pool of 3 pixel-labelled boat images"):
        select_budget(RunSpec("gain_ext", budget=4, dataset="voc"), data, BOAT, data_root)
    pixel = RunSpec("gain_ext", budget=5, dataset="voc", dataset_params={"pool": "pixel"})
    assert len(select_budget(pixel, data, BOAT, data_root)[0]) == 5
    with open(manifest, "a") as fh:
        fh.write("4,2008_000005\n")
    with pytest.raises(DataError, match="differs from the pool it was written for"):
        select_budget(spec, data, BOAT, data_root)


def test_missing_biased_split_is_noted_and_a_given_one_loads(data_root):
    data = load(data_root, biased_split="biased")
    assert len(data["class_without_context"]) == 2 and len(data["context_without_class"]) == 2
    _, info = select_budget(RunSpec("gradcam", dataset="voc"), load(data_root), BOAT, data_root)
    assert "no biased split" in info["notes"][0] and info["splits"]["train"]["images"] == len(TRAIN)
    _, info = select_budget(RunSpec("gradcam", dataset="voc"), data, BOAT, data_root)
    assert info["notes"] == []
    with pytest.raises(ValueError, match="not about the audited class 'car'"):
        select_budget(RunSpec("gradcam", dataset="voc", audited_class="car"), data, CAR, data_root)
