"""constraints.txt, the versions the findings ran on: every dependency the project declares is pinned there (a new
one without a pin would make `tox -e bench` install whatever is newest), and tox installs through it."""

from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_declared_dependency_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    declared |= {_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not a pin (name==version)"
            pins[_name(name)] = version
    assert declared - set(pins) == set(), "declared but not pinned in constraints.txt"


def test_tox_installs_through_the_constraints():
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    assert "PIP_CONSTRAINT = {toxinidir}/constraints.txt" in tox["testenv"]["setenv"]
    for env in ("testenv:bench", "testenv:perf"):
        assert "setenv" not in tox[env], f"[{env}] would replace the constraints of [testenv]"
