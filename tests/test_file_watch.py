"""File fingerprints, settling and change detection of clustering.io.file_watch."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from clustering.io import file_watch
from clustering.io.file_watch import changes, expand_inputs, fingerprint, run_key, scan

PAST = time.time() - 3600


def write(path: Path, content: bytes, mtime: float = PAST) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, (mtime, mtime))
    return path


def test_expand_inputs_takes_files_folders_and_globs(tmp_path: Path) -> None:
    a = write(tmp_path / "a.parquet", b"a")
    b = write(tmp_path / "d" / "b.csv", b"b")
    write(tmp_path / "d" / "notes.txt", b"n")
    c = write(tmp_path / "g" / "x_1.parquet", b"c")
    write(tmp_path / "g" / "y_1.parquet", b"y")
    found = expand_inputs([str(a), str(tmp_path / "d"), str(tmp_path / "g" / "x_*.parquet")])
    assert found == sorted([a, b, c])
    assert expand_inputs([str(tmp_path / "missing.parquet")]) == []


def test_fingerprint_has_size_mtime_and_hash(tmp_path: Path) -> None:
    path = write(tmp_path / "a.parquet", b"abc")
    print_ = fingerprint(path)
    assert print_["size"] == 3
    assert print_["mtime_ns"] == path.stat().st_mtime_ns
    assert print_["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_large_files_are_not_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_watch, "HASH_LIMIT_BYTES", 2)
    path = write(tmp_path / "a.parquet", b"abc")
    before = {str(path): fingerprint(path)}
    assert before[str(path)]["sha256"] is None
    os.utime(path, (PAST + 10, PAST + 10))
    assert changes(before, {str(path): fingerprint(path)}) == [str(path)]


def test_scan_skips_hidden_temporary_and_just_modified_files(tmp_path: Path) -> None:
    now = time.time()
    done = write(tmp_path / "sales.parquet", b"done")
    write(tmp_path / ".sales2.parquet", b"hidden")
    write(tmp_path / "sales3.parquet.tmp", b"tmp")
    write(tmp_path / "sales4.csv.part", b"part")
    write(tmp_path / "sales5.csv", b"fresh", mtime=now - 1)
    result = scan([str(tmp_path)], now=now, settle_seconds=5)
    assert list(result.stable) == [str(done)]
    assert sorted(Path(p).name for p in result.in_progress) == [
        ".sales2.parquet",
        "sales3.parquet.tmp",
        "sales4.csv.part",
        "sales5.csv",
    ]
    assert result.in_progress[str(tmp_path / "sales5.csv")].startswith("modified")


def test_temporary_sibling_of_a_missing_file_is_reported_in_progress(tmp_path: Path) -> None:
    write(tmp_path / ".sales.parquet.tmp", b"half")
    result = scan([str(tmp_path / "sales.parquet")], now=time.time())
    assert result.stable == {}
    assert list(result.in_progress) == [str(tmp_path / ".sales.parquet.tmp")]


def test_touch_is_not_a_change_but_new_content_is(tmp_path: Path) -> None:
    path = write(tmp_path / "a.parquet", b"one")
    first = scan([str(path)], now=time.time()).stable
    os.utime(path, (PAST + 60, PAST + 60))
    touched = scan([str(path)], now=time.time(), previous=first).stable
    assert touched[str(path)]["mtime_ns"] != first[str(path)]["mtime_ns"]
    assert changes(first, touched) == []
    write(path, b"two", mtime=PAST + 120)
    assert changes(first, scan([str(path)], now=time.time()).stable) == [str(path)]


def test_new_files_are_changes_and_removed_ones_are_not(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", b"a")
    first = scan([str(tmp_path)], now=time.time()).stable
    assert changes({}, first) == [str(a)]
    b = write(tmp_path / "b.csv", b"b")
    assert changes(first, scan([str(tmp_path)], now=time.time()).stable) == [str(b)]
    a.unlink()
    b.unlink()
    assert changes(first, scan([str(tmp_path)], now=time.time()).stable) == []


def test_run_key_is_stable_order_independent_and_content_based() -> None:
    one = {
        "/a": {"size": 1, "mtime_ns": 1, "sha256": "x"},
        "/b": {"size": 2, "mtime_ns": 2, "sha256": "y"},
    }
    reordered = {
        "/b": {"size": 2, "mtime_ns": 9, "sha256": "y"},
        "/a": {"size": 1, "mtime_ns": 8, "sha256": "x"},
    }
    assert run_key("s", one) == run_key("s", reordered)
    assert run_key("s", one).startswith("s:")
    assert run_key("other", one) != run_key("s", one)
    changed = {**one, "/b": {"size": 2, "mtime_ns": 2, "sha256": "z"}}
    assert run_key("s", changed) != run_key("s", one)


def test_cursor_round_trip_and_garbage() -> None:
    state = {"/a": {"size": 1, "mtime_ns": 1, "sha256": "x"}}
    assert file_watch.loads_cursor(file_watch.dumps_cursor(state)) == state
    assert file_watch.loads_cursor(None) == {}
    assert file_watch.loads_cursor("not json") == {}
    assert file_watch.loads_cursor("[1, 2]") == {}
