"""The fitted feature transformation, stored as data, puts stores where feature engineering did."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clustering.core.features import engineer_features
from clustering.core.params import FeatureParams
from clustering.core.transform import FittedTransform, apply_transform


def _table(n: int = 120, columns: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        rng.gamma(2.0, 5.0, size=(n, columns)),
        index=pd.Index(np.arange(100, 100 + 3 * n, 3), name="STORE_NBR"),
        columns=[f"F{i}" for i in range(columns)],
    )
    frame.iloc[5, 1] = np.nan  # imputed
    frame.iloc[7, 2] = 500.0  # an outlier, clipped
    frame["EMPTY"] = np.nan  # dropped: all missing
    return frame


@pytest.mark.parametrize(
    "params",
    [
        FeatureParams(),
        FeatureParams(transform="sqrt", scaler="none"),
        FeatureParams(scaler="robust", outlier_action="flag"),
        FeatureParams(pca_min_features=2, pca_variance=0.8),
    ],
    ids=["standard", "sqrt-none", "robust-flag", "pca"],
)
def test_replaying_the_stored_transform_gives_the_training_matrix(params: FeatureParams) -> None:
    table = _table()
    features = engineer_features(table, params)
    assert features.fitted is not None
    stored = json.loads(json.dumps(features.fitted.as_dict()))  # through JSON, as stored
    replayed = apply_transform(table, FittedTransform.from_dict(stored))
    pd.testing.assert_frame_equal(replayed, features.matrix, check_exact=False, atol=1e-9)


def test_new_stores_with_missing_and_extra_columns_are_placed() -> None:
    table = _table()
    features = engineer_features(table, FeatureParams())
    assert features.fitted is not None
    new = table.iloc[:2].drop(columns=["F0"]).assign(UNSEEN=1.0)
    placed = apply_transform(new, features.fitted)
    assert list(placed.columns) == list(features.matrix.columns)
    assert not placed.isna().any().any()
    # F0 missing: the training median, i.e. the same as a store whose F0 was the median.
    median_store = table.iloc[:2].assign(F0=table["F0"].median())
    pd.testing.assert_frame_equal(placed, apply_transform(median_store, features.fitted))
