import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--benchmark",
        action="store_true",
        default=False,
        dest="benchmark_alias",
        help="alias of --benchmark-only (pytest-benchmark): run only the benchmarks, e.g. `pytest --benchmark`",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one); run them with `pytest -m cuda`")
    # pytest-benchmark reads `benchmark_only` in its own pytest_configure, which runs last (trylast=True).
    if config.getoption("benchmark_alias", default=False):
        config.option.benchmark_only = True


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """The paired ratio figures of tests/perf (see tests/perf/paired.py), when any benchmark computed them."""
    import sys

    paired = sys.modules.get("paired")
    if paired is not None and paired.RATIOS:
        terminalreporter.section("paired ratios")
        for line in paired.RATIOS:
            terminalreporter.write_line(line)
