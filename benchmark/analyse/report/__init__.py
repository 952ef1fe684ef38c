"""The suite report: one self-contained HTML page (`index.html`), `results.csv` and `summary.md` beside it."""

from benchmark.analyse.report.build import SUMMARY_FILE, render, write_report

__all__ = ["SUMMARY_FILE", "render", "write_report"]
