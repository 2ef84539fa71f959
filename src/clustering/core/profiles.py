"""Cluster profiles in original units, so a category manager can name each cluster.

For every cluster: its size, the mean of each feature (need-state share in %, or external
feature in its own unit) against the average over all stores as an index (100 = average), the
features that set it apart most, and a short generated label such as
``"high VITAMINS-IMMUNITY, low COLD-FLU"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PROFILE_COLUMNS = ["CLUSTER", "FEATURE", "CLUSTER_MEAN", "AVERAGE", "INDEX", "Z_DIFF"]
SUMMARY_COLUMNS = ["CLUSTER", "STORES", "PCT_STORES", "LABEL", "TOP_FEATURES"]


@dataclass(frozen=True)
class ClusterProfiles:
    """``profile``: one row per cluster × feature; ``summary``: one row per cluster."""

    profile: pd.DataFrame
    summary: pd.DataFrame


def describe_clusters(
    original: pd.DataFrame,
    labels: pd.Series,
    *,
    top_n: int = 3,
    min_abs_z: float = 0.5,
) -> ClusterProfiles:
    """Profile the clusters ``labels`` (index ``STORE_NBR``) over ``original`` (same index).

    ``Z_DIFF`` is the cluster mean minus the overall mean in units of the overall standard
    deviation; features with ``|Z_DIFF| >= min_abs_z`` name the cluster, strongest first.
    """
    aligned = original.loc[labels.index].astype(float)
    average = aligned.mean()
    spread = aligned.std(ddof=0).replace(0.0, np.nan)
    means = aligned.groupby(labels.to_numpy()).mean()
    sizes = labels.value_counts().sort_index()

    rows = []
    summary_rows = []
    for cluster, cluster_means in means.iterrows():
        index = 100.0 * cluster_means / average.replace(0.0, np.nan)
        z_diff = (cluster_means - average) / spread
        for feature in aligned.columns:
            rows.append(
                {
                    "CLUSTER": int(cluster),  # type: ignore[call-overload]
                    "FEATURE": str(feature),
                    "CLUSTER_MEAN": float(cluster_means[feature]),
                    "AVERAGE": float(average[feature]),
                    "INDEX": float(index[feature]),
                    "Z_DIFF": float(z_diff[feature]),
                }
            )
        ranked = z_diff.dropna()
        ranked = ranked[ranked.abs() >= min_abs_z]
        ranked = ranked.reindex(ranked.abs().sort_values(ascending=False, kind="stable").index)
        top = ranked.head(top_n)
        label = (
            ", ".join(f"{'high' if z > 0 else 'low'} {feature}" for feature, z in top.items())
            or "close to average"
        )
        stores = int(sizes.get(cluster, 0))
        summary_rows.append(
            {
                "CLUSTER": int(cluster),  # type: ignore[call-overload]
                "STORES": stores,
                "PCT_STORES": round(100.0 * stores / max(len(labels), 1), 2),
                "LABEL": label,
                "TOP_FEATURES": ", ".join(
                    f"{feature} (index {index[feature]:.0f})" for feature in top.index
                ),
            }
        )
    profile = pd.DataFrame(rows, columns=PROFILE_COLUMNS)
    summary = pd.DataFrame(summary_rows, columns=SUMMARY_COLUMNS)
    return ClusterProfiles(profile=profile, summary=summary)
