"""Where the code that made a result came from: the git commit of the package's checkout, recorded in every run's
`environment` (so a finding names the commit it ran at) and in the report's provenance."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

UNKNOWN = "unknown"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@cache
def git_commit() -> str:
    """The short commit of the checkout the package runs from, with `-dirty` where a tracked file differs from it;
    `unknown` outside a git checkout (an installed wheel) or without git."""
    commit = _git("rev-parse", "--short", "HEAD")
    if not commit:
        return UNKNOWN
    changed = _git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}-dirty" if changed else commit
