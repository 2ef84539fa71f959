"""The whole pipeline on generated data: planted structure recovered, no store lost, keyed rows."""

from __future__ import annotations

import json
from pathlib import Path

import ibis
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score, homogeneity_score

from clustering.core.params import PipelineParams
from clustering.core.pipeline import PipelineResult, run_pipeline
from clustering.io.readers import (
    connect,
    read_external_sources,
    read_internal_sales,
    read_need_states,
)

pytestmark = pytest.mark.slow


def _run(
    folder: Path, params: PipelineParams | None = None, shuffle_seed: int | None = None
) -> PipelineResult:
    con = connect()
    sales = read_internal_sales(con, folder / "internal_sales.parquet")
    need_states = read_need_states(con, folder / "need_state.csv")
    sources = read_external_sources(con, [folder / "external_sales.parquet"])
    if shuffle_seed is not None:
        sales = ibis.memtable(sales.execute().sample(frac=1.0, random_state=shuffle_seed))
        need_states = ibis.memtable(
            need_states.execute().sample(frac=1.0, random_state=shuffle_seed)
        )
        sources = [
            (name, frame.sample(frac=1.0, random_state=shuffle_seed)) for name, frame in sources
        ]
    return run_pipeline(sales, need_states, sources, params or PipelineParams(workers=2))


@pytest.fixture(scope="module")
def result(small_data: Path) -> PipelineResult:
    return _run(small_data)


def test_planted_internal_and_external_structure_recovered(
    small_data: Path, result: PipelineResult
) -> None:
    truth = pd.read_parquet(small_data / "truth" / "internal_truth.parquet")
    planted_k = json.loads((small_data / "truth" / "truth.json").read_text())
    matches = 0
    for category, clustered in result.internal.items():
        expected = truth[truth["CATEGORY"] == category].set_index("STORE_NBR")["STORE_TYPE"]
        found = clustered.labels.reindex(expected.index)
        assert found.notna().all(), category
        ari = adjusted_rand_score(expected, found)
        assert ari >= 0.9, f"{category}: internal ARI {ari:.3f}"
        matches += int(clustered.result.k == planted_k["internal_k"][category])
    assert matches >= 0.8 * len(result.internal)

    ext_truth = pd.read_parquet(small_data / "truth" / "external_truth.parquet").set_index(
        "STORE_NBR"
    )
    assert result.external is not None
    labels = result.external.labels
    common = labels.index.intersection(ext_truth.index)
    ari = adjusted_rand_score(ext_truth.loc[common, "STORE_TYPE"], labels.loc[common])
    assert ari >= 0.95, f"external ARI {ari:.3f}"


def test_no_store_lost_or_duplicated(small_data: Path, result: PipelineResult) -> None:
    sales = pd.read_parquet(small_data / "internal_sales.parquet")
    final = result.final
    assert not final.duplicated(["STORE_NBR", "CATEGORY"]).any()
    for category, group in sales.groupby("CAT_DSC"):
        expected = set(group["STORE_NBR"])
        assert set(final.loc[final["CATEGORY"] == category, "STORE_NBR"]) == expected, category
    assert set(final["CATEGORY"]) == set(sales["CAT_DSC"])
    assert final[["INTERNAL_CLUSTER", "DEMAND_CLUSTER", "REBALANCED_CLUSTER"]].notna().all().all()


def test_stores_without_external_features_follow_the_rule(
    small_data: Path, result: PipelineResult
) -> None:
    external = pd.read_parquet(small_data / "external_sales.parquet")
    missing = set(result.final["STORE_NBR"]) - set(external["STORE_NBR"])
    assert missing, "the sample plants stores without external features"
    rows = result.final[result.final["STORE_NBR"].isin(missing)]
    assert rows["EXTERNAL_CLUSTER"].isna().all()
    assert rows["DEMAND_CLUSTER"].str.endswith("-NOEXT").all()
    assert sum(m.stores_without_external for m in result.merges) == len(rows)


def test_final_clusters_are_plannable_and_keep_the_need_state_types(
    small_data: Path, result: PipelineResult
) -> None:
    """Every category: 2-10 final clusters of at least 20 stores that keep the planted types."""
    params = PipelineParams()
    truth = pd.read_parquet(small_data / "truth" / "internal_truth.parquet")
    for category, group in result.final.groupby("CATEGORY"):
        sizes = group["REBALANCED_CLUSTER"].value_counts()
        assert 2 <= len(sizes) <= params.merging.max_final_clusters, category
        assert sizes.min() >= params.merging.min_cluster_size, category
        planted = truth[truth["CATEGORY"] == category].set_index("STORE_NBR")["STORE_TYPE"]
        final = group.set_index("STORE_NBR")["REBALANCED_CLUSTER"].reindex(planted.index)
        assert homogeneity_score(planted, final) >= 0.9, category
    for clustered in result.internal.values():
        assert clustered.labels.value_counts().min() >= params.internal_clustering.min_cluster_size


def test_shuffled_inputs_give_identical_assignments(
    small_data: Path, result: PipelineResult
) -> None:
    shuffled = _run(small_data, shuffle_seed=11)
    pd.testing.assert_frame_equal(
        result.final.sort_values(["CATEGORY", "STORE_NBR"]).reset_index(drop=True),
        shuffled.final.sort_values(["CATEGORY", "STORE_NBR"]).reset_index(drop=True),
    )


def test_same_seed_identical_final_table(small_data: Path, result: PipelineResult) -> None:
    again = _run(small_data, params=PipelineParams(workers=1))
    pd.testing.assert_frame_equal(result.final, again.final)


def test_shares_sum_to_100_per_store(result: PipelineResult) -> None:
    for category, matrix in result.share_matrices.items():
        sums = matrix.sum(axis=1)
        assert ((sums - 100.0).abs() < 1e-6).all(), category
