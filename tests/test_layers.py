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


def _layers() -> dict[str, set[str]]:
    cfg = configparser.ConfigParser()
    cfg.read(CONFIG)
    core = set(cfg["importlinter:contract:core"]["source_modules"].split())
    execute = set(cfg["importlinter:contract:execute"]["source_modules"].split())
    analyse = set(cfg["importlinter:contract:analyse"]["source_modules"].split())
    return {"core": core, "execute": execute, "analyse": analyse}


def test_the_package_keeps_its_layers() -> None:
    done = _lint(ROOT, CONFIG)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


def test_an_inverted_import_fails_the_contract(tmp_path: Path) -> None:
    """A copy of the package whose core spec imports the training loop: the contract must break."""
    shutil.copytree(ROOT / "benchmark", tmp_path / "benchmark", ignore=shutil.ignore_patterns("__pycache__"))
    spec = tmp_path / "benchmark" / "spec.py"
    text = spec.read_text().replace("from benchmark import __version__", "from benchmark import __version__, train")
    spec.write_text(text)
    done = _lint(tmp_path, CONFIG)
    assert done.returncode != 0
    assert "core imports neither execute, analyse nor torch BROKEN" in done.stdout
    assert "benchmark.spec -> benchmark.train" in done.stdout


def test_every_module_is_in_exactly_one_layer() -> None:
    layers = _layers()
    app = {"benchmark", "benchmark.__main__", "benchmark.cli", "benchmark.commands", "benchmark.docs"}
    modules = set()
    for path in (ROOT / "benchmark").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))

    def layer_of(module: str) -> list[str]:
        return [n for n, roots in layers.items() if any(module == r or module.startswith(r + ".") for r in roots)]

    unplaced = sorted(m for m in modules - app if len(layer_of(m)) != 1)
    assert not unplaced, f"modules in no layer or in several (add each to one list in .importlinter): {unplaced}"
