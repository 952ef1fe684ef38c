"""harbour_lab: a third-party gain-bench plugin (lives outside the package, edits nothing inside it).

Importing it registers one method (`outside_energy`), one model (`shufflenet_small`), one dataset (`harbour-csv`)
and one localisation metric (`map_entropy`).
A suite names it with `plugins = ["harbour_lab"]` (on PYTHONPATH, or pip-installed: then also through the
`gain_bench.plugins` entry point) or by file, `plugins = ["harbour_lab/__init__.py"]`.
"""

from harbour_lab import data, method, metric, model

__all__ = ["data", "method", "metric", "model"]
