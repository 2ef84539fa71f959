"""Result files: written whole or not at all, with the permissions any new file would get."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from clustering.io.writers import write_frame, write_json


@pytest.fixture
def umask_027() -> Iterator[None]:
    previous = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("umask_027")
def test_exports_follow_the_umask(tmp_path: Path) -> None:
    frame = pd.DataFrame({"STORE_NBR": [1, 2]})
    for path in [
        write_frame(frame, tmp_path / "final.parquet"),
        write_frame(frame, tmp_path / "final.csv"),
        write_json({"a": 1}, tmp_path / "summary.json"),
    ]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path.name  # 0666 & ~027


def test_a_failed_write_leaves_the_earlier_file(tmp_path: Path) -> None:
    target = write_frame(pd.DataFrame({"A": [1]}), tmp_path / "final.csv")
    with pytest.raises(ValueError):
        write_frame(pd.DataFrame({"A": [1]}), tmp_path / "final.txt")
    before = target.read_bytes()

    class Broken(pd.DataFrame):
        def to_csv(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_frame(Broken({"A": [2]}), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["final.csv"]


@pytest.mark.usefixtures("umask_027")
def test_a_large_csv_reads_exactly_as_pandas_would_have_written_it(tmp_path: Path) -> None:
    # Above 100,000 rows the CSV is written by DuckDB (10x faster): the text must not change.
    n = 120_000
    frame = pd.DataFrame(
        {
            "STORE_NBR": range(n),
            "CATEGORY": ['CANDY/SNACKS, "premium"', "BEER & WINE"] * (n // 2),
            "EXTERNAL_CLUSTER": pd.array([1, None] * (n // 2), dtype="Int64"),
            "REASSIGNED": [True, False] * (n // 2),
            "DISTANCE": [0.1 * i for i in range(n)],
            "OVERRIDE_REASON": [None, "moved by hand"] * (n // 2),
        }
    )
    written = write_frame(frame, tmp_path / "final.csv")
    frame.to_csv(tmp_path / "pandas.csv", index=False)
    assert written.read_text() == (tmp_path / "pandas.csv").read_text()
    assert stat.S_IMODE(written.stat().st_mode) == 0o640


def test_temporary_files_of_killed_writers_are_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "final.csv"
    # A writer killed mid-write (a pid no process has) and one still writing (this process).
    orphan = tmp_path / ".final.csv.999999999.abcd.tmp"
    live = tmp_path / f".final.csv.{os.getpid()}.efgh.tmp"
    orphan.write_text("half")
    live.write_text("half")
    write_frame(pd.DataFrame({"STORE_NBR": [1]}), target)
    assert not orphan.exists()
    assert live.exists()
    assert target.read_text() == "STORE_NBR\n1\n"
