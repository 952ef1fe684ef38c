"""Claims on a findings page, evaluated on a results folder made here: one that holds, one that fails, and the ways
a claim is inconclusive; the replicate-level sign-flip test against an exhaustive enumeration."""

import itertools
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_tables import fake_run

from benchmark.analyse.claims import FAILS, HOLDS, INCONCLUSIVE, ClaimError, declared, evaluate
from benchmark.analyse.paired import NOT_ENOUGH, significance
from benchmark.analyse.stats import sign_flip_test
from benchmark.cli import main


def _by_enumeration(d):
    observed = abs(np.mean(d))
    flips = [abs(np.mean(np.array(signs) * d)) for signs in itertools.product((-1, 1), repeat=len(d))]
    return sum(f >= observed - 1e-12 for f in flips) / len(flips)


@pytest.mark.parametrize("n", [1, 2, 4, 7, 8, 10])
def test_the_sign_flip_test_is_the_exhaustive_enumeration(n):
    rng = np.random.default_rng(n)
    for _ in range(5):
        d = rng.normal(0.3, 1.0, n)
        assert sign_flip_test(d) == pytest.approx(_by_enumeration(d), abs=1e-12)
    ties = np.array([1.0, -1.0, 2.0, -2.0][:n] + [0.5] * max(0, n - 4))
    assert sign_flip_test(ties) == pytest.approx(_by_enumeration(ties), abs=1e-12)


def test_the_sign_flip_floor_and_its_monte_carlo_beyond_twenty_replicates():
    assert sign_flip_test(np.ones(8)) == 2 / 2**8, "8 replicates that agree: 2 of 256 assignments as extreme"
    assert sign_flip_test(np.ones(4)) == 0.125, "4 replicates can never reach 0.05"
    assert sign_flip_test(np.zeros(5)) == 1.0
    assert np.isnan(sign_flip_test(np.array([np.nan])))
    assert sign_flip_test(np.ones(30), rng=0, n_resamples=5000) == pytest.approx(1 / 5001), "(1 + k) / (1 + B)"
    symmetric = np.concatenate([np.arange(1, 16.0), -np.arange(1, 16.0)])
    assert sign_flip_test(symmetric, rng=0, n_resamples=5000) == 1.0
    assert sign_flip_test(np.ones(30), rng=1) == sign_flip_test(np.ones(30), rng=1), "seeded"


def test_significance_needs_full_replicates_the_test_and_the_interval():
    row = {"n_seeds": 8, "full_replicates": True, "p_replicates_holm": 0.01, "ci_low": 0.02, "ci_high": 0.1}
    assert significance(row) == "significant"
    assert significance(row | {"full_replicates": False}) == NOT_ENOUGH
    assert significance(row | {"n_seeds": 7}) == NOT_ENOUGH
    assert significance(row | {"p_replicates_holm": 0.06}) == "not significant"
    assert significance(row | {"ci_low": -0.01}) == "not significant"


PAGE = """# A study

Prose that says things.

```toml claims
folder = "{folder}"

[[claim]]
id = "better"
says = "GAIN finds more boats without water than the baseline"
a = "gain"
b = "gradcam"
metric = "class_without_context"
direction = ">"

[[claim]]
id = "wrong-way"
says = "GAIN finds fewer water-only images not boat than the baseline"
a = "gain"
b = "gradcam"
metric = "context_without_class"
direction = "<"

[[claim]]
id = "too-few"
says = "GAIN is better in distribution"
a = "gain"
b = "gradcam"
metric = "val_accuracy"
direction = ">"
min_replicates = 9

[[claim]]
id = "absent"
says = "a method that did not run"
a = "energy-78"
b = "gradcam"
metric = "shifted_auroc"
direction = ">"
```
"""


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    for seed in range(8):
        fake_run(root / "reports" / "full", "gradcam", seed, 0.55, seed_scope="full")
        fake_run(root / "reports" / "full", "gain", seed, 0.97, seed_scope="full")
        fake_run(root / "reports" / "train", "gradcam", seed, 0.55)
        fake_run(root / "reports" / "train", "gain", seed, 0.97)
    (root / "findings").mkdir()
    for name in ("full", "train", "missing"):
        (root / "findings" / f"{name}.md").write_text(PAGE.format(folder=f"reports/{name}"))
    return root


def test_a_claim_holds_one_fails_and_the_rest_are_inconclusive_with_their_reason(repository):
    results = {r.claim.id: r for r in evaluate(findings("full"), repository)}
    assert results["better"].status == HOLDS
    assert results["better"].n == 8 and results["better"].full and results["better"].difference > 0.3
    assert results["better"].p == 2 / 256 and results["better"].p_holm == pytest.approx(3 * 2 / 256)
    assert results["wrong-way"].status == FAILS, "significant, on the other side of 0"
    too_few = results["too-few"]
    assert too_few.status == INCONCLUSIVE and "8 full replicates; the claim needs 9" in too_few.reason
    assert results["absent"].status == INCONCLUSIVE and "no run of 'energy-78'" in results["absent"].reason
    assert results["better"].line().startswith("holds        better: GAIN finds more boats without water")
    assert "gain − gradcam on class_without_context: +0." in results["better"].line()


def test_seeds_that_redraw_only_the_fine_tuning_and_a_missing_folder_are_inconclusive(repository):
    for result in evaluate(findings("train"), repository):
        assert result.status == INCONCLUSIVE
    assert "not full replicates" in evaluate(findings("train"), repository)[0].reason
    missing = evaluate(findings("missing"), repository)
    assert {r.status for r in missing} == {INCONCLUSIVE}
    assert "results folder reports/missing not here" in missing[0].line()


def test_the_claims_command_prints_a_line_per_claim_and_exits_1_on_a_failed_claim(repository, capsys):
    assert main(["claims", "findings/full.md", "--root", str(repository)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "findings/full.md: 4 claims: 1 hold, 1 fail, 2 inconclusive"
    assert [line.split()[0] for line in out[1:]] == ["holds", "fails", "inconclusive", "inconclusive"]
    assert main(["claims", "findings/train.md", "--root", str(repository)]) == 0, "inconclusive does not fail"


def findings(name):
    return Path("findings") / f"{name}.md"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('metric = "shifted_auroc"', 'metric = "auc"'), "metric 'auc' unknown; allowed: val_accuracy"),
        (('direction = ">"\n\n[[claim]]\nid = "wrong-way"', 'direction = "up"\n\n[[claim]]\nid = "wrong-way"'),
         "direction 'up'; allowed: >"),
        (('id = "too-few"', 'id = "better"'), "claim 'better': the id is used twice"),
        (('min_replicates = 9', 'min_replicates = 9\nseeds = 3'), "unknown key(s) seeds"),
        (('folder = "reports/x"', 'folder = ""'), 'needs folder = "reports/<suite>"'),
    ],
)
def test_a_bad_claims_block_names_the_page_and_the_key(tmp_path, capsys, change, message):
    page = tmp_path / "bad.md"
    page.write_text(PAGE.format(folder="reports/x").replace(*change, 1))
    with pytest.raises(ClaimError, match=None) as err:
        declared(page.relative_to(tmp_path), tmp_path)
    assert message in str(err.value) and "bad.md" in str(err.value)
    assert main(["claims", "bad.md", "--root", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_a_page_without_claims_says_how_to_declare_them(tmp_path):
    (tmp_path / "none.md").write_text(textwrap.dedent("# nothing claimed\n"))
    with pytest.raises(ClaimError, match="declares its claims in one ```toml claims block"):
        declared(tmp_path.joinpath("none.md").relative_to(tmp_path), tmp_path)


def test_the_docs_check_holds_the_readme_and_the_pages_to_their_claims(repository):
    from benchmark.docs import claim_problems

    readme = (
        "# x\n\n## The headline\n\n- GAIN finds more boats without water (`claim full/better`).\n"
        "- A sentence that cites nothing.\n- A claim that is not declared (`claim full/nope`).\n"
        "- A claim that does not hold (`claim full/too-few`).\n\n## Read on\n\n- not the headline\n"
    )
    problems = claim_problems(repository, Path("README.md"), readme)
    assert len(problems) == 3, problems
    assert "`claim full/nope` is not declared on findings/full.md" in problems[0]
    assert "`claim full/too-few` is cited but inconclusive (8 full replicates; the claim needs 9)" in problems[1]
    assert "a headline sentence cites no claim" in problems[2] and "A sentence that cites nothing" in problems[2]
    page = claim_problems(repository, Path("findings/full.md"), (repository / "findings/full.md").read_text())
    assert len(page) == 1 and "claim 'wrong-way' fails on its results folder" in page[0]
    assert claim_problems(repository, Path("findings/missing.md"), PAGE.format(folder="reports/missing")) == []
    cited_elsewhere = "- GAIN (`claim missing/better`): its folder is not here, so it is not held against it\n"
    assert claim_problems(repository, Path("findings/README.md"), cited_elsewhere) == []


def test_the_rows_view_gives_full_replicates_the_sign_flip_p_and_the_call(repository, capsys):
    assert main(["table", str(repository / "reports" / "full"), "--rows"]) == 0
    out = capsys.readouterr().out
    assert "p0.008*" in out, "8 full replicates that agree: the floor 2/256, significant"
    assert "the exact sign-flip test's; * significant" in out
    assert main(["table", str(repository / "reports" / "train"), "--rows"]) == 0
    out = capsys.readouterr().out
    assert "*" not in out and "sign-flip" not in out, "seeds of scope train: the bootstrap's p, never a star"


def test_a_claims_file_of_its_own_gates_a_ci_folder_and_strict_fails_on_inconclusive(repository, tmp_path, capsys):
    """A user's repository keeps its claims in a .toml file (the block's TOML alone) and evaluates them on the
    folder its CI job wrote (`--folder`); `--strict` also fails on an inconclusive claim."""
    block = PAGE.split("```toml claims\n", 1)[1].split("```", 1)[0]
    holds = block.split("[[claim]]")[0] + "[[claim]]" + block.split("[[claim]]")[1]  # "better" alone
    gate = tmp_path / "claims.toml"
    gate.write_text(holds.replace('folder = "{folder}"', 'folder = "reports/nowhere"'))
    ci_folder = repository / "reports" / "full"
    assert main(["claims", str(gate), "--folder", str(ci_folder)]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("holds        better:")
    assert main(["claims", str(gate)]) == 0, "its own folder missing: inconclusive, which does not fail..."
    assert main(["claims", str(gate), "--strict"]) == 1, "...unless --strict"
    assert "results folder reports/nowhere not here" in capsys.readouterr().out
    assert main(["claims", str(gate), "--folder", str(ci_folder), "--strict"]) == 0
    assert [r.claim.id for r in evaluate(gate, folder=ci_folder)] == ["better"]


def test_a_declared_claim_that_failed_is_kept_with_its_outcome_recorded(repository, capsys):
    from benchmark.docs import claim_problems

    page = (repository / "findings/full.md").read_text()
    recorded = page.replace('direction = "<"\n', 'direction = "<"\noutcome = "fails"\n', 1)
    (repository / "findings/recorded.md").write_text(recorded)
    results = {r.claim.id: r for r in evaluate(findings("recorded"), repository)}
    assert results["wrong-way"].status == FAILS and not results["wrong-way"].unexpected
    assert results["wrong-way"].line().startswith("fails (recorded) wrong-way:")
    assert claim_problems(repository, Path("findings/recorded.md"), recorded) == [], "a recorded failure is known"
    assert main(["claims", "findings/recorded.md", "--root", str(repository)]) == 0
    assert "1 fail" in capsys.readouterr().out, "and still counted as a failure"
    stale = page.replace('direction = ">"\n', 'direction = ">"\noutcome = "fails"\n', 1)  # "better" holds
    (repository / "findings/stale.md").write_text(stale)
    problems = claim_problems(repository, Path("findings/stale.md"), stale)
    assert len(problems) == 2 and "claim 'better' holds, recorded as failing," in problems[0]
    assert "claim 'wrong-way' fails on its results folder" in problems[1], "not recorded on this page"
    assert main(["claims", "findings/stale.md", "--root", str(repository)]) == 1
    bad = page.replace('direction = ">"\n', 'direction = ">"\noutcome = "holds"\n', 1)
    (repository / "findings/bad.md").write_text(bad)
    with pytest.raises(ClaimError, match="outcome = 'holds'; allowed: fails"):
        evaluate(findings("bad"), repository)
