"""Internal preprocessing on DuckDB with small hand-built tables whose answers are worked out."""

from __future__ import annotations

from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from clustering.core.internal_preprocessing import (
    MAX_LISTED_STORES,
    SHARE_MATRIX_COLUMNS,
    match_summary,
    need_state_sales,
    share_matrices,
    share_matrix,
    share_table,
    shares_frame,
    stream_shares,
)

# Store 10, category BEER: SKU 1 (LAGER) 10 + 5, SKU 2 (ALE) 30, SKU 3 (LAGER and STOUT) 60,
# SKU 9 (not in the map) 7. Matched total 105: LAGER 15 + 30 = 45, ALE 30, STOUT 30.
# Store 20, BEER: only SKU 9 (unmapped). Store 30, BEER: mapped SKUs that sold nothing.
# Store 10, WINE: SKU 4 (RED) 40.
SALES = pd.DataFrame(
    {
        "SKU_NBR": [1, 1, 2, 3, 9, 9, 1, 2, 4],
        "STORE_NBR": [10, 10, 10, 10, 10, 20, 30, 30, 10],
        "CAT_DSC": ["BEER"] * 8 + ["WINE"],
        "TOTAL_SALES": [10.0, 5.0, 30.0, 60.0, 7.0, 4.0, 0.0, 0.0, 40.0],
    }
)
NEED_STATES = pd.DataFrame(
    {
        "PRODUCT_ID": [1, 2, 3, 3, 4],
        "CATEGORY": ["BEER", "BEER", "BEER", "BEER", "WINE"],
        "NEED_STATE": ["LAGER", "ALE", "LAGER", "STOUT", "RED"],
        "CDT": ["C"] * 5,
    }
)


@pytest.fixture
def tables() -> tuple[ibis.Table, ibis.Table]:
    # In-memory tables run on Ibis' default backend, DuckDB.
    return ibis.memtable(SALES), ibis.memtable(NEED_STATES)


def executed(table: ibis.Table) -> pd.DataFrame:
    frame = table.execute()
    return frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)


def test_need_state_sales_split_a_sku_evenly_and_conserve_matched_totals(
    tables: tuple[ibis.Table, ibis.Table],
) -> None:
    long = executed(need_state_sales(*tables))
    store_10_beer = long[(long.STORE_NBR == 10) & (long.CATEGORY == "BEER")]
    assert dict(zip(store_10_beer.NEED_STATE, store_10_beer.SALES, strict=True)) == {
        "ALE": 30.0,
        "LAGER": 45.0,
        "STOUT": 30.0,
    }
    # Everything mapped is conserved: 105 (store 10 BEER) + 40 (store 10 WINE) + 0 (store 30).
    assert long.SALES.sum() == pytest.approx(145.0)
    assert 20 not in set(long.STORE_NBR)
    assert long.dtypes.to_dict() == {
        "CATEGORY": np.dtype(object),
        "STORE_NBR": np.dtype(np.int64),
        "NEED_STATE": np.dtype(object),
        "SALES": np.dtype(np.float64),
    }


def test_shares_are_percent_of_store_category_sales_and_sum_to_100(
    tables: tuple[ibis.Table, ibis.Table],
) -> None:
    shares = executed(share_table(*tables))
    assert list(shares.columns) == ["CATEGORY", "STORE_NBR", "NEED_STATE", "SALES", "SHARE"]
    beer = shares[(shares.CATEGORY == "BEER") & (shares.STORE_NBR == 10)].set_index("NEED_STATE")
    assert beer.SHARE.to_dict() == pytest.approx(
        {"ALE": 100 * 30 / 105, "LAGER": 100 * 45 / 105, "STOUT": 100 * 30 / 105}
    )
    sums = shares.groupby(["CATEGORY", "STORE_NBR"]).SHARE.sum()
    assert np.allclose(sums, 100.0)
    # Store 20 (only unmapped sales) and store 30 (mapped sales of 0) have no shares.
    assert set(zip(shares.CATEGORY, shares.STORE_NBR, strict=True)) == {
        ("BEER", 10),
        ("WINE", 10),
    }


def test_streamed_shares_are_the_table_sorted_by_category_and_store(
    tmp_path: Path,
) -> None:
    # A fresh connection and a fresh in-memory map: the stream must register the map itself.
    SALES.to_parquet(tmp_path / "sales.parquet")
    sales = ibis.duckdb.connect().read_parquet(tmp_path / "sales.parquet")
    need_states = ibis.memtable(NEED_STATES)
    streamed = stream_shares(sales, need_states).read_all().to_pandas()
    keys = ["CATEGORY", "STORE_NBR"]
    assert streamed[keys].values.tolist() == streamed.sort_values(keys)[keys].values.tolist()
    # A store's need states come in any order: the rows are the table's.
    in_order = streamed.sort_values([*keys, "NEED_STATE"]).reset_index(drop=True)
    expected = executed(share_table(sales, need_states))
    pd.testing.assert_frame_equal(in_order, expected)


def test_match_summary_counts_unmatched_and_lists_stores_without_shares(
    tables: tuple[ibis.Table, ibis.Table],
) -> None:
    summary = match_summary(*tables)
    assert summary.sales_rows == 9
    assert summary.skus == 5
    assert summary.stores == 3
    assert summary.categories == 2
    assert summary.total_sales == pytest.approx(156.0)
    assert summary.unmatched_skus == 1
    assert summary.unmatched_sales_rows == 2
    assert summary.unmatched_sales == pytest.approx(11.0)
    assert summary.unmatched_sales_pct == pytest.approx(100 * 11 / 156)
    assert summary.multi_need_state_skus == 1
    assert summary.stores_without_matched_sales == [("BEER", 20), ("BEER", 30)]
    assert summary.stores_without_matched_sales_count == 2

    text = summary.describe()
    assert 2 <= len(text.splitlines()) <= 4
    assert "1 SKU not in the need-state map" in text
    assert "store 20 in BEER" in text


def test_match_summary_caps_the_listed_stores_but_counts_them_all() -> None:
    n = MAX_LISTED_STORES + 5
    sales = ibis.memtable(
        pd.DataFrame(
            {
                "SKU_NBR": [99] * n,
                "STORE_NBR": np.arange(n),
                "CAT_DSC": ["A"] * n,
                "TOTAL_SALES": [1.0] * n,
            }
        )
    )
    need_states = ibis.memtable(NEED_STATES)
    summary = match_summary(sales, need_states)
    assert len(summary.stores_without_matched_sales) == MAX_LISTED_STORES
    assert summary.stores_without_matched_sales_count == n
    assert summary.stores_without_matched_sales[0] == ("A", 0)
    assert f"and {n - 5:,} more" in summary.describe()


def test_a_clean_match_reports_nothing_missing() -> None:
    sales = ibis.memtable(SALES[SALES.SKU_NBR != 9])
    summary = match_summary(sales, ibis.memtable(NEED_STATES))
    assert summary.unmatched_skus == 0
    assert summary.unmatched_sales == 0.0
    assert summary.stores_without_matched_sales == [("BEER", 30)]


def test_share_matrices_are_wide_sorted_and_zero_filled(
    tables: tuple[ibis.Table, ibis.Table],
) -> None:
    shares = share_table(*tables).execute()
    matrices = share_matrices(shares)
    assert sorted(matrices) == ["BEER", "WINE"]
    beer = matrices["BEER"]
    assert beer.index.name == "STORE_NBR"
    assert beer.index.dtype == np.int64
    assert list(beer.columns) == ["ALE", "LAGER", "STOUT"]
    assert (beer.dtypes == np.float64).all()
    assert beer.loc[10].to_numpy() == pytest.approx(
        [100 * 30 / 105, 100 * 45 / 105, 100 * 30 / 105]
    )
    assert list(matrices["WINE"].columns) == ["RED"]


def test_shares_frame_gives_categoricals_and_the_same_matrices(
    tables: tuple[ibis.Table, ibis.Table],
) -> None:
    # What `assign --sales` reads: the stream in pandas, names as categoricals.
    streamed = shares_frame(*tables)
    assert isinstance(streamed["CATEGORY"].dtype, pd.CategoricalDtype)
    assert isinstance(streamed["NEED_STATE"].dtype, pd.CategoricalDtype)
    plain = share_matrices(share_table(*tables).execute())
    from_stream = share_matrices(streamed)
    assert plain.keys() == from_stream.keys() and plain
    for category, matrix in plain.items():
        pd.testing.assert_frame_equal(from_stream[category], matrix)


def test_share_matrices_sort_need_states_by_name_whatever_the_category_order() -> None:
    shares = pd.DataFrame(
        {
            "CATEGORY": pd.Categorical(["B", "B", "A", "B"], categories=["B", "A", "UNUSED"]),
            "STORE_NBR": [2, 1, 1, 1],
            "NEED_STATE": pd.Categorical(["Z", "Z", "M", "A"], categories=["Z", "M", "A"]),
            "SHARE": [100.0, 40.0, 100.0, 60.0],
        }
    )
    matrices = share_matrices(shares)
    assert list(matrices) == ["A", "B"]
    assert list(matrices["B"].columns) == ["A", "Z"]
    assert matrices["B"].loc[1].tolist() == [60.0, 40.0]
    assert matrices["B"].loc[2].tolist() == [0.0, 100.0]


def test_share_matrices_match_a_pandas_pivot_on_random_data() -> None:
    rng = np.random.default_rng(7)
    rows = []
    for category in ["C2", "C1", "C10"]:
        states = [f"NS{i}" for i in rng.choice(12, size=rng.integers(2, 8), replace=False)]
        for store in rng.choice(500, size=200, replace=False):
            present = [s for s in states if rng.random() < 0.7] or states[:1]
            values = rng.random(len(present))
            for state, value in zip(present, values / values.sum() * 100, strict=True):
                rows.append((category, int(store), state, value))
    shares = pd.DataFrame(rows, columns=["CATEGORY", "STORE_NBR", "NEED_STATE", "SHARE"])
    shares = shares.sample(frac=1.0, random_state=1)  # input order must not matter

    matrices = share_matrices(shares)
    for category, part in shares.groupby("CATEGORY"):
        expected = part.pivot(index="STORE_NBR", columns="NEED_STATE", values="SHARE").fillna(0.0)
        expected = expected.sort_index().reindex(sorted(expected.columns), axis=1)
        pd.testing.assert_frame_equal(matrices[str(category)], expected, check_names=False)
        assert np.allclose(matrices[str(category)].sum(axis=1), 100.0)


@pytest.mark.parametrize("stores_in_order", [True, False])
def test_one_categorys_stored_rows_give_the_same_matrix(stores_in_order: bool) -> None:
    rng = np.random.default_rng(3)
    rows = []
    for store in rng.choice(900, size=300, replace=False):
        states = [s for s in ["NS2", "NS10", "NS1", "NS7"] if rng.random() < 0.6] or ["NS7"]
        shares = rng.random(len(states))
        shares = shares / shares.sum() * 100
        rows += [("C", int(store), s, v) for s, v in zip(states, shares, strict=True)]
    shares = pd.DataFrame(rows, columns=["CATEGORY", "STORE_NBR", "NEED_STATE", "SHARE"])
    # As stored: sorted by store (need states in any order), or in no order at all.
    shares = (
        shares.sort_values("STORE_NBR", kind="stable")
        if stores_in_order
        else shares.sample(frac=1.0, random_state=2)
    )
    stored = pa.Table.from_pandas(shares[list(SHARE_MATRIX_COLUMNS)], preserve_index=False)

    matrix = share_matrix(stored)

    pd.testing.assert_frame_equal(matrix, share_matrices(shares)["C"])
    assert list(matrix.columns) == ["NS1", "NS10", "NS2", "NS7"]
    assert matrix.index.is_monotonic_increasing


def test_a_stored_category_in_chunks_with_coded_need_states_gives_the_same_matrix() -> None:
    shares = pd.DataFrame(
        {
            "STORE_NBR": [1, 1, 2, 3, 3],
            "NEED_STATE": ["B", "A", "B", "A", "C"],
            "SHARE": [40.0, 60.0, 100.0, 30.0, 70.0],
        }
    )
    # Two chunks, need states as Arrow dictionaries naming one that no row uses.
    coded = pa.DictionaryArray.from_arrays(
        pa.array([1, 0, 1, 0, 3], pa.int32()), pa.array(["A", "B", "UNUSED", "C"])
    )
    whole = pa.table(
        {"STORE_NBR": shares["STORE_NBR"], "NEED_STATE": coded, "SHARE": shares["SHARE"]}
    )
    chunked = pa.Table.from_batches(whole.to_batches(max_chunksize=2))
    assert chunked.column("NEED_STATE").num_chunks > 1

    matrix = share_matrix(chunked)

    expected = share_matrices(shares.assign(CATEGORY="C"))["C"]
    pd.testing.assert_frame_equal(matrix, expected)
    assert list(matrix.columns) == ["A", "B", "C"]


def test_share_matrices_of_nothing_is_empty() -> None:
    empty = pd.DataFrame(columns=["CATEGORY", "STORE_NBR", "NEED_STATE", "SALES", "SHARE"])
    assert share_matrices(empty) == {}
