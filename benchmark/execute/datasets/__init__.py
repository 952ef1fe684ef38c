"""Datasets: the built-in synthetic biased boats, in-memory splits and pixel-label budgets."""
