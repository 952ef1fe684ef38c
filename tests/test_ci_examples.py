"""The CI workflows users copy (examples/ci/) cannot rot: the GitHub workflow's own shell steps run, in order, in a
fresh clone (`scripts/ci_steps.py`), and the GitLab job runs the same gain-bench commands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import ci_steps  # noqa: E402


def _commands(script: str) -> list[str]:
    """The gain-bench command lines of a script, without what routes their output (`>> "$GITHUB_..."`, `$(...)`)."""
    script = "\n".join(line.split(" # ")[0] for line in script.splitlines())  # not the comments
    found = re.findall(r"gain-bench [^\n)>]*", script)
    return [" ".join(c.replace("\"main-results/$RESULTS\"", "main-results").split()) for c in found]


def test_the_gitlab_job_runs_the_github_workflows_gain_bench_commands():
    env, _ = ci_steps.shell_steps()
    job = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions.yml").read_text())["jobs"]["audit"]
    github = [c for s in job["steps"] if "run" in s for c in _commands(s["run"])]
    job = yaml.safe_load((ROOT / "examples" / "ci" / "gitlab-ci.yml").read_text())["gain-bench-audit"]
    gitlab = [c for line in job["before_script"] + job["script"] for c in _commands(line)]
    assert github == gitlab
    assert {k: v for k, v in env.items() if k != "GAIN_BENCH_DATA"} == {
        k: v for k, v in job["variables"].items() if k in env and k != "GAIN_BENCH_DATA"
    }


@pytest.mark.slow
def test_the_github_workflows_own_steps_run_in_order_on_a_fresh_clone(tmp_path):
    env, steps = ci_steps.shell_steps()
    assert [s["name"] for s in steps] == [
        "Key the cache by what makes the data and the pre-trained starts",
        "Run the suite",
        "Summary on the run's page",
        "Gate on your claims",
    ]
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(checkout)], check=True)
    done = {s["name"]: s for s in ci_steps.run_steps(checkout, env, steps)}
    assert all(s["status"] in ("ok", "file") for s in done.values()), [(k, s["status"]) for k, s in done.items()]
    assert re.fullmatch(r"key=gain-bench-data-[0-9a-f]{16}\n", done["GITHUB_OUTPUT"]["stdout"])
    summary = done["GITHUB_STEP_SUMMARY"]["stdout"]
    assert summary.startswith("## gain-bench: ci\n") and "| Grad-CAM (baseline) |" in summary
    gate = done["Gate on your claims"]["stdout"].splitlines()
    assert gate[0].endswith("1 claims: 1 hold, 0 fail, 0 inconclusive") and gate[1].startswith("holds")
    assert (checkout / env["RESULTS"] / "index.html").is_file(), "the artefact"


def test_the_cache_key_follows_what_the_runs_read_from_the_data_root(capsys):
    """It changes with the data and the pre-training, not with what only the fine-tuning reads."""
    from benchmark.cli import main

    def key(*overrides: str) -> str:
        sets = [a for o in overrides for a in ("--set", o)]
        assert main(["run", "quick", "--cache-key", *sets]) == 0
        return capsys.readouterr().out.strip()

    base = key()
    assert re.fullmatch(r"[0-9a-f]{16}", base)
    assert key("train.lr=0.01") == base and key("methods.gain.alpha=0.3") == base
    assert key("data.rho=0.95") != base, "other data"
    assert key("model.pretrain.rho=0.8") != base, "another pre-training"
    assert main(["run", "quick", "--cache-key", "--seeds", "0"]) == 0
    assert capsys.readouterr().out.strip() != base, "fewer replicates draw fewer data sets"


TOY_BENCHMARK = """
import os
import time


def test_step(benchmark):
    benchmark.pedantic(time.sleep, args=(float(os.environ["STEP_SECONDS"]),), rounds=3, iterations=1)
"""


@pytest.mark.slow
def test_the_perf_jobs_compare_flags_fail_a_slower_pull_request_and_pass_an_equal_one(tmp_path):
    """The throughput job's own pytest-benchmark flags: main's saved run, then a pull request twice as slow (fails)
    and one as fast (passes)."""
    job = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions.yml").read_text())["jobs"]["perf"]
    script = next(s["run"] for s in job["steps"] if s.get("name", "").startswith("Micro-benchmarks"))
    flags = re.search(r'compare="([^"]+)"', script)[1].split()
    (tmp_path / "test_toy.py").write_text(TOY_BENCHMARK)

    def bench(seconds: float, *extra: str) -> int:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-only",
                   "--benchmark-autosave", str(tmp_path / "test_toy.py"), *extra]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")} | {"STEP_SECONDS": str(seconds)}
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, check=False).returncode

    assert bench(0.05) == 0, "main's run, saved under .benchmarks/"
    assert bench(0.10, *flags) != 0, "twice as slow: beyond the threshold"
    assert bench(0.05, *flags) == 0, "as fast as the last saved run"


@pytest.mark.parametrize(("workflow", "schema"), [("github-actions.yml", "vendor.github-workflows"),
                                                  ("gitlab-ci.yml", "vendor.gitlab-ci")])  # fmt: skip
def test_the_example_workflows_are_valid_for_their_ci_and_their_scripts_parse(workflow, schema):
    """Each file against its CI's published schema (check-jsonschema's vendored copy; actionlint cannot be
    installed without network), and every shell script in it through `bash -n`."""
    path = ROOT / "examples" / "ci" / workflow
    checked = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    data = yaml.safe_load(path.read_text())
    jobs = data["jobs"].values() if "jobs" in data else [data["gain-bench-audit"]]
    scripts = [s["run"] for job in jobs for s in job.get("steps", []) if "run" in s]
    scripts += [line for job in jobs for key in ("before_script", "script") for line in job.get(key, [])]
    assert scripts
    for script in scripts:
        parsed = subprocess.run(["bash", "-n", "-c", script.replace("${{", "$(: ").replace("}}", ")")],
                                capture_output=True, text=True, check=False)  # fmt: skip
        assert parsed.returncode == 0, f"{workflow}: {script!r}: {parsed.stderr}"
