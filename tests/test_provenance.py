"""Every run records the commit it ran at; a findings table's provenance line names every commit, version and date
of the runs it shows."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from benchmark.analyse.summary import environments, provenance, provenance_text
from benchmark.core.provenance import cpu_identity, git_commit


def test_the_commit_of_this_checkout():
    assert re.fullmatch(r"[0-9a-f]{4,40}(-dirty|-status-unknown)?", git_commit()), git_commit()


def test_outside_a_checkout_of_the_package_the_commit_is_unknown(tmp_path):
    """A copy of the package in another git repository (as an install into a project's folder would be) does not
    report that repository's commit."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "other.txt").write_text("x")
    subprocess.run(["git", "-C", str(tmp_path), "add", "other.txt"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"],
                   check=True)
    package = tmp_path / "site" / "benchmark"
    package.mkdir(parents=True)
    shutil.copy(__import__("benchmark.core.provenance").core.provenance.__file__, package / "provenance.py")
    out = subprocess.run([sys.executable, "-c", "import provenance; print(provenance.git_commit())"], cwd=package,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "unknown"


def test_provenance_names_every_commit_and_the_span_of_the_runs():
    def record(commit, started, finished, status="complete"):
        return {"status": status, "started": started, "finished": finished,
                "environment": {"git_commit": commit, "torch": "2.14.1", "device": "cpu"}}

    records = [record("abc1234", "2026-12-04T10:00:00", "2026-12-04T10:05:00"),
               record("def5678", "2026-12-04T09:00:00", "2026-12-04T11:00:00"),
               record("fff0000", "2026-12-05T00:00:00", "2026-12-05T01:00:00", status="failed"),
               {"status": "complete", "started": "2026-12-04T09:30:00", "finished": "2026-12-04T09:31:00",
                "environment": {"torch": "2.14.1", "device": "cpu"}}]
    facts = provenance(records)
    assert facts["runs"] == "3"
    assert facts["trained"] == "2026-12-04T09:00:00 to 2026-12-04T11:00:00"
    assert facts["git commit"] == "abc1234, def5678, unrecorded"
    assert facts["torch"] == "2.14.1" and "gain bench" not in facts
    assert provenance_text(facts).startswith("Runs: 3; trained: 2026-12-04T09:00:00 to 2026-12-04T11:00:00; git")
    assert provenance([]) == {} and provenance_text({}) == ""
    assert environments(records) == {"git_commit": "abc1234, def5678, unrecorded", "torch": "2.14.1", "device": "cpu"}


CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 avx512f

processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 avx512f
"""


def test_the_cpu_is_named_with_a_digest_of_its_features():
    """Two machines that may run different kernels (their feature flags differ) get different digests; the order
    of the flags does not matter."""
    name = cpu_identity(CPUINFO)
    assert re.fullmatch(r"Intel\(R\) Xeon\(R\) Processor, features [0-9a-f]{8}", name), name
    assert cpu_identity(CPUINFO.replace("fpu sse2 avx2 avx512f", "avx512f avx2 sse2 fpu")) == name
    other = cpu_identity(CPUINFO.replace("avx512f", "avx512f avx512_fp16"))
    assert other != name and other.startswith("Intel(R) Xeon(R) Processor, features ")
    assert cpu_identity("Processor\t: ARMv8\nFeatures\t: fp asimd\n").startswith("ARMv8, features ")
    assert cpu_identity("model name\t: Some CPU\n") == "Some CPU", "no flags: the name alone"


def test_every_run_records_its_cpu_and_torchs_kernels_and_a_table_names_them():
    import torch

    from benchmark.execute.run_record import environment

    env = environment("cpu")
    assert env["cpu"].startswith(cpu_identity()) and env["cpu"].endswith(
        f", torch kernels {torch.backends.cpu.get_cpu_capability()}"
    )
    records = [{"status": "complete", "started": "a", "finished": "b", "environment": {"cpu": cpu}}
               for cpu in ("X, features 1", "Y, features 2")]  # fmt: skip
    assert provenance(records)["CPU"] == "X, features 1, Y, features 2"
