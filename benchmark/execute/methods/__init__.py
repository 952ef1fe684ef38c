"""Training methods: one small class each, and the registry the suite names them by."""

from benchmark.core.registry import METHODS, register_method
from benchmark.execute.methods.ablations import AMOnly, ExtOnly
from benchmark.execute.methods.base import HParam, Method
from benchmark.execute.methods.counterfactual import CopyPaste, Counterfactual, ObjectRemoval
from benchmark.execute.methods.dfr import DFR, DFRCounterfactual
from benchmark.execute.methods.energy import Energy
from benchmark.execute.methods.forgetting import L2SP, BeforeFineTuning, EarlyStopping, LinearProbe
from benchmark.execute.methods.gain import GAIN, GAINExt
from benchmark.execute.methods.gradcam import GradCAMBaseline
from benchmark.execute.methods.jtt import JTT
from benchmark.execute.methods.rrr import RRR

# The paper's three first (the report's order), with their names and colours in every table and figure.
register_method(GradCAMBaseline, display="Grad-CAM", colour="#0072B2")
register_method(GAIN, display="GAIN", colour="#E69F00")
register_method(GAINExt, display="GAIN_ext", colour="#009E73")
for _method in (CopyPaste, ObjectRemoval, Counterfactual, RRR, ExtOnly, AMOnly):
    register_method(_method)
register_method(Energy, display="Energy")
register_method(DFR, display="DFR")
register_method(DFRCounterfactual, display="DFR (counterfactual)")
register_method(BeforeFineTuning, display="before fine-tuning", colour="#999999")
register_method(LinearProbe, display="linear probe")
register_method(L2SP, display="L2-SP")
register_method(EarlyStopping, display="early stopping")
register_method(JTT, display="JTT")


def build_method(name: str, **params: object) -> Method:
    """`METHODS[name](**params)` with an error that lists the known methods."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(METHODS))}")
    return METHODS[name](**params)


__all__ = ["METHODS", "HParam", "Method", "build_method"]
