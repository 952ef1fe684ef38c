"""The three layers (core, execute, analyse) are an import contract (`.importlinter`), run here, in tox and in
.ci/run: it holds for the package, it catches an inverted import, and every module belongs to one layer."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".importlinter"
LINT = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")

pytestmark = pytest.mark.skipif(
    not Path(LINT).exists(), reason="import-linter is not installed (pip install -e '.[test]')"
)


def _lint(package_parent: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT, "--no-cache", str(config)],
        capture_output=True,
        text=True,
        cwd=package_parent,
        env={"PYTHONPATH": str(package_parent), "PATH": str(Path(sys.executable).parent)},
        timeout=300,
        check=False,
    )


def _contract() -> configparser.SectionProxy:
    cfg = configparser.ConfigParser()
    cfg.read(CONFIG)
    return cfg["importlinter:contract:layers"]


def _layers() -> list[set[str]]:
    """The layers contract's layers, top first, each the set of its modules (`a | b` and `a : b` are siblings)."""
    lines = [line for line in _contract()["layers"].split("\n") if line.strip()]
    return [{m.strip() for m in line.replace("|", ":").split(":")} for line in lines]


def test_the_package_keeps_its_layers() -> None:
    done = _lint(ROOT, CONFIG)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


def test_no_import_is_ignored() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(CONFIG)
    assert not [s for s in cfg.sections() if cfg.has_option(s, "ignore_imports")]


def test_an_inverted_import_fails_the_contract(tmp_path: Path) -> None:
    """A copy of the package whose core spec imports the training loop: the contract must break."""
    shutil.copytree(ROOT / "benchmark", tmp_path / "benchmark", ignore=shutil.ignore_patterns("__pycache__"))
    spec = tmp_path / "benchmark" / "core" / "spec.py"
    text = spec.read_text().replace("from benchmark import __version__", "from benchmark import __version__\n"
                                    "from benchmark.execute import train")  # fmt: skip
    spec.write_text(text)
    done = _lint(tmp_path, CONFIG)
    assert done.returncode != 0
    assert "layers (docs/layout.md) BROKEN" in done.stdout
    assert "benchmark.core.spec -> benchmark.execute.train" in done.stdout


def test_analyse_and_execute_do_not_import_each_other(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "benchmark", tmp_path / "benchmark", ignore=shutil.ignore_patterns("__pycache__"))
    tables = tmp_path / "benchmark" / "analyse" / "stats.py"
    tables.write_text("from benchmark.execute import metrics\n" + tables.read_text())
    done = _lint(tmp_path, CONFIG)
    assert done.returncode != 0
    assert "benchmark.analyse.stats -> benchmark.execute.metrics" in done.stdout


def test_every_module_is_in_a_layer_folder_or_the_command_line() -> None:
    """`ls benchmark/` shows the layers: three folders (core, execute, analyse) and the top layer's modules."""
    layers = _layers()
    top = {m.removeprefix("benchmark.") for m in layers[0]}
    folders = {m.removeprefix("benchmark.") for layer in layers[1:] for m in layer}
    assert folders == {"core", "execute", "analyse"}
    entries = {p.stem for p in (ROOT / "benchmark").iterdir() if p.name != "__pycache__"}
    assert entries - {"__init__", "__main__"} == top | folders


def test_the_plugin_api_resolves_and_the_example_uses_nothing_else() -> None:
    import benchmark.api as api

    assert all(getattr(api, name, None) is not None for name in api.__all__)
    imported = set()
    for path in (ROOT / "examples" / "harbour_lab").glob("*.py"):
        imported |= {line.split()[1] for line in path.read_text().splitlines() if line.startswith(("from benchmark",
                                                                                                   "import benchmark"))}
    assert imported == {"benchmark.api"}
