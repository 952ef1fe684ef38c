"""Plugins: code outside the package that registers methods, models or datasets (`benchmark.core.registry`).

A plugin is a module name (`my_lab.gain_variants`, importable where the run executes) or a Python file
(`plugins/my_method.py`, relative to the suite that names it). A suite lists them under `plugins = [...]`,
`gain-bench train` takes `--plugin`, and an installed package can announce them through the entry-point group
`gain_bench.plugins`. Every process that trains imports them before its first run: this one, the local pool's
workers, submitit's jobs and SLURM's.

A plugin's identity is its module with its distribution's version (`my_lab.gain_variants==1.2.0`), or, outside any
installed distribution, its source's digest (`my_method.py@sha256:3f2a...`): it enters the config hash of every run
that uses one of its entries, so a changed plugin gives new run ids and never mixes with old results.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

ENTRY_POINT_GROUP = "gain_bench.plugins"
BUILTIN = "built-in"


class PluginError(ValueError):
    """A plugin that cannot be found or imported, or that registers a name that is taken."""


@dataclass(frozen=True)
class Origin:
    """Where a registered name comes from: `built-in`, or a plugin with its identity."""

    kind: str = BUILTIN
    source: str = "benchmark"
    identity: str = ""

    def __str__(self) -> str:
        return BUILTIN if self.kind == BUILTIN else f"plugin {self.source} ({self.identity})"


BUILTIN_ORIGIN = Origin()
_CURRENT: ContextVar[Origin | None] = ContextVar("gain_bench_origin", default=None)


def current_origin() -> Origin:
    """The origin of what is being registered now: the plugin being imported, else built-in."""
    return _CURRENT.get() or BUILTIN_ORIGIN


@contextlib.contextmanager
def registering_as(origin: Origin) -> Iterator[None]:
    """Everything registered inside the block is recorded as coming from `origin`."""
    token = _CURRENT.set(origin)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Plugin:
    """A plugin as named (`ref`), where it is (`module`, or `path` for a file) and its identity."""

    ref: str
    module: str
    identity: str
    path: str = ""

    @property
    def origin(self) -> Origin:
        return Origin("plugin", self.ref, self.identity)

    @classmethod
    def resolve(cls, ref: str, base: Path | None = None) -> Plugin:
        """A file (`*.py`, or any ref with a path separator; relative to `base`) or a module name, with its
        identity; a file that does not exist or a module that cannot be found is a PluginError."""
        if ref.endswith(".py") or "/" in ref or "\\" in ref:
            path = Path(ref).expanduser()
            if not path.is_absolute():
                path = (base or Path.cwd()) / path
            if not path.is_file():
                raise PluginError(f"plugin {ref!r}: no such file {path}")
            digest = _digest([path])
            return cls(ref, f"gain_bench_plugins.{path.stem}_{digest[:8]}", f"{path.name}@sha256:{digest}", str(path))
        try:
            spec = importlib.util.find_spec(ref)
        except (ImportError, ValueError) as err:
            raise PluginError(f"plugin {ref!r}: cannot be imported: {type(err).__name__}: {err}") from None
        if spec is None:
            raise PluginError(f"plugin {ref!r}: no module of that name (is its package installed, or on PYTHONPATH?)")
        return cls(ref, ref, _module_identity(ref, spec))

    def to_ref(self) -> str:
        """What a worker process needs to import it again: the absolute file, or the module name."""
        return self.path or self.module


def _module_identity(name: str, spec: importlib.machinery.ModuleSpec) -> str:
    top = name.split(".")[0]
    for dist in importlib.metadata.packages_distributions().get(top, []):
        try:
            return f"{name}=={importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    if spec.submodule_search_locations:
        files = [p for loc in spec.submodule_search_locations for p in Path(loc).rglob("*.py")]
    else:
        files = [Path(spec.origin)] if spec.origin and Path(spec.origin).is_file() else []
    return f"{name}@sha256:{_digest(files)}" if files else name


def import_plugin(plugin: Plugin) -> None:
    """Import `plugin` once per process with its origin current, so what it registers is recorded as its; any
    exception while importing is a PluginError naming the plugin and the exception."""
    if plugin.module in sys.modules:
        return
    try:
        with registering_as(plugin.origin):
            if plugin.path:
                spec = importlib.util.spec_from_file_location(plugin.module, plugin.path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[plugin.module] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[plugin.module]
                    raise
            else:
                importlib.import_module(plugin.module)
    except Exception as err:
        hint = ""
        missing = getattr(err, "name", None) or ""
        if isinstance(err, ModuleNotFoundError) and missing.startswith("benchmark."):
            hint = (" (gain-bench's modules live in benchmark/core, execute and analyse now: a plugin imports what it "
                    "needs from benchmark.api, docs/plugins.md)")  # fmt: skip
        raise PluginError(f"plugin {plugin.ref!r} failed to import: {type(err).__name__}: {err}{hint}") from err


def entry_point_plugins() -> list[Plugin]:
    """The plugins installed packages announce in the `gain_bench.plugins` entry-point group (each entry's value is
    a module to import)."""
    out = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        module = ep.value.split(":")[0]
        version = ep.dist.version if ep.dist is not None else ""
        out.append(Plugin(f"{ep.name} (entry point)", module, f"{module}=={version}" if version else module))
    return out


def plugin_refs(refs: list[str] | None) -> list[str]:
    """`--plugin` values as every process imports them: files made absolute (against the working folder)."""
    return [str(Path(r).resolve()) if r.endswith(".py") or "/" in r else r for r in refs or []]
