"""How the tables and figures name, colour and order methods, from what a results folder holds.

Each method's display name, colour and rank are declared on its registry entry (`benchmark.core.registry`) and written
into the results folder: into every record (`components`) and into `suite.json`. The analysis reads them from
there, so a plugin's method is named and coloured as its author declared on a machine without the plugin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmark.core.registry import default_colour

UNRANKED = 1_000_000  # a method the folder says nothing of sorts after those it does, by name


@dataclass(frozen=True)
class Names:
    """Method -> its labels (`display`, `colour`, `rank`), as `registry.Entry.labels()` gives them."""

    methods: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def display(self, method: str) -> str:
        return str(self.methods.get(method, {}).get("display") or method)

    def colour(self, method: str) -> str:
        return str(self.methods.get(method, {}).get("colour") or default_colour(method))

    def rank(self, method: str) -> int:
        rank = self.methods.get(method, {}).get("rank")
        return int(rank) if isinstance(rank, int) else UNRANKED

    def config(self, method: str, budget: int, label: str | None = None) -> str:
        """ "GAIN_ext-78", and whatever a configuration's label adds after its method and budget (e.g.
        " masked_bn=eval"): a configuration's name in the report and the verdict."""
        own = method + (f"-{int(budget)}" if budget else "")
        name = self.display(method) + (f"-{int(budget)}" if budget else "")
        return name + (str(label)[len(own) :] if label is not None and str(label).startswith(own) else "")

    def merged(self, other: Names) -> Names:
        """These names, with `other`'s where it knows a method these do not."""
        return Names({**other.methods, **self.methods})

    @classmethod
    def of_records(cls, records: Iterable[Mapping[str, Any]]) -> Names:
        """The method labels the records carry (`record["components"]["method"]`)."""
        out: dict[str, Mapping[str, Any]] = {}
        for record in records:
            labels = record.get("components", {}).get("method")
            if labels and "spec" in record:
                out.setdefault(record["spec"]["method"], labels)
        return cls(out)

    @classmethod
    def of_components(cls, components: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> Names:
        """From `suite.json`'s `components` ({"method": {name: labels}, ...})."""
        return cls(dict(components.get("method", {})))
