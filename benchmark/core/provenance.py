"""Where a result came from: the git commit of the package's checkout and the CPU it ran on, recorded in every run's
`environment` (so a finding names the commit and the machine it ran at) and in the report's provenance."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from functools import cache
from pathlib import Path

UNKNOWN = "unknown"
HERE = Path(__file__).parent


def _git(*args: str) -> str | None:
    """git's output in this package's folder, or None where git fails; git's own environment variables (a hook's
    GIT_DIR) are not passed on, and no index lock is taken (runs of a suite start side by side)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", *args], cwd=HERE, env=env, capture_output=True, text=True, timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@cache
def git_commit() -> str:
    """The short commit of the checkout the package runs from, with `-dirty` where a tracked file differs from it
    (`-status-unknown` where git could not tell); `unknown` outside a checkout of this package (an installed wheel,
    even one installed inside some other repository) or without git."""
    if _git("ls-files", "--error-unmatch", Path(__file__).name) is None:  # not tracked here: not our checkout
        return UNKNOWN
    commit = _git("rev-parse", "--short", "HEAD")
    if not commit:
        return UNKNOWN
    changed = _git("status", "--porcelain", "--untracked-files=no")
    if changed is None:
        return f"{commit}-status-unknown"
    return f"{commit}-dirty" if changed else commit


CPUINFO = Path("/proc/cpuinfo")


@cache
def cpu_identity(cpuinfo: str | None = None) -> str:
    """The CPU as far as its numerics go: its model name and a digest of its feature flags (Linux's
    `/proc/cpuinfo`, or `cpuinfo` given), e.g. `Intel(R) Xeon(R) Processor, features 3f2a9c1b`. The kernels torch,
    oneDNN and MKL run are chosen per CPU, so two machines can train the same run to different numbers (a few
    1e-7 at first, which training can grow); two records whose digests differ may have run different kernels.
    Elsewhere the platform's processor name, without a digest. Read once per process, as `git_commit` is: every
    run's record asks for it."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:  # the first processor's; every core of a machine has the same
            fields[key.strip()] = value.strip()
    name = fields.get("model name") or fields.get("Processor") or platform.processor() or platform.machine()
    flags = fields.get("flags") or fields.get("Features")
    if not flags:
        return name or UNKNOWN
    digest = hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:8]
    return f"{name}, features {digest}"
