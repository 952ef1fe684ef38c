"""RunSpec: everything that defines one run, its readable `run_id` and the `config_hash` of what changes its result."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmark import __version__
from benchmark.core.registry import DATASETS, METHODS, MODELS, origins
from benchmark.core.settings import ANNOTATIONS, MASK_CONTROLS, SEED_SCOPES, TrainSettings

# The built-in biased dataset: every default names it.
BUILTIN_DATA = "synthetic-boats"


# Train keys that do not change a run's result: left out of its config hash and its label.
OBSERVATIONAL = ("diagnostics",)
# the suite name of the pre-training runs (benchmark.execute.pretrain), cached apart from suites
PRETRAIN_SUITE = "pretrained"
# Train keys that change a result but came after results existed: left out of records and hashes at their default,
# so every earlier run keeps its id.
ADDED_LATER = ("precision",)


@dataclass(frozen=True, eq=False)
class RunSpec:
    """One run: dataset, model, method and its parameters, pixel-label budget, seed and training settings; a trial
    of a hyperparameter search also holds `search`: its group, trial index and drawn values (see
    `benchmark.execute.search`);
    `mask_control` is the placebo-mask control of the budget's masks (`settings.MASK_CONTROLS`, "true": none; see
    `benchmark.execute.datasets.mask_controls`); `seed_scope` what the seed redraws (`replicate_seeds`); `annotation`
    the annotation type the budget's masks are replaced by, with its setting (`{"type": "coarse", "dilate": 2}`; empty:
    the true masks; see `benchmark.execute.datasets.annotations`)."""

    method: str
    budget: int = 0
    seed: int = 0
    method_params: dict[str, Any] = field(default_factory=dict)
    dataset: str = BUILTIN_DATA
    dataset_params: dict[str, Any] = field(default_factory=dict)
    model: str = "small_cnn"
    model_params: dict[str, Any] = field(default_factory=dict)
    train: TrainSettings = field(default_factory=TrainSettings)
    audited_class: str = "boat"
    budget_seed: int = 0
    suite: str = "adhoc"
    search: dict[str, Any] = field(default_factory=dict)
    mask_control: str = "true"
    seed_scope: str = "train"
    annotation: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mask_control not in MASK_CONTROLS:
            raise ValueError(f"data.mask_control = {self.mask_control!r}: allowed: {', '.join(MASK_CONTROLS)}")
        if self.annotation and self.annotation.get("type") not in ANNOTATIONS[1:]:
            raise ValueError(f"annotation = {self.annotation!r}: its type must be one of {', '.join(ANNOTATIONS[1:])} "
                             "(the true masks: no annotation entry)")
        if self.seed_scope not in SEED_SCOPES:
            raise ValueError(f"seed_scope = {self.seed_scope!r}: allowed: {', '.join(SEED_SCOPES)}")

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data; `search` only where the run is a trial of a hyperparameter search, and
        `mask_control` only where it is not "true" and `seed_scope` only where it is not "train", so a run keeps
        the dict (and the `config_hash`) it had before searches, mask controls and full replicates existed."""
        data = asdict(self)
        if not self.search:
            del data["search"]
        if self.mask_control == "true":
            del data["mask_control"]
        if self.seed_scope == "train":
            del data["seed_scope"]
        if not self.annotation:
            del data["annotation"]
        for key in (*OBSERVATIONAL, *ADDED_LATER):  # at their default, records and hashes stay as before the key
            if data["train"][key] == getattr(TrainSettings, key):
                del data["train"][key]
        return data

    @property
    def pretrain_seed(self) -> int:
        """The training seed of the pre-training this run starts from: its own seed in a full replicate, else 0
        (one pre-trained model shared by every run of the setting)."""
        return self.seed if self.seed_scope == "full" else 0

    def replicate(self) -> dict[str, Any]:
        """What this run's seed drew (`seed_scope`): the record's `replicate` entry."""
        return {
            "seed_scope": self.seed_scope,
            "seed": self.seed,
            "data_seed": self.dataset_params.get("seed", 0) if has_data_seed(self.dataset) else None,
            "budget_seed": self.budget_seed,
            "pretrain_seed": self.pretrain_seed,
        }

    @property
    def trial(self) -> int | None:
        """The trial index within its search group (`search.py`), None outside a search."""
        return self.search.get("trial")

    def resolved(self) -> dict[str, Any]:
        """Everything that changes the result, with every default filled in, so that spelling a default out (or
        `rho=1` for `rho=1.0`) does not change the hash; the data generator's digest and the code version included.
        A search trial's `search` is included (its record also holds the selection splits' scores). Raises
        ValueError naming any unknown method, model or data key."""
        entry = DATASETS.entry(self.dataset).obj
        model_params = build_model_params(self.model, self.model_params)
        payload = {k: v for k, v in self.to_dict().items() if k != "suite"}
        payload["train"] = {k: v for k, v in payload["train"].items() if k not in OBSERVATIONAL}
        payload.update(
            method_params=METHODS.entry(self.method).obj(**self.method_params).params,
            dataset_params=entry.resolved(entry.config(self.dataset_params)),
            model_params=model_params,
            code=__version__,
        )
        plugins = origins({"method": self.method, "model": self.model, "dataset": self.dataset})
        if plugins:  # built-in runs keep the hash they had before plugins existed
            payload["plugins"] = plugins
        return payload

    @functools.cached_property
    def config_hash(self) -> str:
        """sha256 of `resolved()` (the suite's name does not change a result, so it is left out)."""
        return hashlib.sha256(json.dumps(self.resolved(), sort_keys=True, default=str).encode()).hexdigest()[:16]

    @functools.cached_property
    def run_id(self) -> str:
        """Readable and unique: `gain_ext-b78-s1-<first 6 of config_hash>`; two configurations never share a folder.
        A pre-training run (`PRETRAIN_SUITE`, plain classification of the corpus) is `pretrain-b0-s<seed>-<hash>`."""
        name = "pretrain" if self.suite == PRETRAIN_SUITE else self.method
        return f"{name}-b{self.budget}-s{self.seed}-{self.config_hash[:6]}"

    @property
    def method_label(self) -> str:
        """Method, budget and the method parameters given: a configuration's name within one suite, where the data,
        model and training settings are shared."""
        extras = "".join(f" {k}={v}" for k, v in sorted(self.method_params.items()))
        control = f" mask_control={self.mask_control}" if self.mask_control != "true" else ""
        return self.method + (f"-{self.budget}" if self.budget else "") + extras + control + self.annotation_label

    @property
    def annotation_label(self) -> str:
        """" annotation=box" (with its setting: " annotation=coarse-2px"), "" for the true masks."""
        if not self.annotation:
            return ""
        dilate = self.annotation.get("dilate")
        return f" annotation={self.annotation['type']}" + (f"-{dilate}px" if dilate is not None else "")

    @property
    def label(self) -> str:
        """Method and budget plus whatever differs from the defaults, without the seed: one configuration's name."""
        label = self.method + (f"-{self.budget}" if self.budget else "")
        extras = {
            **self.method_params,
            **{f"data.{k}": v for k, v in self.dataset_params.items()},
            **{f"model.{k}": v for k, v in self.model_params.items()},
        }
        extras |= {
            f"train.{k}": v
            for k, v in asdict(self.train).items()
            if v != getattr(TrainSettings(), k) and k not in OBSERVATIONAL
        }
        if self.model != "small_cnn":
            extras["model"] = self.model
        if self.budget_seed:
            extras["budget_seed"] = self.budget_seed
        if self.mask_control != "true":
            extras["mask_control"] = self.mask_control
        if self.annotation:
            extras["annotation"] = self.annotation_label.split("=", 1)[1]
        if self.seed_scope != "train":  # a full replicate's data and budget seeds follow its seed: their base shows
            extras["seed_scope"] = self.seed_scope
            base = replicate_bases(self.to_dict())
            extras = {k: v for k, v in extras.items() if k not in ("data.seed", "budget_seed")}
            extras |= {k: v for k, v in (("data.seed", base["data_seed"]), ("budget_seed", base["budget_seed"])) if v}
        return label + "".join(f" {k}={v}" for k, v in sorted(flat_keys(extras).items()))  # no space in a value

    @classmethod
    def from_record(cls, data: dict[str, Any], config_hash: str) -> RunSpec:
        """A spec as a results folder holds it, with the `config_hash` it was run under: never recomputed, so reading
        a results folder needs no registry (and neither the plugins nor torch)."""
        spec = cls.from_dict(data)
        spec.__dict__["config_hash"] = config_hash  # what the cached property would hold
        return spec

    def keys(self) -> dict[str, str]:
        """The configuration and pairing keys (`configuration_key`, `pairing_key`), written beside the spec so that
        the analysis groups and pairs runs without resolving defaults."""
        data = self.to_dict()
        return {"configuration": configuration_key(data), "pairing": pairing_key(data)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        data = dict(data)
        data["train"] = TrainSettings.from_dict(data.get("train", {}))
        return cls(**data)


def flat_keys(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys: `{"model": {"pretrain": {"corpus": "biased"}}}` is
    `{"model.pretrain.corpus": "biased"}` (an empty table has no key)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, inner in value.items():
        out |= flat_keys(inner, f"{prefix}.{key}" if prefix else str(key))
    return out


SPEC_SECTIONS = {"data": "dataset_params", "model": "model_params", "train": "train"}
"""A suite section (`data.seed`) -> the field of a run's spec (`RunSpec.to_dict()`, a record's `spec`) holding its
keys."""


def configuration_key(spec: dict[str, Any]) -> str:
    """A run's configuration as a stable string: everything in its spec (`RunSpec.to_dict()` or a record's `spec`)
    but the seed and the suite's name, so the seeds of one configuration share it; method, model and data
    parameters that equal their defaults are left out, so that spelling a default out (`model.init = "scratch"`)
    does not split a configuration, as it does not change `config_hash`."""
    canonical = {k: v for k, v in spec.items() if k not in ("seed", "suite")}
    if spec.get("seed_scope", "train") != "train":  # the replicate's own seeds are its seed's: keep their bases
        base = replicate_bases(spec)
        canonical["budget_seed"] = base["budget_seed"]
        if base["data_seed"] is not None:
            canonical["dataset_params"] = dict(canonical.get("dataset_params", {})) | {"seed": base["data_seed"]}
    for key, defaults in (
        ("method_params", _method_defaults(canonical.get("method"))),
        ("model_params", _model_defaults(canonical.get("model", "small_cnn"))),
        ("dataset_params", _data_defaults(canonical.get("dataset", BUILTIN_DATA))),
    ):
        params = canonical.get(key)
        if isinstance(params, dict) and defaults:
            if key == "model_params":  # `init = "imagenet"` and `weights = "imagenet"` are one setting
                params = _resolved_model_params(canonical.get("model", "small_cnn"), params)
            canonical[key] = {k: v for k, v in params.items() if k not in defaults or defaults[k] != v}
    return json.dumps(canonical, sort_keys=True, default=str)


def has_data_seed(dataset: str) -> bool:
    """Whether the dataset draws its images from a seed of its own (`data.seed`: the built-in generator, a
    plugin's generator); a file-based data set (VOC) does not, and a full replicate cannot redraw it."""
    return "seed" in _data_defaults(dataset)


def replicate_seeds(spec: dict[str, Any], base_data_seed: int | None, base_budget_seed: int) -> dict[str, Any]:
    """What a full replicate redraws from its seed s: the data (`data.seed` = base + s, where the dataset has a
    seed; the held-out selection data and the pre-training corpus follow it, `heldout.SEED_OFFSET`,
    `pretrain.SEED_OFFSET`), the budget's images (`budget_seed` = base + s) and the pre-training's own training
    seed (s, `pretrain.pretrain_spec`). Returns the spec's `dataset_params` and `budget_seed` for seed s."""
    seed = int(spec["seed"])
    params = dict(spec.get("dataset_params", {}))
    if base_data_seed is not None:
        params["seed"] = base_data_seed + seed
    return {"dataset_params": params, "budget_seed": base_budget_seed + seed}


def replicate_bases(spec: dict[str, Any]) -> dict[str, int | None]:
    """The base seeds a full replicate's data and budget seeds were drawn from (`replicate_seeds` undone): equal
    for every replicate of one configuration."""
    seed = int(spec.get("seed", 0))
    data_seed = spec.get("dataset_params", {}).get("seed")
    if data_seed is None and has_data_seed(spec.get("dataset", BUILTIN_DATA)):
        data_seed = seed  # the default 0 left out of the params
    return {
        "data_seed": None if data_seed is None else int(data_seed) - seed,
        "budget_seed": int(spec.get("budget_seed", 0)) - seed,
    }


# The method every other is compared with, timed against and paired with.
BASELINE = "gradcam"
# What a configuration does not share with its baseline: the method, its parameters and budget (with the data keys
# that choose the budget's images, the placebo control and the annotation type of the budget's masks), the seed and
# the suite's name.
METHOD_KEYS = ("method", "method_params", "budget", "budget_seed", "mask_control", "annotation", "seed", "suite")
BUDGET_DATA_KEYS = ("pool",)


def pairing_key(spec: dict[str, Any]) -> str:
    """What a configuration must share with its baseline to be compared with it, timed against it, or selected with
    it: everything but `METHOD_KEYS`, the budget's data keys and, of a search trial, its search record and the
    training settings it drew (each method is compared with the baseline's chosen trial, both tuned by the same
    search). Defaults spelled out or not are the same setting (`configuration_key`)."""
    canonical = json.loads(configuration_key(spec))
    setting = {k: v for k, v in canonical.items() if k not in (*METHOD_KEYS, "search")}
    data = setting.get("dataset_params")
    if isinstance(data, dict):
        setting["dataset_params"] = {k: v for k, v in data.items() if k not in BUDGET_DATA_KEYS}
    drawn = spec.get("search", {}).get("hparams", {})
    if drawn and isinstance(setting.get("train"), dict):
        setting["train"] = {k: v for k, v in setting["train"].items() if k not in drawn}
    return json.dumps(setting, sort_keys=True, default=str)


@functools.lru_cache(maxsize=64)
def _method_defaults(method: Any) -> dict[str, Any]:
    try:
        return dict(METHODS.entry(method).obj().params) if isinstance(method, str) else {}
    except (ValueError, KeyError, TypeError):
        return {}


def _resolved_model_params(model: Any, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return dict(build_model_params(model, params))
    except (ValueError, KeyError, TypeError):
        return params


@functools.lru_cache(maxsize=16)
def _model_defaults(model: Any) -> dict[str, Any]:
    return _resolved_model_params(model, {}) if isinstance(model, str) else {}


@functools.lru_cache(maxsize=16)
def _data_defaults(name: Any) -> dict[str, Any]:
    try:
        return asdict(DATASETS.entry(name).obj.config({})) if isinstance(name, str) else {}
    except (ValueError, KeyError, TypeError):
        return {}


def _kind(default: Any) -> tuple[str, Callable[[Any], bool]] | None:
    """What a keyword's default says its values are: a name and a test (a bool is no number; a list of the default
    items' kind for a tuple or list); None where it says nothing (a default of None, or no default)."""
    if isinstance(default, bool):
        return "true, false", lambda v: isinstance(v, bool)
    if isinstance(default, int):
        return "an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)
    if isinstance(default, float):
        return "a finite number", lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    if isinstance(default, str):
        return "a string", lambda v: isinstance(v, str)
    if isinstance(default, tuple | list):
        item = _kind(default[0]) if default else None
        if item is None:
            return "a list", lambda v: isinstance(v, tuple | list)
        name, test = item
        plural = {"true, false": "booleans", "an integer": "integers", "a finite number": "finite numbers"}
        return f"a list of {plural.get(name, 'strings')}", lambda v: isinstance(v, tuple | list) and all(map(test, v))
    return None


def factory_defaults(factory: Any, params: dict[str, Any], what: str) -> dict[str, Any]:
    """`params` completed with the keyword defaults of `factory`; an unknown key, or a value not of its default's
    kind (`_kind`: an integer for 64, a list of integers for (16, 32)), is a ValueError naming what is allowed."""
    signature = inspect.signature(factory)
    known = {n: p.default for n, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    for key, value in params.items():
        kind = _kind(known[key])
        if kind is not None and not kind[1](value):
            default = list(known[key]) if isinstance(known[key], tuple) else known[key]
            raise ValueError(f"{what} key {key} = {value!r}: allowed: {kind[0]} (the default: {default!r})")
    return {**known, **params}


# How a run's weights start: from scratch, or from a model pre-trained on the generator's unbiased corpus
# (`benchmark/execute/pretrain.py`, the built-in stand-in for the paper's ImageNet pre-training). ImageNet weights for
# the torchvision backbones are the model key `weights = "imagenet"`.
INITS = ("scratch", "pretrained-synthetic", "imagenet")
START_KEYS = ("init", "pretrain")
"""Model keys that say where training starts, not what the architecture is: read by the run, never by the factory."""
PRETRAIN_KEYS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "precision")
"""The `[train]` keys `model.pretrain` may set for the pre-training of `model.init = "pretrained-synthetic"`."""
CORPORA = ("unbiased", "without-class", "biased")
"""What the pre-training corpus holds (`model.pretrain.corpus`, `benchmark.execute.pretrain.corpus_config`): the audited
class on and off its context equally often (the default), no image of the audited class, or the audited class
with a context bias of its own (`model.pretrain.rho`)."""
CORPUS_KEYS = ("corpus", "rho")
"""The keys of `model.pretrain` that say what the corpus holds, not how it is trained."""
DEFAULT_CORPUS_RHO = 0.9


def architecture_params(params: dict[str, Any]) -> dict[str, Any]:
    """A model's parameters less `START_KEYS`: what its factory takes."""
    return {k: v for k, v in params.items() if k not in START_KEYS}


def _pretrain_table(value: object, init: str | None) -> dict[str, Any]:
    """`model.pretrain`, checked: a table of `PRETRAIN_KEYS` (checked as `[train]` checks them), only beside
    `init = "pretrained-synthetic"`."""
    if value is None or value == {}:
        return {}
    if init != "pretrained-synthetic":
        raise ValueError("model.pretrain sets the pre-training of model.init = 'pretrained-synthetic'; set that too")
    allowed = ", ".join((*PRETRAIN_KEYS, *CORPUS_KEYS))
    if not isinstance(value, dict):
        raise ValueError(f"model.pretrain must be a table of {allowed}; got {value!r}")
    unknown = sorted(set(value) - set(PRETRAIN_KEYS) - set(CORPUS_KEYS))
    if unknown:
        raise ValueError(f"model.pretrain: unknown key(s) {', '.join(unknown)}; allowed: {allowed}")
    try:
        TrainSettings.from_dict({k: v for k, v in value.items() if k not in CORPUS_KEYS})
    except ValueError as err:
        raise ValueError(f"model.pretrain: {err}") from None
    return _corpus_checked(dict(value))


def _corpus_checked(table: dict[str, Any]) -> dict[str, Any]:
    """`model.pretrain`'s corpus keys checked and canonical: the default corpus ("unbiased") is left out, so a run
    that spells it out keeps its hash; `rho` only beside `corpus = "biased"`, and filled in there."""
    corpus = table.get("corpus", "unbiased")
    if corpus not in CORPORA:
        raise ValueError(f"model.pretrain.corpus = {corpus!r}: allowed: {', '.join(CORPORA)}")
    if corpus == "unbiased":
        table.pop("corpus", None)
    if corpus != "biased":
        if "rho" in table:
            raise ValueError(f"model.pretrain.rho sets the bias of corpus = 'biased', not of {corpus!r}")
        return table
    rho = table.setdefault("rho", DEFAULT_CORPUS_RHO)
    if isinstance(rho, bool) or not isinstance(rho, int | float) or not 0.5 <= rho <= 1:
        raise ValueError(f"model.pretrain.rho = {rho!r}: allowed: a number from 0.5 to 1 (P(context | class))")
    table["rho"] = float(rho)
    return table


def build_model_params(name: str, params: dict[str, object]) -> dict[str, object]:
    """The model's keyword parameters with defaults filled in, plus `init`; unknown keys are a ValueError listing
    the known."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    params = dict(params)
    init = params.pop("init", None)
    if init is not None and init not in INITS:
        raise ValueError(f"model.init={init!r}: allowed: {', '.join(INITS)}")
    pretrain = _pretrain_table(params.pop("pretrain", None), init)
    if init == "imagenet":  # the torchvision backbones' ImageNet weights (local cache only), as model.weights does
        if "weights" not in factory_defaults(MODELS[name], {}, f"model ({name})"):
            raise ValueError(
                f"model.init='imagenet': {name} has no ImageNet weights; use a torchvision backbone "
                "(resnet18, resnet50, vgg16) or model.init='pretrained-synthetic'"
            )
        params.setdefault("weights", "imagenet")
    resolved = factory_defaults(MODELS[name], params, f"model ({name})")
    weights = resolved.get("weights")
    if init is None:
        init = "imagenet" if weights else "scratch"
    elif weights and init != "imagenet":
        raise ValueError(f"model.init={init!r} contradicts model.weights={weights!r}: leave one of them out")
    return resolved | {"init": init} | ({"pretrain": pretrain} if pretrain else {})  # absent: hashes as before
