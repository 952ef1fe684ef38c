"""Every bad suite is refused with a SuiteError naming its file, never another exception: property-based tests
(Hypothesis) that take every shipped suite (suites/*.toml and the examples' suites), mutate it at a random place
(a value of another type at any depth, a key deleted or unknown, a number out of range, a section that is not a
table, a malformed `[sweep]` or `[search]`) and load and expand it as `gain-bench run` does before it trains
(`from_dict`, `runs()` with every run's id and hash, `runner.plan`, `suite.json` written and read back); and the
same for command lines over the shipped files (`load` with `--set` items at the suite's keys and odd ones, `--seeds`
and `--plugin`).

The count is fixed and the examples are derandomised, so CI sees the same suites every time. To fuzz harder and
see the tally (generated, accepted, refused, escaped; the escapes grouped by exception and place, instead of the
first one shrunk):

    GAIN_BENCH_FUZZ_EXAMPLES=1000 GAIN_BENCH_FUZZ_TALLY=1 pytest tests/test_suite_fuzz.py -s -k mutated
"""

from __future__ import annotations

import copy
import math
import os
import re
import signal
import sys
import tempfile
import threading
import tomllib
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from benchmark.core.registry import REGISTRIES
from benchmark.core.settings import SECTIONS
from benchmark.execute import runner, suite_file
from benchmark.execute.suites import Suite, SuiteError, from_dict, load

pytestmark = pytest.mark.slow  # fuzzing: many examples, seconds each test (docs/testing.md)

# Hypothesis caches what it reads of the code under its home folder (`./.hypothesis` by default), even without an
# example database: the temporary folder instead, since tests leave the working tree as it was (conftest.py).
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "gain-bench-hypothesis")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
# The shipped suites (`suites.available()`'s folder) and the examples' suites (harbour's plugin is on `examples`).
SUITE_FILES = sorted((ROOT / "suites").glob("*.toml")) + [
    p for p in sorted(EXAMPLES.glob("*.toml")) if p.name != "pyproject.toml"
]
RAW = {str(p.relative_to(ROOT)): tomllib.loads(p.read_text()) for p in SUITE_FILES}

EXAMPLE_COUNT = int(os.environ.get("GAIN_BENCH_FUZZ_EXAMPLES", "100"))
TALLY = os.environ.get("GAIN_BENCH_FUZZ_TALLY", "") not in ("", "0")

NAN, INF = math.nan, math.inf
# Numbers out of (or at the edge of) every range a suite has.
NUMBERS = [-1, 0, -0.0, 10**30, 2**63, -(2**63), NAN, INF, -INF, 1e-300, 1e300, 0.5, -0.5, 1.5, 2]
# Scalars of every type a TOML (or suite.json: null) value may have, with names a suite uses in the wrong place.
SCALARS = st.sampled_from(
    ["fast", "", "x", "gain", "boat", "scratch", "pretrained-synthetic", "imagenet", "voc", "synthetic-boats",
     "resnet18", "a/b.py", "cuda:0", "data.rho", True, False, None, *NUMBERS]
)
# Keys a mutation adds: unknown ones and known ones in the wrong table.
KEYS = st.sampled_from(
    ["bogus", "epoch", "name", "method", "methods", "data", "model", "train", "budgets", "seeds", "label", "trials",
     "keys", "rule", "init", "pretrain", "rho", "lr", "", "data.rho", "model.init", "train.lr"]
)
TEXT = st.text(alphabet="ab./_ 1", max_size=4)
VALUES = st.one_of(
    SCALARS,
    st.integers(),
    st.floats(allow_subnormal=False),  # a process that flushed denormals (train.flush_denormal) cannot make them
    TEXT,
    st.lists(SCALARS, max_size=3),
    st.lists(st.integers(), max_size=3),
    st.lists(TEXT, max_size=3),
    st.dictionaries(KEYS, SCALARS, max_size=2),
    st.just([]),
    st.just({}),
    st.just([[1]]),
    st.just([{}]),
)

Place = tuple[Any, ...]


def _places(node: Any, path: Place = ()) -> Iterator[Place]:
    """Every place a value sits (dict keys and list indices), depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*path, key)
        yield from _places(value, (*path, key))


def _tables(node: Any, path: Place = ()) -> Iterator[Place]:
    """Every table (the top level included)."""
    if isinstance(node, dict):
        yield path
        for key, value in node.items():
            yield from _tables(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _tables(value, (*path, i))


def _at(raw: Any, path: Place) -> Any:
    for key in path:
        raw = raw[key]
    return raw


def _dotted(path: Place) -> str:
    return ".".join(str(k) for k in path) or "<top>"


Mutation = Callable[[st.DrawFn, dict[str, Any]], str]


def replace(draw: st.DrawFn, raw: dict[str, Any]) -> str:
    """A value anywhere replaced by one of another type (or the same type, wrong)."""
    places = list(_places(raw))
    if not places:
        return "nothing to replace"
    path = draw(st.sampled_from(places))
    value = copy.deepcopy(draw(VALUES))  # a drawn constant must not be shared by two places
    _at(raw, path[:-1])[path[-1]] = value
    return f"{_dotted(path)} = {value!r}"


def delete(draw: st.DrawFn, raw: dict[str, Any]) -> str:
    """A key (or a list item) left out."""
    places = list(_places(raw))
    if not places:
        return "nothing to delete"
    path = draw(st.sampled_from(places))
    del _at(raw, path[:-1])[path[-1]]
    return f"del {_dotted(path)}"


def add_key(draw: st.DrawFn, raw: dict[str, Any]) -> str:
    """A key added to any table: unknown there, or known elsewhere."""
    path = draw(st.sampled_from(list(_tables(raw))))
    key, value = draw(KEYS), copy.deepcopy(draw(VALUES))
    _at(raw, path)[key] = value
    return f"{_dotted((*path, key))} = {value!r} (added)"


def out_of_range(draw: st.DrawFn, raw: dict[str, Any]) -> str:
    """A number pushed out of its range (negative, zero, huge, nan, inf)."""
    numbers = [p for p in _places(raw) if isinstance(_at(raw, p), int | float) and not isinstance(_at(raw, p), bool)]
    if not numbers:
        return replace(draw, raw)
    path = draw(st.sampled_from(numbers))
    value = draw(st.sampled_from(NUMBERS) | st.integers() | st.floats(allow_subnormal=False))
    _at(raw, path[:-1])[path[-1]] = value
    return f"{_dotted(path)} = {value!r} (out of range)"


def section(draw: st.DrawFn, raw: dict[str, Any]) -> str:
    """A section given as something other than a table (`train = "fast"`, `data = [1, 2]`, `search = null`)."""
    name = draw(st.sampled_from(SECTIONS))
    value = copy.deepcopy(draw(VALUES.filter(lambda v: not isinstance(v, dict))))
    raw[name] = value
    return f"{name} = {value!r} (section)"


SWEEP_AXES = st.sampled_from(
    ["data.rho", "train.lr", "train.epochs", "model.init", "model", "data", "train", "init", "data.name",
     "methods.gain.alpha", "seeds", "", "data.", "data.rho.x", "model.pretrain.lr"]
)
SWEEP_POINT = st.one_of(
    VALUES, st.dictionaries(st.sampled_from(["label", "model.init", "train.lr", "data.rho", "data.name", "seeds",
                                             "name", "model"]), VALUES, max_size=3),
)


def sweep(draw: st.DrawFn, raw: dict[str, Any]) -> str:
    """A `[sweep]` malformed: axes of bad names, values that are no list, points of bad keys or values."""
    table = draw(st.one_of(
        VALUES,
        st.dictionaries(SWEEP_AXES, st.one_of(VALUES, st.lists(SWEEP_POINT, max_size=3)), max_size=3),
    ))  # fmt: skip
    raw["sweep"] = copy.deepcopy(table)
    return f"sweep = {table!r}"


SEARCH_KEYS = st.sampled_from(["trials", "rule", "seed", "keys", "bogus"])
SEARCH_VALUES = st.one_of(
    VALUES,
    st.sampled_from(["oracle", "in-distribution-val", "lr", "alpha", "weight_decay"]),
    st.lists(st.sampled_from(["lr", "alpha", "weight_decay", "masked_bn", "nope", ""]), max_size=3),
)


def search(draw: st.DrawFn, raw: dict[str, Any]) -> str:
    """A `[search]` malformed: keys missing or unknown, trials out of range, keys that are no names."""
    table = draw(st.one_of(VALUES, st.dictionaries(SEARCH_KEYS, SEARCH_VALUES, max_size=4)))
    raw["search"] = copy.deepcopy(table)
    return f"search = {table!r}"


MUTATIONS: list[Mutation] = [replace, replace, delete, add_key, out_of_range, section, sweep, search]


@st.composite
def mutated_suites(draw: st.DrawFn) -> tuple[str, dict[str, Any], list[str]]:
    """A shipped suite (its file and raw table) with one to three mutations, and what they were."""
    source = draw(st.sampled_from(sorted(RAW)))
    raw = copy.deepcopy(RAW[source])
    count = draw(st.sampled_from([1, 1, 1, 2, 3]))  # mostly one: a suite broken three ways fails at its first
    done = [draw(st.sampled_from(MUTATIONS))(draw, raw) for _ in range(count)]
    return source, raw, done


# `--set` values as typed on a command line (TOML values, or bare text).
TYPED = st.sampled_from(
    ["fast", '"fast"', "1", "2", "0.5", "[0]", "0", "-1", "2.5", "nan", "inf", "-inf", "1e400", "99999999999999999999",
     "true", "[1, 2]", '["a", "b"]', "[]", "{}", "{ x = 1 }", "[[1]]", "[{}]", "", '"a/b.py"', '"gain"', '"scratch"',
     "oracle"]
)
ODD_KEYS = ["", ".", "a..b", "bogus", "train", "train.bogus", "methods.nope.alpha", "methods.nope.method", "sweep",
            "sweep.data.rho", "sweep.init", "search", "search.trials", "search.keys", "data.name", "model.name",
            "seeds.0", "plugins", "name.x", "methods.gradcam.data.rho", "model.pretrain.lr"]


@st.composite
def command_lines(draw: st.DrawFn) -> tuple[str, list[str], list[int] | None, list[str] | None]:
    """A shipped suite's file with `--set` items (at its own keys and odd ones), `--seeds` and `--plugin`."""
    source = draw(st.sampled_from(sorted(RAW)))
    keys = st.sampled_from(sorted({_dotted(p) for p in _places(RAW[source])} | set(ODD_KEYS)))
    item = st.tuples(keys, st.sampled_from(["=", "=", "= ", ""]), TYPED).map("".join)
    sets = draw(st.lists(item, max_size=3))
    seeds = draw(st.sampled_from([None, None, [1], [0, 2]]) | st.lists(st.sampled_from([0, -1, 2**32, 10**30])))
    plugins = draw(st.sampled_from([None, None, [], ["no_such_plugin"], [str(ROOT / "no_such_plugin.py")]]))
    return source, sets, seeds, plugins


def expand(suite: Suite, folder: Path) -> None:
    """What `gain-bench run` (and `--dry-run`, and `list`) does with a valid suite before it trains: expand its
    runs with their ids, hashes and keys, plan them against a results folder, write its `suite.json` and read it
    back as `gain-bench report` does."""
    for spec in suite.runs():
        assert spec.run_id and spec.keys() and spec.label
    suite.numeric_axis()
    runner.plan(suite, folder)
    suite_file.write_suite_file(suite, folder)
    suite_file.read_suite_file(folder)


@pytest.fixture(scope="module")
def harbour_importable() -> Iterator[None]:
    """The example plugin importable (as `PYTHONPATH=examples` makes it); what it registers is dropped afterwards,
    so the other tests of this process see only the built-ins."""
    before = {kind: set(registry) for kind, registry in REGISTRIES.items()}
    modules = set(sys.modules)
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield
    finally:
        sys.path.remove(str(EXAMPLES))
        for kind, registry in REGISTRIES.items():
            for name in set(registry) - before[kind]:
                del registry[name]
        for name in set(sys.modules) - modules:
            if name.split(".")[0] in ("harbour_lab", "gain_bench_plugins"):
                del sys.modules[name]


def test_every_shipped_suite_loads_and_expands_as_it_is(harbour_importable: None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for source, raw in RAW.items():
            expand(from_dict(copy.deepcopy(raw), source=source), Path(folder) / Path(source).stem)
            expand(load(ROOT / source), Path(folder) / f"{Path(source).stem}-loaded")


# A case takes well under a second; one that takes this long hangs (e.g. a search of 10**30 trials).
CASE_SECONDS = 30


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """A TimeoutError where the block runs longer than `seconds` (SIGALRM; none where another timer is running, as
    pytest-timeout's would be, or off the main thread)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise TimeoutError(f"still loading after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Tally:
    """Each case loaded and expanded: accepted, refused with a SuiteError naming the file, or a problem (another
    exception: an escape; a SuiteError that does not name the file). Outside GAIN_BENCH_FUZZ_TALLY the first problem
    fails (and Hypothesis shrinks it); with it, every problem is counted and the kinds are printed."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.counts: Counter[str] = Counter()
        self.problems: dict[str, list[str]] = {}

    def case(self, source: str, done: str, build: Callable[[], Suite]) -> None:
        self.counts["generated"] += 1
        with tempfile.TemporaryDirectory() as folder:
            try:
                with time_limit(CASE_SECONDS):
                    expand(build(), Path(folder))
            except SuiteError as err:
                self.counts["refused"] += 1
                if source in str(err):
                    return
                self.counts["unnamed"] += 1
                kind, problem = "SuiteError without the file", f"SuiteError without the file: {err}"
            except Exception as err:  # what these tests are about: anything but a SuiteError
                where = traceback.extract_tb(err.__traceback__)[-1]
                kind = f"{type(err).__name__} at {Path(where.filename).name}:{where.lineno}"
                problem = f"{kind}: {err}"
                self.counts["escaped"] += 1
            else:
                self.counts["accepted"] += 1
                return
        self.problems.setdefault(kind, []).append(f"{source}: {done} -> {problem}"[:400])
        if not TALLY:
            raise AssertionError(f"{source} with {done}: {problem}")

    def report(self) -> None:
        c = self.counts
        print(
            f"\n{self.what}: {c['generated']} generated, {c['accepted']} accepted, {c['refused']} refused "
            f"({c['unnamed']} without naming the file), {c['escaped']} escaped"
        )
        for kind, cases in sorted(self.problems.items(), key=lambda kv: -len(kv[1])):
            print(f"  {len(cases):4d} x {kind}\n       e.g. {cases[0]}")
        assert not self.problems, f"{c['escaped']} escaped, {c['unnamed']} unnamed: {', '.join(self.problems)}"
        assert c["refused"] and c["accepted"], "the cases should be of both kinds"


SETTINGS = settings(
    max_examples=EXAMPLE_COUNT,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=(Phase.explicit, Phase.generate) if TALLY else (Phase.explicit, Phase.generate, Phase.shrink),
)


def test_every_mutated_suite_loads_or_is_refused_naming_its_file(harbour_importable: None) -> None:
    tally = Tally("mutated suites")

    @SETTINGS
    @given(mutated_suites())
    def check(case: tuple[str, dict[str, Any], list[str]]) -> None:
        source, raw, done = case
        tally.case(source, "; ".join(done), lambda: from_dict(raw, source=source))

    check()
    tally.report()


def test_every_mutated_command_line_loads_or_is_refused_naming_its_file(harbour_importable: None) -> None:
    tally = Tally("mutated command lines")

    @SETTINGS
    @given(command_lines())
    def check(case: tuple[str, list[str], list[int] | None, list[str] | None]) -> None:
        source, sets, seeds, plugins = case
        done = " ".join([*(f"--set {s!r}" for s in sets), f"--seeds {seeds}", f"--plugin {plugins}"])
        tally.case(source, done, lambda: load(ROOT / source, sets, seeds, plugins=plugins))

    check()
    tally.report()


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"train": "fast"}, "[train]"),
        ({"data": [1, 2]}, "[data]"),
        ({"model": "resnet18"}, "[model]"),
        ({"timing": None}, "[timing]"),
        ({"search": ["lr"]}, "[search]"),
        ({"sweep": None}, "[sweep]"),
        ({"methods": "gradcam"}, "methods"),
        ({"seeds": None}, "seeds"),
        ({"budgets": ["a", "b"]}, "budgets"),
        ({"plugins": [1, 2]}, "plugins"),
        ({"methods": {"gradcam": {"method": [1]}}}, "methods.gradcam.method = [1]: allowed: a method's name (gr"),
        ({"methods": []}, "methods = []: allowed: a table per method entry"),
        # the escapes these tests found: another exception, a search that never ends, values accepted
        ({"search": {"trials": 10**30}}, "search.trials = 10000"),
        ({"train": {"lr": math.inf}}, "train.lr = inf: allowed: a number > 0"),
        ({"train": {"weight_decay": math.nan}}, "train.weight_decay = nan"),
        ({"seeds": [2**32]}, "seeds = [4294967296]: allowed: a non-empty list of integers >= 0 and <= 4294967295"),
        ({"budget_seed": 2**63}, "budget_seed = 9223372036854775808: allowed: an integer in [0, 4294967295]"),
        ({"train": {"lr": 0.1}, "sweep": {"init": [{"train.lr.x": 1}]}}, "train.lr = 0.1 is not a table, so train.l"),
        ({"model": {"widths": 0}}, "[model]: model (small_cnn) key widths = 0: allowed: a list of integers"),
        ({"model": {"widths": [True]}}, "widths = [True]: allowed: a list of integers"),
        ({"model": {"widths": [-1]}}, "[model]: small_cnn widths = [-1]: allowed: 4 integers >= 1"),
        ({"model": {"widths": [8, 8, 8]}}, "[model]: small_cnn widths = [8, 8, 8]: allowed: 4 integers >= 1"),
        ({"model": {"widths": [10**30] * 4}}, "[model]: small_cnn cannot be built with widths = [1000000000000"),
    ],
)
def test_what_a_user_wrote_is_refused_naming_the_file_and_the_key(change: dict[str, Any], key: str) -> None:
    """The escapes users met: a section given as a string or a list, numbers where names belong, null where a
    list belongs."""
    raw = {"name": "t", "seeds": [0], "methods": {"gradcam": {}}} | change
    with pytest.raises(SuiteError) as caught:
        from_dict(raw, source="suites/mine.toml")
    assert str(caught.value).startswith("suites/mine.toml: ") and key in str(caught.value), caught.value


@pytest.mark.parametrize(
    ("sets", "plugins", "message"),
    [
        (["plugins=2"], ["no_such_plugin"], "plugins = 2: allowed: a list of module names"),
        (["methods=3", "methods.gain.alpha=1"], None, "--set 'methods.gain.alpha=1': the suite has no method entry"),
        (["train=1", "train.lr.x=1"], None, "--set 'train.lr.x=1': train = 1 is not a table, so train.lr.x cannot be"),
        (["seeds.0=1"], None, "seeds = [0, 1] is not a table, so seeds.0 cannot be set"),
    ],
)
def test_a_command_line_over_a_suite_is_refused_naming_the_option(
    sets: list[str], plugins: list[str] | None, message: str
) -> None:
    with pytest.raises(SuiteError, match=re.escape(message)) as caught:
        load(ROOT / "suites" / "smoke.toml", sets, plugins=plugins)
    assert "smoke.toml" in str(caught.value)
