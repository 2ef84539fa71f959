"""Feature engineering: what a user would notice in the clustering input."""

import numpy as np
import pandas as pd
import pytest

from clustering.core.features import engineer_features
from clustering.core.params import FeatureParams


def _stores(n: int) -> pd.Index:
    return pd.Index(np.arange(1000, 1000 + 7 * n, 7), name="STORE_NBR")


def test_every_store_kept_in_order_with_missing_values_imputed() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 3)), index=_stores(50), columns=["A", "B", "C"])
    frame.iloc[[3, 7], 0] = np.nan
    result = engineer_features(frame, FeatureParams())
    assert list(result.matrix.index) == list(frame.index)
    assert not result.matrix.isna().any().any()
    assert result.report.imputed_cells == 2
    assert result.original.loc[frame.index[3], "A"] == pytest.approx(frame["A"].median())


def test_near_constant_and_correlated_features_dropped_with_reason() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=100)
    frame = pd.DataFrame(
        {
            "A": a,
            "A_COPY": a * 2 + 0.001 * rng.normal(size=100),
            "CONST": np.r_[np.zeros(99), 1.0],
            "B": rng.normal(size=100),
        },
        index=_stores(100),
    )
    result = engineer_features(frame, FeatureParams())
    assert result.report.kept_features == ["A", "B"]
    assert result.report.dropped["CONST"] == "near-constant"
    assert result.report.dropped["A_COPY"].startswith("|r| = 1.00 with A")


def test_near_constant_is_the_share_of_the_most_common_value() -> None:
    """A column is near-constant when one value covers at least near_constant_share of the
    stores (0.98 by default): 98 of 100 is, 97 of 100 is not, a constant column always is."""
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(
        {
            "AT_98": np.r_[np.full(98, 2.5), 1.0, 3.0],
            "AT_97": np.r_[np.full(97, 2.5), 1.0, 3.0, 4.0],
            "CONSTANT": np.full(100, 0.1),
            "B": rng.normal(size=100),
            "C": rng.normal(size=100),
        },
        index=_stores(100),
    )
    result = engineer_features(frame, FeatureParams())
    assert sorted(c for c, why in result.report.dropped.items() if why == "near-constant") == [
        "AT_98",
        "CONSTANT",
    ]
    assert "AT_97" in result.report.kept_features


def test_outliers_flagged_and_clipped_but_never_removed() -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.normal(size=(200, 2)), index=_stores(200), columns=["A", "B"])
    frame.iloc[5, 0] = 500.0
    result = engineer_features(frame, FeatureParams(outlier_z=4.0, outlier_action="clip"))
    store = frame.index[5]
    assert bool(result.outliers.loc[store])
    assert result.report.outlier_stores == [int(store)]
    assert result.matrix.loc[store, "A"] == pytest.approx(4.0)
    assert len(result.matrix) == 200

    flagged = engineer_features(frame, FeatureParams(outlier_action="flag"))
    assert flagged.matrix.loc[store, "A"] > 4.0


def test_pca_only_above_the_feature_count_and_capped() -> None:
    rng = np.random.default_rng(3)
    latent = rng.normal(size=(300, 3))
    wide = pd.DataFrame(
        latent @ rng.normal(size=(3, 40)) + 0.5 * rng.normal(size=(300, 40)),
        index=_stores(300),
        columns=[f"F{i}" for i in range(40)],
    )
    params = FeatureParams(correlation_threshold=1.0, pca_min_features=30, pca_max_components=5)
    result = engineer_features(wide, params)
    assert 1 <= result.report.pca_components <= 5
    assert list(result.matrix.columns) == [
        f"PC{i + 1}" for i in range(result.report.pca_components)
    ]

    narrow = engineer_features(wide.iloc[:, :10], params)
    assert narrow.report.pca_components == 0
    assert narrow.matrix.shape[1] == 10


def test_robust_scaler_selectable() -> None:
    frame = pd.DataFrame({"A": [1.0, 2.0, 3.0, 4.0, 100.0]}, index=_stores(5))
    result = engineer_features(frame, FeatureParams(scaler="robust", outlier_action="flag"))
    assert result.matrix["A"].median() == pytest.approx(0.0)


def test_duplicate_store_keys_rejected() -> None:
    frame = pd.DataFrame({"A": [1.0, 2.0]}, index=pd.Index([5, 5], name="STORE_NBR"))
    with pytest.raises(ValueError, match="duplicate STORE_NBR"):
        engineer_features(frame, FeatureParams())
