"""gain-bench: a bias-audit benchmark for attention-guided training (GAIN, CVPR 2018)."""

__version__ = "0.1.0"
