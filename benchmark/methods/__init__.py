"""Training methods: one small class each, and the registry the suite names them by."""

from benchmark.methods.base import HParam, Method
from benchmark.methods.gain import GAIN, GAINExt
from benchmark.methods.gradcam import GradCAMBaseline

METHODS: dict[str, type[Method]] = {m.name: m for m in (GradCAMBaseline, GAIN, GAINExt)}


def build_method(name: str, **params: object) -> Method:
    """`METHODS[name](**params)` with an error that lists the known methods."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    return METHODS[name](**params)


__all__ = ["METHODS", "HParam", "Method", "build_method"]
