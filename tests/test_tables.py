"""Stage tables round-trip by key: what is stored in the warehouse comes back the same."""

import numpy as np
import pandas as pd
import pytest

from clustering.core.clustering import choose_k
from clustering.core.features import engineer_features
from clustering.core.params import ClusteringParams, FeatureParams
from clustering.core.tables import (
    assignment_table,
    centroid_table,
    chosen_models,
    feature_table,
    frames_from_table,
    labels_from_table,
    model_table,
    profile_table,
    wide_table,
)


def _frames() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    first = pd.DataFrame(
        rng.normal(size=(60, 3)),
        index=pd.Index(rng.choice(10_000, 60, replace=False), name="STORE_NBR"),
        columns=["ZETA", "ALPHA", "MID"],
    )
    second = pd.DataFrame(rng.normal(size=(8, 2)), index=pd.Index(range(8)), columns=["A", "B"])
    return {"CANDY/SNACKS": first, "HEALTH & WELLNESS": second}


def test_wide_table_round_trip_keeps_order_and_keys() -> None:
    frames = _frames()
    back = frames_from_table(wide_table(frames))
    assert sorted(back) == sorted(frames)
    for name, frame in frames.items():
        expected = frame.sort_index()
        assert list(back[name].columns) == list(frame.columns)
        np.testing.assert_allclose(back[name].to_numpy(), expected.to_numpy())
        assert list(back[name].index) == list(expected.index)


def test_feature_assignment_model_tables() -> None:
    frames = _frames()
    frames["CANDY/SNACKS"].iloc[0, 0] = 50.0  # an outlier
    features = {name: engineer_features(f, FeatureParams()) for name, f in frames.items()}
    table = feature_table(features)
    outlier_store = int(frames["CANDY/SNACKS"].index[0])
    flagged = table[table["OUTLIER"]]
    assert set(flagged["STORE_NBR"]) == {outlier_store}
    assert set(flagged["CATEGORY"]) == {"CANDY/SNACKS"}

    params = ClusteringParams(max_k=4, min_cluster_size=5)
    results = {name: choose_k(fm.matrix, params) for name, fm in features.items()}
    models = model_table(results)
    chosen = chosen_models(models)
    assert set(chosen.index) == set(frames)
    # 8 stores cannot form two clusters of 5: the fallback k = 1 is on the curve, chosen.
    assert chosen.loc["HEALTH & WELLNESS", "k"] == 1
    assert "cannot form two clusters" in chosen.loc["HEALTH & WELLNESS", "FALLBACK"]

    assignments = assignment_table(results)
    labels = labels_from_table(assignments.sample(frac=1.0, random_state=1))
    for name, result in results.items():
        pd.testing.assert_series_equal(labels[name], result.labels.sort_index(), check_names=False)

    centroids = centroid_table(results)
    assert set(centroids["CATEGORY"]) == set(frames)
    assert centroids.groupby("CATEGORY")["CLUSTER"].max().to_dict() == {
        name: result.k for name, result in results.items()
    }


def test_profile_table_has_size_and_label() -> None:
    stores = pd.Index([1, 2, 3, 4], name="STORE_NBR")
    shares = pd.DataFrame(
        {"A": [80.0, 80.0, 20.0, 20.0], "B": [20.0, 20.0, 80.0, 80.0]}, index=stores
    )
    labels = pd.Series([1, 1, 2, 2], index=stores)
    table = profile_table({"X": shares}, {"X": labels})
    row = table.set_index(["CLUSTER", "FEATURE"]).loc[(1, "A")]
    assert row["STORES"] == 2
    assert row["LABEL"] == "high A, low B"
    assert row["INDEX"] == pytest.approx(160.0)
