"""What a label costs: seconds of annotation per image, by annotation type, with where each figure comes from.

A suite may give its budgets in seconds of annotation time (`budget_seconds`) instead of images: each method entry
then gets as many images as its labels' time buys (`images_for`), so a box budget holds more images than a mask
budget of the same time. Every figure is the time on top of the image-level labels a classifier is trained with
anyway (every training image has them here), per image of PASCAL VOC 2012 as the sources report it. A suite's
`[label_costs]` table overrides any of them (`settings.LabelCosts`); `docs/methods.md` prints this table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

IMAGE_LEVEL = 20.0  # s per VOC image for its 20 image-level class labels, 1 s a class (Bearman et al., ECCV 2016)
FULL_MASKS = 239.7  # s per VOC image with full masks, image-level labels included (Bearman et al.)
POINTS = 22.1  # s per VOC image with one point on each class present, image-level labels included (Bearman et al.)
SQUIGGLES = 34.9  # s per VOC image with a squiggle on each class present, likewise (Bearman et al.)
POLYGON_PER_OBJECT = 79.0  # s per object outlined with a polygon (Lin et al., ECCV 2014, COCO: 22 h per 1000)
BOX_PER_OBJECT = 7.0  # s per box by extreme clicking (Papadopoulos et al., ICCV 2017)
OBJECTS_PER_IMAGE = (FULL_MASKS - IMAGE_LEVEL) / POLYGON_PER_OBJECT  # the objects per image Bearman's mask time holds


@dataclass(frozen=True)
class Cost:
    """Seconds per image of one kind of label (to a tenth of a second), and how it is derived from its sources."""

    seconds: float
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "seconds", round(self.seconds, 1))


LABEL_COSTS: dict[str, Cost] = {
    "mask": Cost(FULL_MASKS - IMAGE_LEVEL, "Bearman et al. (ECCV 2016): full supervision of a VOC image, 239.7 s, less "
                 "its 20.0 s of image-level labels; their figure is COCO's polygon time per object (Lin et al., ECCV "
                 "2014) times the objects of an image"),
    "box": Cost(BOX_PER_OBJECT * OBJECTS_PER_IMAGE, "Papadopoulos et al. (ICCV 2017): 7.0 s per box by extreme "
                "clicking, times the objects per image Bearman et al.'s mask time holds ((239.7 - 20.0) / 79)"),
    "points": Cost(POINTS - IMAGE_LEVEL, "Bearman et al.: one point per class present, 22.1 s per VOC image, less its "
                   "20.0 s of image-level labels"),
    "scribble": Cost(SQUIGGLES - IMAGE_LEVEL, "Bearman et al.: squiggles, 34.9 s per VOC image, less its 20.0 s of "
                     "image-level labels"),
    "coarse": Cost(BOX_PER_OBJECT * OBJECTS_PER_IMAGE, "as a box: a coarse outline of a few clicks per object, "
                   "about what extreme clicking's four take; an assumption of this project, not a measured time"),
    "group": Cost(IMAGE_LEVEL / 20, "one image-level question (is the context in the image?): 1 s, as Bearman et al. "
                  "time an image-level label per class; DFR's group labels cost this"),
}
"""Seconds per image of each annotation type (`settings.ANNOTATIONS`) and of a group label ("group")."""


def images_for(seconds: float, cost: float) -> int:
    """How many images `seconds` of annotation buy at `cost` seconds each (whole images only)."""
    return math.floor(seconds / cost + 1e-9)


def costs_table(costs: dict[str, float] | None = None) -> str:
    """The cost table as Markdown: label, seconds per image, images an hour buys, source (`costs` overrides)."""
    lines = ["| label | seconds per image | images an hour buys | source |", "|---|---|---|---|"]
    for name, cost in LABEL_COSTS.items():
        seconds = (costs or {}).get(name, cost.seconds)
        lines.append(f"| `{name}` | {seconds:.1f} | {images_for(3600, seconds)} | {cost.source} |")
    return "\n".join(lines) + "\n"
