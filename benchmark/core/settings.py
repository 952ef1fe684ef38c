"""The one settings schema: every fixed key of a suite file, its type, its range and what it means.

Each section is a dataclass whose fields carry their constraints and their documentation (`Annotated[..., Field]`):
the suite's top-level keys, `[train]`, `[timing]`, `[slurm]` and `[search]`. pydantic (v2) validates a table against
it (`check`), so every message names the key, the value and what is allowed; its JSON Schema is what
`reference()` turns into docs/suite-reference.md. `--set` values parse here too (`parse_value`: TOML values).

The `[data]`, `[model]` and `[methods.*]` keys are not here: they belong to the registered dataset, model and
method (a plugin declares its own), and their entries check them (`benchmark.core.registry`).
"""

from __future__ import annotations

import dataclasses
import inspect
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, create_model

from benchmark.core.label_costs import LABEL_COSTS
from benchmark.core.selection_rules import GROUP_VAL_SIZE, RULES

SECTIONS = ("data", "model", "train", "methods", "timing", "slurm", "sweep", "search", "label_costs")
FORBID = ConfigDict(extra="forbid")


# What a seed redraws (`SuiteKeys.seed_scope`; `benchmark.core.spec.replicate_seeds` says how).
SEED_SCOPES = ("train", "full")
# What BatchNorm normalises a pass with (`models.batchnorm_mode`; GAIN's erased pass, `masked_bn`)
BN_MODES = {
    "eval": "running statistics, not updated",
    "train": "the pass's batch statistics, which also update the running statistics",
    "batch": "the pass's batch statistics, the running statistics left untouched",
}

# The largest seed: what every random generator a run seeds takes (numpy's legacy seeds are 32-bit).
MAX_SEED = 2**32 - 1


def integer(low: int, doc: str, allowed: str | None = None, *, high: int | None = None) -> Any:
    """An integer field >= `low` (and <= `high`; a bool is not an integer here)."""
    extra = {"allowed": allowed} if allowed else None
    return Annotated[int, Field(ge=low, le=high, strict=True, description=doc, json_schema_extra=extra)]


def boolean(doc: str, allowed: str | None = None) -> Any:
    extra = {"allowed": allowed} if allowed else None
    return Annotated[bool, Field(strict=True, description=doc, json_schema_extra=extra)]


def text(doc: str, allowed: str | None = None, *, pattern: str | None = None) -> Any:
    """A string field (`pattern`: a regular expression it must match somewhere)."""
    extra = {"allowed": allowed} if allowed else None
    return Annotated[str, Field(strict=True, pattern=pattern, description=doc, json_schema_extra=extra)]


def choice(values: tuple[str, ...], doc: str) -> Any:
    return Annotated[Literal[values], Field(description=doc)]  # type: ignore[valid-type]


def number(doc: str, *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
           le: float | None = None) -> Any:  # fmt: skip
    """A real number (an integer is one; a bool is not) in the given bounds."""
    return Annotated[float, Field(gt=gt, ge=ge, lt=lt, le=le, strict=True, description=doc)]




def _ints(low: int, doc: str, *, high: int | None = None) -> Any:
    item = Annotated[int, Field(ge=low, le=high, strict=True)]
    below = "" if high is None else f" and <= {high}"
    return Annotated[list[item], Field(min_length=1, description=doc, json_schema_extra={
        "allowed": f"a non-empty list of integers >= {low}{below}"})]  # fmt: skip


class _Checked:
    """A section's dataclass checks itself on construction (`check`), however it is built."""

    SECTION: typing.ClassVar[str] = ""

    def __post_init__(self) -> None:
        check(type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, self.SECTION)


@dataclass(frozen=True)
class SuiteKeys(_Checked):
    """A suite file's top-level keys (beside its sections)."""

    __pydantic_config__ = FORBID

    name: Annotated[
        str,
        Field(pattern=r"^[^/]*\S[^/]*$", description="the results folder's name (reports/<name>)",
              json_schema_extra={"allowed": "a non-empty name without '/'"}),
    ]
    description: text("one line for `gain-bench list` and the report") = ""
    seeds: _ints(0, "training seeds; every configuration runs once per seed", high=MAX_SEED) = (0, 1, 2)  # type: ignore[assignment]
    budgets: _ints(1, "label budgets (pixel labels; dfr: group labels) of methods with one") = (9, 23, 78, 200, 1464)  # type: ignore[assignment]
    audited_class: Annotated[
        str, Field(min_length=1, strict=True, description="the class audited (default: the dataset's)",
                   json_schema_extra={"allowed": "a class name"})
    ] = "boat"
    budget_seconds: Annotated[
        list[Annotated[float, Field(gt=0, strict=True)]] | None,
        Field(min_length=1, description="budgets in seconds of annotation time instead of images: each method entry "
              "gets the images its labels' time buys ([label_costs]; docs/methods.md)",
              json_schema_extra={"allowed": "a non-empty list of numbers > 0 (instead of budgets)"}),
    ] = None
    budget_seed: integer(0, "seed of the order in which images enter the pixel-label budget", high=MAX_SEED) = 0
    seed_scope: choice(
        SEED_SCOPES,
        "what a seed redraws: 'train' the fine-tuning only (initialisation of a fresh head, batch order, "
        "augmentation); 'full' also the data (the generator's seed), the budget's images, the held-out selection "
        "data and the pre-training: a full replicate",
    ) = "train"
    device: Annotated[
        str, Field(pattern=r"^(cpu|mps|cuda(:\d+)?)$", description="where runs train",
                   json_schema_extra={"allowed": "cpu, cuda, cuda:N, mps"})
    ] = "cpu"
    unbiased_reference: boolean("measure where a model trained without the bias looks (built-in data)") = True
    plugins: Annotated[
        list[Annotated[str, Field(min_length=1, strict=True)]],
        Field(description="modules or .py files (relative to the suite) that register methods, models or datasets",
              json_schema_extra={"allowed": "a list of module names or .py files (relative to the suite)"}),
    ] = ()  # type: ignore[assignment]


@dataclass(frozen=True)
class TrainSettings(_Checked):
    """`[train]`: optimisation and evaluation settings; the defaults train the small CNN on the built-in data in
    seconds."""

    __pydantic_config__ = FORBID

    epochs: integer(1, "training epochs") = 8
    batch_size: integer(1, "training batch size") = 64
    optimizer: Annotated[Literal["adam", "sgd"], Field(description="the optimiser")] = "adam"
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True, description="peak learning rate")] = 3e-3
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True, description="weight decay")] = 0.0
    schedule: Annotated[Literal["onecycle", "constant"], Field(description="learning-rate schedule")] = "onecycle"
    mask_batch: integer(0, "pixel-labelled images added to every batch (0: as they come)") = 0
    threshold: Annotated[
        float, Field(gt=0, lt=1, strict=True, description="score above which an image is called the audited class")
    ] = 0.5
    eval_batch_size: integer(1, "evaluation batch size") = 256
    flush_denormal: boolean("flush denormal floats to zero on CPU (speed; changes no result measurably)") = True
    channels_last: boolean("train in channels-last memory format") = True
    diagnostics: boolean("per-epoch training probes and held-out scores (changes no result)") = True
    precision: Annotated[
        Literal["fp32", "bf16"],
        Field(description="arithmetic of training and evaluation",
              json_schema_extra={"allowed": "fp32, bf16 (autocast to bfloat16; fast on GPUs with bf16 tensor cores)"}),
    ] = "fp32"

    SECTION = "train"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainSettings:
        check(cls, data, "train")
        return cls(**data)


@dataclass(frozen=True)
class TimingSettings(_Checked):
    """`[timing]`: throughput measured after the runs, train steps and attention batches after `warmup` untimed
    ones."""

    __pydantic_config__ = FORBID

    enabled: boolean("time each configuration after the runs") = True
    batch_size: integer(1, "batch size of the timed steps") = 64
    warmup: integer(0, "untimed steps first") = 2
    iterations: integer(1, "timed steps per round") = 5
    precision: Annotated[
        Literal["fp32", "bf16", "fp16"],
        Field(description="arithmetic of the timed steps",
              json_schema_extra={"allowed": "fp32, bf16, fp16 (fp16: CUDA only)"}),
    ] = "fp32"
    channels_last: Annotated[
        bool | None,
        Field(strict=True, description="memory format of the timed steps",
              json_schema_extra={"allowed": "true, false (omit: as the model is trained)"}),
    ] = None
    compile: boolean("torch.compile the timed model") = False
    passes: integer(1, "rounds paired with the baseline: passes x iterations") = 3

    SECTION = "timing"


PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class SlurmSettings(_Checked):
    """`[slurm]`: submitit's SLURM parameters for `--launcher slurm`; `array_parallelism` caps the jobs running at
    once."""

    __pydantic_config__ = FORBID

    partition: text("SLURM partition") = ""
    timeout_min: integer(1, "time limit per job, minutes") = 60
    cpus_per_task: integer(1, "CPUs per job (torch threads)") = 4
    gpus_per_node: integer(0, "GPUs per job") = 0
    mem_gb: integer(1, "memory per job, GB") = 16
    array_parallelism: integer(1, "jobs of the array running at once") = 64
    account: text("SLURM account") = ""
    constraint: text("SLURM node constraint") = ""

    SECTION = "slurm"


# The most trials a search may have: each is a run per method entry, budget and seed.
MAX_TRIALS = 1000


@dataclass(frozen=True)
class SearchSettings(_Checked):
    """`[search]`: the number of trials every method entry gets, the selection rule, the seed of the draws,
    optionally the names searched (None: every declared distribution), and the size of the group-labelled
    validation split rule `worst-group-val` reads. Every trial records its score for every rule, so the report and
    `gain-bench table --rule` read one search with each; `rule` is the one the headline tables use."""

    __pydantic_config__ = FORBID

    trials: integer(1, "trials per method entry and budget",
                 f"an integer >= 1 and <= {MAX_TRIALS} (the same for every method entry)", high=MAX_TRIALS)
    rule: Annotated[
        Literal[tuple(RULES)],  # type: ignore[valid-type]
        Field(description="how the reported trial is chosen (docs/usage.md)"),
    ] = "in-distribution-val"
    seed: integer(0, "seed of the draws", high=MAX_SEED) = 0
    keys: Annotated[
        list[Annotated[str, Field(strict=True)]] | None,
        Field(min_length=1, description="the hyperparameters searched (omit: every declared distribution)",
              json_schema_extra={"allowed": "a non-empty list of hyperparameter names"}),
    ] = None
    group_val_size: integer(
        4, "images of rule worst-group-val's group-labelled validation split, spread evenly over the four groups "
        f"({GROUP_VAL_SIZE}: 20/20/19/19); another size is part of every trial's spec, so its trials train again"
    ) = GROUP_VAL_SIZE

    SECTION = "search"


# Placebo-mask controls (benchmark/execute/datasets/mask_controls.py): what a run does to the audited class's region of
# each budget image's mask before training. "true" leaves the masks as they are.
MASK_CONTROLS = ("true", "shuffled", "random", "inverted", "empty")
# Annotation types (benchmark/execute/datasets/annotations.py): the pixel labels a budget image carries, each derived
# from its true mask. "mask" is the true mask itself.
ANNOTATIONS = ("mask", "box", "points", "scribble", "coarse")


@dataclass(frozen=True)
class DataKeys(_Checked):
    """`[data]` keys every dataset takes because the benchmark reads them, not the dataset (they are taken out of the
    data parameters, so the data and its folder stay the same): the placebo-mask control and the annotation type of
    the methods that use pixel labels, in `[data]` (every such method entry) or in an entry's
    `data = { mask_control = "shuffled" }`."""

    __pydantic_config__ = FORBID

    mask_control: Annotated[
        Literal[MASK_CONTROLS],  # type: ignore[valid-type]
        Field(description="the budget images' masks of the audited class: the true ones, another budget image's "
                          "(shuffled), a blob of the same area at a random place (random), their complement "
                          "(inverted), or none (empty); docs/methods.md"),
    ] = "true"
    annotation: Annotated[
        Literal[ANNOTATIONS],  # type: ignore[valid-type]
        Field(description="the pixel labels of the budget images, derived from their true masks: the mask itself, "
                          "each object's box, one clicked pixel per object (points), a stroke through each object "
                          "(scribble), or the mask grown by `annotation_dilate` pixels (coarse); docs/methods.md"),
    ] = "mask"
    annotation_dilate: Annotated[
        int, Field(ge=1, le=64, description="coarse annotations: how many pixels the mask grows by")
    ] = 2

    SECTION = "data"


@dataclass(frozen=True)
class LabelCosts(_Checked):
    """`[label_costs]`: seconds of annotation per image of each annotation type and of a group label, which turn a
    suite's `budget_seconds` into images (`benchmark.core.label_costs`, where each default's source is given)."""

    __pydantic_config__ = FORBID

    mask: number("a full mask", gt=0) = LABEL_COSTS["mask"].seconds
    box: number("a box per object", gt=0) = LABEL_COSTS["box"].seconds
    points: number("a clicked point per object", gt=0) = LABEL_COSTS["points"].seconds
    scribble: number("a scribble per object", gt=0) = LABEL_COSTS["scribble"].seconds
    coarse: number("a coarse outline per object", gt=0) = LABEL_COSTS["coarse"].seconds
    group: number("a group label (is the context there?): what DFR's budget counts", gt=0) = LABEL_COSTS[
        "group"
    ].seconds

    SECTION = "label_costs"


SCHEMA: dict[str, type] = {
    "": SuiteKeys,
    "train": TrainSettings,
    "timing": TimingSettings,
    "slurm": SlurmSettings,
    "search": SearchSettings,
    "label_costs": LabelCosts,
}


class SettingsError(ValueError):
    """A key that is unknown, or a value that its field does not allow; the message names both."""


@cache
def _adapter(cls: type) -> TypeAdapter:
    """A pydantic model with the dataclass's annotated fields: validating a table never constructs the dataclass
    (whose own construction validates through here)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    defined = {
        f.name: (hints[f.name], ... if f.default is dataclasses.MISSING else f.default) for f in dataclasses.fields(cls)
    }
    return TypeAdapter(create_model(cls.__name__, __config__=FORBID, __doc__=cls.__doc__, **defined))


@cache
def _properties(cls: type) -> dict[str, dict[str, Any]]:
    schema = _adapter(cls).json_schema()
    return schema.get("properties", {})


def _bound(value: float) -> str:
    """A range's end as written: an integer in full (4294967295), a real in short (1e-06)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def allowed(cls: type, key: str) -> str:
    """What a field allows, in words: its declared phrase, else read off its JSON Schema."""
    field = _properties(cls).get(key, {})
    if "allowed" in field:
        return str(field["allowed"])
    if "enum" in field:
        return ", ".join(map(str, field["enum"]))
    if "const" in field:
        return str(field["const"])
    kind = field.get("type")
    if kind == "boolean":
        return "true, false"
    if kind == "string":
        return "a string"
    if kind in ("integer", "number"):
        noun = "an integer" if kind == "integer" else "a number"
        low = field.get("exclusiveMinimum", field.get("minimum"))
        high = field.get("exclusiveMaximum", field.get("maximum"))
        if low is not None and high is not None:
            left = "(" if "exclusiveMinimum" in field else "["
            right = ")" if "exclusiveMaximum" in field else "]"
            return f"{noun} in {left}{_bound(low)}, {_bound(high)}{right}"
        if low is not None:
            return f"{noun} {'>' if 'exclusiveMinimum' in field else '>='} {_bound(low)}"
        return noun
    return "see docs/suite-reference.md"


def check(cls: type, table: Mapping[str, Any], section: str, owner: str = "") -> None:
    """Validate `table` against the section's dataclass `cls`; the first problem is a SettingsError naming the key
    (`train.epochs = 0: allowed: an integer >= 1`, `unknown key timing.speed; allowed: ...`). `owner`: the dataset
    whose `[data]` keys these are (named in the message, its own keys listed first)."""
    if not isinstance(table, Mapping):
        raise SettingsError(f"[{section}] must be a table, got {table!r}")
    where = f"{section}." if section else ""
    own = set(inspect.get_annotations(cls))
    names = sorted((f.name for f in dataclasses.fields(cls)), key=lambda n: owner != "" and n not in own)
    unknown = [key for key in table if key not in names]
    if unknown and owner:
        raise SettingsError(
            f"unknown {section} key(s) {', '.join(sorted(unknown))} for dataset {owner}; allowed: {', '.join(names)}"
        )
    if unknown:
        extra = (*names, *SECTIONS) if not section else names
        raise SettingsError(f"unknown key {where}{unknown[0]}; allowed: {', '.join(extra)}")
    try:
        _adapter(cls).validate_python(dict(table))
    except ValidationError as err:
        first = err.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else ""
        if key not in table:  # a required key left out
            doc = _properties(cls).get(key, {}).get("description", "")
            raise SettingsError(f"missing key {where}{key} ({doc})") from None
        of = f" ({owner})" if owner else ""
        raise SettingsError(f"{where}{key} = {table[key]!r}{of}: allowed: {allowed(cls, key)}") from None


def parse_value(text: str) -> Any:
    """A `--set KEY=VALUE` value: a TOML value where it parses (`2`, `0.3`, `true`, `[0, 1]`, `"text"`), else the
    text itself (`masked_bn=batch`)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _default(field: dataclasses.Field) -> str:
    if field.default is dataclasses.MISSING:
        return "required"
    value = field.default
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "(omitted)"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value!r}`".replace("'", '"') if isinstance(value, str | list) else f"`{value}`"


def reference() -> str:
    """The suite reference (docs/suite-reference.md): every fixed key of every section with its default, what it
    allows and what it means, generated from this schema."""
    lines = [
        "# Suite reference",
        "",
        "Generated from `benchmark/core/settings.py` by `python -m benchmark.core.settings > docs/suite-reference.md`",
        "(a test checks it is current). The `[data]`, `[model]` and `[methods.<entry>]` keys belong to the dataset,",
        "model and method they name: `gain-bench list` and `gain-bench methods` list them, docs/data.md and",
        "docs/methods.md explain them.",
    ]
    for section, cls in (*SCHEMA.items(), ("data", DataKeys)):
        title = "Top-level keys" if not section else f"`[{section}]`"
        if cls is DataKeys:
            title = "`[data]`: the benchmark's own keys"
        doc = " ".join((cls.__doc__ or "").split())
        lines += ["", f"## {title}", "", doc, "", "| key | default | allowed | meaning |", "|---|---|---|---|"]
        for field in dataclasses.fields(cls):
            meaning = _properties(cls).get(field.name, {}).get("description", "")
            lines.append(f"| `{field.name}` | {_default(field)} | {allowed(cls, field.name)} | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
