"""`gain-bench docs --check`: the repository's pages pass it, and it fails on what makes documentation lie: a broken
link or anchor, a stale generated page or block, a table edited by hand, a shown command that would not run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from test_tables import fake_run

from benchmark import docs
from benchmark.analyse.tables import build_tables
from benchmark.cli import main
from benchmark.core.settings import reference

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_repository_docs_pass_the_check():
    assert docs.check(ROOT) == []


def _site(tmp_path: Path, readme: str, **pages: str) -> Path:
    """A repository of pages: README.md, the generated suite reference, and `pages` ({"docs/a.md": text})."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "suite-reference.md").write_text(reference())
    (tmp_path / "README.md").write_text(readme if "## The headline" in readme else readme + "\n## The headline\n")
    for name, text in pages.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_links_and_anchors_must_resolve(tmp_path):
    root = _site(
        tmp_path,
        "See [usage](docs/usage.md#one-run), [the top](#gain-bench), [code](`x`) and [web](https://example.org).\n"
        "# gain-bench\n",
        **{"docs/usage.md": "# Usage\n\n## One run\n\n![shot](../report.png)\n", "report.png": "png"},
    )
    assert docs.check(root) == []
    (root / "report.png").unlink()
    (root / "docs" / "usage.md").write_text("# Usage\n\n## One run, renamed\n\n![shot](../report.png)\n")
    problems = docs.check(root)
    assert any("README.md: link to 'docs/usage.md#one-run': no heading with the anchor #one-run" in p for p in problems)
    assert any("docs/usage.md: link to '../report.png': ../report.png does not exist" in p for p in problems)
    assert len(problems) == 2


def test_a_control_character_left_by_an_escape_sequence_is_a_problem(tmp_path):
    root = _site(tmp_path, "# gain-bench\n", **{"docs/methods.md": "tabs\tand\r\nline ends are fine\n"})
    assert docs.check(root) == []
    (root / "docs" / "methods.md").write_text("ok\n$L + \frac{\alpha}{2}$\n")  # "\f" and "\a": escape sequences
    assert docs.check(root) == [
        "docs/methods.md:2: control character 0x0c (an escape sequence where a backslash was meant?)",
        "docs/methods.md:2: control character 0x07 (an escape sequence where a backslash was meant?)",
    ]


def test_headings_give_githubs_anchors():
    text = "# The `run` command: resume!\n## Statistics\n## Statistics\n```\n# not a heading\n```\n"
    assert docs.anchors(text) == {"the-run-command-resume", "statistics", "statistics-1"}


def test_a_stale_generated_page_fails_until_it_is_regenerated(tmp_path, capsys):
    root = _site(tmp_path, "# x\n")
    page = root / "docs" / "suite-reference.md"
    page.write_text(page.read_text().replace("| `epochs` |", "| `epochs_renamed` |"))
    assert docs.check(root) == ["docs/suite-reference.md is stale: run `gain-bench docs`"]
    assert main(["docs", "--check", "--root", str(root)]) == 1
    assert "docs/suite-reference.md is stale" in capsys.readouterr().err
    assert main(["docs", "--root", str(root)]) == 0
    assert page.read_text() == reference()
    assert main(["docs", "--check", "--root", str(root)]) == 0


def _block(name: str, body: str, seal: str | None = None) -> str:
    return f"<!-- generated: {name} -->\n{body}<!-- end generated: {docs.seal(body) if seal is None else seal} -->\n"


def test_generated_blocks_are_sealed_and_kept_current(tmp_path):
    current = docs.methods_reference()
    root = _site(tmp_path, "# x\n", **{"docs/methods.md": "# Methods\n\n" + _block("methods", current)})
    assert docs.check(root) == []
    assert "| `alpha` | `1.0` | log-uniform [0.1, 3] |" in current  # from GAIN's declared HParams

    edited = current.replace("`1.0`", "`2.0`", 1)  # a default changed by hand: the seal no longer matches
    (root / "docs" / "methods.md").write_text("# Methods\n\n" + _block("methods", edited, docs.seal(current)))
    assert docs.check(root) == [
        "docs/methods.md: generated block 'methods' was edited by hand (its seal does not match): regenerate it with "
        "`gain-bench docs`"
    ]
    old = current.replace("`1.0`", "`2.0`", 1)  # sealed, but from an older version of the code
    (root / "docs" / "methods.md").write_text("# Methods\n\n" + _block("methods", old))
    assert docs.check(root) == ["docs/methods.md: generated block 'methods' is stale: run `gain-bench docs`"]
    assert docs.refresh(root) == [Path("docs/methods.md")]
    assert docs.check(root) == []

    (root / "docs" / "methods.md").write_text("# Methods\n\n" + _block("no-such-thing", "x\n"))
    assert "unknown generator 'no-such-thing'" in docs.check(root)[0]


def test_a_table_block_comes_from_its_results_folder(tmp_path):
    results = tmp_path / "reports" / "study"
    for seed in range(2):
        fake_run(results, "gradcam", seed, 0.55)
        fake_run(results, "gain", seed, 0.7)
    command = "gain-bench table reports/study --rows --markdown"
    stale = f"findings/study.md: generated block {command!r} is stale: run `gain-bench docs`"
    root = _site(tmp_path, "# x\n", **{"findings/study.md": "# Study\n\n" + _block(command, "to be generated\n")})
    assert docs.check(root, tables=True) == [stale]
    assert docs.refresh(root, tables=True) == [Path("findings/study.md")]
    body = docs.blocks(root, Path("findings/study.md"))[0].body
    assert body.startswith("| configuration | n | AUROC |") and "| gradcam | 2 |" in body
    assert "Runs: 4; trained:" in body and "git commit: unrecorded" in body  # the provenance line
    assert docs.check(root, tables=True) == []

    fake_run(results, "gradcam", 2, 0.9)  # another run lands in the folder: the page no longer shows its results
    assert docs.check(root, tables=True) == [stale]
    assert docs.check(root) == []  # without --tables only the seal is checked (a fresh clone has no reports/)
    shutil.rmtree(results)
    assert docs.check(root, tables=True) == []  # no results folder here: the table stands as sealed


@pytest.mark.parametrize(
    ("shown", "problem"),
    [
        ("```bash\ngain-bench run quick --jobs 2\n```", None),
        ("```bash\ngain-bench table reports/quick --rows\n```", None),
        ("`gain-bench train` and `gain-bench train --data` named in passing", None),
        ("```bash\ngain-bench train --method M [--budget B]\n```", None),  # a synopsis
        ("```bash\ngain-bench run quick \\\n  --jobs 2\n```", None),
        ("```bash\ngain-bench run quick --jobs 2 | tee log && echo done\n```", None),
        ("```bash\ngain-bench run no-such-suite\n```", "suite 'no-such-suite' not found"),
        ("```bash\ngain-bench run quick --set train.epochs=many\n```", "train.epochs"),
        ("```bash\ngain-bench run quick --only colour=red\n```", "colour"),
        ("```bash\ngain-bench tabel reports/quick\n```", "does not parse: gain-bench: error: argument command"),
        ("```bash\ngain-bench train\n```", "the following arguments are required: --method"),
        ("```bash\ngain-bench curves reports/x --keys a,\\\n    b\n```", "unrecognized arguments: b"),
        ("```toml\n# mine.toml\nname = 'mine'\n```\n\n`gain-bench run mine.toml --jobs 2`", None),
    ],
)
def test_shown_commands_must_run_as_shown(tmp_path, shown, problem):
    root = _site(tmp_path, "# x\n", **{"docs/usage.md": f"# Usage\n\n{shown}\n"})
    shutil.copytree(ROOT / "suites", root / "suites")
    problems = docs.check(root)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0] and problems[0].startswith("docs/usage.md: `gain-bench")


def _documented_columns(section: str) -> set[str]:
    """The backticked column names of docs/outputs.md's table under `### `<section>``."""
    text = (ROOT / "docs" / "outputs.md").read_text().split(f"### `{section}`", 1)[1].split("\n### ", 1)[0]
    cells = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    return {name for cell in cells for name in re.findall(r"`([^`]+)`", cell)}


def test_the_documented_csv_columns_are_the_written_ones(tmp_path):
    """docs/outputs.md names every column of predictions.csv and of the tables behind results*.csv, no more."""
    for seed in range(2):
        fake_run(tmp_path, "gradcam", seed, 0.55)
        fake_run(tmp_path, "gain", seed, 0.7)
    tables = build_tables([tmp_path], n_resamples=20)
    written = (("results.csv", "aggregated"), ("results_runs.csv", "tidy"), ("results_paired.csv", "paired"),
               ("results_correlation.csv", "correlation"),
               ("results_content_effect.csv", "content_effect"))  # fmt: skip
    for section, key in written:
        assert _documented_columns(section) == set(tables[key].columns), section
    header = next(tmp_path.glob("runs/*/predictions.csv")).read_text().splitlines()[0].split(",")
    per_class = {"label_<class>", "logit_<class>", "score_<class>", "cam_inter_<label>", "cam_union_<label>"}
    pattern = re.compile(r"(label|logit|score)_\w+|cam_(inter|union)_\w+")
    fixed = {c for c in header if not pattern.fullmatch(c)}
    assert _documented_columns("predictions.csv") - per_class == fixed


def test_a_findings_page_quotes_only_numbers_its_tables_print(tmp_path):
    body = "| gain | 0.922 [0.906, 0.937] / +0.096 p0.016 |\n"
    command = "gain-bench table reports/x --rows --markdown"
    prose = "GAIN reaches 0.922 (about 0.92, or +0.10 over the baseline) at `data.rho = 0.99`, version 2.14.1.\n"
    page = "# Study\n\n" + prose + _block(command, body)
    root = _site(tmp_path, "# x\n\n## The headline\n\nAUROC 0.92.\n\n## Next\n\n0.5 GB\n", **{"findings/s.md": page})
    assert docs.check(root) == []
    (root / "findings" / "s.md").write_text(page.replace("about 0.92", "about 0.95"))
    (root / "README.md").write_text("# x\n\n## The headline\n\nAUROC 0.97.\n")
    assert docs.check(root) == [
        "README.md: 0.97 is not printed by any of its generated blocks (quote the results, or put a setting in `code`)",
        "findings/s.md: 0.95 is not printed by any of its generated blocks (quote the results, or put a setting in "
        "`code`)",
    ]


def test_a_docs_page_quotes_no_typed_result_but_may_cite_and_set(tmp_path):
    cited = "Python ≥ 3.11, torch 2.11, arXiv 1802.10171, Efron 1993, sec. 3.8, at `rho = 0.99`.\n"
    root = _site(tmp_path, "# x\n", **{"docs/usage.md": cited, "docs/throughput.md": "GAIN at 2.45× the step.\n"})
    assert docs.NUMBERS_NOT_YET == {}, "every docs page is under the numbers rule"
    assert docs.check(root) == [
        "docs/throughput.md: 2.45 is not printed by any of its generated blocks (quote the results, or put a setting "
        "in `code`)"
    ]
    (root / "docs" / "throughput.md").write_text("GAIN's step, timed.\n")
    (root / "docs" / "usage.md").write_text(cited + "GAIN's AUROC is 0.92 here.\n")
    assert docs.check(root) == [
        "docs/usage.md: 0.92 is not printed by any of its generated blocks (quote the results, or put a setting in "
        "`code`)"
    ]
    assert main(["docs", "--check", "--root", str(root)]) == 1


def test_the_throughput_tables_are_generated_from_the_recorded_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(docs, "MEASUREMENTS", tmp_path)
    monkeypatch.setattr(docs, "REPOSITORY", tmp_path.parent)
    assert docs.throughput_cpu() == "(not measured yet: `python scripts/perf_noise.py`)\n"
    step = "tests/perf/test_train_step.py::test_train_step_ratios[random]"
    runs = [{"gradcam_step_ratio": 1.0, "gain_step_ratio": g, "gain_ext_step_ratio": e, "floor_step_ratio": f,
             "erased_images": 81} for g, e, f in [(2.3, 2.6, 2.2), (2.5, 2.4, 2.25), (2.42, 2.45, 2.3)]]
    record = {"commit": "abc1234", "cores": 2, "threads": 2, "runs": 3, "keywords": "ratios",
              "measured": "2026-12-06T18:00:00+00:00", "largest_spread": 0.1, "spread": {}, "extra_info": {step: runs}}
    (tmp_path / "perf-noise.json").write_text(json.dumps(record))
    table = docs.throughput_cpu()
    assert "| GAIN step / baseline step | 2.42× | 2.30 to 2.50× | ≤ 2.4×: 1 of 3 |" in table
    assert "| GAIN_ext step / baseline step | 2.45× | 2.40 to 2.60× | ≤ 2.5×: 2 of 3 |" in table
    assert "| GAIN step − floor step | 0.12 baseline steps | 0.10 to 0.25 baseline steps |  |" in table
    assert "baseline step | 1.00×" not in table, "the reference itself is no figure"
    assert "3 runs of `pytest tests/perf --benchmark-only -k ratios` at commit `abc1234`" in table
    assert docs.throughput_gpu() == "(not measured yet: `python scripts/gpu_check.py`)\n"
    row = {"model": "vgg16", "batch_size": 32, "image_size": [224, 224], "precision": "fp32", "channels_last": False,
           "device_name": "GPU X", "iterations": 30, "attention_images_per_s": 3000.0}
    rows = [row | {"method": m, "train_images_per_s": v, "train_step_ratio_to_gradcam": r}
            for m, v, r in [("gradcam", 1000.0, 1.0), ("gain", 400.0, 2.5), ("gain_ext", 390.0, 2.56)]]
    (tmp_path / "2026-01-01-gpu").mkdir()
    (tmp_path / "2026-01-01-gpu" / "gpu_check.json").write_text(json.dumps({"rows": rows}))
    gpu = docs.throughput_gpu()
    assert "| fp32 | 1000 | 400 (2.50×) | 390 (2.56×) |" in gpu and "on one GPU X," in gpu


def test_curves_can_show_chosen_configurations(tmp_path, capsys):
    fake_run(tmp_path, "gradcam", 0, 0.55)
    fake_run(tmp_path, "gain", 0, 0.7)
    for record in tmp_path.glob("runs/*/record.json"):  # fake runs carry no curve: give them one epoch
        text = record.read_text().replace('"curve": []', '"curve": [{"epoch": 0, "total": 0.5, "cl": 0.5}]')
        record.write_text(text)
    assert main(["curves", str(tmp_path), "--keys", "total", "--only", "gain"]) == 0
    out = capsys.readouterr().out
    assert "gain (n=1)" in out and "gradcam" not in out
    assert main(["curves", str(tmp_path), "--only", "gain masked_bn=batch"]) == 2
    assert "--only 'gain masked_bn=batch': no such configuration; there are: gain, gradcam" in capsys.readouterr().err


def test_a_tox_environment_shown_must_exist(tmp_path):
    root = _site(tmp_path, "# x\n\n`tox -e bench` and\n\n```bash\ntox -e perf -- -k step\n```\n")
    (root / "tox.ini").write_text("[tox]\nenvlist = py\n\n[testenv]\n\n[testenv:bench]\n")
    assert docs.check(root) == ["README.md: `tox -e perf`: tox.ini has no such environment (bench, py)"]


def test_refresh_never_seals_a_table_it_cannot_regenerate(tmp_path):
    """Without the results folder, `gain-bench docs` leaves a results block exactly as it is: a hand edit stays
    detected, and a placeholder stays unsealed."""
    command = "gain-bench table reports/x --rows --markdown"
    sealed = _block(command, "| gain | 0.922 |\n")
    root = _site(tmp_path, "# x\n", **{"findings/s.md": "# S\n\n" + sealed.replace("0.922", "0.99")})
    assert "edited by hand" in docs.check(root)[0]
    assert docs.refresh(root) == [] and docs.refresh(root, tables=True) == []
    assert "edited by hand" in docs.check(root)[0]


def test_a_block_left_open_loses_no_prose(tmp_path):
    page = ("# M\n\n<!-- generated: paper-table4 -->\nold\n\n## Important prose\n\nHand-written.\n\n"
            + _block("selection-rules", docs.rules_reference()))
    root = _site(tmp_path, "# x\n", **{"docs/m.md": page})
    assert docs.check(root) == ["docs/m.md: a generated block without its end marker"]
    with pytest.raises(ValueError, match=r"docs/m\.md: a generated block without its end marker"):
        docs.refresh(root)
    assert (root / "docs" / "m.md").read_text() == page


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("gain-bench table reports/x --rosw --markdown", "the command does not parse: gain-bench: error: unrecognized"),
        ("gain-bench table 'reports/x --markdown", "No closing quotation"),
    ],
)
def test_a_block_name_that_would_not_run_is_reported_without_its_results(tmp_path, name, problem):
    root = _site(tmp_path, "# x\n", **{"findings/s.md": "# S\n\n" + _block(name, "| a | 0.5 |\n")})
    problems = docs.check(root)
    assert len(problems) == 1 and problem in problems[0], problems


def test_a_quoted_number_keeps_its_sign(tmp_path):
    block = _block("gain-bench table reports/x --rows --markdown", "| gain | 0.922 / +0.096 p0.016 |\nRuns: 4; 12.34\n")
    for prose, typed in (("GAIN gains +0.096, i.e. 0.10.", None), ("GAIN loses −0.096.", "-0.096"),
                         ("It ran 12.34 hours.", "12.34")):
        (tmp_path / str(len(prose))).mkdir()
        root = _site(tmp_path / str(len(prose)), "# x\n", **{"findings/s.md": f"# S\n\n{prose}\n\n{block}"})
        problems = docs.check(root)
        assert problems == ([] if typed is None else [
            f"findings/s.md: {typed} is not printed by any of its generated blocks (quote the results, or put a "
            "setting in `code`)"]), prose


def test_every_command_of_a_line_and_of_an_indented_block_is_checked(tmp_path):
    page = ("# U\n\n1. Run:\n\n   ```bash\n   gain-bench run no-such-suite\n   ```\n\n"
            "```bash\ncd x && gain-bench run quick --data-rot d\n```\n\n`gain-bench run quick --colour red` inline\n")
    root = _site(tmp_path, "# x\n", **{"docs/u.md": page})
    shutil.copytree(ROOT / "suites", root / "suites")
    problems = docs.check(root)
    assert len(problems) == 3, problems
    assert "suite 'no-such-suite' not found" in problems[0]
    assert "unrecognized arguments: --data-rot d" in problems[1]
    assert "unrecognized arguments: --colour red" in problems[2]


@pytest.mark.slow
def test_a_plugin_a_shown_command_loads_stays_out_of_this_process(tmp_path):
    from benchmark.execute.methods import METHODS

    page = "# P\n\n```bash\nPYTHONPATH=examples gain-bench run examples/harbour.toml --jobs 2\n```\n"
    root = _site(tmp_path, "# x\n", **{"docs/p.md": page})
    shutil.copytree(ROOT / "examples", root / "examples")
    assert docs.check(root) == []
    assert "outside_energy" not in METHODS
    (root / "examples" / "harbour.toml").write_text((root / "examples" / "harbour.toml").read_text().replace(
        "[methods.outside_energy]", "[methods.outside_energie]"))
    problems = docs.check(root)
    assert len(problems) == 1 and "outside_energie" in problems[0], problems


def test_the_screenshot_goes_stale_when_the_code_of_the_first_screen_changes(tmp_path):
    for name in docs.FIRST_SCREEN_CODE:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "docs").mkdir()
    assert docs.screenshot_problems(tmp_path) == [], "no screenshot, nothing to check"
    (tmp_path / docs.SCREENSHOT).write_bytes(b"\x89PNG")
    assert "no record of what it was made from" in docs.screenshot_problems(tmp_path)[0]
    record = {"commit": "abc123", "first_screen_code": docs.first_screen_digest(tmp_path)}
    (tmp_path / docs.SCREENSHOT_RECORD).write_text(json.dumps(record))
    assert docs.screenshot_problems(tmp_path) == []
    verdict = tmp_path / "benchmark/analyse/report/verdict.py"
    verdict.write_text(verdict.read_text() + "\n# a change to what the verdict says\n")
    (problem,) = docs.screenshot_problems(tmp_path)
    assert "older than the code that draws the report's first screen" in problem and "abc123" in problem
    assert "report_screenshots.py reports/quick/index.html --docs" in problem
    assert docs.screenshot_problems(ROOT) == [], "the shipped screenshot is current"
