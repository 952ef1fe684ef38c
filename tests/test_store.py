"""Direct tests of the run-record store: `run_state` (what the runner skips, reruns or refuses), `pick_complete`,
the atomic writes, the lock and the suite-level files. Each case is one folder written by hand under `tmp_path`."""

import json
import os
import stat

import pytest

from benchmark.core import store
from benchmark.core.store import (
    COMPLETE,
    CONFLICT,
    FAILED,
    MISSING,
    RECORD_SCHEMA,
    RUNNING,
    RunLock,
    pick_complete,
    read_record,
    read_references,
    run_dir,
    run_state,
    throughput_rows,
    write_atomic,
    write_record,
)

HASH = "abc123"
# a whole predictions file (the columns `benchmark.core.predictions` writes), one row
PREDICTIONS = (
    "role,id,row,pair,has_context,context_share,object_share,context_area,score_boat\n"
    "val,img0,0,-1,1,0.25,0.5,0.3,0.9\n"
)


def _run(root, run_id="r1", *, status="complete", config_hash=HASH, predictions=True, model=False, **extra):
    folder = run_dir(root, run_id)
    write_record(
        folder / "record.json", {"schema": RECORD_SCHEMA, "status": status, "config_hash": config_hash} | extra
    )
    if predictions:
        (folder / "predictions.csv").write_text(PREDICTIONS)
    if model:
        (folder / "model.pt").write_bytes(b"x")
    return folder


def test_state_names_are_the_documented_strings():
    assert (COMPLETE, FAILED, RUNNING, MISSING, CONFLICT) == ("complete", "failed", "running", "missing", "conflict")


def test_run_dir_is_runs_slash_id(tmp_path):
    assert run_dir(tmp_path, "gain-b9-s0") == tmp_path / "runs" / "gain-b9-s0"
    assert run_dir(str(tmp_path), "x") == tmp_path / "runs" / "x"


def test_complete_run_with_its_predictions_is_complete(tmp_path):
    _run(tmp_path, extra_field=1)
    state, record = run_state(tmp_path, "r1", HASH)
    assert state == COMPLETE
    assert record["config_hash"] == HASH and record["extra_field"] == 1


def test_complete_run_of_another_configuration_is_a_conflict_never_complete(tmp_path):
    """Two configurations' results must not mix: a record whose config_hash differs from the suite's is refused."""
    _run(tmp_path, config_hash="other", model=True)
    state, record = run_state(tmp_path, "r1", HASH)
    assert state == CONFLICT
    assert record["config_hash"] == "other", "the conflicting record is handed back for the message"
    for status in ("failed", "running", "interrupted", "whatever"):
        _run(tmp_path, status=status, config_hash="other")
        assert run_state(tmp_path, "r1", HASH)[0] == CONFLICT, status
    assert run_state(tmp_path, "r1", "other")[0] not in (COMPLETE, CONFLICT), "the same folder read with its own hash"


def test_complete_record_without_predictions_is_not_complete(tmp_path):
    folder = _run(tmp_path, predictions=False)
    state, record = run_state(tmp_path, "r1", HASH)
    assert state != COMPLETE
    assert state not in (FAILED, RUNNING, CONFLICT), "a rerun replaces it"
    assert record is not None and record["status"] == "complete"
    (folder / "predictions.csv").write_text(PREDICTIONS)
    assert run_state(tmp_path, "r1", HASH)[0] == COMPLETE


def test_predictions_elsewhere_do_not_count(tmp_path):
    _run(tmp_path, "r1", predictions=False)
    _run(tmp_path, "r2", predictions=True)
    (tmp_path / "predictions.csv").write_text(PREDICTIONS)
    (tmp_path / "runs" / "predictions.csv").write_text(PREDICTIONS)
    assert run_state(tmp_path, "r1", HASH)[0] != COMPLETE
    assert run_state(tmp_path, "r2", HASH)[0] == COMPLETE


@pytest.mark.parametrize(
    ("status", "want"), [("failed", FAILED), ("running", RUNNING), ("interrupted", RUNNING), ("queued", None)]
)
def test_other_statuses(tmp_path, status, want):
    _run(tmp_path, status=status, error="boom")
    state, record = run_state(tmp_path, "r1", HASH)
    if want is None:  # an unknown status: rerun (today `missing`), never taken as a result
        assert state not in (COMPLETE, FAILED, RUNNING, CONFLICT) and isinstance(state, str) and state
    else:
        assert state == want
    assert record is not None and record["status"] == status and record["error"] == "boom"


def test_failed_run_is_failed_with_or_without_predictions(tmp_path):
    _run(tmp_path, status="failed", predictions=False)
    assert run_state(tmp_path, "r1", HASH)[0] == FAILED


def test_record_without_status_or_hash(tmp_path):
    folder = run_dir(tmp_path, "r1")
    write_record(folder / "record.json", {"schema": RECORD_SCHEMA, "status": "complete"})
    (folder / "predictions.csv").write_text(PREDICTIONS)
    assert run_state(tmp_path, "r1", HASH)[0] == CONFLICT, "a record with no hash holds another configuration"
    write_record(folder / "record.json", {"schema": RECORD_SCHEMA, "config_hash": HASH})
    state, record = run_state(tmp_path, "r1", HASH)
    assert state not in (COMPLETE, FAILED, RUNNING, CONFLICT)
    assert record == {"schema": RECORD_SCHEMA, "config_hash": HASH}


def test_no_folder_or_no_record_is_missing(tmp_path):
    assert run_state(tmp_path, "r1", HASH) == (MISSING, None)
    run_dir(tmp_path, "r1").mkdir(parents=True)
    (run_dir(tmp_path, "r1") / "predictions.csv").write_text(PREDICTIONS)
    assert run_state(tmp_path, "r1", HASH) == (MISSING, None)
    (run_dir(tmp_path, "r1") / "record.json").mkdir()  # not a file
    assert run_state(tmp_path, "r1", HASH) == (MISSING, None)


@pytest.mark.parametrize("text", ["{not json", json.dumps({"schema": 99, "status": "complete", "config_hash": HASH})])
def test_unreadable_record_is_never_complete_nor_a_conflict(tmp_path, text):
    """An unreadable record (bad JSON, unknown schema) is rerun, not trusted and not refused (today: `missing`; a
    later "damaged" state may name it; either way it is neither complete nor a conflict and carries no record)."""
    folder = run_dir(tmp_path, "r1")
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(text)
    (folder / "predictions.csv").write_text(PREDICTIONS)
    state, record = run_state(tmp_path, "r1", HASH)
    assert state not in (COMPLETE, CONFLICT, FAILED, RUNNING) and isinstance(state, str) and state
    assert record is None


def test_read_record_refuses_bad_json_and_other_schemas(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("{")
    with pytest.raises(ValueError, match=r"record\.json: "):
        read_record(path)
    path.write_text(json.dumps({"schema": 2}))
    with pytest.raises(ValueError, match=r"record\.json: record schema 2, this gain-bench reads 1$"):
        read_record(path)
    path.write_text(json.dumps({}))
    with pytest.raises(ValueError, match="record schema None"):
        read_record(path)
    path.write_text(json.dumps({"schema": 1, "x": [1, 2]}))
    assert read_record(str(path)) == {"schema": 1, "x": [1, 2]}


def test_write_record_is_sorted_indented_json_with_nan(tmp_path):
    path = tmp_path / "a" / "record.json"
    write_record(path, {"schema": 1, "b": float("nan"), "a": [1]})
    text = path.read_text()
    assert text == '{\n  "a": [\n    1\n  ],\n  "b": NaN,\n  "schema": 1\n}\n'
    assert read_record(path)["a"] == [1]


def test_write_atomic_text_and_bytes_and_no_temp_left(tmp_path):
    path = tmp_path / "deep" / "er" / "file.txt"
    write_atomic(path, "héllo")
    assert path.read_bytes() == "héllo".encode()
    write_atomic(str(path), b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.txt"]


def test_write_atomic_honours_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "f", "x")
        assert store._umask() == 0o027, "reading the umask leaves it as it was"
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o640


def test_write_atomic_failure_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    path.write_text("old")

    def fail(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(store.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_temp_file_is_beside_the_target_and_hidden(tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append((src, dst))
        real(src, dst)

    monkeypatch.setattr(store.os, "replace", spy)
    write_atomic(tmp_path / "out.csv", "x")
    ((src, dst),) = seen
    src = os.fspath(src)
    assert os.path.dirname(src) == str(tmp_path) and os.path.basename(src).startswith(".out.csv.")
    assert src.endswith(".tmp") and dst == tmp_path / "out.csv"


def test_pick_complete_takes_the_first_complete_run_with_a_checkpoint(tmp_path):
    _run(tmp_path, "s0", status="failed", model=True)
    _run(tmp_path, "s1", model=False)
    _run(tmp_path, "s2", model=True)
    _run(tmp_path, "s3", model=True)
    runs = [("s0", HASH), ("s1", HASH), ("s2", HASH), ("s3", HASH)]
    assert pick_complete(tmp_path, runs) == (2, "")
    assert pick_complete(tmp_path, runs[3:]) == (0, "")
    assert pick_complete(tmp_path, [("s2", "other"), ("s3", HASH)]) == (1, ""), "a conflicting run is not complete"


def test_pick_complete_says_why_not(tmp_path):
    _run(tmp_path, "s0", model=False)
    _run(tmp_path, "s1", status="running", model=True)
    _run(tmp_path, "s2", predictions=False, model=True)
    assert pick_complete(tmp_path, [("s0", HASH)]) == (None, "no checkpoint (model.pt) in its complete runs: skipped")
    assert pick_complete(tmp_path, [("s1", HASH), ("s2", HASH)]) == (None, "no complete run yet: skipped")
    assert pick_complete(tmp_path, []) == (None, "no complete run yet: skipped")


def test_throughput_rows_only_for_the_current_representatives(tmp_path):
    assert throughput_rows(tmp_path, {"a"}) is None
    path = tmp_path / store.THROUGHPUT_FILE
    assert store.THROUGHPUT_FILE == "throughput.json" and store.REFERENCE_FILE == "reference.json"
    rows = [{"run_id": "a", "images_per_s": 3.0}, {"run_id": "b", "images_per_s": 4.0}]
    path.write_text(json.dumps({"rows": rows}))
    assert throughput_rows(tmp_path, {"a", "b"}) == rows
    assert throughput_rows(str(tmp_path), {"a", "b"}) == rows
    assert throughput_rows(tmp_path, {"a"}) is None
    assert throughput_rows(tmp_path, {"a", "b", "c"}) is None
    assert throughput_rows(tmp_path, set()) is None


def test_read_references(tmp_path):
    assert read_references(tmp_path) == {}
    path = tmp_path / store.REFERENCE_FILE
    path.write_text(json.dumps({"gain": {"x": 1}}))
    assert read_references(str(tmp_path)) == {"gain": {"x": 1}}
    path.write_text("{")
    with pytest.raises(ValueError, match=r"reference\.json: "):
        read_references(tmp_path)


def test_run_lock_is_exclusive_and_names_its_holder(tmp_path):
    import socket

    first, second = RunLock(tmp_path, "r1"), RunLock(tmp_path, "r1")
    assert first.path == tmp_path / "runs" / "r1" / ".lock"
    assert not first.held_elsewhere(), "no lock file yet"
    assert first.acquire()
    assert first.path.read_text() == f"{socket.gethostname()} {os.getpid()}\n"
    assert second.held_elsewhere()
    assert not second.acquire()
    assert not second.acquire(attempts=2)
    first.release()
    first.release()  # a second release is harmless
    assert not second.held_elsewhere()
    with second:
        assert second.acquire(attempts=3)
        assert first.held_elsewhere()
    assert not first.held_elsewhere(), "leaving the block releases the lock"
    assert first.acquire()
    first.release()


def test_acquire_truncates_the_previous_holders_name(tmp_path):
    import socket

    lock = RunLock(tmp_path, "r1")
    lock.path.parent.mkdir(parents=True)
    lock.path.write_text("x" * 200)
    assert lock.acquire()
    try:
        assert lock.path.read_text() == f"{socket.gethostname()} {os.getpid()}\n"
    finally:
        lock.release()


def test_held_elsewhere_on_an_unreadable_path_is_false(tmp_path):
    lock = RunLock(tmp_path, "r1")
    lock.path.mkdir(parents=True)  # a directory named .lock: opening it read-only works, flock on it works too
    assert lock.held_elsewhere() is False


def test_modes_under_a_group_writable_umask(tmp_path):
    old = os.umask(0o002)
    try:
        write_atomic(tmp_path / "f", "x")
        lock = RunLock(tmp_path, "r1")
        assert lock.acquire()
        lock.release()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o664
    assert stat.S_IMODE(lock.path.stat().st_mode) == 0o664


def test_lock_release_without_acquire_and_the_retry_pause(tmp_path, monkeypatch):
    RunLock(tmp_path, "r1").release()  # nothing held: nothing to do
    pauses = []
    monkeypatch.setattr(store.time, "sleep", pauses.append)
    first, second = RunLock(tmp_path, "r1"), RunLock(tmp_path, "r1")
    assert first.acquire()
    assert not second.acquire()
    assert pauses == [], "one attempt by default: no pause"
    assert not second.acquire(attempts=3)
    assert pauses == [0.05, 0.05]
    first.release()


# The damaged state and the write errors (store.inspect_run, read_json, write_error), each message by hand.

OTHER = "f" * 64  # a config hash as the runner writes them: 64 hex digits


def test_inspect_run_says_what_is_wrong(tmp_path):
    """The state and the record exactly; the `problem` by its file and its kind (its wording may grow)."""
    from benchmark.core.store import DAMAGED, inspect_run

    def at(run_id, config_hash=HASH):
        return tuple(inspect_run(tmp_path, run_id, config_hash))

    _run(tmp_path, "ok", model=True)
    assert at("ok")[0] == COMPLETE and at("ok")[1]["status"] == "complete" and at("ok")[2] == ""
    _run(tmp_path, "nomodel")
    state, record, problem = at("nomodel")
    assert state == COMPLETE and record["status"] == "complete" and problem.startswith("model.pt: missing")
    _run(tmp_path, "nopred", predictions=False)
    state, record, problem = at("nopred")
    assert state == DAMAGED and record["status"] == "complete" and problem.startswith("predictions.csv: missing")
    _run(tmp_path, "queued", status="queued")
    state, record, problem = at("queued")
    assert state == DAMAGED and record["status"] == "queued"
    assert problem.startswith("record.json: garbled") and "'queued'" in problem
    folder = run_dir(tmp_path, "cut")
    folder.mkdir(parents=True)
    text = f'{{"config_hash": "{OTHER}", "schema": 1, "sta'
    (folder / "record.json").write_text(text)
    state, record, problem = at("cut", OTHER)
    assert (state, record) == (DAMAGED, None)
    assert problem.startswith(f"record.json: truncated (it ends after {len(text)} bytes")
    state, record, problem = at("cut", HASH)
    assert (state, record) == (CONFLICT, None), "a damaged record that still shows another hash is a conflict"
    assert problem.startswith("record.json: truncated") and problem.endswith("another configuration")
    (folder / "record.json").write_bytes(text.encode() + b"\xff\xfe")  # not even UTF-8 any more
    assert at("cut", HASH)[:2] == (CONFLICT, None), "the hash is still read around the bad bytes"
    assert at("cut", OTHER)[:2] == (DAMAGED, None)


def test_read_json_tells_truncated_from_garbled(tmp_path):
    from benchmark.core.store import DamagedFile, read_json

    path = tmp_path / "x.json"
    cases = {
        '{"a": [1, 2': "truncated (it ends after 11 bytes",
        '{"a": [1, 2]': "truncated (it ends after 12 bytes",
        '{"a": "abc}': "truncated (it ends after 11 bytes",
        "": "truncated (it ends after 0 bytes",
        '{"a": 1,,}\n': "garbled (Expecting property name enclosed in double quotes at character 8",
        "[1,, 2]": "garbled (Expecting value at character 3",
    }
    for text, why in cases.items():
        path.write_text(text)
        with pytest.raises(DamagedFile) as err:
            read_json(path)
        assert str(err.value).startswith(f"{path}: {why}"), text
    path.write_bytes(b'{"\xff": 1}')
    with pytest.raises(DamagedFile, match=r"x\.json: garbled \(not UTF-8 text at byte 2\)$"):
        read_json(path)
    path.write_text("[1]")
    with pytest.raises(DamagedFile, match=r"x\.json: garbled \(a JSON list, not a run record\)$"):
        read_record(path)
    assert read_json(str(path)) == [1]


def test_damaged_suite_level_files_name_themselves(tmp_path):
    from benchmark.core.store import DamagedFile, suite_file_hint

    path = tmp_path / store.THROUGHPUT_FILE
    for data in ([1], {"rows": {}}, {"rows": [{"x": 1}]}, {"rows": [1]}):
        path.write_text(json.dumps(data))
        with pytest.raises(DamagedFile, match=r"throughput\.json: garbled \(no list of timed runs under 'rows'\)$"):
            throughput_rows(tmp_path, {"a"})
    path = tmp_path / store.REFERENCE_FILE
    for data in ([1], {"a": 1}):
        path.write_text(json.dumps(data))
        with pytest.raises(DamagedFile, match=r"garbled \(not one reference per data and model setting\)$"):
            read_references(tmp_path)
    assert suite_file_hint(tmp_path) == (
        f"the folder cannot be read without its suite file; run `gain-bench run SUITE --out {tmp_path}` with the "
        "suite it was run with to write it again (finished runs are kept, nothing is trained twice)"
    )


def test_write_error_names_the_file_and_the_cause(tmp_path):
    import errno

    from benchmark.core.store import WriteError, write_error

    path = tmp_path / "f"
    full = write_error(path, OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(full, WriteError) and isinstance(full, ValueError) and full.path == path
    assert full.errno == errno.ENOSPC
    assert f"cannot write {path}: No space left on device (ENOSPC: " in str(full)
    assert "nothing half-written was left" in str(full), "and what to do"
    denied = write_error(path, OSError(errno.EACCES, "Permission denied"))
    assert f"cannot write {path}: Permission denied (EACCES)" in str(denied) and denied.errno == errno.EACCES
    odd = write_error(path, OSError("weird"))
    assert str(odd).endswith(f"cannot write {path}: weird") and odd.errno == errno.EIO


def test_write_atomic_and_the_lock_raise_write_errors(tmp_path, monkeypatch):
    import errno

    from benchmark.core.store import WriteError

    (tmp_path / "file").write_text("")
    with pytest.raises(WriteError) as err:
        write_atomic(tmp_path / "file" / "x.json", "{}")  # its folder would be a file
    assert err.value.path == tmp_path / "file" / "x.json" and f"cannot write {tmp_path / 'file' / 'x.json'}" in str(
        err.value
    )
    with pytest.raises(WriteError) as err:
        RunLock(tmp_path / "file", "r1").acquire()
    assert err.value.path == tmp_path / "file" / "runs" / "r1" / ".lock"

    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "replace", full)
    with pytest.raises(WriteError) as err:
        write_atomic(tmp_path / "y.json", "{}")
    assert err.value.errno == errno.ENOSPC and err.value.path == tmp_path / "y.json"
    already = WriteError(errno.EIO, "cannot write elsewhere: as it was")

    def again(*_args):
        raise already

    monkeypatch.setattr(store.os, "replace", again)
    with pytest.raises(WriteError) as err:
        write_atomic(tmp_path / "z.json", "{}")
    assert err.value is already, "a WriteError passes through as it is"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"], "no temp file left behind"


def test_failed_for_space():
    from benchmark.core.store import STORAGE_ERROR, failed_for_space

    assert STORAGE_ERROR == "storage_error"
    assert not failed_for_space(None)
    assert not failed_for_space({"status": "complete", STORAGE_ERROR: "x"})
    assert failed_for_space({"status": "failed", STORAGE_ERROR: "runs/r1/model.pt"})
    assert failed_for_space({"status": "failed", "error": "benchmark.core.store.WriteError: cannot write x"})
    assert not failed_for_space({"status": "failed", "error": "ValueError: boom"})
    assert not failed_for_space({"status": "failed", STORAGE_ERROR: "", "error": ""})
    assert not failed_for_space({"status": "failed"})
