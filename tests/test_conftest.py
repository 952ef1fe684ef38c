"""`pytest --benchmark` is an alias of `--benchmark-only` (tests/conftest.py)."""

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


@pytest.mark.parametrize(
    ("flags", "passed", "skipped"),
    [([], 2, 0), (["--benchmark"], 1, 1), (["--benchmark-only"], 1, 1)],
)
def test_benchmark_flag_is_an_alias_of_benchmark_only(tmp_path, flags, passed, skipped):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tests / "test_sample.py").write_text(SAMPLE)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tests), *flags],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{passed} passed" in result.stdout
    if skipped:
        assert f"{skipped} skipped" in result.stdout and "--benchmark-only active" in result.stdout
    else:
        assert "skipped" not in result.stdout
