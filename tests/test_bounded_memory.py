"""The pieces that keep a large chain's run in bounded memory: tables read a few categories at a
time, features spilled to disk while categories finish, text kept in Arrow buffers, and the
history copied inside the warehouse."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from clustering.core.engine import cluster_feature_table
from clustering.core.params import ClusteringParams, FeatureParams
from clustering.core.plots import cluster_sizes_svg, k_curve_svg, markdown_image
from clustering.core.tables import (
    FEATURE_SCHEMA,
    CategoryTables,
    assignment_table,
    feature_rows,
    model_table,
)
from clustering.io.duckdb_store import (
    COMPACT_TEXT,
    DuckDBStore,
    TableByKey,
    TableChangedError,
    arrow_to_pandas,
)
from clustering.io.history import HistoryStore, RunRecord
from clustering.io.spill import SPILL_NAME, ArrowSpill


def _long(categories: int, stores: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for c in range(categories):
        for s in range(stores):
            for f in ("A", "B"):
                rows.append((f"CAT {c:02d}", 1000 + s, f, float(rng.random())))
    return pd.DataFrame(rows, columns=["CATEGORY", "STORE_NBR", "FEATURE", "VALUE"])


def _read_by_category(
    tmp_path: Path, table: pd.DataFrame, batch_rows: int
) -> tuple[DuckDBStore, TableByKey]:
    """``table`` stored in a new warehouse, and a reader of it one CATEGORY at a time."""
    store = DuckDBStore(tmp_path / "w.duckdb")
    store.write_table("s", "long", table)
    return store, TableByKey(store, "s", "long", "CATEGORY", batch_rows=batch_rows)


@pytest.mark.parametrize("batch_rows", [1, 50, 10_000])
def test_a_table_read_by_key_gives_each_category_whole_whatever_the_batch(
    tmp_path: Path, batch_rows: int
) -> None:
    table = _long(categories=7, stores=12)
    _, by_key = _read_by_category(tmp_path, table, batch_rows)
    assert list(by_key) == sorted(table["CATEGORY"].unique())
    assert len(by_key) == 7 and "CAT 03" in by_key and "CAT 99" not in by_key
    for name in by_key:
        expected = table[table["CATEGORY"] == name].sort_values(["STORE_NBR", "FEATURE"])
        got = by_key[name].sort_values(["STORE_NBR", "FEATURE"])
        pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
        arrow = by_key.arrow(name, ["STORE_NBR", "VALUE"])
        assert arrow.column_names == ["STORE_NBR", "VALUE"] and len(arrow) == len(expected)
    # Asked again, out of order: read again, same rows.
    assert len(by_key["CAT 01"]) == 24
    with pytest.raises(KeyError):
        by_key["CAT 99"]


@pytest.mark.parametrize("batch_rows", [1, 10_000])
def test_a_category_gone_while_the_table_is_read_is_one_sentence(
    tmp_path: Path, batch_rows: int
) -> None:
    table = _long(categories=3, stores=4)
    store, by_key = _read_by_category(tmp_path, table, batch_rows)
    assert list(by_key) == ["CAT 00", "CAT 01", "CAT 02"]  # counted
    # Another run rewrites the table without CAT 01 before it is read.
    store.write_table("s", "long", table[table["CATEGORY"] != "CAT 01"])
    if batch_rows == 1:  # read one category at a time: the others are still whole
        assert len(by_key.arrow("CAT 00", ["VALUE"])) == 8
    with pytest.raises(TableChangedError, match=r"changed while it was read: CATEGORY 'CAT 01'"):
        by_key.arrow("CAT 01", ["VALUE"])


@pytest.mark.parametrize("order", ["alternating", "runs"])
def test_a_batch_of_keys_is_split_whatever_the_row_order(tmp_path: Path, order: str) -> None:
    # Alternating keys (a run per row: rows are taken) and long runs of each key in turn
    # (slices joined): each key gets exactly its rows, in their stored order.
    n = 3_000
    position = np.arange(n)
    names = np.where(position % 2 == 0, "EVEN", "ODD")
    if order == "runs":
        names = np.where((position // 250) % 2 == 0, "EVEN", "ODD")
    table = pd.DataFrame({"CATEGORY": names, "STORE_NBR": position, "VALUE": position * 0.5})
    store = DuckDBStore(tmp_path / "w.duckdb")
    store.write_table("s", "mixed", table)
    by_key = TableByKey(store, "s", "mixed", "CATEGORY", batch_rows=10_000)
    for name in ("EVEN", "ODD"):
        got = by_key.arrow(name, ["STORE_NBR", "VALUE"])
        expected = table[table["CATEGORY"] == name]
        assert got.column("STORE_NBR").to_pylist() == expected["STORE_NBR"].tolist()
        assert got.column("VALUE").to_pylist() == expected["VALUE"].tolist()


def test_spilled_rows_stream_back_in_order_and_the_file_goes(tmp_path: Path) -> None:
    parts = [
        pa.table(
            {
                "CATEGORY": [f"C{i}"] * 3,
                "STORE_NBR": pa.array([1, 2, 3], pa.int64()),
                "FEATURE": ["A", "B", "C"],
                "VALUE": [0.5, 1.5, 2.5],
                "OUTLIER": [False, True, False],
            }
        )
        for i in range(4)
    ]
    with ArrowSpill(FEATURE_SCHEMA, tmp_path) as spill:
        for part in parts:
            spill.write(part)
        assert spill.path.exists() and spill.path.name.startswith(".")
        streamed = spill.reader().read_all()
        unread = spill.reader()  # a stream the step never finished reading
        assert spill.rows == 12
        path = str(spill.path)
    assert streamed.equals(pa.concat_tables(parts).cast(FEATURE_SCHEMA))
    assert list(tmp_path.iterdir()) == []
    # Closing the spill closed its files too: none of this process's descriptors is on it.
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the descriptor that listed the folder
            continue
    assert [t for t in targets if path in t] == [], unread


def test_a_spill_left_by_a_killed_process_is_removed_by_the_next(tmp_path: Path) -> None:
    orphan = tmp_path / f".{SPILL_NAME}.999999999.abc.tmp"
    orphan.write_bytes(b"left behind")
    with ArrowSpill(FEATURE_SCHEMA, tmp_path):
        assert not orphan.exists()


def _clustered(name: str, seed: int):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        np.vstack([rng.normal(i * 3, 0.3, (40, 3)) for i in range(3)]),
        index=pd.Index(range(1, 121), name="STORE_NBR"),
        columns=["X", "Y", "Z"],
    )
    return cluster_feature_table(
        name, frame, FeatureParams(), ClusteringParams(min_cluster_size=10, max_k=4)
    )


def test_tables_built_category_by_category_equal_the_tables_built_at_once() -> None:
    items = {name: _clustered(name, seed) for seed, name in enumerate(["B", "A", "C"])}
    spilled: list[pa.Table] = []
    tables = CategoryTables(
        {"models": model_table, "assignments": assignment_table}, spilled.append
    )
    for name in ["C", "A", "B"]:  # the order categories finish in
        tables.add(name, items[name])
    assert tables.names() == ["A", "B", "C"]
    pd.testing.assert_frame_equal(tables.table("models"), model_table(items))
    pd.testing.assert_frame_equal(tables.table("assignments"), assignment_table(items))
    # Each category's feature rows spilled once, as it finished.
    assert [piece["CATEGORY"][0].as_py() for piece in spilled] == ["C", "A", "B"]
    for piece, name in zip(spilled, ["C", "A", "B"], strict=True):
        assert piece.equals(feature_rows(name, items[name]))
    flagged = sum(
        int(item.features.outliers.sum()) * item.features.matrix.shape[1] for item in items.values()
    )
    assert tables.outlier_rows == flagged
    assert CategoryTables({"models": model_table}, spilled.append).table("models").empty


def test_compact_text_round_trips_and_nullable_columns_read_as_duckdb_gives_them(
    tmp_path: Path,
) -> None:
    frame = pd.DataFrame(
        {
            "CATEGORY": pd.array(["a", "a", None], dtype=COMPACT_TEXT),
            "EXTERNAL_CLUSTER": pd.array([1, None, 3], dtype="Int64"),
            "NOTE": ["x", None, "z"],
        }
    )
    store = DuckDBStore(tmp_path / "w.duckdb")
    store.write_table("s", "t", frame)
    back = store.read_table("s", "t")
    pd.testing.assert_frame_equal(back, frame)
    assert str(back["CATEGORY"].dtype) == "string" and back["NOTE"].dtype == object
    converted = arrow_to_pandas(pa.table({"n": pa.array([1, None]), "t": ["p", None]}))
    assert str(converted["n"].dtype) == "Int64" and str(converted["t"].dtype) == "string"


def test_a_streamed_query_result_converts_exactly_as_the_whole_table() -> None:
    import duckdb

    with duckdb.connect() as con:
        query = (
            "SELECT range AS n, CASE WHEN range % 5 = 0 THEN NULL ELSE range END AS maybe, "
            "range % 2 = 0 AS even, 'c' || (range % 7)::VARCHAR AS cat, range / 3 AS x "
            "FROM range(10000)"
        )
        whole = arrow_to_pandas(con.sql(query).to_arrow_table())
        streamed = arrow_to_pandas(con.sql(query).to_arrow_reader(1000))
        empty = arrow_to_pandas(con.sql(query + " WHERE range < 0").to_arrow_reader(1000))
    pd.testing.assert_frame_equal(streamed, whole)
    assert str(streamed["maybe"].dtype) == "Int64" and str(streamed["cat"].dtype) == "string"
    assert streamed["maybe"].isna().sum() == 2000 and len(streamed) == 10000
    assert list(empty.columns) == list(whole.columns) and len(empty) == 0


def test_joining_frames_column_by_column_equals_concat_and_takes_the_pieces() -> None:
    from clustering.core.tables import concat_taking

    def part(category: str, stores: list[int]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "STORE_NBR": stores,
                "CATEGORY": pd.array([category] * len(stores), dtype=COMPACT_TEXT),
                "EXTERNAL_CLUSTER": pd.array([1, None][: len(stores)], dtype="Int64"),
                "REASSIGNED": [True, False][: len(stores)],
            }
        )

    frames = [part("A", [1, 2]), part("B", [3]), part("C", [4, 5])]
    expected = pd.concat([f.copy() for f in frames], ignore_index=True)
    joined = concat_taking(frames)
    pd.testing.assert_frame_equal(joined, expected)
    assert frames == []
    # Frames of other columns or dtypes are joined as pandas joins them.
    odd = [part("A", [1]), part("B", [2]).astype({"STORE_NBR": "float64"})]
    pd.testing.assert_frame_equal(
        concat_taking(odd), pd.concat([part("A", [1]), part("B", [2.0])], ignore_index=True)
    )


def test_history_copies_a_stored_final_table_inside_the_warehouse(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    final = pd.DataFrame(
        {
            "STORE_NBR": [1, 2, 3],
            "CATEGORY": pd.array(["S", "S", "T"], dtype=COMPACT_TEXT),
            "REBALANCED_CLUSTER": pd.array(["I1", "I2", "I1"], dtype=COMPACT_TEXT),
            "EXTERNAL_CLUSTER": pd.array([1, None, 2], dtype="Int64"),
        }
    )
    DuckDBStore(path).write_table("merging", "final_store_clusters", final)
    history = HistoryStore(path)
    stored = TableByKey(DuckDBStore(path), "merging", "final_store_clusters", "CATEGORY")
    for run in ("run-a", "run-b", "run-a"):  # recording a run again replaces its rows
        history.record_run(
            RunRecord(run_id=run, recorded_at="2026-12-01T10:00:00", env="dev"),
            {"final_store_clusters": stored},
        )
    back = history.table("final_store_clusters", "run-a")
    assert len(back) == 3 and len(history.table("final_store_clusters", "run-b")) == 3
    assert list(back["REBALANCED_CLUSTER"]) == ["I1", "I2", "I1"]
    assert str(back["CATEGORY"].dtype) == "string"
    assert back["EXTERNAL_CLUSTER"].isna().tolist() == [False, True, False]
    assert "RUN_ID" not in back.columns


def test_metadata_charts_are_svg_images_without_matplotlib() -> None:
    models = pd.DataFrame(
        {
            "CATEGORY": ["A"] * 3 + ["B & C"] * 3,
            "k": [2, 3, 4] * 2,
            "silhouette": [0.2, 0.6, 0.4, 0.5, 0.3, 0.1],
            "chosen": [False, True, False, True, False, False],
        }
    )
    curve = k_curve_svg(models)
    assert curve.startswith("<svg") and curve.count("<circle") == 2 and "B &amp; C" in curve
    sizes = cluster_sizes_svg(
        pd.DataFrame({"CATEGORY": ["A", "A", "A", "B"], "CLUSTER": ["I1", "I1", "I2", "I1"]})
    )
    assert ">A · I1: 2 stores<" in sizes and ">3<" in sizes
    assert markdown_image(sizes, "sizes").startswith("![sizes](data:image/svg+xml;base64,")


def test_progress_lines_come_at_most_once_per_interval_and_name_every_category() -> None:
    from clustering.dagster.assets.common import category_progress

    lines: list[str] = []
    with category_progress(5, lines.append, lambda name, k: f"{name} k={k}", 3600) as finished:
        for position, name in enumerate("ABCDE"):
            finished(name, position + 2)
    # The first category at once, then the rest together when the last one finishes.
    assert lines == ["1/5: A k=2", "5/5: B k=3; C k=4; D k=5; E k=6"]
    lines.clear()
    with category_progress(3, lines.append, lambda name, k: name, 0.0) as finished:
        for name in "XYZ":
            finished(name, 0)
    assert lines == ["1/3: X", "2/3: Y", "3/3: Z"]


def test_a_comparison_keeping_only_moved_stores_agrees_with_the_full_one() -> None:
    from clustering.core.comparison import compare_final_tables

    rng = np.random.default_rng(5)
    a = pd.DataFrame(
        {
            "CATEGORY": np.repeat(["S", "T"], 200),
            "STORE_NBR": np.tile(np.arange(200), 2),
            "REBALANCED_CLUSTER": [f"I{c}" for c in rng.integers(1, 4, 400)],
        }
    )
    b = a.copy()
    b["REBALANCED_CLUSTER"] = b["REBALANCED_CLUSTER"].where(rng.random(400) > 0.1, "I9")
    full = compare_final_tables(a, b)
    moved = compare_final_tables(a, b.astype({"REBALANCED_CLUSTER": COMPACT_TEXT}), only_moved=True)
    pd.testing.assert_frame_equal(full.summary, moved.summary)
    assert full.summary["MOVED"].sum() > 0
    assert list(moved.stores["STORE_NBR"]) == list(full.moved["STORE_NBR"])
    assert str(moved.stores["CLUSTER_B"].dtype) == "string"
