"""What the command line does with an exception no command handles (an internal error): one line on stderr naming
it and the file its whole traceback went to, exit status 1; bad input keeps its one line and exit status 2."""

from __future__ import annotations

import argparse
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmark import cli


def _failing(exc: BaseException) -> Callable[[argparse.Namespace], int]:
    """A stand-in command that raises `exc`."""

    def command(args: argparse.Namespace) -> int:
        raise exc

    return command


@pytest.fixture
def tmpdir_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder (`$TMPDIR`) the traceback goes to, for this test only."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_an_internal_error_is_one_line_exit_1_and_a_traceback_file(
    tmpdir_here: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "cmd_status", _failing(RuntimeError("the index went missing\nsecond line")))
    assert cli.main(["status", str(tmpdir_here)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    found = re.fullmatch(
        r"gain-bench: internal error: RuntimeError: the index went missing \(traceback: (.+); please report it\)",
        lines[0],
    )
    assert found, lines[0]
    path = Path(found.group(1))
    assert path.parent == tmpdir_here and re.fullmatch(r"gain-bench-\d{8}T\d{6}Z-\d+\.traceback", path.name)
    text = path.read_text()
    assert text.startswith(f"gain-bench status {tmpdir_here}\n"), "the command line first"
    assert "Traceback (most recent call last)" in text and "in command" in text
    assert "RuntimeError: the index went missing\nsecond line" in text
    assert "Traceback" not in captured.err and not captured.out


def test_bad_input_keeps_its_line_and_exit_2_without_a_traceback_file(
    tmpdir_here: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "cmd_status", _failing(ValueError("data.rho = 2: allowed: a number in [0, 1]")))
    assert cli.main(["status", str(tmpdir_here)]) == 2
    assert capsys.readouterr().err == "gain-bench: error: data.rho = 2: allowed: a number in [0, 1]\n"
    assert not list(tmpdir_here.glob("*.traceback"))


def test_a_training_command_s_internal_error_is_caught_too(
    tmpdir_here: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = cli._lazy("list")
    monkeypatch.setattr(commands, "cmd_list", _failing(KeyError("methods")))
    assert cli.main(["list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gain-bench: internal error: KeyError: 'methods' (traceback: ") and err.count("\n") == 1
    assert len(list(tmpdir_here.glob("gain-bench-*.traceback"))) == 1


def test_where_the_traceback_cannot_be_written_it_is_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    monkeypatch.setattr(cli, "cmd_status", _failing(RuntimeError("boom")))
    assert cli.main(["status", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: boom" in err
    assert err.splitlines()[-1].startswith("gain-bench: internal error: RuntimeError: boom (the traceback above")


def test_an_interrupt_is_not_an_internal_error(tmpdir_here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "cmd_status", _failing(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        cli.main(["status", str(tmpdir_here)])
    assert not list(tmpdir_here.glob("*.traceback"))


def test_the_help_says_where_tracebacks_go() -> None:
    epilog = cli.build_parser().epilog or ""
    assert "$TMPDIR/gain-bench-<time>-<pid>.traceback" in epilog and "internal error" in epilog
