"""The plugin API: what a method, model, dataset or metric from outside the package imports, from one place that
stays where it is when the package's modules move (docs/plugins.md, docs/extending.md; `examples/harbour_lab` uses
nothing else). Each name is the package's own object, re-exported; a test checks every one resolves."""

from benchmark.core.registry import register_dataset, register_method, register_metric, register_model
from benchmark.core.settings import SettingsError, boolean, choice, integer, number, text
from benchmark.execute.attention import grad_cam
from benchmark.execute.datasets import manifest, synthetic
from benchmark.execute.datasets.files import FileSplit, ViewSettings
from benchmark.execute.datasets.images import BadImages, ImageItem
from benchmark.execute.datasets.params import ROOT as PATH_KEY_DOC
from benchmark.execute.datasets.params import FileDataConfig, build, data_path, resolved
from benchmark.execute.datasets.registry import Dataset
from benchmark.execute.methods.base import HParam, Method, classification_loss
from benchmark.execute.models import SYNTHETIC_MEAN, SYNTHETIC_STD, SplitModel

__all__ = [
    "PATH_KEY_DOC",
    "SYNTHETIC_MEAN",
    "SYNTHETIC_STD",
    "BadImages",
    "Dataset",
    "FileDataConfig",
    "FileSplit",
    "HParam",
    "ImageItem",
    "Method",
    "SettingsError",
    "SplitModel",
    "ViewSettings",
    "boolean",
    "build",
    "choice",
    "classification_loss",
    "data_path",
    "grad_cam",
    "integer",
    "manifest",
    "number",
    "register_dataset",
    "register_method",
    "register_metric",
    "register_model",
    "resolved",
    "synthetic",
    "text",
]
