"""Damaged results folders: a truncated or garbled `record.json`, `predictions.csv`, `suite.json`, `throughput.json`
or `reference.json`, and a complete run without its `model.pt`. `status` lists what is damaged (the file and the
reason), `report` renders the rest and lists what it left out, `run` trains or measures it again; a damaged run is
never taken for a complete one, and a damaged record of another configuration is never written over.

One tiny suite (Grad-CAM, four seeds, with the timings and the unbiased reference) is trained once per session
(`trained_folder`, also used by tests/test_full_disk.py); each test damages its own copy."""

from __future__ import annotations

import functools
import json
import re
import shutil
from pathlib import Path

import pytest
from tiny import tiny_suite

import benchmark.cli
import benchmark.commands
from benchmark.analyse.report import render, write_report
from benchmark.analyse.results import planned, read_suite, status_lines
from benchmark.cli import main
from benchmark.core.predictions import ROWS_KEY, predictions_problem
from benchmark.core.store import read_record
from benchmark.execute import runner
from benchmark.execute.suites import load

SEEDS = "0,1,2,3"


@functools.cache
def _train(base: Path) -> tuple[Path, Path, Path]:
    base.mkdir(parents=True)
    suite_file, out, data_root = base / "damaged.toml", base / "out", base / "data"
    suite_file.write_text(tiny_suite("damaged", ("gradcam",), reference=True))
    suite = load(suite_file, seeds=[int(s) for s in SEEDS.split(",")])
    result = runner.run_suite(suite, out, quiet=True, data_root=data_root, threads=1)
    assert [f["status"] for f in result.finished] == ["complete"] * 4
    assert (out / "throughput.json").is_file() and (out / "reference.json").is_file()
    return suite_file, out, data_root


def trained_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(suite file, results folder, data root) of the session's trained tiny suite: never change it, copy it."""
    return _train(tmp_path_factory.getbasetemp() / "damaged-suite")


@pytest.fixture
def folder(tmp_path_factory, tmp_path) -> tuple[Path, Path, Path]:
    """A copy of the trained folder to damage: (suite file, folder, data root)."""
    suite_file, out, data_root = trained_folder(tmp_path_factory)
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return suite_file, copy, data_root


@pytest.fixture(autouse=True)
def _few_resamples(monkeypatch):
    """The report's bootstrap with 50 resamples: what is tested here is what it leaves out, not its intervals."""
    monkeypatch.setattr(benchmark.cli, "write_report", functools.partial(write_report, n_resamples=50))
    monkeypatch.setattr(benchmark.commands, "render", functools.partial(render, n_resamples=50))


def run_ids(out: Path) -> list[str]:
    return [s.run_id for s in read_suite(out).runs()]


def truncate(path: Path) -> None:
    """The file cut in the middle of a line (a CSV cut exactly after a row would read as whole, and say so)."""
    data = path.read_bytes()
    cut = len(data) // 2
    path.write_bytes(data[: cut - 1 if data[cut - 1 : cut] == b"\n" else cut])


def garble(path: Path) -> None:
    """Bytes in the middle overwritten: the file keeps its length and its end."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 12] = b'#\x00garbled\xff,"'
    path.write_bytes(bytes(data))


def status(out: Path, capsys) -> tuple[str, list[str]]:
    """`gain-bench status DIR`'s output, and the lines `status_lines` gives it about what is damaged."""
    assert main(["status", str(out)]) == 0
    printed = capsys.readouterr().out
    suite = read_suite(out)
    lines = status_lines(suite, out, planned(suite, out))
    assert all(line in printed.splitlines() for line in lines), "status prints every line status_lines gives"
    return printed, lines


def report(out: Path, data_root: Path, capsys) -> tuple[int, str, str]:
    code = main(["report", str(out), "--data-root", str(data_root)])
    captured = capsys.readouterr()
    html = (out / "index.html").read_text() if code == 0 else ""
    return code, captured.err, html


@pytest.mark.parametrize(
    ("name", "damage", "reason"),
    [
        ("record.json", truncate, r"record\.json: truncated \(it ends after \d+ bytes; not a whole JSON document\)"),
        ("record.json", garble, r"record\.json: garbled \(not UTF-8 text at byte \d+\)"),
        ("predictions.csv", truncate, r"predictions\.csv: truncated \(it ends within row \d+, after \d+ bytes\)"),
        ("predictions.csv", garble, r"predictions\.csv: garbled \(not UTF-8 text at byte \d+\)"),
    ],
    ids=["record-truncated", "record-garbled", "predictions-truncated", "predictions-garbled"],
)
def test_a_damaged_run_is_listed_with_its_file_and_left_out_of_the_report(folder, capsys, name, damage, reason):
    _, out, data_root = folder
    ids = run_ids(out)
    damage(out / "runs" / ids[1] / name)
    printed, lines = status(out, capsys)
    assert "4 runs: 3 complete, 1 damaged" in printed, "never counted as complete"
    expected = rf"  damaged {ids[1]}: {reason}; left out of the report; `gain-bench run` trains it again"
    assert [line for line in lines if re.fullmatch(expected, line)], lines

    if (name, damage) in (("record.json", garble), ("predictions.csv", truncate)):
        return  # the report leaves a damaged run out whichever file is damaged: two of the four cases show it
    code, err, html = report(out, data_root, capsys)
    assert code == 0, err
    note = rf"note: run {ids[1]} left out: {reason}; `gain-bench run` trains it again"
    assert re.search(note, err), err
    assert "3 complete, 0 failed" in html and "1 damaged" in html
    left_out = html[html.index('<ul id="left-out">') :]
    assert ids[1] in left_out[: left_out.index("</ul>")]
    assert ids[1] not in (out / "results_runs.csv").read_text(), "the damaged run is not in the tables"
    assert ids[0] in (out / "results_runs.csv").read_text()


def cut_after_rows(path: Path, rows: int) -> None:
    """The file's last `rows` rows removed, cut exactly at a row's end: the file alone reads as whole."""
    lines = path.read_bytes().split(b"\n")  # the last one is the empty rest after the final newline
    path.write_bytes(b"\n".join(lines[: -1 - rows]) + b"\n")


@pytest.mark.parametrize("cut", ["rows", "role"], ids=["three-rows", "a-whole-role"])
def test_predictions_cut_at_a_row_end_are_found_short_by_the_records_row_counts(folder, capsys, cut):
    _, out, _ = folder
    ids = run_ids(out)
    path = out / "runs" / ids[2] / "predictions.csv"
    rows = read_record(path.with_name("record.json"))[ROWS_KEY]
    assert sum(rows.values()) == len(path.read_text().splitlines()) - 1, "the record counts every row written"
    last = path.read_text().splitlines()[-1].split(",")[0]  # the role of the file's last row
    dropped = 3 if cut == "rows" else rows[last]
    cut_after_rows(path, dropped)
    assert predictions_problem(path) is None, "the file alone gives no sign of the cut"
    printed, lines = status(out, capsys)
    assert "4 runs: 3 complete, 1 damaged" in printed
    reason = (f"predictions.csv: truncated ({last} has {rows[last] - dropped} rows where the run wrote {rows[last]}; "
              f"it ends after {path.stat().st_size} bytes)")  # fmt: skip
    assert lines == [f"  damaged {ids[2]}: {reason}; left out of the report; `gain-bench run` trains it again"]
    assert main(["table", str(out), "--rows"]) == 0
    err = capsys.readouterr().err
    assert f"gain-bench: warning: left out (damaged): {path}: {reason.removeprefix('predictions.csv: ')}" in err, err


def test_table_curves_and_compare_leave_a_damaged_run_out_and_say_which(folder, tmp_path, capsys):
    _, out, _ = folder
    ids = run_ids(out)
    whole = tmp_path / "whole"
    shutil.copytree(out, whole)
    record = out / "runs" / ids[1] / "record.json"
    truncate(record)
    warning = re.escape(f"gain-bench: warning: left out (damaged): {record}: truncated (") + r"it ends after \d+ bytes"
    assert main(["table", str(out), "--rows"]) == 0
    printed = capsys.readouterr()
    assert re.search(warning, printed.err) and "4 runs" not in printed.out, printed.err
    assert main(["table", str(out), "--csv", str(tmp_path / "csv")]) == 0
    capsys.readouterr()
    runs_table = (tmp_path / "csv" / "tidy.csv").read_text()
    assert ids[1] not in runs_table and ids[0] in runs_table
    excluded = (tmp_path / "csv" / "excluded.csv").read_text()
    assert ids[1] in excluded and "damaged" in excluded
    assert main(["curves", str(out)]) == 0
    assert re.search(warning, capsys.readouterr().err)
    assert main(["compare", str(whole), str(out)]) == 0
    printed = capsys.readouterr()
    row = printed.out.splitlines()[1].split()
    assert re.search(warning, printed.err) and row[0] == "gradcam" and row[1] == "3", printed  # 3 runs of 4 compared


def test_a_complete_run_without_its_checkpoint_is_reported_and_listed(folder, capsys):
    _, out, data_root = folder
    ids = run_ids(out)
    (out / "runs" / ids[0] / "model.pt").unlink()
    printed, lines = status(out, capsys)
    assert "4 runs: 4 complete" in printed, "its results are whole"
    assert lines == [
        f"  no checkpoint {ids[0]}: model.pt: missing (the record says complete); its results are reported, the "
        "gallery and the timings cannot use it; `gain-bench run` trains it again"
    ]
    code, err, html = report(out, data_root, capsys)
    assert code == 0, err
    assert (f"note: run {ids[0]}: model.pt: missing (the record says complete); its results are in the report; the "
            "gallery and the suite-level timing could not use it") in err  # fmt: skip
    assert "4 complete, 0 failed" in html and '<ul id="no-checkpoint">' in html
    assert ids[0] in (out / "results_runs.csv").read_text()


@pytest.mark.parametrize("damage", [truncate, garble], ids=["truncated", "garbled"])
def test_a_damaged_suite_file_is_an_error_that_says_what_to_do(folder, capsys, damage):
    _, out, data_root = folder
    damage(out / "suite.json")
    hint = (f"the folder cannot be read without its suite file; run `gain-bench run SUITE --out {out}` with the suite "
            "it was run with to write it again (finished runs are kept, nothing is trained twice)")  # fmt: skip
    kind = "truncated" if damage is truncate else "garbled"
    assert main(["status", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(rf"gain-bench: error: {re.escape(str(out / 'suite.json'))}: {kind} \(.*\): {re.escape(hint)}\n",
                        err), err  # fmt: skip
    code, err, _ = report(out, data_root, capsys)
    assert code == 2 and f"gain-bench: error: {out / 'suite.json'}: {kind} (" in err and hint in err, err
    assert "Traceback" not in err and not (out / "index.html").exists()


@pytest.mark.parametrize(
    ("name", "damage", "what", "then"),
    [
        ("throughput.json", truncate, "the suite-level timings out (each run's own timings stand in)", "them"),
        ("reference.json", garble, "the unbiased attention reference out", "it"),
    ],
    ids=["throughput-truncated", "reference-garbled"],
)
def test_a_damaged_suite_level_file_is_left_out_of_the_report(folder, capsys, name, damage, what, then):
    _, out, data_root = folder
    damage(out / name)
    kind = "truncated" if damage is truncate else "garbled"
    printed, lines = status(out, capsys)
    assert "4 runs: 4 complete" in printed
    reason = rf"{kind} \(.*\): the report leaves {re.escape(what)}; `gain-bench run` measures {then} again"
    assert len(lines) == 1 and re.fullmatch(rf"  damaged {name}: {reason}", lines[0]), lines
    code, err, html = report(out, data_root, capsys)
    assert code == 0, err
    assert re.search(rf"note: {name}: {reason}", err), err
    assert name in html[html.index('<ul id="left-out">') :]
    if name == "throughput.json":
        assert "Measured after" not in html, "the per-run timings stand in"


def test_run_trains_the_damaged_runs_again_and_measures_the_damaged_files_again(folder, capsys):
    suite_file, out, data_root = folder
    ids = run_ids(out)
    truncate(out / "runs" / ids[0] / "record.json")
    garble(out / "runs" / ids[1] / "predictions.csv")
    (out / "runs" / ids[2] / "model.pt").unlink()
    other = out / "runs" / ids[3] / "record.json"  # a damaged record of another configuration: never written over
    other.write_text(other.read_text().replace(read_record(other)["config_hash"], "f" * 64)[:-200])
    conflict = other.read_bytes()
    for name in ("suite.json", "throughput.json", "reference.json"):
        truncate(out / name)
    args = ["run", str(suite_file), "--out", str(out), "--seeds", SEEDS, "--quiet", "--threads", "1", "--data-root",
            str(data_root)]  # fmt: skip
    assert main(args) == 1, "the conflict is still there"
    captured = capsys.readouterr()
    for name, then in (("suite.json", "writing it again from the suite"),
                       ("throughput.json", "timing the configurations again"),
                       ("reference.json", "measuring the reference again")):  # fmt: skip
        assert re.search(rf"note: {re.escape(str(out / name))}: truncated \(.*\): {then}", captured.err), name
    assert f"suite damaged: 3 run(s) executed, 1 skipped -> {out}" in captured.out
    assert re.search(rf"  trained again {ids[0]}: damaged: record\.json: truncated \(.*\): training it again",
                     captured.out)  # fmt: skip
    assert f"  trained again {ids[1]}: damaged: predictions.csv: garbled (not UTF-8 text at byte" in captured.out
    assert (f"  trained again {ids[2]}: complete without its checkpoint (model.pt: missing (the record says "
            "complete)): training it again") in captured.out  # fmt: skip
    assert re.search(rf"note: run {ids[3]} left out: record\.json: truncated \(.*\); it names another configuration; "
                     "not touched", captured.err)  # fmt: skip
    assert (f"  skipped {ids[3]}: its folder holds another configuration (same run id prefix); not touched "
            "(record.json: truncated") in captured.out  # fmt: skip
    assert other.read_bytes() == conflict, "a conflict is never written over"
    printed, lines = status(out, capsys)
    assert "4 runs: 3 complete, 1 conflict" in printed
    assert [line.split(":")[0] for line in lines] == [f"  conflict {ids[3]}"]
    for run_id in ids[:3]:
        assert read_record(out / "runs" / run_id / "record.json")["status"] == "complete"
        assert (out / "runs" / run_id / "model.pt").is_file()
    timed = json.loads((out / "throughput.json").read_text())["rows"]
    assert [r["run_id"] for r in timed] == [ids[0]], "measured again on the representative"
    assert json.loads((out / "reference.json").read_text()), "measured again"
    assert json.loads((out / "suite.json").read_text())["name"] == "damaged"


@pytest.mark.parametrize("damage", [truncate, garble], ids=["truncated", "garbled"])
def test_a_damaged_gallery_is_listed_by_status_and_drawn_again_by_run(folder, capsys, damage):
    suite_file, out, data_root = folder
    assert main(["status", str(out)]) == 0 and "gallery" not in capsys.readouterr().out, "a whole gallery: no line"
    damage(out / "gallery.json")
    assert main(["status", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^  damaged gallery: the gallery in this results folder is unreadable \(gallery\.json: .+\); "
                     r"`gain-bench report` writes it again where the checkpoints and the data are$", printed,
                     re.MULTILINE), printed  # fmt: skip
    args = ["run", str(suite_file), "--out", str(out), "--seeds", SEEDS, "--quiet", "--threads", "1", "--data-root",
            str(data_root)]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    assert "gallery" not in capsys.readouterr().out, "drawn again by run"
    (out / "gallery.npz").unlink()
    assert main(["status", str(out)]) == 0
    assert "  damaged gallery: the gallery in this results folder has no gallery.npz beside its gallery.json" in (
        capsys.readouterr().out
    )


def test_a_report_from_a_folder_with_a_damaged_gallery_says_why_it_has_none(folder, capsys):
    _, out, _ = folder
    garble(out / "gallery.json")
    html_path = write_report(out, out / "alone.html", n_resamples=50)  # the folder alone: nothing is drawn again
    captured = capsys.readouterr()
    assert re.search(r"note: gallery: the gallery in this results folder is unreadable \(gallery\.json: .+\); "
                     r"`gain-bench report` writes it again", captured.err), captured.err  # fmt: skip
    html = html_path.read_text()
    left_out = html[html.index('<ul id="left-out">') :]
    assert "the gallery in this results folder is unreadable" in left_out[: left_out.index("</ul>")]
    assert "<p>the gallery in this results folder is unreadable (gallery.json: " in html, "the gallery section says why"
    assert 'alt="attention maps of every configuration' not in html
