#!/usr/bin/env python3
"""Run the example GitHub workflow's own shell steps (`examples/ci/github-actions.yml`), in order, in a fresh clone
of this checkout, with the environment the workflow sets, and time each one: what a runner would do after its
install step, so the file cannot rot (`tests/test_ci_examples.py` runs it) and docs/ci.md can say how long each
step takes.

    python scripts/ci_steps.py            # run and print each step's time
    python scripts/ci_steps.py --record   # ... and write measurements/ci-steps.json (docs/ci.md is generated from it)

Needs PyYAML (the `test` extra) and gain-bench installed in this interpreter's environment (the install step is
skipped: its PyTorch index is the runner's business).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmark.core.provenance import git_commit

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "examples" / "ci" / "github-actions.yml"
RECORD = ROOT / "measurements" / "ci-steps.json"
SKIPPED = ("Install", "Against main")  # the runner's own (its PyTorch index; GitHub's API and main's artefact)


def shell_steps(workflow: Path = WORKFLOW) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The job's env and its `run:` steps (name, script, whether it runs after a failure), in order."""
    import yaml

    job = next(iter(yaml.safe_load(workflow.read_text())["jobs"].values()))
    steps = [{"name": s.get("name", s["run"][:40]), "run": s["run"], "always": "if" in s}
             for s in job["steps"] if "run" in s and not str(s.get("name", "")).startswith(SKIPPED)]  # fmt: skip
    return {k: str(v) for k, v in job.get("env", {}).items()}, steps


def run_steps(checkout: Path, env: dict[str, str], steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each step in `checkout` with bash -e, as a runner does; after a failed step only the `if:` steps run."""
    outputs = {"GITHUB_OUTPUT": checkout / ".github-output", "GITHUB_STEP_SUMMARY": checkout / ".step-summary.md"}
    for path in outputs.values():
        path.write_text("")
    workspace = {"GITHUB_WORKSPACE": str(checkout)}
    values = {k: v.replace("${{ github.workspace }}", str(checkout)) for k, v in env.items()}
    environ = os.environ | workspace | values | {k: str(v) for k, v in outputs.items()}
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    done, failed = [], False
    for step in steps:
        if failed and not step["always"]:
            done.append({"name": step["name"], "status": "skipped", "seconds": 0.0})
            continue
        started = time.perf_counter()
        result = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=checkout, env=environ, text=True,
                                capture_output=True, check=False)  # fmt: skip
        seconds = time.perf_counter() - started
        failed |= result.returncode != 0
        done.append({"name": step["name"], "status": "ok" if result.returncode == 0 else f"exit {result.returncode}",
                     "seconds": round(seconds, 1), "stdout": result.stdout[-4000:], "stderr": result.stderr[-4000:]})
    for key, path in outputs.items():
        done.append({"name": key, "status": "file", "seconds": 0.0, "stdout": path.read_text()[-20000:]})
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help=f"write {RECORD.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    env, steps = shell_steps()
    commit = git_commit()
    with tempfile.TemporaryDirectory(prefix="gain-bench-ci-") as tmp:
        checkout = Path(tmp) / "checkout"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(checkout)], check=True)
        done = run_steps(checkout, env, steps)
    for step in done:
        if step["status"] != "file":
            print(f"{step['seconds']:7.1f} s  {step['status']:<8} {step['name']}")
    failed = [s for s in done if s["status"] not in ("ok", "file")]
    if args.record and not failed:
        record = {"workflow": str(WORKFLOW.relative_to(ROOT)), "commit": commit, "cores": os.cpu_count(),
                  "measured": datetime.now(UTC).isoformat(timespec="seconds"),
                  "steps": [{k: s[k] for k in ("name", "seconds")} for s in done if s["status"] == "ok"]}  # fmt: skip
        RECORD.parent.mkdir(exist_ok=True)
        RECORD.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {RECORD.relative_to(ROOT)}")
    for step in failed:
        print(f"{step['name']}: {step['status']}\n{step['stderr']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
