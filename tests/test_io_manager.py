"""ClusteringIOManager inside real Dagster runs: frames land as tables in their group's schema,
come back equal, the marked ones are exported, the never-materialized sentence, and failures that
must not damage earlier outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from clustering.dagster.resources.io_manager import (
    EXPORT_KEY,
    AssetNotMaterializedError,
    ClusteringIOManager,
)

SALES = pd.DataFrame(
    {
        "STORE_NBR": np.array([1, 2, 3], dtype=np.int64),
        "CAT_DSC": pd.Categorical(["CANDY/SNACKS", "BEER & WINE", "CANDY/SNACKS"]),
        "TOTAL_SALES": [10.5, 0.0, 7.25],
        "PROMO_WEEKS": pd.array([2, None, 1], dtype="Int64"),
    }
)
FINAL = pd.DataFrame(
    {
        "STORE_NBR": [1, 2, 3],
        "CATEGORY": ["CANDY/SNACKS", "BEER & WINE", "CANDY/SNACKS"],
        "DEMAND_CLUSTER": ["I1-E2", "I2-E1", "I1-E1"],
        "REBALANCED_CLUSTER": ["I1", "I2", "I1"],
    }
)

#: What the downstream asset received (in-process execution shares this module).
RECEIVED: dict[str, Any] = {}


@dg.asset(group_name="preprocessing")
def raw_sales() -> pd.DataFrame:
    return SALES


@dg.asset(group_name="merging", metadata={EXPORT_KEY: "parquet,csv"})
def final_store_clusters(raw_sales: pd.DataFrame) -> pd.DataFrame:
    RECEIVED["raw_sales"] = raw_sales
    return FINAL


@pytest.fixture
def io_manager(tmp_path: Path) -> ClusteringIOManager:
    return ClusteringIOManager(
        duckdb_path=str(tmp_path / "outputs" / "clustering_dev.duckdb"),
        exports_dir=str(tmp_path / "outputs" / "dev"),
        producing_jobs={"raw_sales": "internal_preprocessing_job"},
        lock_timeout_s=60,
    )


def run(
    assets: list[Any], io_manager: ClusteringIOManager, **kwargs: Any
) -> dg.ExecuteInProcessResult:
    return dg.materialize(assets, resources={"io_manager": io_manager}, **kwargs)


def tables(io_manager: ClusteringIOManager) -> dict[tuple[str, str], pd.DataFrame]:
    """Every table in the DuckDB file as DuckDB itself returns it (no IO manager involved)."""
    with duckdb.connect(io_manager.duckdb_path, read_only=True) as con:
        names = con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
        return {
            (schema, table): con.execute(f'SELECT * FROM "{schema}"."{table}"').df()
            for schema, table in names
        }


def step_error(result: dg.ExecuteInProcessResult) -> str:
    """The error text Dagster recorded for the (single) failed step."""
    failures = [event for event in result.all_events if event.is_step_failure]
    assert len(failures) == 1
    data = failures[0].step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    assert data.error is not None
    return "\n".join(
        part.message for part in [data.error, *([data.error.cause] if data.error.cause else [])]
    )


def test_frames_become_tables_in_their_group_schema_and_marked_ones_are_exported(
    io_manager: ClusteringIOManager,
) -> None:
    result = run([raw_sales, final_store_clusters], io_manager)
    assert result.success
    stored = tables(io_manager)
    assert set(stored) == {("preprocessing", "raw_sales"), ("merging", "final_store_clusters")}
    pd.testing.assert_frame_equal(stored["merging", "final_store_clusters"], FINAL)
    # The downstream asset received an equal frame (categoricals come back as text).
    pd.testing.assert_frame_equal(
        RECEIVED["raw_sales"], SALES.assign(CAT_DSC=SALES["CAT_DSC"].astype(object))
    )

    exports = Path(io_manager.exports_dir)
    assert sorted(path.name for path in exports.iterdir()) == [
        "final_store_clusters.csv",
        "final_store_clusters.parquet",
    ]
    table = stored["merging", "final_store_clusters"]
    pd.testing.assert_frame_equal(pd.read_parquet(exports / "final_store_clusters.parquet"), table)
    pd.testing.assert_frame_equal(pd.read_csv(exports / "final_store_clusters.csv"), table)

    metadata = result.asset_materializations_for_node("final_store_clusters")[0].metadata
    assert metadata["dagster/table_name"].value == '"merging"."final_store_clusters"'
    assert metadata["dagster/row_count"].value == 3
    assert [c.name for c in metadata["dagster/column_schema"].value.columns] == list(FINAL.columns)
    assert "export_parquet" in metadata and "export_csv" in metadata


def test_never_materialized_upstream_fails_with_one_sentence(
    io_manager: ClusteringIOManager,
) -> None:
    expected = (
        "asset raw_sales has never been materialized (no table "
        f'"preprocessing"."raw_sales" in {io_manager.duckdb_path}); '
        "run internal_preprocessing_job first."
    )
    assets = [raw_sales, final_store_clusters]
    result = run(assets, io_manager, selection=[final_store_clusters], raise_on_error=False)
    assert result.success is False
    assert step_error(result) == expected
    with pytest.raises(AssetNotMaterializedError) as raised:
        run(assets, io_manager, selection=[final_store_clusters])
    assert str(raised.value) == expected


def final_asset(frame: pd.DataFrame | None) -> dg.AssetsDefinition:
    """A stand-in final_store_clusters returning ``frame``, or raising when it is None."""

    @dg.asset(name="final_store_clusters", group_name="merging", metadata={EXPORT_KEY: "csv"})
    def final() -> pd.DataFrame:
        if frame is None:
            raise RuntimeError("clustering blew up")
        return frame

    return final


def test_failing_asset_leaves_earlier_table_and_exports_untouched(
    io_manager: ClusteringIOManager,
) -> None:
    assert run([final_asset(FINAL)], io_manager).success
    export = Path(io_manager.exports_dir) / "final_store_clusters.csv"
    exported = export.read_bytes()

    result = run([final_asset(None)], io_manager, raise_on_error=False)
    assert result.success is False
    assert "clustering blew up" in step_error(result)

    pd.testing.assert_frame_equal(tables(io_manager)["merging", "final_store_clusters"], FINAL)
    assert export.read_bytes() == exported


def test_output_failing_mid_write_leaves_earlier_table_untouched(
    io_manager: ClusteringIOManager,
) -> None:
    assert run([final_asset(FINAL)], io_manager).success

    mixed = FINAL.assign(REBALANCED_CLUSTER=[1, "two", 3])  # cannot become one SQL column
    result = run([final_asset(mixed)], io_manager, raise_on_error=False)
    assert result.success is False
    assert "REBALANCED_CLUSTER" in step_error(result)

    assert set(tables(io_manager)) == {("merging", "final_store_clusters")}  # no staging table
    pd.testing.assert_frame_equal(tables(io_manager)["merging", "final_store_clusters"], FINAL)


def test_anything_but_a_frame_is_refused_in_one_sentence(io_manager: ClusteringIOManager) -> None:
    @dg.asset(group_name="preprocessing")
    def odd_value() -> dict[str, int]:
        return {"k": 3}

    result = run([odd_value], io_manager, raise_on_error=False)
    assert result.success is False
    assert "asset odd_value returned dict; every asset of the pipeline returns a pandas " in (
        step_error(result)
    )
