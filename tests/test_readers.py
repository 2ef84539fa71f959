"""Readers: files, directories, globs and existing tables, validated on DuckDB."""

from __future__ import annotations

from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest

from clustering.core.errors import InputContractError
from clustering.io.readers import (
    connect,
    read_external_sources,
    read_internal_sales,
    read_need_states,
    read_table,
)

SALES = pd.DataFrame(
    {
        "SKU_NBR": [1, 2, 3],
        "STORE_NBR": [10, 10, 20],
        "CAT_DSC": ["BEER", "BEER", "WINE"],
        "TOTAL_SALES": [1.5, 2.5, 4.0],
        "WEEK": [1, 1, 2],
    }
)


@pytest.fixture
def con() -> ibis.BaseBackend:
    return connect()


def test_connect_defaults_to_in_memory_duckdb_and_accepts_urls(tmp_path: Path) -> None:
    assert connect().name == "duckdb"
    assert connect(f"duckdb://{tmp_path / 'x.duckdb'}").name == "duckdb"


def test_parquet_file_is_read_and_validated(con: ibis.BaseBackend, tmp_path: Path) -> None:
    path = tmp_path / "sales.parquet"
    SALES.to_parquet(path)
    sales = read_internal_sales(con, path)
    assert sales.columns == ("SKU_NBR", "STORE_NBR", "CAT_DSC", "TOTAL_SALES")
    assert sales.TOTAL_SALES.sum().execute() == pytest.approx(8.0)


def test_directory_and_glob_read_every_file(con: ibis.BaseBackend, tmp_path: Path) -> None:
    folder = tmp_path / "sales"
    folder.mkdir()
    SALES.to_parquet(folder / "part-1.parquet")
    SALES.to_parquet(folder / "part-2.parquet")
    (folder / "README.txt").write_text("not data")
    assert read_internal_sales(con, folder).count().execute() == 6
    assert read_internal_sales(con, f"{folder}/part-*.parquet").count().execute() == 6


def test_directory_of_csv_files(con: ibis.BaseBackend, tmp_path: Path) -> None:
    SALES.to_csv(tmp_path / "a.csv", index=False)
    SALES.to_csv(tmp_path / "b.csv", index=False)
    sales = read_internal_sales(con, tmp_path)
    assert sales.count().execute() == 6
    assert str(sales.schema()["SKU_NBR"]) == "int64"


def test_existing_table_of_the_connection(con: ibis.BaseBackend) -> None:
    con.create_table("weekly_sales", ibis.memtable(SALES))
    assert read_internal_sales(con, "table:weekly_sales").count().execute() == 3
    assert read_internal_sales(con, "duckdb:weekly_sales").count().execute() == 3
    with pytest.raises(InputContractError) as info:
        read_internal_sales(con, "table:nope")
    assert str(info.value) == "internal sales: no table named 'nope' in the database."


def test_nothing_matching_is_one_sentence(con: ibis.BaseBackend, tmp_path: Path) -> None:
    with pytest.raises(InputContractError) as info:
        read_internal_sales(con, "data/raw/x.parquet")
    assert str(info.value) == "internal sales: no file matches 'data/raw/x.parquet'."
    with pytest.raises(InputContractError, match="no file matches"):
        read_internal_sales(con, f"{tmp_path}/*.parquet")
    with pytest.raises(InputContractError, match="no parquet or CSV file in directory"):
        read_internal_sales(con, tmp_path)


def test_unknown_extension_and_mixed_formats(con: ibis.BaseBackend, tmp_path: Path) -> None:
    (tmp_path / "sales.xlsx").write_text("x")
    with pytest.raises(InputContractError) as info:
        read_internal_sales(con, tmp_path / "sales.xlsx")
    assert "is neither a parquet nor a CSV file" in str(info.value)
    SALES.to_parquet(tmp_path / "a.parquet")
    SALES.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(InputContractError, match="matches both parquet and CSV files"):
        read_internal_sales(con, f"{tmp_path}/[ab].*")


def test_a_broken_file_is_one_sentence(con: ibis.BaseBackend, tmp_path: Path) -> None:
    (tmp_path / "sales.parquet").write_text("not parquet")
    with pytest.raises(InputContractError, match=r"^internal sales '.*sales.parquet' cannot be"):
        read_internal_sales(con, tmp_path / "sales.parquet")


def test_csv_text_deep_in_an_id_column_reaches_the_contract(
    con: ibis.BaseBackend, tmp_path: Path
) -> None:
    # The bad value sits far beyond DuckDB's type-detection sample.
    n = 60_000
    ids = np.arange(n).astype(str)
    ids[-2] = "abc"
    frame = pd.DataFrame({"PRODUCT_ID": ids, "CATEGORY": "BEER", "NEED_STATE": "LAGER"})
    frame["CDT"] = "C"
    path = tmp_path / "need_state.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InputContractError) as info:
        read_need_states(con, path)
    assert str(info.value) == (
        f"need-state map '{path}': column PRODUCT_ID must be an integer; "
        "1 row cannot be read as one, first: (PRODUCT_ID='abc')."
    )


def test_csv_ids_are_integers_after_validation(con: ibis.BaseBackend, tmp_path: Path) -> None:
    path = tmp_path / "need_state.csv"
    pd.DataFrame(
        {
            "PRODUCT_ID": [1, 2],
            "CATEGORY": ["BEER", "BEER"],
            "NEED_STATE": ["LAGER", "ALE"],
            "CDT": ["C", "C"],
            "ATTRIBUTE_1": ["x", "y"],
        }
    ).to_csv(path, index=False)
    need_states = read_need_states(con, path)
    assert str(need_states.schema()["PRODUCT_ID"]) == "int64"
    assert sorted(need_states.PRODUCT_ID.execute()) == [1, 2]


def test_read_table_does_not_validate(con: ibis.BaseBackend, tmp_path: Path) -> None:
    path = tmp_path / "anything.csv"
    pd.DataFrame({"A": [1]}).to_csv(path, index=False)
    assert read_table(con, path, "some input").columns == ("A",)


def test_external_sources_are_loaded_named_by_their_spec(
    con: ibis.BaseBackend, tmp_path: Path
) -> None:
    demographics = tmp_path / "demographics.parquet"
    pd.DataFrame({"STORE_NBR": [1, 2], "POPULATION": [10.0, 20.0]}).to_parquet(demographics)
    traffic = tmp_path / "traffic.csv"
    # A text value deep in a numeric-looking column: detected on every row, so read as text.
    n = 30_000
    visits = np.arange(n).astype(str)
    visits[-1] = "n/a"
    pd.DataFrame({"STORE_NBR": np.arange(n), "VISITS": visits}).to_csv(traffic, index=False)

    sources = read_external_sources(con, [demographics, str(traffic)])
    assert [name for name, _ in sources] == [str(demographics), str(traffic)]
    frame = sources[1][1]
    assert frame["STORE_NBR"].dtype == np.int64
    assert frame["VISITS"].dtype == object


def test_external_source_without_store_numbers(con: ibis.BaseBackend, tmp_path: Path) -> None:
    path = tmp_path / "ext.parquet"
    pd.DataFrame({"STORE": [1]}).to_parquet(path)
    with pytest.raises(InputContractError) as info:
        read_external_sources(con, [path])
    assert str(info.value) == (
        f"external features '{path}': missing column STORE_NBR (expected an integer); "
        "found columns STORE."
    )
