"""Input contracts: what passes, and the one-sentence errors a user sees when data is wrong."""

from __future__ import annotations

import ibis
import pandas as pd
import pyarrow as pa
import pytest

from clustering.core.contracts import (
    validate_external,
    validate_internal_sales,
    validate_need_states,
)
from clustering.core.errors import InputContractError

SALES_PATH = "data/raw/internal_sales.parquet"
MAP_PATH = "data/raw/need_state.csv"


def sales_table(**columns: list[object]) -> ibis.Table:
    base: dict[str, list[object]] = {
        "SKU_NBR": [11, 12, 13],
        "STORE_NBR": [1004, 1004, 1005],
        "CAT_DSC": ["BEER", "BEER", "WINE"],
        "TOTAL_SALES": [3.5, 1.0, 2.0],
    }
    base.update(columns)
    return ibis.memtable(pd.DataFrame(base))


def map_table(**columns: list[object]) -> ibis.Table:
    base: dict[str, list[object]] = {
        "PRODUCT_ID": [11, 12, 13],
        "CATEGORY": ["BEER", "BEER", "WINE"],
        "NEED_STATE": ["LAGER", "ALE", "RED"],
        "CDT": ["C1", "C1", "C2"],
    }
    base.update(columns)
    return ibis.memtable(pd.DataFrame(base))


def error_of(call: object, *args: object) -> str:
    with pytest.raises(InputContractError) as info:
        call(*args)  # type: ignore[operator]
    return str(info.value)


def test_valid_sales_are_cast_to_contract_types_and_extra_columns_dropped() -> None:
    table = sales_table(
        SKU_NBR=["11", "12", "13"],  # ids stored as text digits are fine
        TOTAL_SALES=[3, 1, 2],
        REGION=["N", "N", "S"],
    )
    result = validate_internal_sales(table, SALES_PATH)
    schema = result.schema()
    assert list(schema.names) == ["SKU_NBR", "STORE_NBR", "CAT_DSC", "TOTAL_SALES"]
    assert [str(t) for t in schema.types] == ["int64", "int64", "string", "float64"]
    frame = result.execute()
    assert frame["SKU_NBR"].tolist() == [11, 12, 13]
    assert frame["TOTAL_SALES"].sum() == pytest.approx(6.0)


def test_integral_floats_are_integer_ids() -> None:
    result = validate_internal_sales(sales_table(STORE_NBR=[1004.0, 1004.0, 1005.0]), SALES_PATH)
    assert result.execute()["STORE_NBR"].tolist() == [1004, 1004, 1005]


def test_lower_case_column_names_are_accepted() -> None:
    table = ibis.memtable(
        pd.DataFrame({"sku_nbr": [1], "store_nbr": [2], "cat_dsc": ["A"], "total_sales": [1.0]})
    )
    assert validate_internal_sales(table, SALES_PATH).columns == (
        "SKU_NBR",
        "STORE_NBR",
        "CAT_DSC",
        "TOTAL_SALES",
    )


def test_missing_column_names_file_column_expectation_and_what_was_found() -> None:
    table = ibis.memtable(pd.DataFrame({"SKU_NBR": [1], "STORE_NBR": [2], "CAT_DSC": ["A"]}))
    assert error_of(validate_internal_sales, table, SALES_PATH) == (
        "internal sales 'data/raw/internal_sales.parquet': missing column TOTAL_SALES "
        "(expected a number ≥ 0); found columns SKU_NBR, STORE_NBR, CAT_DSC."
    )


def test_negative_sales_are_counted_and_the_first_rows_shown() -> None:
    table = sales_table(TOTAL_SALES=[-3.5, 1.0, -2.0])
    assert error_of(validate_internal_sales, table, SALES_PATH) == (
        "internal sales 'data/raw/internal_sales.parquet': column TOTAL_SALES must be ≥ 0; "
        "2 rows are negative, first: (SKU_NBR=11, STORE_NBR=1004, TOTAL_SALES=-3.5), "
        "(SKU_NBR=13, STORE_NBR=1005, TOTAL_SALES=-2.0)."
    )


def test_text_in_an_integer_column_is_reported_with_the_value() -> None:
    table = map_table(PRODUCT_ID=["11", "abc", "13"])
    assert error_of(validate_need_states, table, MAP_PATH) == (
        "need-state map 'data/raw/need_state.csv': column PRODUCT_ID must be an integer; "
        "1 row cannot be read as one, first: (PRODUCT_ID='abc')."
    )


def test_empty_input_is_reported() -> None:
    table = ibis.memtable(
        pa.table(
            {
                "SKU_NBR": pa.array([], pa.int64()),
                "STORE_NBR": pa.array([], pa.int64()),
                "CAT_DSC": pa.array([], pa.string()),
                "TOTAL_SALES": pa.array([], pa.float64()),
            }
        )
    )
    assert error_of(validate_internal_sales, table, "x.parquet") == (
        "internal sales 'x.parquet' is empty (no rows)."
    )


def test_at_most_three_offending_rows_are_shown_but_all_are_counted() -> None:
    table = ibis.memtable(
        pd.DataFrame(
            {
                "SKU_NBR": list(range(10)),
                "STORE_NBR": [1] * 10,
                "CAT_DSC": [None] * 5 + ["A"] * 5,
                "TOTAL_SALES": [1.0] * 10,
            }
        )
    )
    message = error_of(validate_internal_sales, table, SALES_PATH)
    assert "column CAT_DSC must have a value in every row; 5 rows have none" in message
    assert message.count("CAT_DSC=NULL") == 3


@pytest.mark.parametrize(
    ("values", "count"),
    [
        (["1.5", "2", "3"], 1),  # a backend would round '1.5' to 2 silently
        ([1.5, 2.0, float("inf")], 2),
        (["x", "", "3"], 2),
    ],
)
def test_non_integral_ids_are_rejected(values: list[object], count: int) -> None:
    message = error_of(validate_internal_sales, sales_table(SKU_NBR=values), SALES_PATH)
    assert f"column SKU_NBR must be an integer; {count} row" in message


def test_nan_sales_are_not_a_number() -> None:
    table = ibis.memtable(
        pa.table(
            {
                "SKU_NBR": [1, 2],
                "STORE_NBR": [3, 4],
                "CAT_DSC": ["A", "A"],
                "TOTAL_SALES": pa.array([float("nan"), 1.0]),  # a NaN, not a NULL
            }
        )
    )
    message = error_of(validate_internal_sales, table, SALES_PATH)
    assert "column TOTAL_SALES must be a finite number; 1 row is NaN or infinite" in message
    assert "TOTAL_SALES=nan" in message


def test_null_sales_are_missing_values() -> None:
    message = error_of(validate_internal_sales, sales_table(TOTAL_SALES=[None, 1, 2]), SALES_PATH)
    assert "column TOTAL_SALES must have a value in every row; 1 row has none" in message


def test_a_column_of_the_wrong_type_is_named_with_its_type() -> None:
    table = sales_table(TOTAL_SALES=pd.to_datetime(["2024-01-01"] * 3).tolist())
    assert error_of(validate_internal_sales, table, SALES_PATH) == (
        "internal sales 'data/raw/internal_sales.parquet': column TOTAL_SALES must be a "
        "number ≥ 0; it has type timestamp instead."
    )


def test_need_state_map_keeps_contract_columns_distinct_and_allows_missing_cdt() -> None:
    table = map_table(
        PRODUCT_ID=[11, 11, 13],
        NEED_STATE=["LAGER", "LAGER", "RED"],
        CATEGORY=["BEER", "BEER", "WINE"],
        CDT=["C1", "C1", None],
        ATTRIBUTE_1=["a", "b", "c"],
    )
    frame = validate_need_states(table, MAP_PATH).execute()
    assert list(frame.columns) == ["PRODUCT_ID", "CATEGORY", "NEED_STATE", "CDT"]
    assert len(frame) == 2


def test_need_state_without_a_need_state_is_rejected() -> None:
    message = error_of(validate_need_states, map_table(NEED_STATE=["A", None, "B"]), MAP_PATH)
    assert message == (
        "need-state map 'data/raw/need_state.csv': column NEED_STATE must have a value in "
        "every row; 1 row has none, first: (PRODUCT_ID=12, NEED_STATE=NULL)."
    )


def test_external_source_keeps_its_columns_and_types_store_numbers() -> None:
    table = ibis.memtable(
        pd.DataFrame({"STORE_NBR": ["1", "2"], "POP": [1.5, 2.5], "T": ["a", "b"]})
    )
    result = validate_external(table, "ext.parquet")
    assert dict(result.schema().items()) == dict(
        ibis.schema({"STORE_NBR": "int64", "POP": "float64", "T": "string"}).items()
    )


def test_external_source_with_a_bad_store_number_is_rejected() -> None:
    table = ibis.memtable(pd.DataFrame({"STORE_NBR": ["1", "abc"], "POP": [1.5, 2.5]}))
    assert error_of(validate_external, table, "ext.parquet") == (
        "external features 'ext.parquet': column STORE_NBR must be an integer; "
        "1 row cannot be read as one, first: (STORE_NBR='abc')."
    )
