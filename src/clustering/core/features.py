"""Feature engineering: from a store × feature table to the matrix the clustering sees.

Steps, in order: median imputation, optional square-root transform, drop near-constant
features, drop one of each highly correlated pair, scale (standard, robust or none), flag (and
optionally clip) outliers, optional PCA.
Rows are keyed by ``STORE_NBR`` throughout and no row is ever removed: every store gets a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from clustering.core.params import FeatureParams
from clustering.core.transform import FittedTransform, fitted_transform


@dataclass(frozen=True)
class FeatureReport:
    """What feature engineering did, in words a category manager's analyst can check."""

    input_features: list[str]
    kept_features: list[str]
    dropped: dict[str, str] = field(default_factory=dict)
    imputed_cells: int = 0
    pca_components: int = 0
    pca_explained_variance: float = 0.0
    outlier_stores: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """Plain, JSON-safe form for metadata and summaries."""
        return {
            "input_features": list(self.input_features),
            "kept_features": list(self.kept_features),
            "dropped": dict(self.dropped),
            "imputed_cells": self.imputed_cells,
            "pca_components": self.pca_components,
            "pca_explained_variance": self.pca_explained_variance,
            "outlier_stores": list(self.outlier_stores),
        }


@dataclass(frozen=True)
class FeatureMatrix:
    """The clustering input for one feature set.

    ``matrix`` is what the algorithm sees (scaled, possibly PCA components), ``original`` the
    imputed features in their original units (for profiles), both indexed by ``STORE_NBR``;
    ``fitted`` replays the same steps on new stores (see :mod:`clustering.core.transform`).
    """

    matrix: pd.DataFrame
    original: pd.DataFrame
    outliers: pd.Series
    report: FeatureReport
    fitted: FittedTransform | None = None


def _near_constant(frame: pd.DataFrame, share: float) -> list[str]:
    """Columns (no missing values) that are constant or whose most common value covers at
    least ``share`` of the stores. Counted by sorting each column (pandas' hashing
    ``value_counts`` took ~3 % of a category's clustering)."""
    dropped = []
    for column in frame.columns:
        values = frame[column].to_numpy(dtype=float)
        if len(values) == 0:
            continue
        _, counts = np.unique(values, return_counts=True)
        if len(counts) == 1 or counts.max() / len(values) >= share:
            dropped.append(str(column))
    return dropped


def _correlated(frame: pd.DataFrame, threshold: float) -> dict[str, str]:
    """One of each pair with |r| > threshold; the later column in order goes, so it is stable."""
    if frame.shape[1] < 2:
        return {}
    corr = np.abs(np.corrcoef(frame.to_numpy(dtype=float), rowvar=False))
    columns = [str(c) for c in frame.columns]
    dropped: dict[str, str] = {}
    for j in range(len(columns)):
        if columns[j] in dropped:
            continue
        for i in range(j):
            if columns[i] not in dropped and corr[i, j] > threshold:
                dropped[columns[j]] = f"|r| = {corr[i, j]:.2f} with {columns[i]}"
                break
    return dropped


def engineer_features(features: pd.DataFrame, params: FeatureParams) -> FeatureMatrix:
    """Turn a numeric store × feature table into the matrix to cluster.

    ``features`` is indexed by ``STORE_NBR`` with numeric columns (NaN allowed). The result has
    exactly the same stores in the same order.
    """
    # Imported here, not at module level: see clustering.core.clustering.
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import RobustScaler, StandardScaler

    if features.index.has_duplicates:
        duplicated = features.index[features.index.duplicated()].unique().tolist()[:3]
        raise ValueError(f"feature table has duplicate STORE_NBR values, first: {duplicated}")
    frame = features.astype(float)
    input_features = [str(c) for c in frame.columns]
    dropped: dict[str, str] = {}

    all_missing = [str(c) for c in frame.columns if frame[c].isna().all()]
    dropped.update({c: "all values missing" for c in all_missing})
    frame = frame.drop(columns=all_missing)

    imputed_cells = int(frame.isna().sum().sum())
    fill_values = frame.median()
    frame = frame.fillna(fill_values)
    original = frame.copy()
    if params.transform == "sqrt":
        frame = frame.clip(lower=0.0).pow(0.5)

    near_constant = _near_constant(frame, params.near_constant_share)
    dropped.update({c: "near-constant" for c in near_constant})
    frame = frame.drop(columns=near_constant)

    correlated = _correlated(frame, params.correlation_threshold)
    dropped.update(correlated)
    frame = frame.drop(columns=list(correlated))

    if frame.shape[1] == 0:
        # Nothing varies: every store looks alike. One constant column keeps shapes valid and
        # the clustering step then ends in a single cluster with a stated reason.
        frame = pd.DataFrame({"CONSTANT": 0.0}, index=frame.index)
    kept = [str(c) for c in frame.columns]

    raw = frame.to_numpy(dtype=float)
    centre = raw.mean(axis=0)
    spread = raw.std(axis=0)
    spread[spread == 0] = 1.0
    if params.scaler == "none":
        values = raw - centre
        shift, divide = centre, np.ones_like(centre)
    else:
        scaler = StandardScaler() if params.scaler == "standard" else RobustScaler()
        values = np.nan_to_num(scaler.fit_transform(raw))
        shift = scaler.mean_ if params.scaler == "standard" else scaler.center_
        divide = scaler.scale_
    columns = kept

    # Outliers are judged on standardised values whatever the scaling, and clipped to the same
    # limit expressed in the matrix's own units.
    z = (raw - centre) / spread
    outlier_mask = (np.abs(z) > params.outlier_z).any(axis=1)
    clip = None
    if params.outlier_action == "clip":
        limit = params.outlier_z * (spread if params.scaler == "none" else 1.0)
        values = np.clip(values, -limit, limit)
        clip = np.broadcast_to(limit, centre.shape)

    pca_components = 0
    explained = 0.0
    pca_mean = rotation = None
    if len(kept) > params.pca_min_features and len(frame) > 2:
        full = PCA(svd_solver="full").fit(values)
        cumulative = np.cumsum(full.explained_variance_ratio_)
        n_components = int(np.searchsorted(cumulative, params.pca_variance) + 1)
        n_components = max(1, min(n_components, params.pca_max_components, len(cumulative)))
        values = full.transform(values)[:, :n_components]
        pca_mean, rotation = full.mean_, full.components_[:n_components]
        pca_components = n_components
        explained = float(cumulative[n_components - 1])
        columns = [f"PC{i + 1}" for i in range(n_components)]

    matrix = pd.DataFrame(values, index=frame.index.copy(), columns=columns)
    outliers = pd.Series(outlier_mask, index=frame.index.copy(), name="OUTLIER")
    report = FeatureReport(
        input_features=input_features,
        kept_features=kept,
        dropped=dropped,
        imputed_cells=imputed_cells,
        pca_components=pca_components,
        pca_explained_variance=explained,
        outlier_stores=[int(s) for s in frame.index[outlier_mask]],
    )
    fitted = fitted_transform(
        input_features=input_features,
        fill_values=fill_values,
        transform=params.transform,
        kept_features=kept,
        centre=shift,
        scale=divide,
        clip=clip,
        pca_mean=pca_mean,
        pca_components=rotation,
        columns=[str(c) for c in columns],
    )
    return FeatureMatrix(
        matrix=matrix, original=original, outliers=outliers, report=report, fitted=fitted
    )
