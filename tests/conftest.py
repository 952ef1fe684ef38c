import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# What a test run may leave behind in the working tree: caches and the environments it runs in.
UNTRACKED_OK = {".git", ".venv", ".venv-analysis", ".tox", ".pytest_cache", ".ruff_cache", ".benchmarks", ".whl",
                ".grimp_cache", ".import_linter_cache", "gain_bench.egg-info", "__pycache__"}  # fmt: skip


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--benchmark",
        action="store_true",
        default=False,
        dest="benchmark_alias",
        help="alias of --benchmark-only (pytest-benchmark): run only the benchmarks, e.g. `pytest --benchmark`",
    )
    parser.addoption(
        "--with-slow",
        action="store_true",
        default=False,
        dest="with_slow",
        help="also run the tests marked slow (end-to-end suites, subprocesses, SLURM, the browser, fuzzing), which a "
        "plain `pytest` leaves out; `pytest -m slow` runs them alone",
    )


def _benchmarks_only(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_alias", default=False) or config.getoption("benchmark_only", default=False))


def _slow_deselected(config: pytest.Config) -> bool:
    """Whether the tests marked `slow` stay out of this run: they do in a plain `pytest` (the README's command, a
    few minutes); `pytest -m slow` runs them alone (CI's second step), `--with-slow` or any `-m` expression decides
    for itself, and a test named by its node id (`file.py::test`) always runs."""
    if config.getoption("with_slow", default=False) or config.option.markexpr:
        return False
    return not any("::" in str(arg) for arg in config.args)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With `--benchmark` (or `--benchmark-only`) the tests that are not benchmarks are deselected, one summary line,
    instead of skipped one line each, so the benchmarks' tables and ratios are what the run prints. Otherwise the
    tests marked `slow` are deselected unless asked for (`_slow_deselected`)."""
    if not _benchmarks_only(config):
        if _slow_deselected(config):
            dropped = [item for item in items if item.get_closest_marker("slow") is not None]
            if dropped:
                config.hook.pytest_deselected(items=dropped)
                items[:] = [item for item in items if item.get_closest_marker("slow") is None]
        return
    keep = [item for item in items if "benchmark" in getattr(item, "fixturenames", ())]
    dropped = [item for item in items if "benchmark" not in getattr(item, "fixturenames", ())]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _tree(root: Path) -> set[str]:
    """Every path in the working tree, tracked or not, less `UNTRACKED_OK` (at any depth)."""
    found = set()
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in UNTRACKED_OK]
        rel = Path(top).relative_to(root)
        found.update(str(rel / name) for name in files)
    return found


def _git_status(root: Path) -> str:
    try:
        out = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout if out.returncode == 0 else ""


def pytest_sessionstart(session: pytest.Session) -> None:
    if "MUTANT_UNDER_TEST" in os.environ:  # mutmut (tox -e mutation) runs the tests in a copy of the tree; a mutant's
        return  # verdict must not hang on whatever else changes in the working tree meanwhile
    session.config.stash[_TREE] = (_tree(ROOT), _git_status(ROOT))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Tests write only to temporary folders: a run that added, removed or changed a file of the working tree (a data
    set under ./datasets, a report under ./reports, a tracked file) fails, naming what changed."""
    before = session.config.stash.get(_TREE, None)
    if before is None or _benchmarks_only(session.config) or session.config.getoption("collectonly", False):
        return
    after = (_tree(ROOT), _git_status(ROOT))
    added, removed = sorted(after[0] - before[0]), sorted(before[0] - after[0])
    if added or removed or after[1] != before[1]:
        lines = [f"+ {p}" for p in added[:20]] + [f"- {p}" for p in removed[:20]]
        if after[1] != before[1]:
            lines.append("git status changed:\n" + after[1])
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.section("the tests changed the working tree", red=True)
            for line in lines:
                reporter.write_line(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_TREE = pytest.StashKey[tuple[set[str], str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one); run them with `pytest -m cuda`")
    # pytest-benchmark reads `benchmark_only` in its own pytest_configure, which runs last (trylast=True).
    if config.getoption("benchmark_alias", default=False):
        config.option.benchmark_only = True


@pytest.fixture(autouse=True, scope="session")
def _data_root_outside_the_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A test that names no data root (a run's held-out data, a subprocess's suite) generates its data under a
    temporary one for the session, never under the repository's ./datasets."""
    patch = pytest.MonkeyPatch()
    patch.setenv("GAIN_BENCH_DATA", str(tmp_path_factory.mktemp("gain-bench-data")))
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _metric_table() -> Iterator[None]:
    """Every test leaves the process's metric table as it found it: a metric a test's plugin registered, or a
    results folder declared, would otherwise reach every later test's runs and tables on that worker."""
    from benchmark.core import metric_defs

    saved = dict(metric_defs.METRIC)
    yield
    metric_defs.METRIC.clear()
    metric_defs.METRIC.update(saved)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """The paired ratio figures of tests/perf (see tests/perf/paired.py), when any benchmark computed them."""
    import sys

    paired = sys.modules.get("paired")
    if paired is not None and paired.RATIOS:
        terminalreporter.section("paired ratios")
        for line in paired.RATIOS:
            terminalreporter.write_line(line)
