"""DuckDBStore: lossless round trips, any table name, atomic replacement, concurrent writers."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from clustering.io.duckdb_store import (
    STAGING_PREFIX,
    DuckDBStore,
    StoreLockTimeoutError,
    TableNotFoundError,
    UnsupportedFrameError,
    storable_frame,
)

ODD_SCHEMA = 'CANDY/SNACKS & "Co"'
ODD_TABLE = 'it\'s a / table & more "quoted"'


def _another_process_writes(path: Path, schema: str) -> None:
    """Open ``path`` read-write from another program (which takes no lock file of ours)."""
    script = textwrap.dedent(
        """
        import sys, duckdb
        con = duckdb.connect(sys.argv[1])
        con.execute(f"CREATE SCHEMA {sys.argv[2]}")
        con.execute(f"CREATE TABLE {sys.argv[2]}.t AS SELECT 42 AS B")
        con.close()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), schema],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_between_operations_the_file_is_free_for_another_process(store: DuckDBStore) -> None:
    """The process keeps a DuckDB instance between operations, but holds no lock on the file."""
    store.write_table("mine", "t", pd.DataFrame({"A": [1, 2]}))
    assert store.read_table("mine", "t")["A"].tolist() == [1, 2]
    _another_process_writes(store.path, "other")
    assert store.read_table("other", "t")["B"].tolist() == [42]
    store.write_table("mine", "t", pd.DataFrame({"A": [3]}))
    assert [(s, t) for s, t, _ in store.list_tables()] == [("mine", "t"), ("other", "t")]


def test_an_operation_that_fails_leaves_the_file_free(store: DuckDBStore) -> None:
    store.write_table("mine", "t", pd.DataFrame({"A": [1]}))
    with pytest.raises(duckdb.Error):
        store.query("SELECT no_such_column FROM mine.t")
    with pytest.raises(duckdb.Error):
        store.query("SELECT 1 FROM no_such_schema.t")
    _another_process_writes(store.path, "other")
    assert store.read_table("other", "t")["B"].tolist() == [42]
    assert store.read_table("mine", "t")["A"].tolist() == [1]


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    return DuckDBStore(tmp_path / "outputs" / "clustering_test.duckdb", lock_timeout_s=30)


def every_dtype_frame() -> pd.DataFrame:
    """One column per dtype a user would notice changing, each with a missing value."""
    return pd.DataFrame(
        {
            "STORE_NBR": np.array([101, 102, 103], dtype=np.int64),
            "SHARE": [12.5, np.nan, 87.5],
            "IS_NEW": [True, False, True],
            "NEED_STATE": ["SWEET", None, "SALTY & SOUR"],
            "CLUSTER": pd.array([1, None, 3], dtype="Int64"),
            "CLUSTER_FULL": pd.array([1, 2, 3], dtype="Int64"),
            "CATEGORY": pd.Categorical(["CANDY/SNACKS", "BEER", None]),
            "OPENED": pd.Series(
                ["2024-01-01 08:30", "2024-02-01 00:00", None], dtype="datetime64[ns]"
            ),
            "OPENED_LOCAL": pd.to_datetime(
                ["2024-01-01 00:00", "2024-06-01 00:00", "2024-12-31 23:00"]
            ).tz_localize("Europe/Paris"),
            "NAME": pd.array(["a", None, "c"], dtype="string"),
            "FLAGGED": pd.array([True, None, False], dtype="boolean"),
            "AREA": np.array([1.5, 2.5, 3.5], dtype=np.float32),
            "AISLES": np.array([4, 5, 6], dtype=np.int32),
            "EMPTY_NOTE": [None, None, None],
        }
    )


def test_round_trip_keeps_every_dtype(store: DuckDBStore) -> None:
    frame = every_dtype_frame()
    assert store.write_table("preprocessing", "stores", frame) == 3

    back = store.read_table("preprocessing", "stores")

    # Documented normalisation: categoricals come back as text, missing as None.
    expected = frame.assign(CATEGORY=pd.Series(["CANDY/SNACKS", "BEER", None], dtype=object))
    pd.testing.assert_frame_equal(back, expected)
    assert back["CLUSTER"].dtype == "Int64" and back["CLUSTER"].isna().sum() == 1


def test_column_types_in_duckdb_are_plain_sql(store: DuckDBStore) -> None:
    store.write_table("preprocessing", "stores", every_dtype_frame())

    with duckdb.connect(str(store.path), read_only=True) as con:
        rows = con.execute('DESCRIBE "preprocessing"."stores"').fetchall()
    types = {str(row[0]): str(row[1]) for row in rows}
    assert types["CLUSTER"] == "BIGINT"
    assert types["CATEGORY"] == "VARCHAR"
    assert types["NEED_STATE"] == "VARCHAR"
    assert types["EMPTY_NOTE"] == "VARCHAR"
    assert types["IS_NEW"] == "BOOLEAN"


def test_round_trip_keeps_index_and_column_labels(store: DuckDBStore) -> None:
    share_matrix = pd.DataFrame(
        [[60.0, 40.0], [25.0, 75.0]],
        index=pd.Index([7, 3], dtype=np.int64, name="STORE_NBR"),
        columns=pd.Index(["SWEET", "SALTY"], dtype=object, name="NEED_STATE"),
    )
    two_levels = pd.DataFrame(
        {0: [1.0, 2.0], "x": ["a", "b"]},
        index=pd.MultiIndex.from_tuples([("BEER", 1), ("WINE", 2)], names=["CATEGORY", None]),
    )
    unnamed_index = pd.DataFrame({"x": [1, 2]}, index=[10, 20])
    same_but_case = pd.DataFrame({"a": [1], "A": [2]})

    for name, frame in [
        ("share_matrix", share_matrix),
        ("two_levels", two_levels),
        ("unnamed_index", unnamed_index),
        ("same_but_case", same_but_case),
        ("empty", every_dtype_frame().iloc[:0]),
    ]:
        store.write_table("s", name, frame)
        pd.testing.assert_frame_equal(
            store.read_table("s", name),
            frame.assign(CATEGORY=lambda f: f["CATEGORY"].astype(object))
            if "CATEGORY" in frame.columns
            else frame,
            check_index_type=True,
        )


def test_any_schema_and_table_name_is_safe(store: DuckDBStore) -> None:
    frame = pd.DataFrame({"STORE_NBR": [1, 2]})
    store.write_table(ODD_SCHEMA, ODD_TABLE, frame)
    store.write_table(ODD_SCHEMA, "plain", frame.head(1))

    pd.testing.assert_frame_equal(store.read_table(ODD_SCHEMA, ODD_TABLE), frame)
    assert store.has_table(ODD_SCHEMA, ODD_TABLE)
    assert not store.has_table(ODD_SCHEMA, "it's a")
    with duckdb.connect(str(store.path), read_only=True) as con:
        names = con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
    assert sorted(names) == [(ODD_SCHEMA, ODD_TABLE), (ODD_SCHEMA, "plain")]


def test_names_differing_only_in_case_are_one_table(store: DuckDBStore) -> None:
    store.write_table("Merging", "Final", pd.DataFrame({"a": [1]}))
    assert store.has_table("merging", "FINAL")

    store.write_table("merging", "FINAL", pd.DataFrame({"a": [2, 3]}))

    assert store.list_tables() == [("Merging", "FINAL", 2)]
    assert store.read_table("MERGING", "final")["a"].tolist() == [2, 3]


def test_list_has_read_and_drop(store: DuckDBStore) -> None:
    assert store.list_tables() == []
    assert not store.has_table("merging", "final_store_clusters")

    store.write_table("merging", "final_store_clusters", pd.DataFrame({"a": range(5)}))
    store.write_table("preprocessing", "shares", pd.DataFrame({"a": range(3)}))

    assert store.list_tables() == [
        ("merging", "final_store_clusters", 5),
        ("preprocessing", "shares", 3),
    ]
    assert store.drop_table("preprocessing", "shares") is True
    assert store.drop_table("preprocessing", "shares") is False
    with pytest.raises(TableNotFoundError, match=r'no table "preprocessing"\."shares" in '):
        store.read_table("preprocessing", "shares")


def test_read_from_missing_file_names_table_and_file(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "nothing.duckdb")
    with pytest.raises(TableNotFoundError) as raised:
        store.read_table("merging", "final_store_clusters")
    assert str(raised.value) == (
        f'no table "merging"."final_store_clusters" in {tmp_path / "nothing.duckdb"}'
    )
    assert not (tmp_path / "nothing.duckdb").exists()  # reading never creates the file


def staging_tables(path: Path) -> list[str]:
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
    return [name for (name,) in rows if name.startswith(STAGING_PREFIX)]


def test_frame_that_cannot_be_converted_leaves_previous_table(store: DuckDBStore) -> None:
    previous = pd.DataFrame({"STORE_NBR": [1, 2, 3], "CLUSTER": [1, 1, 2]})
    store.write_table("merging", "final", previous)

    broken = pd.DataFrame({"STORE_NBR": [1, 2], "CLUSTER": [1, "two"]})  # int and text mixed
    with pytest.raises(UnsupportedFrameError, match=r'"merging"\."final".*CLUSTER'):
        store.write_table("merging", "final", broken)

    pd.testing.assert_frame_equal(store.read_table("merging", "final"), previous)
    assert staging_tables(store.path) == []


def test_failure_between_staging_and_swap_leaves_previous_table(
    store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = pd.DataFrame({"STORE_NBR": [1, 2, 3]})
    store.write_table(ODD_SCHEMA, ODD_TABLE, previous)

    def crash(*args: object) -> None:
        raise RuntimeError("simulated crash before the swap")

    monkeypatch.setattr(DuckDBStore, "_swap", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        store.write_table(ODD_SCHEMA, ODD_TABLE, pd.DataFrame({"STORE_NBR": [9]}))
    monkeypatch.undo()

    pd.testing.assert_frame_equal(store.read_table(ODD_SCHEMA, ODD_TABLE), previous)
    assert staging_tables(store.path) == []


def test_failure_inside_swap_transaction_rolls_back(
    store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = pd.DataFrame({"STORE_NBR": [1, 2, 3]})
    store.write_table("merging", "final", previous)

    # Fail on the last statement of the swap: the drop and rename before it must roll back.
    real_comment = "COMMENT ON TABLE"

    class FailingConnection:
        def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
            self.con = con

        def execute(self, sql: str, *args: object) -> object:
            if sql.startswith(real_comment):
                raise duckdb.Error("simulated failure inside the transaction")
            return self.con.execute(sql, *args)

    real_swap = DuckDBStore._swap

    def failing_swap(self: DuckDBStore, con: duckdb.DuckDBPyConnection, *rest: str) -> None:
        real_swap(self, FailingConnection(con), *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(DuckDBStore, "_swap", failing_swap)
    with pytest.raises(duckdb.Error, match="simulated failure"):
        store.write_table("merging", "final", pd.DataFrame({"STORE_NBR": [9]}))
    monkeypatch.undo()

    pd.testing.assert_frame_equal(store.read_table("merging", "final"), previous)
    assert staging_tables(store.path) == []


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_process_killed_between_staging_and_swap_leaves_nothing_behind(
    store: DuckDBStore,
) -> None:
    previous = pd.DataFrame({"STORE_NBR": [1, 2, 3]})
    store.write_table("merging", "final", previous)

    # A real crash: the process dies after committing its staging table, before the swap.
    crashed = run_python(
        """
        import os, sys
        from pathlib import Path
        import pandas as pd
        from clustering.io.duckdb_store import DuckDBStore
        DuckDBStore._swap = lambda *args: os._exit(3)
        DuckDBStore(Path(sys.argv[1])).write_table("merging", "final", pd.DataFrame({"x": [9]}))
        """,
        str(store.path),
    )
    assert crashed.wait(timeout=120) == 3

    pd.testing.assert_frame_equal(store.read_table("merging", "final"), previous)
    assert store.list_tables() == [("merging", "final", 3)]  # the orphan is never listed
    assert len(staging_tables(store.path)) == 1
    store.write_table("merging", "other", previous)  # the next write sweeps the orphan
    assert staging_tables(store.path) == []


WRITER = """
import sys
from pathlib import Path
import pandas as pd
from clustering.io.duckdb_store import DuckDBStore

path, worker, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
store = DuckDBStore(path, lock_timeout_s=120)
for round_ in range(rounds):
    frame = pd.DataFrame(
        {"STORE_NBR": range(500), "WORKER": worker, "ROUND": round_}
    )
    store.write_table("workers", f"own_{worker}", frame)
    store.write_table("workers", "shared", frame)
    store.read_table("workers", "shared")
print("done")
"""


def assert_complete(frame: pd.DataFrame, rounds: int, worker: str | None = None) -> None:
    """One writer's whole frame from one round: no mixed or partial writes."""
    assert len(frame) == 500 and frame["STORE_NBR"].tolist() == list(range(500))
    assert frame["WORKER"].nunique() == 1 and frame["ROUND"].nunique() == 1
    if worker is not None:
        assert frame["WORKER"].iloc[0] == worker and frame["ROUND"].iloc[0] == rounds - 1


def test_two_processes_writing_at_once_both_succeed(store: DuckDBStore) -> None:
    rounds = 20
    workers = [run_python(WRITER, str(store.path), name, str(rounds)) for name in ("a", "b")]
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        assert out.strip() == "done"

    for name in ("a", "b"):
        assert_complete(store.read_table("workers", f"own_{name}"), rounds, name)
    assert_complete(store.read_table("workers", "shared"), rounds)
    assert staging_tables(store.path) == []


def test_two_threads_writing_at_once_both_succeed(store: DuckDBStore) -> None:
    rounds = 20

    def write(worker: str) -> None:
        for round_ in range(rounds):
            frame = pd.DataFrame({"STORE_NBR": range(500), "WORKER": worker, "ROUND": round_})
            store.write_table("workers", f"own_{worker}", frame)
            store.write_table("workers", "shared", frame)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(write, name) for name in ("a", "b")]:
            future.result()

    for name in ("a", "b"):
        assert_complete(store.read_table("workers", f"own_{name}"), rounds, name)
    assert_complete(store.read_table("workers", "shared"), rounds)


@pytest.fixture
def held_lock(store: DuckDBStore) -> Iterator[None]:
    store.path.parent.mkdir(parents=True, exist_ok=True)
    with store.lock_path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


def test_busy_file_times_out_with_a_sentence_naming_it(store: DuckDBStore, held_lock: None) -> None:
    impatient = DuckDBStore(store.path, lock_timeout_s=0.3)
    with pytest.raises(StoreLockTimeoutError) as raised:
        impatient.write_table("merging", "final", pd.DataFrame({"a": [1]}))
    message = str(raised.value)
    assert message.startswith(f"gave up after 0.3 s waiting for the DuckDB file {store.path} (")
    assert message.endswith("raise lock_timeout_s.")


def test_waits_for_a_process_that_ignores_the_lock_file(store: DuckDBStore) -> None:
    store.write_table("merging", "final", pd.DataFrame({"a": [1]}))
    # A foreign read-write connection (e.g. a notebook) holds DuckDB's own file lock for a while.
    holder = run_python(
        """
        import sys, time, duckdb
        con = duckdb.connect(sys.argv[1])
        print("holding", flush=True)
        time.sleep(1.5)
        con.close()
        """,
        str(store.path),
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"

    store.write_table("merging", "final", pd.DataFrame({"a": [2]}))

    assert holder.wait(timeout=60) == 0
    assert store.read_table("merging", "final")["a"].tolist() == [2]


def test_storable_frame_matches_what_is_stored(store: DuckDBStore) -> None:
    frame = pd.DataFrame(
        {"SHARE": [1.0, 2.0], "CATEGORY": pd.Categorical(["A", "B"])},
        index=pd.Index([5, 6], name="STORE_NBR"),
    )
    store.write_table("s", "t", frame)
    with duckdb.connect(str(store.path), read_only=True) as con:
        raw = con.execute('SELECT * FROM "s"."t"').df()
    pd.testing.assert_frame_equal(storable_frame(frame), raw)
