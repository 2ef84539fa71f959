"""Profiles a category manager reads: index vs average, top features, generated label."""

import pandas as pd
import pytest

from clustering.core.profiles import describe_clusters


def test_index_and_label_in_original_units() -> None:
    stores = pd.Index([1, 2, 3, 4], name="STORE_NBR")
    shares = pd.DataFrame(
        {"VITAMINS-IMMUNITY": [60.0, 60.0, 20.0, 20.0], "COLD-FLU": [40.0, 40.0, 80.0, 80.0]},
        index=stores,
    )
    labels = pd.Series([1, 1, 2, 2], index=stores)
    profiles = describe_clusters(shares, labels)
    row = profiles.profile.set_index(["CLUSTER", "FEATURE"])
    assert row.loc[(1, "VITAMINS-IMMUNITY"), "CLUSTER_MEAN"] == pytest.approx(60.0)
    assert row.loc[(1, "VITAMINS-IMMUNITY"), "AVERAGE"] == pytest.approx(40.0)
    assert row.loc[(1, "VITAMINS-IMMUNITY"), "INDEX"] == pytest.approx(150.0)
    summary = profiles.summary.set_index("CLUSTER")
    assert summary.loc[1, "LABEL"] == "high VITAMINS-IMMUNITY, low COLD-FLU"
    assert summary.loc[2, "LABEL"] == "low VITAMINS-IMMUNITY, high COLD-FLU"
    assert summary.loc[1, "STORES"] == 2
    assert summary.loc[1, "PCT_STORES"] == pytest.approx(50.0)


def test_cluster_close_to_average_says_so() -> None:
    stores = pd.Index([1, 2, 3], name="STORE_NBR")
    frame = pd.DataFrame({"A": [1.0, 1.0, 1.0]}, index=stores)
    profiles = describe_clusters(frame, pd.Series([1, 1, 1], index=stores))
    assert profiles.summary["LABEL"].tolist() == ["close to average"]
