#!/usr/bin/env python3
"""Time the README's first command as a new user meets it: a fresh clone of this checkout's HEAD, then
`python3 -m tox -e bench` with its output piped (as in a CI log), and record what it took.

    python scripts/time_bench.py                 # writes measurements/tox-bench.json

The record holds the commit, the machine (CPU model, cores), tox's own split of the time (setup, then the command),
the wall time from the clone to the report, and the log's first 30 lines. `gain-bench docs` writes the README's and
getting-started's sentences on the time from it (the `bench-time` block), so they say what was measured. Needs tox
(`python3 -m pip install --user tox`) and about 7 GB of free disk in the temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package's provenance, also where tox's interpreter has no gain-bench installed
from benchmark.core.provenance import cpu_identity, git_commit  # noqa: E402

OUT = ROOT / "measurements" / "tox-bench.json"
SUMMARY = re.compile(r"bench: OK \((?P<total>[\d.]+)=setup\[(?P<setup>[\d.]+)\]\+cmd\[(?P<cmd>[\d.]+)\] seconds\)")


def main() -> int:
    commit = git_commit()  # a fresh clone takes HEAD: "-dirty" says the working tree was not what it timed
    with tempfile.TemporaryDirectory(prefix="gain-bench-fresh-") as tmp:
        clone = Path(tmp) / "gain-bench"
        started = time.perf_counter()
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        env = {k: v for k, v in os.environ.items() if k != "GAIN_BENCH_DATA"}  # the clone's own ./datasets
        done = subprocess.run([sys.executable, "-m", "tox", "-e", "bench"], cwd=clone, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)  # fmt: skip
        wall = time.perf_counter() - started
    log = done.stdout.splitlines()
    found = next((m for line in log if (m := SUMMARY.search(line))), None)
    if done.returncode != 0 or found is None:
        print("\n".join(log[-40:]), file=sys.stderr)
        print(f"tox -e bench failed (exit status {done.returncode}); nothing recorded", file=sys.stderr)
        return 1
    record = {
        "command": "python3 -m tox -e bench",
        "commit": commit,
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_identity(), "cores": os.cpu_count()},
        "wall_s": round(wall, 1),
        "tox_setup_s": float(found["setup"]),
        "tox_command_s": float(found["cmd"]),
        "runs": sum(bool(re.match(r"\[\d+/\d+\] ", line)) for line in log),
        "log_head": [line for line in log if not line.startswith(".pkg:")][:30],
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {record['wall_s']:.0f} s from the clone to the report, "
          f"{record['tox_setup_s']:.0f} s of it tox's setup")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
