"""The suite report: one self-contained HTML page (`index.html`) and `results.csv` beside it."""

from benchmark.report.build import write_report

__all__ = ["write_report"]
