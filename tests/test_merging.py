"""Merging and rebalancing on hand-built examples with known answers."""

import numpy as np
import pandas as pd
import pytest

from clustering.core.merging import (
    FINAL_COLUMNS,
    demand_labels,
    merge_category,
    rebalance_small_clusters,
)


def _index(stores: list[int]) -> pd.Index:
    return pd.Index(stores, name="STORE_NBR")


def test_small_cluster_moves_to_the_known_nearest_large_centroid() -> None:
    # Large cluster A around (0, 0), large cluster B around (10, 0); small cluster C of two
    # stores at (8, 1) is nearer to B.
    points = [(0.0, 0.0)] * 5 + [(10.0, 0.0)] * 5 + [(8.0, 1.0)] * 2
    stores = _index([101, 102, 103, 104, 105, 201, 202, 203, 204, 205, 301, 302])
    space = pd.DataFrame(points, index=stores, columns=["x", "y"])
    labels = pd.Series(["A"] * 5 + ["B"] * 5 + ["C"] * 2, index=stores)
    result = rebalance_small_clusters(space, labels, min_cluster_size=3)
    assert result.labels.loc[[301, 302]].tolist() == ["B", "B"]
    assert result.reassigned.loc[[301, 302]].all()
    assert result.distance.loc[301] == pytest.approx(np.hypot(2.0, 1.0))
    # large clusters untouched
    assert (result.labels.loc[101:205] == labels.loc[101:205]).all()
    assert not result.reassigned.loc[101:205].any()
    assert result.small_clusters == ["C"]


def test_no_large_cluster_keeps_labels_and_says_so() -> None:
    stores = _index([1, 2, 3])
    space = pd.DataFrame({"x": [0.0, 1.0, 2.0]}, index=stores)
    labels = pd.Series(["A", "B", "C"], index=stores)
    result = rebalance_small_clusters(space, labels, min_cluster_size=5)
    assert result.labels.tolist() == ["A", "B", "C"]
    assert not result.reassigned.any()
    assert "no demand cluster reaches 5 stores" in result.note


def test_rebalancing_keys_by_store_not_position() -> None:
    points = [(0.0, 0.0)] * 4 + [(10.0, 0.0)] * 4 + [(9.0, 0.0)]
    stores = _index([11, 12, 13, 14, 21, 22, 23, 24, 99])
    space = pd.DataFrame(points, index=stores, columns=["x", "y"])
    labels = pd.Series(["A"] * 4 + ["B"] * 4 + ["C"], index=stores)
    shuffled = labels.sample(frac=1.0, random_state=3)  # different order, same keys
    result = rebalance_small_clusters(space, shuffled, min_cluster_size=2)
    assert result.labels.loc[99] == "B"


def test_demand_label_is_external_times_internal() -> None:
    internal = pd.Series([1, 2, 1], index=_index([5, 6, 7]))
    external = pd.Series([3, 3], index=_index([6, 5]))  # different order, store 7 missing
    labels = demand_labels(internal, external)
    assert labels.to_dict() == {5: "E3-I1", 6: "E3-I2", 7: "NOEXT-I1"}


def test_merge_category_final_rows() -> None:
    stores = _index(list(range(100, 130)))
    rng = np.random.default_rng(0)
    internal_labels = pd.Series([1] * 15 + [2] * 15, index=stores)
    internal_matrix = pd.DataFrame(
        np.r_[rng.normal(0, 0.1, (15, 2)), rng.normal(5, 0.1, (15, 2))], index=stores
    )
    ext_stores = _index(list(range(100, 128)))  # stores 128 and 129 lack external features
    external_labels = pd.Series([1] * 27 + [2], index=ext_stores)
    external_matrix = pd.DataFrame(
        np.r_[rng.normal(0, 0.1, (27, 2)), [[9.0, 9.0]]], index=ext_stores
    )
    frame, summary = merge_category(
        "CANDY/SNACKS", internal_labels, external_labels, internal_matrix, external_matrix, 5
    )
    assert list(frame.columns) == FINAL_COLUMNS
    assert sorted(frame["STORE_NBR"]) == list(range(100, 130))
    row = frame.set_index("STORE_NBR")
    assert pd.isna(row.loc[128, "EXTERNAL_CLUSTER"])
    assert row.loc[128, "DEMAND_CLUSTER"] == "NOEXT-I2"
    # the lone E2 store and the two stores without external data are in small demand clusters
    assert row.loc[127, "DEMAND_CLUSTER"] == "E2-I2"
    assert row.loc[127, "REBALANCED_CLUSTER"] == "E1-I2"
    assert row.loc[128, "REBALANCED_CLUSTER"] == "E1-I2"  # nearest on internal features
    assert summary.stores_without_external == 2
    assert summary.reassigned_stores == 3
    assert (frame["DISTANCE"] >= 0).all() and np.isfinite(frame["DISTANCE"]).all()
    untouched = row[~row["REASSIGNED"]]
    assert (untouched["DEMAND_CLUSTER"] == untouched["REBALANCED_CLUSTER"]).all()
