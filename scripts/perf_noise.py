#!/usr/bin/env python3
"""How much the micro-benchmarks (`tests/perf`) move between runs of the same code on this machine: the threshold a
CI regression check may use must sit well above it (docs/ci.md).

    python scripts/perf_noise.py --runs 5          # writes measurements/perf-noise.json

Runs `pytest tests/perf --benchmark-only -k KEYWORDS` `--runs` times and records, per benchmark, the spread of its
mean over the runs (largest / smallest - 1) and the largest spread of all. The default keywords select the paired
benchmarks (`ratios`: the contenders interleaved round by round, each figure a round of all of them), the ones the
example workflow gates on: a single step's time moves far more with what else the machine does. Each run's
`extra_info` (the paired ratios themselves) is kept too: docs/throughput.md's CPU table is generated from it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchmark.core.provenance import git_commit

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "measurements" / "perf-noise.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="how many times to run the benchmarks (>= 2)")
    parser.add_argument("-k", dest="keywords", default="ratios", help="pytest's -k: which benchmarks (default ratios)")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs: at least 2")
    commit = git_commit()
    means: dict[str, list[float]] = {}
    extra: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="gain-bench-perf-") as tmp:
        for i in range(args.runs):
            out = Path(tmp) / f"run{i}.json"
            command = [sys.executable, "-m", "pytest", "tests/perf", "--benchmark-only", "-q", "-p", "no:cacheprovider",
                       "-k", args.keywords, f"--benchmark-json={out}"]  # fmt: skip
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
                return 1
            for bench in json.loads(out.read_text())["benchmarks"]:
                means.setdefault(bench["fullname"], []).append(bench["stats"]["mean"])
                extra.setdefault(bench["fullname"], []).append(bench.get("extra_info", {}))
    spread = {name: max(v) / min(v) - 1 for name, v in means.items() if len(v) == args.runs}
    record = {"commit": commit, "cores": os.cpu_count(), "runs": args.runs, "keywords": args.keywords,
              "measured": datetime.now(UTC).isoformat(timespec="seconds"),
              "threads": int(os.environ.get("OMP_NUM_THREADS", 0)) or os.cpu_count(),
              "largest_spread": max(spread.values()), "spread": dict(sorted(spread.items())),
              "extra_info": dict(sorted(extra.items()))}  # fmt: skip
    RECORD.parent.mkdir(exist_ok=True)
    RECORD.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {RECORD.relative_to(ROOT)}: the largest spread of a benchmark's mean over {args.runs} runs is "
          f"{100 * record['largest_spread']:.1f}%")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
