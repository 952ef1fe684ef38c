"""Claims checked against their tables: a findings page declares what its prose says, this evaluates it.

A page declares its claims in one fenced block whose info string is `toml claims`::

    folder = "reports/verdict"            # the results folder, relative to the repository

    [[claim]]
    id = "gain-water"                     # unique on the page
    says = "GAIN calls fewer water-only images boat than the baseline"
    a = "gain masked_bn=batch"            # a configuration: its method label, as the tables' footnotes print it
    b = "gradcam"                         # the one it is compared with (paired by seed)
    where = { "model.pretrain.corpus" = "unbiased" }   # optional: spec keys both must have (a regime of a sweep)
    metric = "context_without_class"      # a metric of docs/statistics.md, per shifted group where it can be
    direction = ">"                       # a - b > 0 (or "<")
    min_replicates = 8                    # optional: the default is stats.MIN_REPLICATES
    outcome = "fails"                     # optional, written after the runs: the declared claim failed, and the
                                          # page keeps it as declared (the check then flags it only if it stops failing)

`evaluate` reads the folder, pairs the two configurations by seed, and gives each claim the mean difference a - b
with its paired two-level bootstrap interval, the exact sign-flip p over the replicates, Holm-adjusted across the
page's claims, and a status: `holds` (at least `min_replicates` full replicates, Holm p < 0.05 and the interval on
the claimed side of 0), `fails` (the same evidence on the other side), else `inconclusive` with the reason (the
folder or a configuration missing, too few or no full replicates, the interval across 0, p too large). The rule
is `paired.call`'s, so the report, the tables and the claims never disagree on what is significant.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.analyse.metric_groups import METRIC as TABLE_METRIC
from benchmark.analyse.paired import call, compare, seed_pairs
from benchmark.analyse.runs import Run, load_runs
from benchmark.analyse.stats import ALPHA, MIN_REPLICATES, N_RESAMPLES, holm
from benchmark.core.metric_defs import METRIC
from benchmark.core.spec import SPEC_SECTIONS

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
DIRECTIONS = (">", "<")
FENCE = re.compile(r"^```toml claims[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
CLAIM_KEYS = ("id", "says", "a", "b", "where", "metric", "direction", "min_replicates", "outcome")


class ClaimError(ValueError):
    """A claims block that cannot be read: the message names the page and the key."""


@dataclass(frozen=True)
class Claim:
    id: str
    says: str
    a: str
    b: str
    metric: str
    direction: str
    where: dict[str, Any] = field(default_factory=dict)
    min_replicates: int = MIN_REPLICATES
    outcome: str | None = None  # "fails": a declared claim that failed, recorded as such after the runs


@dataclass(frozen=True)
class Declared:
    """A page's claims and the results folder they are evaluated on."""

    page: Path
    folder: Path
    claims: tuple[Claim, ...]


@dataclass
class Result:
    claim: Claim
    status: str = INCONCLUSIVE
    reason: str = ""
    n: int = 0
    full: bool = False
    difference: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")
    p: float = float("nan")
    p_holm: float = float("nan")

    @property
    def unexpected(self) -> bool:
        """A failure the page has not recorded (`outcome = "fails"`), or a recorded failure that now holds."""
        recorded = self.claim.outcome == FAILS
        return (self.status == FAILS and not recorded) or (self.status == HOLDS and recorded)

    def line(self) -> str:
        """`holds   gain-water: GAIN calls ... | a - b on metric: +0.087 [+0.051, +0.120], sign-flip p 0.008
        (Holm 0.031), 8 full replicates`; an inconclusive line ends with its reason."""
        c = self.claim
        status = f"{self.status} (recorded)" if c.outcome == FAILS and self.status == FAILS else self.status
        head = f"{status:<12} {c.id}: {c.says}"
        if not np.isfinite(self.difference):
            return f"{head} | {self.reason}"
        where = "".join(f" {k}={v}" for k, v in c.where.items())
        numbers = (
            f"{c.a} − {c.b} on {c.metric}{where}: {self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}], "
            f"sign-flip p {self.p:.4f} (Holm {self.p_holm:.4f}), {self.n} {'full replicates' if self.full else 'seeds'}"
        )
        return f"{head} | {numbers}" + (f" | {self.reason}" if self.reason else "")


def has_claims(text: str) -> bool:
    return FENCE.search(text) is not None


def declared(page: Path, root: Path = Path(".")) -> Declared:
    """The claims `page` declares (its one `toml claims` block), checked: every key known, ids unique, the metric
    and the direction allowed."""
    text = (root / page).read_text()
    if Path(page).suffix == ".toml":  # a claims file of its own (a CI gate): the whole file is the block
        body = text
    else:
        blocks = list(FENCE.finditer(text))
        if len(blocks) != 1:
            raise ClaimError(f"{page}: {len(blocks)} claims blocks; a page declares its claims in one ```toml claims "
                             "block (or a .toml file holds them alone)")  # fmt: skip
        body = blocks[0]["body"]
    try:
        data = tomllib.loads(body)
    except tomllib.TOMLDecodeError as err:
        raise ClaimError(f"{page}: the claims block is not valid TOML: {err}") from None
    folder = data.get("folder")
    if not isinstance(folder, str) or not folder:
        raise ClaimError(f"{page}: the claims block needs folder = \"reports/<suite>\" (the results folder)")
    unknown = sorted(set(data) - {"folder", "claim"})
    if unknown:
        raise ClaimError(f"{page}: unknown key(s) {', '.join(unknown)} in the claims block; allowed: folder, claim")
    claims, seen = [], set()
    for i, raw in enumerate(data.get("claim", [])):
        where = f"{page}: claim {raw.get('id', i + 1)!r}"
        unknown = sorted(set(raw) - set(CLAIM_KEYS))
        if unknown:
            raise ClaimError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(CLAIM_KEYS)}")
        missing = [k for k in ("id", "says", "a", "b", "metric", "direction") if k not in raw]
        if missing:
            raise ClaimError(f"{where}: missing {', '.join(missing)}")
        if raw["id"] in seen:
            raise ClaimError(f"{where}: the id is used twice on the page")
        seen.add(raw["id"])
        if raw["metric"] not in METRIC:
            raise ClaimError(f"{where}: metric {raw['metric']!r} unknown; allowed: {', '.join(METRIC)}")
        if raw["direction"] not in DIRECTIONS:
            raise ClaimError(f"{where}: direction {raw['direction']!r}; allowed: > (a - b > 0) or < (a - b < 0)")
        least = raw.get("min_replicates", MIN_REPLICATES)
        if isinstance(least, bool) or not isinstance(least, int) or least < 2:
            raise ClaimError(f"{where}: min_replicates = {least!r}; allowed: an integer >= 2")
        if raw.get("outcome", FAILS) != FAILS:
            raise ClaimError(f"{where}: outcome = {raw['outcome']!r}; allowed: fails (a declared claim that failed, "
                             "kept as declared)")
        if not isinstance(raw.get("where", {}), dict):
            raise ClaimError(f"{where}: where must be a table of spec keys, e.g. {{ \"model.pretrain.corpus\" = ... }}")
        claims.append(Claim(**raw))
    if not claims:
        raise ClaimError(f"{page}: the claims block declares no [[claim]]")
    return Declared(page, Path(folder), tuple(claims))


def spec_value(spec: dict[str, Any], key: str) -> Any:
    """A dotted key of a run's spec: `data.X` (its data parameters), `model.X` (model parameters, `model.pretrain.X`
    inside them), `train.X`, or a top-level spec key (`budget`, `mask_control`, `seed_scope`); a method parameter by
    its bare name. None where the spec does not hold it."""
    head, _, rest = key.partition(".")
    node: Any = spec.get(SPEC_SECTIONS[head], {}) if head in SPEC_SECTIONS else None
    if node is None or not rest:
        return spec.get(key, spec.get("method_params", {}).get(key))
    for part in rest.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _configuration(runs: list[Run], label: str, where: dict[str, Any]) -> tuple[list[Run], str]:
    """The runs of the one configuration whose method label is `label` among the runs that match `where`; an empty
    list and the reason where there is none or more than one."""
    chosen = [r for r in runs if r.label == label and all(spec_value(r.spec, k) == v for k, v in where.items())]
    configs = {r.config for r in chosen}
    if not chosen:
        labels = sorted({r.label for r in runs})
        return [], f"no run of {label!r}{_where_text(where)} (configurations: {', '.join(labels)})"
    if len(configs) > 1:
        return [], f"{label!r}{_where_text(where)} matches {len(configs)} configurations; narrow it with where"
    return chosen, ""


def _where_text(where: dict[str, Any]) -> str:
    return "".join(f" {k}={v}" for k, v in where.items())


def _measure(claim: Claim, runs: list[Run], n_resamples: int) -> Result:
    result = Result(claim)
    a, why = _configuration(runs, claim.a, claim.where)
    b, why_b = _configuration(runs, claim.b, claim.where) if a else ([], "")
    if not a or not b:
        result.reason = why or why_b
        return result
    metric = TABLE_METRIC[claim.metric]
    pairs = seed_pairs(a, b, metric)
    if not pairs:
        result.reason = f"no seed where both {claim.a!r} and {claim.b!r} have {claim.metric}"
        return result
    rng = np.random.default_rng([len(claim.id), *claim.id.encode()])
    found = compare(pairs, metric, rng=rng, n_resamples=n_resamples)
    result.n, result.full = len(pairs), found.full_replicates
    result.difference, result.low, result.high, result.p = found.difference, found.low, found.high, found.p_replicates
    return result


def _judge(result: Result) -> None:
    """The status from the numbers, after Holm's adjustment: `paired.call`'s rule (the report's and the tables'),
    with the claim's own number of replicates; significant on the claimed side holds, on the other fails."""
    if not np.isfinite(result.difference):
        return
    row = {"n_seeds": result.n, "full_replicates": result.full, "ci_low": result.low, "ci_high": result.high,
           "p_replicates_holm": result.p_holm}  # fmt: skip
    verdict, result.reason = call(row, ALPHA, result.claim.min_replicates, needs="the claim")
    if verdict == "significant":
        side = 1.0 if result.claim.direction == ">" else -1.0
        result.status = HOLDS if side * result.difference > 0 else FAILS


def evaluate(
    page: Path, root: Path = Path("."), *, folder: Path | None = None, n_resamples: int = N_RESAMPLES
) -> list[Result]:
    """Every claim of `page` evaluated on its results folder (under `root`; `folder`: another, e.g. the one a CI
    job wrote); Holm's adjustment runs over the page's claims that have a p."""
    found = declared(page, root)
    where = Path(folder) if folder is not None else found.folder
    folder = where if where.is_absolute() else root / where
    if not (folder / "runs").is_dir():
        return [Result(c, reason=f"results folder {where} not here (run its suite)") for c in found.claims]
    runs, _ = load_runs([folder], short=True)
    results = [_measure(c, runs, n_resamples) for c in found.claims]
    adjusted = holm(np.array([r.p for r in results]))
    for result, p in zip(results, adjusted, strict=True):
        result.p_holm = float(p)
        _judge(result)
    return results


def summary_line(results: list[Result]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in (HOLDS, FAILS, INCONCLUSIVE)}
    return f"{len(results)} claims: {counts[HOLDS]} hold, {counts[FAILS]} fail, {counts[INCONCLUSIVE]} inconclusive"
