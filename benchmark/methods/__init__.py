"""Training methods: one small class each, and the registry the suite names them by."""

from benchmark.methods.ablations import AMOnly, ExtOnly
from benchmark.methods.base import HParam, Method
from benchmark.methods.counterfactual import CopyPaste, Counterfactual, ObjectRemoval
from benchmark.methods.gain import GAIN, GAINExt
from benchmark.methods.gradcam import GradCAMBaseline
from benchmark.methods.rrr import RRR

METHODS: dict[str, type[Method]] = {
    m.name: m for m in (GradCAMBaseline, GAIN, GAINExt, CopyPaste, ObjectRemoval, Counterfactual, RRR, ExtOnly, AMOnly)
}


def build_method(name: str, **params: object) -> Method:
    """`METHODS[name](**params)` with an error that lists the known methods."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    return METHODS[name](**params)


__all__ = ["METHODS", "HParam", "Method", "build_method"]
