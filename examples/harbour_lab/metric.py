"""A localisation metric from outside the package: how spread out the class's Grad-CAM map is.

`map_entropy` is the entropy of the map normalised to sum 1 over the pixels that count, divided by the largest
entropy those pixels allow (an even map), so it runs from 0 (all the map's mass on one pixel) to 1 (spread evenly).
An all-zero map points nowhere: 1. An image without the class has nothing to localise: NaN, as the built-in
metrics. Registered, it is written per image into `predictions.csv`, averaged into each record and shown in
`gain-bench table` and the report's localisation table, beside relevance mass and the pointing game.
"""

import math

import torch

from benchmark.api import register_metric


@register_metric(
    label="map entropy (0 focused, 1 even)",
    short="map entropy",
    higher_is_better=False,
    definition="entropy of the class's Grad-CAM map normalised to sum 1, over the largest entropy of its pixels",
)
def map_entropy(maps: torch.Tensor, region: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    weights = (maps * valid.to(maps.dtype)).flatten(1)
    total = weights.sum(1)
    p = weights / total.clamp_min(1e-30).unsqueeze(1)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(1)
    pixels = valid.flatten(1).sum(1).to(maps.dtype).clamp_min(2)
    spread = torch.where(total > 0, entropy / torch.log(pixels), torch.ones_like(total))
    has_object = (region.to(torch.bool) & valid.to(torch.bool)).flatten(1).any(1)
    return torch.where(has_object, spread.clamp(0, 1), torch.full_like(spread, math.nan))
