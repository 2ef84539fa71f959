"""The internal preprocessing expressions give the same shares on Spark as on DuckDB."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pytest

from clustering.core.internal_preprocessing import match_summary, share_table, stream_shares

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(
        shutil.which("java") is None, reason="Spark local mode needs a Java runtime on PATH"
    ),
]


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("clustering-portability-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    yield session
    session.stop()


def small_dataset() -> tuple[pd.DataFrame, pd.DataFrame]:
    """~300 sales rows in 3 categories: SKU 101 is in two need states, SKU 999 in none."""
    rng = np.random.default_rng(11)
    need_states = pd.DataFrame(
        {
            "PRODUCT_ID": [101, 101, 102, 103, 201, 202, 203, 301, 302],
            "CATEGORY": ["BEER"] * 4 + ["WINE"] * 3 + ["SNACKS"] * 2,
            "NEED_STATE": [
                "LAGER",
                "CRAFT",
                "LAGER",
                "ALE",
                "RED",
                "WHITE",
                "ROSE",
                "SALTY",
                "SWEET",
            ],
            "CDT": ["C1"] * 9,
        }
    )
    category_of = {101: "BEER", 102: "BEER", 103: "BEER", 999: "BEER"}
    category_of |= {201: "WINE", 202: "WINE", 203: "WINE", 301: "SNACKS", 302: "SNACKS"}
    skus = rng.choice(list(category_of), size=300)
    sales = pd.DataFrame(
        {
            "SKU_NBR": skus.astype(np.int64),
            "STORE_NBR": rng.integers(1000, 1020, size=300).astype(np.int64),
            "CAT_DSC": [category_of[int(s)] for s in skus],
            "TOTAL_SALES": rng.gamma(2.0, 50.0, size=300).round(2),
        }
    )
    # Store 1099 sells only the unmapped SKU: it gets no shares and the summary lists it.
    only_unmapped = pd.DataFrame(
        {"SKU_NBR": [999, 999], "STORE_NBR": [1099, 1099], "CAT_DSC": "BEER", "TOTAL_SALES": 5.0}
    )
    return pd.concat([sales, only_unmapped], ignore_index=True), need_states


def sorted_shares(table: ibis.Table, con: ibis.BaseBackend) -> pd.DataFrame:
    frame = con.execute(table)
    frame["STORE_NBR"] = frame["STORE_NBR"].astype(np.int64)
    return frame.sort_values(["CATEGORY", "STORE_NBR", "NEED_STATE"]).reset_index(drop=True)


def test_share_table_is_the_same_on_duckdb_and_spark(spark: Any) -> None:
    sales, need_states = small_dataset()

    duck = ibis.duckdb.connect()
    duck_result = sorted_shares(share_table(ibis.memtable(sales), ibis.memtable(need_states)), duck)

    spark.createDataFrame(sales).createOrReplaceTempView("sales")
    spark.createDataFrame(need_states).createOrReplaceTempView("need_states")
    con = ibis.pyspark.connect(spark)
    spark_result = sorted_shares(share_table(con.table("sales"), con.table("need_states")), con)

    assert len(duck_result) > 20
    assert set(duck_result.NEED_STATE) >= {"LAGER", "CRAFT"}
    pd.testing.assert_frame_equal(
        spark_result, duck_result, check_dtype=False, check_exact=False, rtol=1e-9
    )
    # The stream the pipeline writes (codes aggregated by Spark, named here): the same rows,
    # sorted by category and store.
    streamed = stream_shares(con.table("sales"), con.table("need_states")).read_all().to_pandas()
    keys = ["CATEGORY", "STORE_NBR"]
    assert streamed[keys].values.tolist() == streamed.sort_values(keys)[keys].values.tolist()
    pd.testing.assert_frame_equal(
        streamed.sort_values([*keys, "NEED_STATE"]).reset_index(drop=True),
        duck_result,
        check_dtype=False,
        check_exact=False,
        rtol=1e-9,
    )


def test_match_summary_is_the_same_on_duckdb_and_spark(spark: Any) -> None:
    sales, need_states = small_dataset()
    on_duckdb = match_summary(ibis.memtable(sales), ibis.memtable(need_states))

    spark.createDataFrame(sales).createOrReplaceTempView("summary_sales")
    spark.createDataFrame(need_states).createOrReplaceTempView("summary_need_states")
    con = ibis.pyspark.connect(spark)
    on_spark = match_summary(con.table("summary_sales"), con.table("summary_need_states"))

    assert on_duckdb.unmatched_skus == 1
    assert on_duckdb.multi_need_state_skus == 1
    assert on_duckdb.stores_without_matched_sales == [("BEER", 1099)]
    duck_fields, spark_fields = on_duckdb.model_dump(), on_spark.model_dump()
    for name in ("total_sales", "unmatched_sales", "unmatched_sales_pct"):
        assert spark_fields.pop(name) == pytest.approx(duck_fields.pop(name))
    assert spark_fields == duck_fields
