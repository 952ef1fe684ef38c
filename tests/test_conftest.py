"""`pytest --benchmark` is an alias of `--benchmark-only` that deselects the other tests, one summary line instead of
a line per skipped test (tests/conftest.py); and a test run that changes the working tree fails."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = """
def test_plain():
    pass


def test_timed(benchmark):
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "passed", "deselected"),
    [([], 2, 0), (["--benchmark"], 1, 1), (["--benchmark-only"], 1, 1)],
)
def test_benchmark_flag_is_an_alias_of_benchmark_only(tmp_path, flags, passed, deselected):
    result = _pytest(tmp_path, SAMPLE, *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{passed} passed" in result.stdout
    assert "skipped" not in result.stdout.lower(), "no wall of skips"
    if deselected:
        assert f"{deselected} deselected" in result.stdout


SLOW_SAMPLE = """
import pytest


def test_fast():
    pass


@pytest.mark.slow
def test_slow():
    pass
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "ran"),
    [([], {"test_fast"}), (["-m", "slow"], {"test_slow"}), (["--with-slow"], {"test_fast", "test_slow"}),
     (["-k", "slow or fast"], {"test_fast"})],
)
def test_a_plain_run_leaves_the_slow_tests_out_and_ci_can_ask_for_them(tmp_path, flags, ran):
    result = _pytest(tmp_path, SLOW_SAMPLE, "-rA", *flags)  # a PASSED line per test in the short summary
    assert result.returncode == 0, result.stdout + result.stderr
    passed = {line.rsplit("::", 1)[-1] for line in result.stdout.splitlines() if line.startswith("PASSED ")}
    assert passed == ran


@pytest.mark.slow
def test_a_slow_test_named_by_its_node_id_runs(tmp_path):
    _pytest(tmp_path, SLOW_SAMPLE)
    named = str(tmp_path / "tests" / "test_sample.py") + "::test_slow"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", named], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "1 passed" in result.stdout, result.stdout


def _pytest(tmp_path, sample: str, *flags: str) -> subprocess.CompletedProcess[str]:
    tests = tmp_path / "tests"
    tests.mkdir(exist_ok=True)
    text = (ROOT / "tests" / "conftest.py").read_text().replace(
        "ROOT = Path(__file__).resolve().parents[1]", "ROOT = Path(__file__).resolve().parents[1] / 'tree'"
    )
    (tmp_path / "tree").mkdir(exist_ok=True)
    (tests / "conftest.py").write_text(text)
    (tests / "test_sample.py").write_text(sample)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tests), *flags],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")},  # not a worker of ours
    )


@pytest.mark.slow
def test_a_test_that_writes_into_the_working_tree_fails_the_run(tmp_path):
    """The tree the copied conftest watches is `tmp_path/tree`; a test writing a data set there fails the run."""
    writer = (
        "from pathlib import Path\n\n\ndef test_writes():\n"
        "    folder = Path(__file__).parents[1] / 'tree' / 'datasets'\n"
        "    folder.mkdir()\n"
        "    (folder / 'x.png').write_bytes(b'')\n"
    )
    result = _pytest(tmp_path, writer)
    assert result.returncode != 0 and "1 passed" in result.stdout, "the test passes, the run fails"
    assert "the tests changed the working tree" in result.stdout and "+ datasets/x.png" in result.stdout
    clean = tmp_path / "clean"
    clean.mkdir()
    assert _pytest(clean, "def test_nothing():\n    pass\n").returncode == 0
