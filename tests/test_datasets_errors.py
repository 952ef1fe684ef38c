"""Bad data is refused with a message that names the file (and where it was listed) and what is wrong; a bad image is
skipped only when the user asks, and then counted."""

import numpy as np
import pytest
from PIL import Image
from real_data import VAL, palette_png, voc_tree

from benchmark.execute.datasets import registry
from benchmark.execute.datasets.images import DataError

BAD_ID = "2008_000102"  # a val image


@pytest.fixture
def root(tmp_path):
    return voc_tree(tmp_path)


def load_val(root, **params):
    return registry.load("voc", {"image_size": 32, "workers": 1} | params, root.parent.parent, roles=("val",))


def test_missing_root_explains_the_layout_and_where_voc_comes_from(tmp_path):
    with pytest.raises(DataError) as err:
        registry.load("voc", {}, tmp_path)
    message = str(err.value)
    assert f"PASCAL VOC 2012 not found at {tmp_path / 'VOCdevkit/VOC2012'}" in message
    assert "--data-root or $GAIN_BENCH_DATA" in message and "JPEGImages, Annotations, SegmentationClass" in message
    assert "host.robots.ox.ac.uk/pascal/VOC/voc2012" in message and "downloads nothing" in message


def test_missing_folder_and_list_are_named(root):
    (root / "ImageSets/Segmentation/val.txt").unlink()
    with pytest.raises(DataError, match=r"split list .*ImageSets/Segmentation/val\.txt is missing"):
        load_val(root)
    (root / "SegmentationClass").rename(root / "SegClass")
    with pytest.raises(DataError, match=r"VOC2012: no SegmentationClass/ folder; expected layout"):
        load_val(root)


def test_a_listed_image_that_is_absent_names_the_file_and_the_list(root):
    (root / "JPEGImages" / f"{BAD_ID}.jpg").unlink()
    listed = r"\(listed in .*val\.txt line 2\)"
    with pytest.raises(DataError, match=rf"JPEGImages/{BAD_ID}\.jpg {listed}: image file is missing"):
        load_val(root)
    (root / "Annotations" / f"{BAD_ID}.xml").unlink()
    with pytest.raises(DataError, match=rf"Annotations/{BAD_ID}\.xml {listed}: annotation file"):
        load_val(root)


def test_corrupt_and_truncated_files_name_the_file(root):
    jpeg = root / "JPEGImages" / f"{BAD_ID}.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) // 2])
    with pytest.raises(DataError, match=rf"{BAD_ID}\.jpg .*corrupt or truncated image"):
        load_val(root)
    jpeg.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=rf"{BAD_ID}\.jpg .*not a readable image"):
        load_val(root)
    voc_tree(root.parent.parent)
    png = root / "SegmentationClass" / f"{BAD_ID}.png"
    png.write_bytes(png.read_bytes()[:-30])
    with pytest.raises(DataError, match=rf"SegmentationClass/{BAD_ID}\.png .*corrupt or truncated mask"):
        load_val(root)
    xml = root / "Annotations" / "2008_000103.xml"
    xml.write_text(xml.read_text().replace("person", "persn"))
    with pytest.raises(DataError, match=r"2008_000103\.xml .*unknown class 'persn'; VOC classes: aeroplane"):
        load_val(root)
    xml.write_text("<annotation><object>")
    with pytest.raises(DataError, match=r"2008_000103\.xml .*not a readable VOC annotation"):
        load_val(root)


def test_mask_size_values_and_mode_are_checked(root):
    png = root / "SegmentationClass" / f"{BAD_ID}.png"
    palette_png(np.zeros((20, 40), np.uint8), png)
    with pytest.raises(DataError, match=rf"{BAD_ID}\.png .*mask size 40x20 differs from its image's 40x30"):
        load_val(root)
    mask = np.zeros((30, 40), np.uint8)
    mask[3, 3], mask[4, 4] = 21, 254
    palette_png(mask, png)
    with pytest.raises(DataError, match=r"mask values 21, 254 out of range; allowed: 0 \(background\), 1\.\.20"):
        load_val(root)
    Image.fromarray(np.zeros((30, 40, 3), np.uint8), "RGB").save(png)
    with pytest.raises(DataError, match=r"mask mode 'RGB'; expected a palette \(P\) or grey \(L\) PNG"):
        load_val(root)


def test_an_empty_split_is_refused(root):
    (root / "ImageSets/Segmentation/val.txt").write_text("\n\n")
    with pytest.raises(DataError, match=r"split list .*val\.txt names no images"):
        load_val(root)


def test_bad_images_are_skipped_and_counted_only_when_asked(root):
    (root / "JPEGImages" / f"{BAD_ID}.jpg").write_bytes(b"broken")
    with pytest.raises(DataError, match=BAD_ID):
        load_val(root)
    val = load_val(root, skip_bad_images=True)["val"]
    assert val.ids == [i for i in VAL if i != BAD_ID]
    assert [s["id"] for s in val.skipped] == [BAD_ID] and "not a readable image" in val.skipped[0]["reason"]
    assert val.info() == {"images": 3, "pixel_labelled": 3, "source": str(root / "ImageSets/Segmentation/val.txt"),
                          "skipped": 1}  # fmt: skip
    for image_id in VAL:
        (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(b"broken")
    with pytest.raises(DataError, match=r"split 'val' .*: all 4 images are bad and were skipped"):
        load_val(root, skip_bad_images=True)
