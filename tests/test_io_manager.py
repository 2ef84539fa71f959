"""ClusteringIOManager inside real Dagster runs: where each output type lands, what comes back,
exports, the never-materialized sentence, and failures that must not damage earlier outputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel

from clustering.core.internal_preprocessing import MatchSummary
from clustering.core.params import ClusteringParams
from clustering.dagster.resources import io_manager as io_module
from clustering.dagster.resources.io_manager import (
    AssetNotMaterializedError,
    ClusteringIOManager,
)
from clustering.io.duckdb_store import DuckDBStore

# -- what the assets return ----------------------------------------------------------------------

SALES = pd.DataFrame(
    {
        "STORE_NBR": np.array([1, 2, 3], dtype=np.int64),
        "CAT_DSC": pd.Categorical(["CANDY/SNACKS", "BEER & WINE", "CANDY/SNACKS"]),
        "TOTAL_SALES": [10.5, 0.0, 7.25],
        "PROMO_WEEKS": pd.array([2, None, 1], dtype="Int64"),
    }
)
SUMMARY = MatchSummary(
    sales_rows=3,
    skus=2,
    stores=3,
    categories=2,
    total_sales=17.75,
    unmatched_skus=0,
    unmatched_sales_rows=0,
    unmatched_sales=0.0,
    unmatched_sales_pct=0.0,
    multi_need_state_skus=1,
    stores_without_matched_sales=[("BEER & WINE", 2)],
    stores_without_matched_sales_count=1,
)
NOTES: dict[str, Any] = {
    "categories": ["CANDY/SNACKS", "BEER & WINE"],
    "k": {"BEER": 3},
    "ok": True,
}
CENTROIDS = np.arange(12, dtype=np.float64).reshape(4, 3)
SCALED = {"CANDY/SNACKS": np.ones((3, 2)), "BEER & WINE": np.zeros(3, dtype=np.int64)}
MATRICES = {
    category: pd.DataFrame(
        [[60.0, 40.0], [25.0, 75.0]],
        index=pd.Index([1, 3], dtype=np.int64, name="STORE_NBR"),
        columns=pd.Index(["SWEET", "SALTY"], dtype=object, name="NEED_STATE"),
    )
    * scale
    for scale, category in enumerate(
        ["CANDY/SNACKS", "BEER & WINE", "FROZEN  FOOD", "candy-snacks"]
    )
}
FINAL = pd.DataFrame(
    {
        "STORE_NBR": [1, 2, 3],
        "CATEGORY": ["CANDY/SNACKS", "BEER & WINE", "CANDY/SNACKS"],
        "DEMAND_CLUSTER": ["1_2", "2_1", "1_1"],
        "REBALANCED_CLUSTER": [1, 2, 1],
    }
)

#: What the downstream asset received, by input name (in-process execution shares this module).
RECEIVED: dict[str, Any] = {}

# -- assets --------------------------------------------------------------------------------------


@dg.asset(group_name="preprocessing")
def raw_sales() -> pd.DataFrame:
    return SALES


@dg.asset(group_name="preprocessing")
def match_summary() -> MatchSummary:
    return SUMMARY


@dg.asset(group_name="preprocessing")
def run_notes() -> dict[str, Any]:
    return NOTES


@dg.asset(group_name="preprocessing")
def centroids() -> np.ndarray:
    return CENTROIDS


@dg.asset(group_name="preprocessing")
def scaled_features() -> dict[str, np.ndarray]:
    return SCALED


@dg.asset(group_name="preprocessing")
def internal_share_matrices() -> dict[str, pd.DataFrame]:
    return MATRICES


@dg.asset(group_name="merging")
def final_store_clusters(
    raw_sales: pd.DataFrame,
    match_summary: MatchSummary,
    run_notes: dict[str, Any],
    centroids: np.ndarray,
    scaled_features: dict[str, np.ndarray],
    internal_share_matrices: dict[str, pd.DataFrame],
) -> pd.DataFrame:
    RECEIVED.update(
        raw_sales=raw_sales,
        match_summary=match_summary,
        run_notes=run_notes,
        centroids=centroids,
        scaled_features=scaled_features,
        internal_share_matrices=internal_share_matrices,
    )
    return FINAL


@dg.asset(group_name="internal_clustering")
def share_matrix_sizes(internal_share_matrices: dict[str, pd.DataFrame]) -> dict[str, int]:
    return {category: len(matrix) for category, matrix in internal_share_matrices.items()}


UPSTREAM = [
    raw_sales,
    match_summary,
    run_notes,
    centroids,
    scaled_features,
    internal_share_matrices,
]
ALL_ASSETS = [*UPSTREAM, final_store_clusters, share_matrix_sizes]

# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def io_manager(tmp_path: Path) -> ClusteringIOManager:
    return ClusteringIOManager(
        duckdb_path=str(tmp_path / "outputs" / "clustering_dev.duckdb"),
        storage_dir=str(tmp_path / "storage" / "dev"),
        exports_dir=str(tmp_path / "outputs" / "dev"),
        producing_jobs={"internal_share_matrices": "internal_preprocessing_job"},
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


def assert_received_equal_objects() -> None:
    pd.testing.assert_frame_equal(
        RECEIVED["raw_sales"], SALES.assign(CAT_DSC=SALES["CAT_DSC"].astype(object))
    )
    assert RECEIVED["match_summary"] == SUMMARY
    assert isinstance(RECEIVED["match_summary"], MatchSummary)
    assert RECEIVED["run_notes"] == NOTES
    np.testing.assert_array_equal(RECEIVED["centroids"], CENTROIDS)
    assert RECEIVED["centroids"].dtype == CENTROIDS.dtype
    assert list(RECEIVED["scaled_features"]) == list(SCALED)
    for key, array in SCALED.items():
        np.testing.assert_array_equal(RECEIVED["scaled_features"][key], array)
        assert RECEIVED["scaled_features"][key].dtype == array.dtype
    assert list(RECEIVED["internal_share_matrices"]) == list(MATRICES)
    for key, matrix in MATRICES.items():
        pd.testing.assert_frame_equal(RECEIVED["internal_share_matrices"][key], matrix)


# -- tests ---------------------------------------------------------------------------------------


def test_frames_become_tables_in_their_group_schema_and_final_is_exported(
    io_manager: ClusteringIOManager,
) -> None:
    result = run(ALL_ASSETS, io_manager)
    assert result.success

    stored = tables(io_manager)
    assert set(stored) == {("preprocessing", "raw_sales"), ("merging", "final_store_clusters")}
    pd.testing.assert_frame_equal(stored["merging", "final_store_clusters"], FINAL)

    exports = Path(io_manager.exports_dir)
    assert sorted(path.name for path in exports.iterdir()) == [
        "final_store_clusters.csv",
        "final_store_clusters.parquet",
    ]
    table = stored["merging", "final_store_clusters"]
    pd.testing.assert_frame_equal(pd.read_parquet(exports / "final_store_clusters.parquet"), table)
    pd.testing.assert_frame_equal(pd.read_csv(exports / "final_store_clusters.csv"), table)

    materialization = result.asset_materializations_for_node("final_store_clusters")[0]
    metadata = materialization.metadata
    assert metadata["dagster/table_name"].value == '"merging"."final_store_clusters"'
    assert metadata["dagster/row_count"].value == 3
    assert metadata["columns"].value == list(FINAL.columns)


def test_other_values_are_stored_as_safe_files(io_manager: ClusteringIOManager) -> None:
    assert run([*UPSTREAM, share_matrix_sizes], io_manager).success

    storage = Path(io_manager.storage_dir)
    files = sorted(str(path.relative_to(storage)) for path in storage.rglob("*") if path.is_file())
    assert [name for name in files if not name.endswith(".parquet")] == [
        "internal_clustering/share_matrix_sizes.json",
        "preprocessing/centroids.npz",
        "preprocessing/internal_share_matrices/index.json",
        "preprocessing/match_summary.json",
        "preprocessing/run_notes.json",
        "preprocessing/scaled_features.npz",
    ]
    parquet = [name for name in files if name.endswith(".parquet")]
    assert len(parquet) == len(MATRICES)
    assert all(name.startswith("preprocessing/internal_share_matrices/") for name in parquet)

    envelope = json.loads((storage / "preprocessing" / "match_summary.json").read_text())
    assert envelope["type"] == "pydantic:clustering.core.internal_preprocessing.MatchSummary"
    index = json.loads(
        (storage / "preprocessing" / "internal_share_matrices" / "index.json").read_text()
    )
    assert [entry["key"] for entry in index["frames"]] == list(MATRICES)
    # "CANDY/SNACKS" and "candy-snacks" must not share a file.
    assert len({entry["file"] for entry in index["frames"]}) == len(MATRICES)
    with np.load(storage / "preprocessing" / "scaled_features.npz", allow_pickle=False) as npz:
        assert len(npz.files) == len(SCALED) + 2


def test_downstream_receives_equal_objects_in_the_same_and_a_later_run(
    io_manager: ClusteringIOManager,
) -> None:
    RECEIVED.clear()
    assert run(ALL_ASSETS, io_manager).success
    assert_received_equal_objects()

    # A later run of the downstream asset alone reads everything back from disk.
    RECEIVED.clear()
    assert run(ALL_ASSETS, io_manager, selection=[final_store_clusters]).success
    assert_received_equal_objects()


def test_never_materialized_upstream_fails_with_one_sentence(
    io_manager: ClusteringIOManager,
) -> None:
    expected = (
        "asset internal_share_matrices has never been materialized (no table "
        f'"preprocessing"."internal_share_matrices" in {io_manager.duckdb_path}); '
        "run internal_preprocessing_job first."
    )
    result = run(ALL_ASSETS, io_manager, selection=[share_matrix_sizes], raise_on_error=False)
    assert result.success is False
    assert step_error(result) == expected

    with pytest.raises(AssetNotMaterializedError) as raised:
        run(ALL_ASSETS, io_manager, selection=[share_matrix_sizes])
    assert str(raised.value) == expected
    assert raised.value.description == expected


def test_unknown_producing_job_says_materialize_it_first(io_manager: ClusteringIOManager) -> None:
    # Not model_copy(update=...): Dagster builds the resource from its original config.
    manager = ClusteringIOManager(
        duckdb_path=io_manager.duckdb_path,
        storage_dir=io_manager.storage_dir,
        exports_dir=io_manager.exports_dir,
    )
    result = run(ALL_ASSETS, manager, selection=[share_matrix_sizes], raise_on_error=False)
    assert step_error(result) == (
        "asset internal_share_matrices has never been materialized (no table "
        f'"preprocessing"."internal_share_matrices" in {io_manager.duckdb_path}); '
        "materialize it first."
    )


def final_asset(frame: pd.DataFrame | None) -> dg.AssetsDefinition:
    """A stand-in final_store_clusters returning ``frame``, or raising when it is None."""

    @dg.asset(name="final_store_clusters", group_name="merging")
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


def test_value_that_would_need_pickling_is_refused(io_manager: ClusteringIOManager) -> None:
    @dg.asset(group_name="preprocessing")
    def odd_value() -> object:
        return {"when": object()}

    result = run([odd_value], io_manager, raise_on_error=False)
    assert result.success is False
    assert "cannot store the output of asset odd_value (dict) without pickling" in step_error(
        result
    )
    assert not any(Path(io_manager.storage_dir).rglob("*.json"))


def test_changing_output_type_never_loads_the_stale_value(io_manager: ClusteringIOManager) -> None:
    def summary_asset(value: Any) -> dg.AssetsDefinition:
        @dg.asset(name="cluster_summary", group_name="merging")
        def summary() -> Any:
            return value

        return summary

    manager = io_manager
    store = DuckDBStore(Path(manager.duckdb_path))
    assert run([summary_asset(FINAL)], manager).success
    assert store.has_table("merging", "cluster_summary")

    assert run([summary_asset({"k": 3})], manager).success
    assert not store.has_table("merging", "cluster_summary")
    context = dg.build_input_context(
        upstream_output=dg.build_output_context(
            asset_key=dg.AssetKey("cluster_summary"),
            asset_spec=dg.AssetSpec("cluster_summary", group_name="merging"),
        )
    )
    assert manager.load_input(context) == {"k": 3}

    assert run([summary_asset(FINAL)], manager).success
    assert not (Path(manager.storage_dir) / "merging" / "cluster_summary.json").exists()
    pd.testing.assert_frame_equal(manager.load_input(context), FINAL)


class OutsideModel(BaseModel):
    """A model outside the clustering package: stored, but loaded back as a plain dict."""

    name: str


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """A dataclass with values JSON has no type for."""

    output: Path
    params: ClusteringParams
    sizes: tuple[int, ...]


def round_trip(manager: ClusteringIOManager, name: str, value: object) -> object:
    """handle_output then load_input through hand-built contexts (no asset group: "public")."""
    key = dg.AssetKey(name)
    manager.handle_output(dg.build_output_context(asset_key=key), value)
    return manager.load_input(
        dg.build_input_context(upstream_output=dg.build_output_context(asset_key=key))
    )


def test_classes_are_rebuilt_only_inside_the_clustering_package(
    io_manager: ClusteringIOManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert round_trip(io_manager, "outside", OutsideModel(name="x")) == {"name": "x"}
    assert (Path(io_manager.storage_dir) / "public" / "outside.json").is_file()

    info = RunInfo(output=Path("outputs/dev"), params=ClusteringParams(min_k=3), sizes=(4, 5))
    assert round_trip(io_manager, "info", info) == {
        "output": "outputs/dev",
        "params": ClusteringParams(min_k=3).model_dump(mode="json"),
        "sizes": [4, 5],
    }
    # The same dataclass, were it part of the package, comes back as itself.
    monkeypatch.setattr(io_module, "RECONSTRUCTABLE_PREFIXES", ("clustering.", f"{__name__}."))
    assert round_trip(io_manager, "info", info) == info


def test_frame_without_asset_group_goes_to_public_schema(io_manager: ClusteringIOManager) -> None:
    frame = pd.DataFrame({"a": [1, 2]}, index=pd.Index(["x", "y"], name="KEY"))
    pd.testing.assert_frame_equal(round_trip(io_manager, "loose", frame), frame)  # type: ignore[arg-type]
    assert set(tables(io_manager)) == {("public", "loose")}
