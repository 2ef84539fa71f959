"""Placing stores with a run's stored models: training stores land in their own clusters, stores
without sales in a category get an external-only placement, a store with nothing is listed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clustering.core.engine import ClusteredSet, cluster_feature_table
from clustering.core.external_preprocessing import combine_external_sources
from clustering.core.merging import balanced_space, merge_categories
from clustering.core.params import MergingParams, PipelineParams
from clustering.core.placement import (
    NOT_PLACED,
    PLACED_BOTH,
    PLACED_EXTERNAL_ONLY,
    ClusterModel,
    RunModels,
    cluster_model,
    final_model,
    place_stores,
)
from clustering.core.tables import EXTERNAL_SET
from clustering.sample.generator import (
    category_shares,
    external_features,
    plan_sample_data,
    resolve_preset,
)

Trained = tuple[dict[str, pd.DataFrame], pd.DataFrame, dict[str, ClusteredSet], pd.DataFrame]


@pytest.fixture(scope="module")
def trained() -> Trained:
    """Two categories of the small sample clustered and merged with the default parameters."""
    plan = plan_sample_data(resolve_preset("small", None, 2), seed=3)
    params = PipelineParams()
    shares = {c.name: category_shares(plan, c) for c in plan.categories}
    external = combine_external_sources(
        [("external", external_features(plan))], params.external
    ).features
    clustered = {
        name: cluster_feature_table(
            name, table, params.internal_features, params.internal_clustering
        )
        for name, table in shares.items()
    }
    clustered[EXTERNAL_SET] = cluster_feature_table(
        EXTERNAL_SET, external, params.external_features, params.external_clustering
    )
    final, _ = merge_categories(
        {n: clustered[n].labels for n in shares},
        {n: clustered[n].features.matrix for n in shares},
        clustered[EXTERNAL_SET].labels,
        clustered[EXTERNAL_SET].features.matrix,
        params.merging,
    )
    return shares, external, clustered, final


def _models(clustered: dict[str, ClusteredSet], final: pd.DataFrame, strategy: str) -> RunModels:
    external = clustered[EXTERNAL_SET]
    categories = sorted(final["CATEGORY"].unique())
    stored = {  # through JSON, as a run stores them
        name: json.loads(json.dumps(cluster_model(item).as_dict()))
        for name, item in clustered.items()
    }
    finals = {
        c: json.loads(
            json.dumps(
                final_model(
                    final[final["CATEGORY"] == c],
                    clustered[c].features.matrix,
                    external.features.matrix,
                    strategy,
                )
            )
        )
        for c in categories
    }
    return RunModels(
        external=ClusterModel.from_dict(stored[EXTERNAL_SET]),
        internal={c: ClusterModel.from_dict(stored[c]) for c in categories},
        final=finals,
    )


def test_training_stores_are_placed_in_their_own_clusters(trained: Trained) -> None:
    shares, external, clustered, final = trained
    placed = place_stores(_models(clustered, final, "internal_first"), shares, external)
    merged = final.merge(placed, on=["STORE_NBR", "CATEGORY"], suffixes=("", "_PLACED"))
    assert len(merged) == len(final)
    for column in ("INTERNAL_CLUSTER", "EXTERNAL_CLUSTER", "REBALANCED_CLUSTER"):
        differ = merged[merged[column].astype(str) != merged[f"{column}_PLACED"].astype(str)]
        assert differ.empty, f"{column}: {differ[['STORE_NBR', 'CATEGORY']].head().to_dict()}"
    assert np.allclose(merged["DISTANCE"], merged["DISTANCE_PLACED"])
    # Stores of the sample without external features were placed on their need-state mix alone.
    assert (merged.loc[merged["EXTERNAL_CLUSTER"].isna(), "PLACEMENT"] == "internal_only").all()


def test_reference_rule_is_reproduced_too(trained: Trained) -> None:
    shares, external, clustered, _ = trained
    params = MergingParams(strategy="nearest_centroid", min_cluster_size=5)
    final, _ = merge_categories(
        {n: clustered[n].labels for n in shares},
        {n: clustered[n].features.matrix for n in shares},
        clustered[EXTERNAL_SET].labels,
        clustered[EXTERNAL_SET].features.matrix,
        params,
    )
    assert final["REASSIGNED"].any()  # some stores were moved: the rule must move them alike
    placed = place_stores(_models(clustered, final, "nearest_centroid"), shares, external)
    merged = final.merge(placed, on=["STORE_NBR", "CATEGORY"], suffixes=("", "_PLACED"))
    assert (merged["REBALANCED_CLUSTER"] == merged["REBALANCED_CLUSTER_PLACED"]).all()


def test_store_without_sales_is_placed_on_external_features_and_marked(trained: Trained) -> None:
    shares, external, clustered, final = trained
    models = _models(clustered, final, "internal_first")
    first, second = models.categories
    store = int(shares[first].index[0])
    new = external.loc[[store]].rename(index={store: 999_999})
    only_first = {first: shares[first].loc[[store]].rename(index={store: 999_999})}
    placed = place_stores(models, only_first, new).set_index("CATEGORY")
    assert placed.loc[first, "PLACEMENT"] == PLACED_BOTH
    own = final[(final["STORE_NBR"] == store) & (final["CATEGORY"] == first)].iloc[0]
    assert placed.loc[first, "REBALANCED_CLUSTER"] == own["REBALANCED_CLUSTER"]
    assert placed.loc[second, "PLACEMENT"] == PLACED_EXTERNAL_ONLY
    assert pd.isna(placed.loc[second, "INTERNAL_CLUSTER"])
    assert placed.loc[second, "REBALANCED_CLUSTER"] in set(final["REBALANCED_CLUSTER"])
    # It goes where most of the category's stores of the same external cluster are.
    ext = int(placed.loc[second, "EXTERNAL_CLUSTER"])
    alike = final[(final["CATEGORY"] == second) & (final["EXTERNAL_CLUSTER"] == ext)]
    assert placed.loc[second, "REBALANCED_CLUSTER"] == alike["REBALANCED_CLUSTER"].mode()[0]


def test_store_with_neither_sales_nor_features_is_listed_not_placed(trained: Trained) -> None:
    shares, external, clustered, final = trained
    models = _models(clustered, final, "internal_first")
    empty = pd.DataFrame(columns=external.columns, index=pd.Index([], name="STORE_NBR"))
    first = models.categories[0]
    table = shares[first].iloc[:1].rename(index=lambda _: 424_242)
    placed = place_stores(models, {first: table}, empty)
    others = placed[placed["CATEGORY"] != first]
    assert (others["PLACEMENT"] == NOT_PLACED).all()
    assert others["REBALANCED_CLUSTER"].isna().all()


def test_final_model_uses_the_balanced_space_of_merging(trained: Trained) -> None:
    _, _, clustered, final = trained
    category = sorted(final["CATEGORY"].unique())[0]
    internal = clustered[category].features.matrix
    external = clustered[EXTERNAL_SET].features.matrix
    model = final_model(final[final["CATEGORY"] == category], internal, external, "internal_first")
    space = balanced_space(internal, external)
    rows = final[final["CATEGORY"] == category].set_index("STORE_NBR")["REBALANCED_CLUSTER"]
    expected = space.groupby(rows.reindex(space.index).to_numpy()).mean().loc[model["clusters"]]
    assert np.allclose(
        np.asarray(model["centroids"], dtype=float), expected.to_numpy(), equal_nan=True
    )


def test_final_model_rules_follow_the_most_common_label_of_each_pair() -> None:
    """Per (internal, external) pair of the stores that stayed, the label most of them carry (the
    first by name on a tie; stores without external features form their own pair, listed last);
    per external cluster, how many of its stores went to each label."""
    stores = np.arange(1, 11)
    final = pd.DataFrame(
        {
            "STORE_NBR": stores,
            "CATEGORY": "SNACKS",
            "INTERNAL_CLUSTER": [1, 1, 1, 1, 1, 2, 2, 2, 2, 2],
            "EXTERNAL_CLUSTER": pd.array([3, 3, 3, 0, None, 0, 0, 3, 3, None], dtype="Int64"),
            "DEMAND_CLUSTER": "x",
            "REBALANCED_CLUSTER": [
                "I1-E3",
                "I1-E3",
                "I1",
                "I1",
                "I1",
                "I2",
                "I2-E0",
                "I2",
                "I2",
                "I2",
            ],
            "REASSIGNED": [False, False, False, False, False, False, False, False, False, True],
            "DISTANCE": 0.0,
        }
    )
    matrix = pd.DataFrame({"A": np.linspace(0, 1, 10)}, index=pd.Index(stores, name="STORE_NBR"))
    model = final_model(final, matrix, None, "internal_first")
    assert model["rules"] == [
        [1, 0, "I1"],
        [1, 3, "I1-E3"],
        [1, None, "I1"],
        [2, 0, "I2"],  # a tie between I2 and I2-E0: the first by name
        [2, 3, "I2"],
    ]  # store 10 moved, so (2, no external) has no rule
    assert model["external_votes"] == [
        [0, "I1", 1],
        [0, "I2", 1],
        [0, "I2-E0", 1],
        [3, "I1", 1],
        [3, "I1-E3", 2],
        [3, "I2", 2],
    ]
