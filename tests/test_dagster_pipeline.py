"""The real Dagster jobs on small generated data in a temporary project folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from clustering.dagster.definitions import create_definitions
from clustering.dagster.jobs import JOB_ASSETS
from clustering.io.duckdb_store import DuckDBStore

pytestmark = pytest.mark.slow

EXPECTED_TABLES = {
    ("preprocessing", "need_state_map"),
    ("preprocessing", "internal_need_state_sales"),
    ("preprocessing", "external_store_features"),
    ("internal_clustering", "internal_features"),
    ("internal_clustering", "internal_models"),
    ("internal_clustering", "internal_assignments"),
    ("internal_clustering", "internal_centroids"),
    ("internal_clustering", "internal_profiles"),
    ("external_clustering", "external_features"),
    ("external_clustering", "external_models"),
    ("external_clustering", "external_assignments"),
    ("external_clustering", "external_centroids"),
    ("external_clustering", "external_profiles"),
    ("merging", "final_store_clusters"),
    ("merging", "merging_summary"),
}


def _project(small_data: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    for name in ["internal_sales.parquet", "need_state.csv", "external_sales.parquet"]:
        shutil.copy(small_data / name, raw / name)
    monkeypatch.delenv("CLUSTERING_RAW_DIR", raising=False)
    monkeypatch.setenv("CLUSTERING_WORKERS", "1")
    return root


def _run(
    root: Path, job: str, run_config: dict[str, object] | None = None
) -> dg.ExecuteInProcessResult:
    defs = create_definitions("dev", project_root=root)
    return defs.resolve_job_def(job).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, run_config=run_config or {}
    )


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures, "expected a failed step"
    error = failures[0].step_failure_data.error
    assert error is not None
    # Dagster prefixes the exception class ("dagster._core...Failure: "); the sentence follows.
    return error.message.strip().split("Failure: ", 1)[-1]


def _add_tiny_category(raw: Path, stores: int = 3) -> None:
    """A category sold in only ``stores`` stores (its own SKUs, mapped in the need-state map)."""
    sales = pd.read_parquet(raw / "internal_sales.parquet")
    need_states = pd.read_csv(raw / "need_state.csv")
    first = sales["CAT_DSC"].iloc[0]
    chosen = sorted(sales.loc[sales["CAT_DSC"] == first, "STORE_NBR"].unique())[:stores]
    tiny = sales[(sales["CAT_DSC"] == first) & sales["STORE_NBR"].isin(chosen)].copy()
    tiny["CAT_DSC"] = "TINY CATEGORY"
    tiny["SKU_NBR"] += 90_000_000
    mapped = need_states[need_states["CATEGORY"] == first].copy()
    mapped["CATEGORY"] = "TINY CATEGORY"
    mapped["PRODUCT_ID"] += 90_000_000
    pd.concat([sales, tiny]).to_parquet(raw / "internal_sales.parquet", index=False)
    pd.concat([need_states, mapped]).to_csv(raw / "need_state.csv", index=False)


def test_full_pipeline_writes_every_table(
    small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(small_data, tmp_path, monkeypatch)
    # A category with 3 stores must not stop the run: it gets one cluster and a stated reason.
    _add_tiny_category(root / "data" / "raw")
    result = _run(root, "full_pipeline_job")
    assert result.success
    store = DuckDBStore(root / "outputs" / "clustering_dev.duckdb")
    tables = {(schema, table): rows for schema, table, rows in store.list_tables()}
    assert set(tables) >= EXPECTED_TABLES

    final = store.read_table("merging", "final_store_clusters")
    sales = pd.read_parquet(root / "data" / "raw" / "internal_sales.parquet")
    expected_rows = sales.groupby("CAT_DSC")["STORE_NBR"].nunique().sum()
    assert len(final) == expected_rows
    assert list(final.columns) == [
        "STORE_NBR",
        "CATEGORY",
        "INTERNAL_CLUSTER",
        "EXTERNAL_CLUSTER",
        "DEMAND_CLUSTER",
        "REBALANCED_CLUSTER",
        "REASSIGNED",
        "DISTANCE",
        "OVERRIDDEN",
        "OVERRIDE_REASON",
    ]
    exported = pd.read_parquet(root / "outputs" / "dev" / "final_store_clusters.parquet")
    pd.testing.assert_frame_equal(exported, final, check_dtype=False)
    csv = pd.read_csv(root / "outputs" / "dev" / "final_store_clusters.csv")
    assert len(csv) == len(final)

    checks = {
        (e.asset_key.to_user_string(), e.check_name): e.passed
        for e in result.get_asset_check_evaluations()
    }
    assert checks[("internal_assignments", "every_store_assigned")]
    assert checks[("final_store_clusters", "every_store_assigned")]
    # The tiny category is listed by the size checks, as a warning, never hidden.
    size_check = next(
        e
        for e in result.get_asset_check_evaluations()
        if (e.asset_key.to_user_string(), e.check_name)
        == ("final_store_clusters", "min_cluster_size_respected")
    )
    assert not size_check.passed
    assert size_check.severity == dg.AssetCheckSeverity.WARN
    assert "TINY CATEGORY (3)" in (size_check.description or "")

    tiny = final[final["CATEGORY"] == "TINY CATEGORY"]
    assert len(tiny) == 3 and tiny["REBALANCED_CLUSTER"].nunique() == 1
    summary = store.read_table("merging", "merging_summary").set_index("CATEGORY")
    assert summary.loc["TINY CATEGORY", "OUTCOME"] == "too_small"
    others = summary.drop(index="TINY CATEGORY")
    assert (others["SMALLEST_FINAL_CLUSTER"] >= 20).all()
    assert (others["FINAL_CLUSTERS"] >= 2).all()
    assert (others["HOMOGENEITY_INTERNAL"] > 0.999).all()

    models = store.read_table("internal_clustering", "internal_models")
    assert models.groupby("CATEGORY")["chosen"].sum().eq(1).all()
    chosen = models[models["chosen"]].set_index("CATEGORY")
    assert chosen.loc["TINY CATEGORY", "FALLBACK"] == (
        "3 stores cannot form two clusters of at least 20; all stores form one cluster"
    )
    assert chosen.drop(index="TINY CATEGORY")["stability"].between(0.8, 1.0).all()
    materialization = result.asset_materializations_for_node("internal_clustering")
    assert any("k_curve" in m.metadata for m in materialization)
    log = (root / "logs" / "dev.log").read_text()
    assert "internal_clustering" in log and "k=" in log


def test_jobs_one_by_one_and_downstream_first(
    small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(small_data, tmp_path, monkeypatch)
    early = _run(root, "internal_clustering_job")
    assert not early.success
    assert _failure_message(early).endswith("run internal_preprocessing_job first.")

    for job in ["internal_preprocessing_job", "internal_clustering_job"]:
        assert _run(root, job).success, job
    merging_early = _run(root, "merging_job")
    assert not merging_early.success
    assert _failure_message(merging_early).endswith("run external_clustering_job first.")

    for job in ["external_preprocessing_job", "external_clustering_job", "merging_job"]:
        assert _run(root, job).success, job
    tables = {
        (s, t) for s, t, _ in DuckDBStore(root / "outputs" / "clustering_dev.duckdb").list_tables()
    }
    assert {(g, a) for g, a in EXPECTED_TABLES if a in JOB_ASSETS["merging_job"]} <= tables


def test_run_config_overrides_clustering_parameters(
    small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(small_data, tmp_path, monkeypatch)
    assert _run(root, "internal_preprocessing_job").success
    result = _run(
        root,
        "internal_clustering_job",
        {"ops": {"internal_clustering": {"config": {"max_k": 3}}}},
    )
    assert result.success
    models = DuckDBStore(root / "outputs" / "clustering_dev.duckdb").read_table(
        "internal_clustering", "internal_models"
    )
    assert models["k"].max() == 3


def test_bad_input_stops_the_run_with_the_contract_sentence(
    small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(small_data, tmp_path, monkeypatch)
    sales_file = root / "data" / "raw" / "internal_sales.parquet"
    sales = pd.read_parquet(sales_file)
    sales.loc[sales.index[0], "TOTAL_SALES"] = -1.0
    sales.to_parquet(sales_file, index=False)
    result = _run(root, "full_pipeline_job")
    assert not result.success
    message = _failure_message(result)
    assert message.startswith(f"internal sales '{sales_file}': column TOTAL_SALES must be ≥ 0")
    store = DuckDBStore(root / "outputs" / "clustering_dev.duckdb")
    assert not store.has_table("merging", "final_store_clusters")


def test_executor_follows_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("CLUSTERING_")]:
        monkeypatch.delenv(name)
    dev = create_definitions("dev", project_root=tmp_path).resolve_job_def("merging_job")
    assert dev.executor_def.name == "in_process"
    (tmp_path / "site.yml").write_text("dagster:\n  executor: multiprocess\n")
    monkeypatch.setenv("CLUSTERING_CONFIG", "site.yml")
    site = create_definitions("dev", project_root=tmp_path).resolve_job_def("merging_job")
    assert site.executor_def.name == "multiprocess"
