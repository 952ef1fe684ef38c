"""The registries a suite names its methods, models and datasets by, open to code outside the package.

Each registry maps a name to its object (a `Method` class, a model factory, a `Dataset` entry) and remembers where
the name came from: the package itself, a plugin module or file (`benchmark.core.plugins`), or an installed package that
announces plugins through the `gain_bench.plugins` entry-point group. The built-ins are loaded exactly as plugins
are, on first use of any registry, so a process that only reads a results folder never imports them (or torch).

    from benchmark.core.registry import register_method

    @register_method(display="My GAIN", colour="#CC79A7")
    class MyGAIN(GAIN):
        name = "my_gain"

A name that is already taken is refused with both origins named; a plugin's identity (its module and package
version, or its file's digest) enters the config hash of every run that uses one of its entries.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from benchmark.core import metric_defs
from benchmark.core.metric_defs import Metric, MetricError
from benchmark.core.plugins import (
    BUILTIN,
    Origin,
    Plugin,
    PluginError,
    current_origin,
    entry_point_plugins,
    import_plugin,
)

BUILTIN_MODULES = ("benchmark.execute.methods", "benchmark.execute.models", "benchmark.execute.datasets.registry")
EXTRA_COLOURS = ("#CC79A7", "#D55E00", "#56B4E9", "#000000", "#999999")

T = TypeVar("T")


class RegistryError(ValueError):
    """An unknown name, or a name taken twice."""


@dataclass(frozen=True)
class Entry:
    """A registered name: its object, where it comes from, and how the report names and colours it."""

    kind: str
    name: str
    obj: Any
    origin: Origin
    display: str
    colour: str
    rank: int

    def labels(self) -> dict[str, Any]:
        """What the analysis side needs of the entry, as plain data (written into the results folder)."""
        return {"display": self.display, "colour": self.colour, "rank": self.rank, "origin": str(self.origin)}


def default_colour(name: str) -> str:
    """A stable colour for a name that declares none."""
    return EXTRA_COLOURS[zlib.crc32(name.encode()) % len(EXTRA_COLOURS)]


class Registry(Mapping[str, Any]):
    """Name -> object, in registration order (built-ins first). Item assignment (as `monkeypatch.setitem` does)
    registers a test double without the clash check."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, obj: Any, *, display: str | None = None, colour: str | None = None) -> Entry:
        """Register `obj` under `name` from the current origin; a name already taken from another origin is a
        RegistryError naming both (the same origin registering again, as a re-imported module does, replaces)."""
        origin = current_origin()
        old = self._entries.get(name)
        if old is not None and old.origin != origin:
            raise RegistryError(
                f"{self.kind} {name!r} from {origin} clashes with the {self.kind} of that name from {old.origin} "
                f"({_where(old.obj)}); rename one of them"
            )
        rank = old.rank if old is not None else len(self._entries)
        entry = Entry(self.kind, name, obj, origin, display or name, colour or default_colour(name), rank)
        self._entries[name] = entry
        return entry

    def entry(self, name: str) -> Entry:
        """The entry of `name`; an unknown name is a RegistryError listing the known ones."""
        load_builtins()
        if name not in self._entries:
            raise RegistryError(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self._entries)}")
        return self._entries[name]

    def entries(self) -> list[Entry]:
        load_builtins()
        return list(self._entries.values())

    def __getitem__(self, name: str) -> Any:
        load_builtins()
        return self._entries[name].obj

    def __iter__(self) -> Iterator[str]:
        load_builtins()
        return iter(list(self._entries))

    def __len__(self) -> int:
        load_builtins()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        load_builtins()
        return name in self._entries

    def __setitem__(self, name: str, obj: Any) -> None:
        old = self._entries.get(name)
        rank = old.rank if old is not None else len(self._entries)
        self._entries[name] = Entry(self.kind, name, obj, current_origin(), name, default_colour(name), rank)

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def unregister(self, origin: Origin) -> None:
        """Drop every entry from `origin` (a plugin that failed half-way through its import)."""
        for name in [n for n, e in self._entries.items() if e.origin == origin]:
            del self._entries[name]


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


METHODS = Registry("method")
MODELS = Registry("model")
DATASETS = Registry("dataset")
REGISTRIES = {"method": METHODS, "model": MODELS, "dataset": DATASETS}


def register_method(
    cls: type[T] | None = None, *, display: str | None = None, colour: str | None = None
) -> Any:
    """Register a `Method` subclass under its `name` (as `@register_method` or `@register_method(display=...)`)."""

    def add(c: type[T]) -> type[T]:
        name = getattr(c, "name", "")
        if not name:
            raise RegistryError(f"{_where(c)}: a method class needs a non-empty `name`")
        METHODS.register(name, c, display=display, colour=colour)
        return c

    return add(cls) if cls is not None else add


def register_model(
    fn: Callable[..., T] | None = None, *, name: str | None = None, display: str | None = None
) -> Any:
    """Register a model factory `fn(num_classes, *, attention_layer=..., ...)` returning a `SplitModel`, under
    `name` (default: the function's name)."""

    def add(f: Callable[..., T]) -> Callable[..., T]:
        MODELS.register(name or f.__name__, f, display=display)
        return f

    return add(fn) if fn is not None else add


def register_dataset(dataset: T) -> T:
    """Register a `benchmark.execute.datasets.registry.Dataset` entry under its `name`."""
    DATASETS.register(dataset.name, dataset)  # type: ignore[attr-defined]
    return dataset


def register_metric(
    fn: Callable[..., T] | None = None,
    *,
    name: str | None = None,
    label: str | None = None,
    higher_is_better: bool = True,
    binary: bool = False,
    chance: float | None = None,
    definition: str = "",
    short: str = "",
    correlated: bool = False,
) -> Any:
    """Register a per-image localisation metric `fn(maps, region, valid) -> [N]` (the audited class's Grad-CAM maps
    `[N,H,W]` in [0, 1], its mask and the pixels not ignored, both `[N,H,W]` bool; NaN for an image without the
    class) under `name` (default: the function's name), which is also its column of `predictions.csv`. Every run
    this process trains then writes it per image, the record holds its mean over the val images with the class, and
    the tables, the report and `gain-bench table` show it. A name taken by another origin is a RegistryError."""

    def add(f: Callable[..., T]) -> Callable[..., T]:
        key = name or f.__name__
        metric = Metric(key, label or key.replace("_", " "), ("val",), higher_is_better=higher_is_better,
                        binary=binary, column=key, chance=chance, definition=definition, short=short or label or key,
                        correlated=correlated, per_image=f)  # fmt: skip
        try:
            metric_defs.register(metric, str(current_origin()))
        except MetricError as err:
            raise RegistryError(str(err)) from None
        return f

    return add(fn) if fn is not None else add


_LOADED = False


def load_builtins() -> None:
    """Import the package's own methods, models and datasets, then the plugins installed packages announce through
    the entry-point group, once per process, before any lookup."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for plugin in entry_point_plugins():
        _load(plugin)


def load_plugins(refs: Iterable[str], base: Path | None = None) -> list[Plugin]:
    """Import each plugin (a module name, or a `.py` file relative to `base`) once per process, recording what it
    registers as coming from it; returns them with their identities. A plugin that fails to import, or registers a
    name that is taken, is a PluginError naming the plugin, and leaves none of its entries behind."""
    load_builtins()
    return [_load(Plugin.resolve(ref, base)) for ref in refs]


def _load(plugin: Plugin) -> Plugin:
    try:
        import_plugin(plugin)
    except PluginError:
        for registry in REGISTRIES.values():
            registry.unregister(plugin.origin)
        metric_defs.unregister(str(plugin.origin))
        raise
    return plugin


def display(method: str) -> str:
    """A method's name in tables and figures (its entry's `display`; the name itself for one not registered here)."""
    return METHODS.entry(method).display if method in METHODS else method


def colour(method: str) -> str:
    """A method's colour in every figure (its entry's; a stable pick for one not registered here)."""
    return METHODS.entry(method).colour if method in METHODS else default_colour(method)


def labels(names: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """`Entry.labels()` of each entry `names` ({kind: name}) uses: what the report shows of them, written into the
    results folder so that it renders without the registry (or the plugin) at hand."""
    return {kind: REGISTRIES[kind].entry(name).labels() for kind, name in names.items()}


def origins(names: Mapping[str, str]) -> list[str]:
    """The plugin identities of the entries `names` ({kind: name}) uses, for the config hash (built-ins: none)."""
    out = []
    for kind, name in names.items():
        registry = REGISTRIES[kind]
        if name in registry:
            identity = registry.entry(name).origin.identity
            if identity and identity not in out:
                out.append(identity)
    return out


__all__ = [
    "BUILTIN",
    "DATASETS",
    "METHODS",
    "MODELS",
    "Entry",
    "Origin",
    "PluginError",
    "Registry",
    "RegistryError",
    "labels",
    "load_plugins",
    "register_dataset",
    "register_method",
    "register_model",
]
