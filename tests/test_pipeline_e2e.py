"""The whole pipeline on generated data, through the one execution path (the Dagster assets):
planted structure recovered, no store lost, rows keyed by store, the same answer however run."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from shared_runs import ClusterRun, RecordedRun
from sklearn.metrics import adjusted_rand_score, homogeneity_score

from clustering.cli.run import run_in_memory
from clustering.core.params import PipelineParams
from clustering.io.duckdb_store import DuckDBStore

pytestmark = pytest.mark.slow


def _cluster(raw: Path, out: Path, params: dict[str, object] | None = None) -> Path:
    """``python -m clustering cluster --raw-dir raw --out out``, in this process."""
    overrides: dict[str, object] = {
        "paths": {
            "raw_dir": str(raw),
            "exports_dir": str(out),
            "duckdb_path": str(out / "clustering_dev.duckdb"),
            # Never the developer's own data/overrides.csv.
            "overrides": str(out / "no-overrides.csv"),
        },
        "params": {"workers": 2, **(params or {})},
    }
    assert run_in_memory("dev", overrides, out=lambda _line: None) == 0
    return out


def _table(out: Path, schema: str, table: str) -> pd.DataFrame:
    return DuckDBStore(out / "clustering_dev.duckdb").read_table(schema, table)


@pytest.fixture(scope="module")
def out(small_clustered: ClusterRun) -> Path:
    """``cluster --workers 2`` on the small sample, run once per session (see conftest)."""
    return small_clustered.out


def test_planted_internal_and_external_structure_recovered(small_data: Path, out: Path) -> None:
    truth = pd.read_parquet(small_data / "truth" / "internal_truth.parquet")
    planted_k = json.loads((small_data / "truth" / "truth.json").read_text())["internal_k"]
    assignments = _table(out, "internal_clustering", "internal_assignments")
    models = _table(out, "internal_clustering", "internal_models")
    chosen = models[models["chosen"]].set_index("CATEGORY")["k"]
    for category, found in assignments.groupby("CATEGORY"):
        expected = truth[truth["CATEGORY"] == category].set_index("STORE_NBR")["STORE_TYPE"]
        labels = found.set_index("STORE_NBR")["CLUSTER"].reindex(expected.index)
        assert labels.notna().all(), category
        ari = adjusted_rand_score(expected, labels)
        assert ari >= 0.9, f"{category}: internal ARI {ari:.3f}"
        assert chosen[category] == planted_k[category], category

    ext_truth = pd.read_parquet(small_data / "truth" / "external_truth.parquet")
    external = _table(out, "external_clustering", "external_assignments").set_index("STORE_NBR")
    common = external.index.intersection(ext_truth["STORE_NBR"])
    expected = ext_truth.set_index("STORE_NBR").loc[common, "STORE_TYPE"]
    ari = adjusted_rand_score(expected, external.loc[common, "CLUSTER"])
    assert ari >= 0.95, f"external ARI {ari:.3f}"


def test_no_store_lost_or_duplicated(small_data: Path, out: Path) -> None:
    sales = pd.read_parquet(small_data / "internal_sales.parquet")
    final = pd.read_parquet(out / "final_store_clusters.parquet")
    assert not final.duplicated(["STORE_NBR", "CATEGORY"]).any()
    for category, group in sales.groupby("CAT_DSC"):
        expected = set(group["STORE_NBR"])
        assert set(final.loc[final["CATEGORY"] == category, "STORE_NBR"]) == expected, category
    assert set(final["CATEGORY"]) == set(sales["CAT_DSC"])
    assert final[["INTERNAL_CLUSTER", "DEMAND_CLUSTER", "REBALANCED_CLUSTER"]].notna().all().all()


def test_stores_without_external_features_follow_the_rule(small_data: Path, out: Path) -> None:
    external = pd.read_parquet(small_data / "external_sales.parquet")
    final = pd.read_parquet(out / "final_store_clusters.parquet")
    missing = set(final["STORE_NBR"]) - set(external["STORE_NBR"])
    assert missing, "the sample plants stores without external features"
    rows = final[final["STORE_NBR"].isin(missing)]
    assert rows["EXTERNAL_CLUSTER"].isna().all()
    assert rows["DEMAND_CLUSTER"].str.endswith("-NOEXT").all()
    summary = pd.read_csv(out / "merging_summary.csv")
    assert summary["STORES_WITHOUT_EXTERNAL"].sum() == len(rows)


def test_final_clusters_are_plannable_and_keep_the_need_state_types(
    small_data: Path, out: Path
) -> None:
    """Every category: 2-10 final clusters of at least 20 stores that keep the planted types."""
    params = PipelineParams()
    truth = pd.read_parquet(small_data / "truth" / "internal_truth.parquet")
    final = pd.read_parquet(out / "final_store_clusters.parquet")
    for category, group in final.groupby("CATEGORY"):
        sizes = group["REBALANCED_CLUSTER"].value_counts()
        assert 2 <= len(sizes) <= params.merging.max_final_clusters, category
        assert sizes.min() >= params.merging.min_cluster_size, category
        planted = truth[truth["CATEGORY"] == category].set_index("STORE_NBR")["STORE_TYPE"]
        found = group.set_index("STORE_NBR")["REBALANCED_CLUSTER"].reindex(planted.index)
        assert homogeneity_score(planted, found) >= 0.9, category


def test_shuffled_inputs_give_the_same_final_table(
    small_data: Path, out: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ["internal_sales.parquet", "external_sales.parquet"]:
        frame = pd.read_parquet(small_data / name)
        frame.sample(frac=1.0, random_state=11).to_parquet(raw / name, index=False)
    frame = pd.read_csv(small_data / "need_state.csv")
    frame.sample(frac=1.0, random_state=11).to_csv(raw / "need_state.csv", index=False)
    # One worker instead of two: the answer must not depend on how categories are spread.
    again = _cluster(raw, tmp_path / "out", {"workers": 1})
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "final_store_clusters.parquet"),
        pd.read_parquet(again / "final_store_clusters.parquet"),
    )


def test_cluster_command_and_a_recorded_run_give_the_same_final_table(
    out: Path, small_recorded: RecordedRun
) -> None:
    """One execution path: `cluster` (no run history, two workers) and `run full_pipeline_job`
    (recorded in the instance, one worker) materialize the same assets and agree row for row."""
    home = small_recorded.root / "dagster_home"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.job_name == "full_pipeline_job"
        assert run.status == dg.DagsterRunStatus.SUCCESS
    recorded = pd.read_parquet(
        small_recorded.root / "outputs" / "dev" / "final_store_clusters.parquet"
    )
    pd.testing.assert_frame_equal(recorded, pd.read_parquet(out / "final_store_clusters.parquet"))
