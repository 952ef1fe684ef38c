"""The suite report: one self-contained HTML page (`index.html`) and `results.csv` beside it."""

from benchmark.report.build import render, write_report

__all__ = ["render", "write_report"]
