"""Suites: a TOML file names the data, model, training settings, methods, budgets and seeds; `Suite.runs()` expands
it into one `RunSpec` per method entry, pixel-label budget and seed (and regime of a `[sweep]`, trial of a
`[search]`). Every key is checked against the settings schema (`benchmark.core.settings`); `--set` overrides are
applied to the parsed TOML before that check, so an override is checked exactly like the file. The format is
docs/usage.md; every key with its type and default, docs/suite-reference.md. A regime of a `[sweep]` runs the same
runs (ids and config hashes) as a suite that sets its keys itself, so regimes share one results folder.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.core.label_costs import images_for
from benchmark.core.plugins import PluginError
from benchmark.core.registry import DATASETS, METHODS, load_plugins
from benchmark.core.settings import (
    ANNOTATIONS,
    MASK_CONTROLS,
    SCHEMA,
    SECTIONS,
    DataKeys,
    LabelCosts,
    SearchSettings,
    SettingsError,
    SlurmSettings,
    SuiteKeys,
    TimingSettings,
    check,
    parse_value,
)
from benchmark.core.spec import (
    BUILTIN_DATA,
    RunSpec,
    TrainSettings,
    architecture_params,
    build_model_params,
    has_data_seed,
    replicate_seeds,
)
from benchmark.execute import search
from benchmark.execute.datasets.registry import dataset
from benchmark.execute.methods import build_method
from benchmark.execute.methods.base import BUDGET_GROUP
from benchmark.execute.models import build_model, imagenet_weights_path

SUITES_DIR = Path(__file__).resolve().parents[2] / "suites"
TOP_KEYS = tuple(f.name for f in dataclasses.fields(SuiteKeys))
SWEEP_SECTIONS = ("data", "model", "train")
LAUNCHERS = ("inprocess", "local", "submitit-local", "slurm")


def _int_list(value: Any, low: int) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= low for v in value
    )


class SuiteError(ValueError):
    """A suite file or override that cannot be used; the message names the file, the key and what is allowed."""


@dataclass(frozen=True)
class MethodEntry:
    """One `[methods.<key>]` table: the registry method, its parameters and the budgets it runs at."""

    key: str
    method: str
    params: dict[str, Any]
    budgets: tuple[int, ...]
    data: dict[str, Any] = field(default_factory=dict)
    mask_control: str = "true"  # the placebo-mask control of its runs (`settings.DataKeys`), already resolved
    annotation: dict[str, Any] = field(default_factory=dict)  # its runs' annotation type and setting ({}: masks)


@dataclass(frozen=True)
class Regime:
    """One point of a suite's `[sweep]`: its label (`rho=0.9 init=pretrained`), the keys it sets and the suite
    with them set."""

    label: str
    settings: dict[str, Any]
    suite: Suite
    parts: tuple[str, ...] = ()  # the label per axis


@dataclass(frozen=True)
class Suite:
    name: str
    methods: tuple[MethodEntry, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    description: str = ""
    dataset: str = BUILTIN_DATA
    dataset_params: dict[str, Any] = field(default_factory=dict)
    model: str = "small_cnn"
    model_params: dict[str, Any] = field(default_factory=dict)
    train: TrainSettings = field(default_factory=TrainSettings)
    audited_class: str = "boat"
    budget_seed: int = 0
    seed_scope: str = "train"
    device: str = "cpu"
    unbiased_reference: bool = True
    timing: TimingSettings = field(default_factory=TimingSettings)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    search: SearchSettings | None = None
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    sweep: tuple[Regime, ...] = ()
    plugins: tuple[str, ...] = ()  # as workers import them: absolute files or module names
    label_costs: dict[str, float] = field(default_factory=lambda: dataclasses.asdict(LabelCosts()))

    def regimes(self) -> tuple[Regime, ...]:
        """The sweep's regimes in axis order; a suite without `[sweep]` is one regime labelled ""."""
        return self.sweep or (Regime("", {}, self),)

    def numeric_axis(self) -> str | None:
        """The first swept key whose values are all numbers (e.g. `data.rho`): the x axis of the sweep figure."""
        for key in dict.fromkeys(k for regime in self.sweep for k in regime.settings):
            values = [regime.settings.get(key) for regime in self.sweep]
            token = f"{key.split('.', 1)[-1]}="
            single = all(any(p.startswith(token) for p in regime.parts) for regime in self.sweep)
            if single and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                return key
        return None

    def runs(self) -> list[RunSpec]:
        """Every run: per regime of the sweep (if any), for each method entry (file order), each of its budgets (0
        for a method without pixel labels), each seed (with `[search]`: each trial, then each seed). Two entries that
        resolve to the same configuration are one run."""
        if self.sweep:
            swept: dict[str, RunSpec] = {}
            for regime in self.sweep:
                for spec in regime.suite.runs():
                    swept.setdefault(spec.run_id, spec)
            return list(swept.values())
        specs: dict[str, RunSpec] = {}
        for entry in self.methods:
            for budget in entry.budgets:
                for spec in self._entry_runs(entry, budget):
                    specs.setdefault(spec.run_id, spec)
        return list(specs.values())

    def _entry_runs(self, entry: MethodEntry, budget: int) -> list[RunSpec]:
        """One method entry's runs at one budget: one per seed, or the search's trials of those."""
        specs = [
            RunSpec(
                method=entry.method,
                budget=budget,
                seed=seed,
                method_params=dict(entry.params),
                dataset=self.dataset,
                model=self.model,
                model_params=dict(self.model_params),
                train=self.train,
                audited_class=self.audited_class,
                suite=self.name,
                mask_control=entry.mask_control,
                annotation=dict(entry.annotation),
                **self._drawn(seed, {**self.dataset_params, **entry.data}),
            )
            for seed in self.seeds
        ]
        return specs if self.search is None else search.expand(entry.key, specs, self.search)

    def _drawn(self, seed: int, dataset_params: dict[str, Any]) -> dict[str, Any]:
        """The data parameters and budget seed of `seed`'s runs: the suite's own, or with `seed_scope = "full"`
        those its replicate draws (`spec.replicate_seeds`)."""
        if self.seed_scope == "train":
            return {"dataset_params": dataset_params, "budget_seed": self.budget_seed}
        base = int(dataset_params.get("seed", 0)) if has_data_seed(self.dataset) else None
        drawn = replicate_seeds({"seed": seed, "dataset_params": dataset_params}, base, self.budget_seed)
        return drawn | {"seed_scope": self.seed_scope}

    @property
    def digest(self) -> str:
        """sha256 (16 hex) of the suite as resolved (file and overrides), for provenance."""
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """The resolved suite as plain data, written beside its runs as `suite.json`."""
        return {"name": self.name, "source": self.source, "digest": self.digest, "raw": self.raw} | {
            "timing": asdict(self.timing),
            "slurm": asdict(self.slurm),
        }


def resolve_path(name_or_path: str | Path) -> Path:
    """A suite file: a path if it exists, else `suites/<name>.toml` in the working folder or the repository."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for folder in (Path.cwd() / "suites", SUITES_DIR):
        candidate = folder / f"{path.name.removesuffix('.toml')}.toml"
        if candidate.is_file():
            return candidate
    raise SuiteError(
        f"suite {str(name_or_path)!r} not found (a path, or a name in suites/); "
        f"available: {', '.join(available()) or 'none'}"
    )


def available() -> list[str]:
    """Names of the suites shipped in `suites/` (working folder first, then the repository's)."""
    names: dict[str, None] = {}
    for folder in (Path.cwd() / "suites", SUITES_DIR):
        if folder.is_dir():
            names.update(dict.fromkeys(p.stem for p in sorted(folder.glob("*.toml"))))
    return list(names)


def load(
    name_or_path: str | Path,
    overrides: list[str] | None = None,
    seeds: list[int] | None = None,
    plugins: list[str] | None = None,
) -> Suite:
    """Read, override and validate a suite, with `plugins` (absolute files or modules, e.g. from `--plugin`) added
    to its own; every error names the file and the key."""
    path = resolve_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SuiteError(f"{path}: not valid TOML ({err})") from None
    return resolve(raw, str(path), overrides, seeds=seeds, plugins=plugins)


def resolve(
    raw: dict[str, Any],
    source: str,
    overrides: list[str] | None = None,
    *,
    seeds: list[int] | None = None,
    plugins: list[str] | None = None,
) -> Suite:
    """A suite from its parsed TOML (`source`: its file, or the command that made it), with `--set` `overrides`,
    then the seeds and plugins the command line gives; an error names the first override that makes it invalid,
    else the source. `load` reads a file through it, `gain-bench train` its one-run suite."""
    overrides = overrides or []

    def suite(overridden: list[str]) -> Suite:
        """The suite with `overridden` applied, then the seeds and plugins the command line gives."""
        full = apply_overrides(raw, overridden)
        if seeds is not None:
            full["seeds"] = list(seeds)
        own = full.get("plugins", [])
        if plugins and isinstance(own, list):  # not a list: the validation says what is allowed
            full["plugins"] = [*own, *(p for p in plugins if p not in own)]
        return _suite(full, source)

    try:
        return suite(overrides)
    except SuiteError as err:
        raise SuiteError(f"{_culprit(source, suite, overrides)}: {err}") from None


def _culprit(source: str, suite: Callable[[list[str]], Suite], overrides: list[str]) -> str:
    """Where an invalid suite went wrong: the first `--set` whose value makes `suite` invalid (valid up to it),
    else the file."""
    for i in range(len(overrides)):
        try:
            suite(overrides[:i])
        except SuiteError:
            return source if i == 0 else f"--set {overrides[i - 1]} (command line, over {source})"
    return f"--set {overrides[-1]} (command line, over {source})" if overrides else source


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`KEY.PATH=VALUE` items applied to a copy of the parsed TOML; values parse as TOML values where they can
    (`2`, `0.3`, `true`, `[0, 1]`, `"text"`), else as a bare string."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise SuiteError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=2 or methods.gain.alpha=0.3")
        if parts[0] not in (*TOP_KEYS, *SECTIONS):
            raise SuiteError(f"--set {item!r}: unknown key {parts[0]!r}; allowed: {', '.join((*TOP_KEYS, *SECTIONS))}")
        entries = raw.get("methods") if isinstance(raw.get("methods"), dict) else {}
        if parts[0] == "methods" and len(parts) > 2 and parts[1] not in entries and parts[2:] != ["method"]:
            raise SuiteError(
                f"--set {item!r}: the suite has no method entry {parts[1]!r} (entries: {', '.join(entries)}); "
                f"add one with --set methods.{parts[1]}.method=NAME"
            )
        try:
            _set_key(raw, parts, parse_value(text.strip()))
        except SuiteError as err:
            raise SuiteError(f"--set {item!r}: {err}") from None
    return raw


def _set_key(raw: dict[str, Any], parts: list[str], value: Any) -> None:
    """`raw[parts[0]][parts[1]]... = value`, making the tables on the way; one that is no table is a SuiteError."""
    node = raw
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            where, key = ".".join(parts[: i + 1]), ".".join(parts)
            raise SuiteError(f"{where} = {node!r} is not a table, so {key} cannot be set")
    node[parts[-1]] = value


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"model": {"init": x}}` and `{"model.init": x}` alike → `{"model.init": x}`."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _sweep_axes(sweep: Any) -> list[list[tuple[str, dict[str, Any]]]]:
    """`[sweep]` → per axis, its values as (label, {dotted key: value}); errors name the axis and what is allowed."""
    if not isinstance(sweep, dict) or not sweep:
        raise SuiteError(f'[sweep] must be a table of axes, e.g. "data.rho" = [0.9, 1.0]; got {sweep!r}')
    axes = []
    for axis, values in _flatten_axes(sweep).items():
        if not isinstance(values, list) or not values:
            raise SuiteError(f"sweep.{axis} = {values!r}: allowed: a non-empty list of values")
        points = []
        for i, value in enumerate(values):
            if "." in axis:
                settings, label = {axis: value}, f"{axis.split('.', 1)[1]}={value}"
            elif isinstance(value, dict):
                settings = _flatten(value)
                label = f"{axis}={settings.pop('label', ','.join(map(str, settings.values())))}"
                if not settings:
                    raise SuiteError(f'sweep.{axis}[{i}]: sets no key; give e.g. {{ "model.init" = "scratch" }}')
            else:
                raise SuiteError(
                    f"sweep.{axis}: a plain axis name takes tables of keys, e.g. "
                    f'{axis} = [{{ label = "a", "model.init" = "scratch", "train.lr" = 3e-3 }}]; '
                    f'or name one key, e.g. "data.rho" = [0.9, 1.0]'
                )
            for key in settings:
                section = key.split(".", 1)[0]
                if section not in SWEEP_SECTIONS or "." not in key or key == "data.name":
                    raise SuiteError(
                        f"sweep.{axis}: key {key!r} cannot be swept; allowed: data.* (not data.name), model.*, "
                        "train.* (methods, budgets and seeds are already crossed)"
                    )
            points.append((label, settings))
        axes.append(points)
    return axes


def _flatten_axes(sweep: dict[str, Any]) -> dict[str, Any]:
    """TOML reads an unquoted `data.rho = [...]` as a nested table; both spellings name the axis `data.rho`."""
    out: dict[str, Any] = {}
    for key, value in sweep.items():
        if isinstance(value, dict) and key in SWEEP_SECTIONS:
            out |= {f"{key}.{k}": v for k, v in _flatten(value).items()}
        else:
            out[key] = value
    return out


def _regimes(raw: dict[str, Any], source: str) -> tuple[Regime, ...]:
    regimes = []
    for combination in itertools.product(*_sweep_axes(raw["sweep"])):
        settings: dict[str, Any] = {}
        for _, part in combination:
            clash = sorted(set(settings) & set(part))
            if clash:
                raise SuiteError(f"[sweep]: key(s) {', '.join(clash)} set by two axes")
            settings |= part
        label = " ".join(label for label, _ in combination)
        point = copy.deepcopy({k: v for k, v in raw.items() if k != "sweep"})
        try:
            for key, value in settings.items():
                _set_key(point, key.split("."), value)
            parts = tuple(label for label, _ in combination)
            regimes.append(Regime(label, settings, _suite(point, source), parts))
        except SuiteError as err:
            raise SuiteError(f"[sweep] regime {label!r}: {err}") from None
    return tuple(regimes)


def _check(section: str, table: dict[str, Any]) -> None:
    """A section's table (the top level: "") against the settings schema; its error as a SuiteError."""
    if not isinstance(table, dict):
        keys = ", ".join(f.name for f in dataclasses.fields(SCHEMA[section])) if section else ", ".join(
            (*TOP_KEYS, *SECTIONS)
        )
        raise SuiteError(f"{f'[{section}]' if section else 'a suite'} must be a table of {keys}; got {table!r}")
    try:
        check(SCHEMA[section], {k: v for k, v in table.items() if section or k not in SECTIONS}, section)
    except SettingsError as err:
        raise SuiteError(str(err)) from None


def _named(section: str, table: Any, default: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(table, dict):
        noun = "dataset" if section == "data" else section
        raise SuiteError(f"[{section}] must be a table: name (a {noun}'s) and the {noun}'s keys; got {table!r}")
    params = dict(table)
    name = params.pop("name", default)
    if not isinstance(name, str):
        raise SuiteError(f"{section}.name = {name!r}: allowed: a string")
    return name, params


def from_dict(raw: dict[str, Any], source: str = "") -> Suite:
    """A validated `Suite` from parsed TOML (or a `suite.json`'s `raw`): its plugins are imported first (files
    relative to the suite's folder), then the data, model and method keys are checked by resolving every run. Every
    problem is a SuiteError naming `source` (when given), the key and what is allowed."""
    try:
        return _suite(raw, source)
    except SuiteError as err:
        raise SuiteError(f"{source}: {err}" if source else str(err)) from None


def _suite(raw: dict[str, Any], source: str) -> Suite:
    """`from_dict` without the file named in its errors (`load` names the file or the `--set` at fault)."""
    _check("", raw)
    plugins = _plugins(raw.get("plugins", []), Path(source).parent if source else None)
    if "sweep" in raw:
        base = _suite({k: v for k, v in raw.items() if k != "sweep"}, source)
        return dataclasses.replace(base, raw=raw, sweep=_regimes(raw, source), plugins=plugins)
    if "name" not in raw:
        raise SuiteError("missing key name (the suite's output folder name)")
    for section in ("timing", "slurm", "search", "label_costs"):
        if section in raw:
            _check(section, raw[section])
    seconds = raw.get("budget_seconds")
    if seconds is not None and "budgets" in raw:
        raise SuiteError("budgets and budget_seconds both given: budgets count images, budget_seconds annotation "
                         "time that each method entry turns into images; give one")
    costs = dataclasses.asdict(LabelCosts(**raw.get("label_costs", {})))
    dataset, dataset_params = _named("data", raw.get("data", {}), BUILTIN_DATA)
    mask_control = _mask_control(dataset_params, "data")
    annotation = _annotation(dataset_params, "data")
    model, model_params = _named("model", raw.get("model", {}), "small_cnn")
    _check("train", raw.get("train", {}))
    train = TrainSettings.from_dict(raw.get("train", {}))
    budgets = tuple(raw.get("budgets", (9, 23, 78, 200, 1464)))
    methods_table = raw.get("methods")
    if methods_table is not None and not isinstance(methods_table, dict):
        raise SuiteError(f"methods = {methods_table!r}: allowed: a table per method entry, e.g. [methods.gradcam]")
    if not methods_table:
        raise SuiteError("missing [methods.<name>] tables; at least one method is needed, e.g. [methods.gradcam]")
    entries = []
    for key, table in methods_table.items():
        if not isinstance(table, dict):
            raise SuiteError(
                f"methods.{key} must be a table (method, budgets, data and the method's hyperparameters); got {table!r}"
            )
        params = dict(table)
        method = params.pop("method", key)
        entry_data = params.pop("data", {})
        if not isinstance(entry_data, dict) or "name" in entry_data:
            raise SuiteError(f"methods.{key}.data = {entry_data!r}: allowed: a table of [data] keys (not name)")
        entry_data = dict(entry_data)
        own_control = _mask_control(entry_data, f"methods.{key}.data") if "mask_control" in entry_data else None
        own_annotation = (_annotation(entry_data, f"methods.{key}.data")
                          if {"annotation", "annotation_dilate"} & set(entry_data) else None)  # fmt: skip
        if not isinstance(method, str):
            raise SuiteError(f"methods.{key}.method = {method!r}: allowed: a method's name ({', '.join(METHODS)})")
        if method not in METHODS:
            raise SuiteError(f"methods.{key}: unknown method {method!r}; allowed: {', '.join(METHODS)}")
        own = params.pop("budgets", None)
        no_budget = METHODS[method].budget_labels is None  # what a budget counts: Method.budget_labels
        least = max(1, METHODS[method].min_budget)
        if own is not None and not ((own == [0] and no_budget) or _int_list(own, least)):
            raise SuiteError(f"methods.{key}.budgets = {own!r}: allowed: a non-empty list of integers >= {least}")
        if no_budget:
            if own not in (None, [0]):
                raise SuiteError(f"methods.{key}.budgets = {own!r}: method {method!r} uses no pixel labels (nor "
                                 "group labels)")
            entry_budgets: tuple[int, ...] = (0,)
        else:
            entry_budgets = tuple(own) if own is not None else budgets
            if min(entry_budgets, default=least) < least:
                raise SuiteError(f"methods.{key}: method {method!r} needs budgets >= {least}, got "
                                 f"{list(entry_budgets)} (budgets = [...] in [methods.{key}] sets its own)")
        if own_control not in (None, "true") and not METHODS[method].uses_pixel_labels:
            raise SuiteError(
                f"methods.{key}.data.mask_control = {own_control!r}: method {method!r} uses no pixel labels, so it has "
                "no masks to control; allowed: true (or leave it out)"
            )
        control = own_control or (mask_control if METHODS[method].uses_pixel_labels else "true")
        if control == "empty" and not METHODS[method].budget_in_training:
            allowed = ", ".join(c for c in MASK_CONTROLS if c != "empty")
            raise SuiteError(
                f"methods.{key}: mask_control = 'empty' leaves method {method!r} nothing to do: it reads the budget's "
                f"masks only after training, to build its refit's counterfactuals, and an empty mask has no object to "
                f"paste or remove; allowed for it: {allowed}"
            )
        if own_annotation and not METHODS[method].uses_pixel_labels:
            raise SuiteError(f"methods.{key}.data.annotation = {own_annotation['type']!r}: method {method!r} uses no "
                             "pixel labels, so it has no masks to annotate; allowed: mask (or leave it out)")
        labels = own_annotation if own_annotation is not None else (annotation if METHODS[method].uses_pixel_labels
                                                                    else {})  # fmt: skip
        if labels and labels["type"] not in METHODS[method].annotations:
            raise SuiteError(f"methods.{key}: method {method!r} cannot train with {labels['type']!r} annotations: "
                             f"{METHODS[method].annotation_refusal}")
        if labels and control != "true":
            raise SuiteError(f"methods.{key}: mask_control = {control!r} with annotation = {labels['type']!r}: a "
                             "placebo replaces the true masks, an annotation is derived from them; set one of them")
        if seconds is not None and own is None and not no_budget:
            entry_budgets = _bought(key, method, seconds, labels, costs, least)
        entries.append(MethodEntry(key, method, params, entry_budgets, entry_data, control, labels))
    if mask_control != "true" and not any(METHODS[e.method].uses_pixel_labels for e in entries):
        raise SuiteError(
            f"data.mask_control = {mask_control!r}: no method entry uses pixel labels, so there are no masks to "
            "control; allowed: true (or leave it out)"
        )
    suite = Suite(
        name=raw["name"],
        description=raw.get("description", ""),
        methods=tuple(entries),
        seeds=tuple(raw.get("seeds", (0, 1, 2))),
        dataset=dataset,
        dataset_params=dataset_params,
        model=model,
        model_params=model_params,
        train=train,
        audited_class=raw.get("audited_class", _default_class(dataset)),
        budget_seed=raw.get("budget_seed", 0),
        seed_scope=raw.get("seed_scope", "train"),
        device=raw.get("device", "cpu"),
        unbiased_reference=raw.get("unbiased_reference", True),
        timing=TimingSettings(**raw.get("timing", {})),
        slurm=SlurmSettings(**raw.get("slurm", {})),
        search=_search_settings(raw.get("search"), entries, dataset),
        source=source,
        raw=raw,
        plugins=plugins,
        label_costs=costs,
    )
    _validate_components(suite)
    return suite


def _mask_control(params: dict[str, Any], where: str) -> str:
    """Take `mask_control` out of a `[data]` table (`params`, changed in place: the dataset never sees it) and check
    it (`settings.DataKeys`; `true` as a TOML boolean is the string "true"); "true" when absent."""
    value = params.pop("mask_control", "true")
    value = "true" if value is True else value
    if value not in MASK_CONTROLS:
        raise SuiteError(f"{where}.mask_control = {value!r}: allowed: {', '.join(MASK_CONTROLS)} (docs/methods.md)")
    return str(value)


def label_kind(method: str, annotation: dict[str, Any]) -> str | None:
    """What a run of `method` with `annotation` pays annotators for (a key of `[label_costs]`): its annotation type
    ("mask" for the true masks), "group" where its budget counts group labels, None where it uses no budget."""
    counts = METHODS[method].budget_labels
    if counts is None:
        return None
    return "group" if counts == BUDGET_GROUP else annotation.get("type", "mask")


def _bought(key: str, method: str, seconds: list[float], labels: dict[str, Any], costs: dict[str, float],
            least: int) -> tuple[int, ...]:  # fmt: skip
    """The budgets (images) of method entry `key` that `seconds` of annotation buy: its labels' cost per image
    (`label_kind`; `[label_costs]`), whole images."""
    kind = label_kind(method, labels) or "mask"
    bought = tuple(dict.fromkeys(images_for(t, costs[kind]) for t in seconds))
    if min(bought) < least:
        t = min(seconds)
        raise SuiteError(f"methods.{key}: budget_seconds {t:g} buys {images_for(t, costs[kind])} image(s) of {kind!r} "
                         f"labels at {costs[kind]:g} s each; method {method!r} needs at least {least}")
    return bought


def _annotation(params: dict[str, Any], where: str) -> dict[str, Any]:
    """Take `annotation` and `annotation_dilate` out of a `[data]` table (`params`, changed in place: the dataset
    never sees them) and check them (`settings.DataKeys`): the spec's `annotation` ({} for the true masks)."""
    kind = params.pop("annotation", "mask")
    dilate = params.pop("annotation_dilate", None)
    if kind not in ANNOTATIONS:
        raise SuiteError(f"{where}.annotation = {kind!r}: allowed: {', '.join(ANNOTATIONS)} (docs/methods.md)")
    default = DataKeys.__dataclass_fields__["annotation_dilate"].default
    if dilate is not None and dilate != default and kind != "coarse":
        raise SuiteError(f"{where}.annotation_dilate = {dilate!r}: only with annotation = 'coarse' (got {kind!r})")
    if kind == "coarse":
        dilate = default if dilate is None else dilate
        if isinstance(dilate, bool) or not isinstance(dilate, int) or not 1 <= dilate <= 64:
            raise SuiteError(f"{where}.annotation_dilate = {dilate!r}: allowed: an integer from 1 to 64 (pixels)")
        return {"type": kind, "dilate": dilate}
    return {} if kind == "mask" else {"type": kind}


def _plugins(refs: Any, base: Path | None) -> tuple[str, ...]:
    """Import the suite's plugins; what a worker process needs to import each of them again."""
    try:
        return tuple(plugin.to_ref() for plugin in load_plugins(refs, base))
    except PluginError as err:
        raise SuiteError(str(err)) from None


def _default_class(dataset: Any) -> str:
    """The audited class a dataset is about (boat; waterbird for Waterbirds), "boat" for an unknown dataset (whose
    name is reported by the validation)."""
    return DATASETS[dataset].default_class if isinstance(dataset, str) and dataset in DATASETS else "boat"


def _search_settings(table: dict[str, Any] | None, entries: list[MethodEntry], dataset: str) -> SearchSettings | None:
    """`[search]` as settings; `keys` must name something one of the suite's methods (or training) searches."""
    if table is None:
        return None
    if dataset != BUILTIN_DATA:
        raise SuiteError(
            f"[search] selects on held-out splits the built-in data draws from its own seed ({BUILTIN_DATA}); "
            f"data.name = {dataset!r} has none yet: tune on the built-in data, or set the hyperparameters by hand"
        )
    if "trials" not in table:
        raise SuiteError("missing key search.trials (the number of trials every method entry gets)")
    keys = table.get("keys")
    if keys is not None:
        known = dict.fromkeys(k for e in entries for k in search.searchable(e.method))
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise SuiteError(
                f"search.keys: {', '.join(map(repr, unknown))} is searched by no method of this suite; "
                f"allowed: {', '.join(known)}"
            )
        keys = tuple(keys)
    size = {"group_val_size": table["group_val_size"]} if "group_val_size" in table else {}
    return SearchSettings(
        trials=table["trials"], rule=table.get("rule", "in-distribution-val"), seed=table.get("seed", 0), keys=keys,
        **size,
    )


def _validate_components(suite: Suite) -> None:
    """Resolve the data, model and every method entry once, so a wrong key fails before anything runs. ImageNet
    weights are checked by name only: whether the local cache holds them is checked when the suite runs, so a suite
    can be listed and dry-run on a machine without them."""
    try:
        entry_data = dataset(suite.dataset)
        entry_data.config(suite.dataset_params)
    except ValueError as err:
        raise SuiteError(f"[data]: {err}") from None
    classes = entry_data.classes
    if suite.audited_class not in classes:
        raise SuiteError(
            f"audited_class = {suite.audited_class!r}: not a class of {suite.dataset}; allowed: " + ", ".join(classes)
        )
    try:
        params = build_model_params(suite.model, suite.model_params)
        weights = suite.model_params.get("weights")
        if weights is not None:
            imagenet_weights_path(suite.model, str(weights))
        with torch.device("meta"):  # checks layer names and the like without allocating weights
            architecture = {k: v for k, v in architecture_params(params).items() if k != "weights"}
            build_model(suite.model, len(classes), **architecture)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise SuiteError(f"[model]: {err}") from None
    except (TypeError, RuntimeError) as err:  # keys of the right kind it cannot be built with (widths = [-1])
        keys = ", ".join(f"{k} = {v!r}" for k, v in suite.model_params.items()) or "its defaults"
        why = (str(err).strip().splitlines() or [""])[0]
        raise SuiteError(f"[model]: {suite.model} cannot be built with {keys}: {type(err).__name__}: {why}") from None
    for entry in suite.methods:
        try:
            build_method(entry.method, **entry.params)
        except (ValueError, TypeError) as err:
            raise SuiteError(f"methods.{entry.key}: {err}") from None
        if entry.data:
            try:
                entry_data.config({**suite.dataset_params, **entry.data})
            except ValueError as err:
                raise SuiteError(f"methods.{entry.key}.data: {err}") from None
    try:
        suite.runs()  # resolves every run: e.g. model.init = pretrained-synthetic on a real dataset
    except ValueError as err:
        raise SuiteError(str(err)) from None
    if suite.search is not None:  # every trial's drawn values must make a valid run too
        for spec in suite.runs():
            try:
                spec.resolved()
            except ValueError as err:
                raise SuiteError(f"search trial {spec.trial} of methods.{spec.search['entry']}: {err}") from None
