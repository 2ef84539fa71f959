"""Merging internal and external clusters into demand clusters, and rebalancing small ones.

Per category, a store's demand cluster is its external cluster × its internal cluster, written
``"E2-I3"``. In the combined feature space (the category's internal clustering features next to
the external ones, each column standardised over the category's stores) every store of a demand
cluster smaller than ``min_cluster_size`` moves to the nearest centroid of a large demand
cluster. Large clusters are never touched. When no demand cluster is large, labels stay as they
are and the summary says so.

Stores without external features (absent from the external sources) have no external cluster:
``EXTERNAL_CLUSTER`` is null and their demand cluster is ``"NOEXT-I<internal>"``. They are
treated like any other demand cluster; when theirs is small they move to the nearest large
centroid measured on the internal features only (the dimensions they have). They are counted in
the summary as ``stores_without_external``.

Rows are keyed by ``STORE_NBR`` at every step, never by position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FINAL_COLUMNS = [
    "STORE_NBR",
    "CATEGORY",
    "INTERNAL_CLUSTER",
    "EXTERNAL_CLUSTER",
    "DEMAND_CLUSTER",
    "REBALANCED_CLUSTER",
    "REASSIGNED",
    "DISTANCE",
]
NO_EXTERNAL = "NOEXT"


@dataclass(frozen=True)
class MergeSummary:
    """What merging did in one category."""

    category: str
    stores: int
    demand_clusters: int
    small_clusters: list[str]
    rebalanced_clusters: int
    reassigned_stores: int
    stores_without_external: int
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        """Plain, JSON-safe form."""
        return {
            "category": self.category,
            "stores": self.stores,
            "demand_clusters": self.demand_clusters,
            "small_clusters": list(self.small_clusters),
            "rebalanced_clusters": self.rebalanced_clusters,
            "reassigned_stores": self.reassigned_stores,
            "stores_without_external": self.stores_without_external,
            "note": self.note,
        }


@dataclass(frozen=True)
class Rebalanced:
    """Result of :func:`rebalance_small_clusters`, indexed like its input."""

    labels: pd.Series
    reassigned: pd.Series
    distance: pd.Series
    small_clusters: list[str]
    note: str


def demand_labels(internal: pd.Series, external: pd.Series) -> pd.Series:
    """``"E<ext>-I<int>"`` per store of ``internal``; ``"NOEXT-I<int>"`` without external."""
    ext = external.reindex(internal.index)
    ext_part = ext.map(lambda v: NO_EXTERNAL if pd.isna(v) else f"E{int(v)}")
    return (ext_part + "-I" + internal.astype(int).astype(str)).rename("DEMAND_CLUSTER")


def combined_space(internal: pd.DataFrame, external: pd.DataFrame) -> pd.DataFrame:
    """Internal and external features side by side for the stores of ``internal``, standardised.

    External columns are NaN for stores without external features.
    """
    ext = external.reindex(internal.index)
    space = pd.concat([internal.add_prefix("INT:"), ext.add_prefix("EXT:")], axis=1).astype(float)
    std = space.std(ddof=0).replace(0.0, 1.0).fillna(1.0)
    return (space - space.mean()) / std


def _masked_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Euclidean distance over the dimensions each point has; inf where a centroid lacks one."""
    valid = ~np.isnan(points)
    diff = points[:, None, :] - centroids[None, :, :]
    squared = np.where(valid[:, None, :], np.nan_to_num(diff) ** 2, 0.0)
    missing = (valid[:, None, :] & np.isnan(centroids)[None, :, :]).any(axis=2)
    distances = np.sqrt(squared.sum(axis=2))
    distances[missing] = np.inf
    return np.asarray(distances)


def rebalance_small_clusters(
    space: pd.DataFrame, labels: pd.Series, min_cluster_size: int
) -> Rebalanced:
    """Move the stores of clusters below ``min_cluster_size`` to the nearest large centroid.

    ``space`` and ``labels`` share the ``STORE_NBR`` index; ``space`` may hold NaN for dimensions
    a store lacks. ``distance`` is each store's distance to the centroid of its final cluster.
    """
    labels = labels.reindex(space.index)
    sizes = labels.value_counts()
    large = sorted(str(c) for c in sizes[sizes >= min_cluster_size].index)
    small = sorted(str(c) for c in sizes[sizes < min_cluster_size].index)
    centroids = space.groupby(labels.to_numpy()).mean()
    values = space.to_numpy(dtype=float)

    own = _masked_distances(values, centroids.to_numpy(dtype=float))
    own_col = centroids.index.get_indexer(pd.Index(labels.to_numpy()))
    distance = own[np.arange(len(values)), own_col]
    final = labels.copy()
    reassigned = pd.Series(False, index=space.index, name="REASSIGNED")

    note = ""
    if not small:
        note = "no demand cluster below the minimum size"
    elif not large:
        note = f"no demand cluster reaches {min_cluster_size} stores; labels kept as they are"
    else:
        moving = labels.isin(small).to_numpy()
        large_centroids = centroids.loc[large].to_numpy(dtype=float)
        to_large = _masked_distances(values[moving], large_centroids)
        nearest = to_large.argmin(axis=1)
        # A store with external features never moves to a centroid that lacks them; if every
        # large cluster lacks them it stays where it is.
        reachable = np.isfinite(to_large[np.arange(len(nearest)), nearest])
        rows = np.flatnonzero(moving)[reachable]
        final.iloc[rows] = np.asarray(large, dtype=object)[nearest[reachable]]
        distance[rows] = to_large[np.flatnonzero(reachable), nearest[reachable]]
        reassigned.iloc[rows] = True
    return Rebalanced(
        labels=final.rename("REBALANCED_CLUSTER"),
        reassigned=reassigned,
        distance=pd.Series(distance, index=space.index, name="DISTANCE"),
        small_clusters=small,
        note=note,
    )


def merge_category(
    category: str,
    internal_labels: pd.Series,
    external_labels: pd.Series,
    internal_matrix: pd.DataFrame,
    external_matrix: pd.DataFrame,
    min_cluster_size: int,
) -> tuple[pd.DataFrame, MergeSummary]:
    """Final rows (``FINAL_COLUMNS``) for one category's stores, and what merging did.

    ``internal_labels``/``internal_matrix`` cover the category's stores; ``external_labels``/
    ``external_matrix`` cover every store with external features (any category).
    """
    stores = internal_labels.index
    demand = demand_labels(internal_labels, external_labels)
    space = combined_space(internal_matrix.reindex(stores), external_matrix)
    result = rebalance_small_clusters(space, demand, min_cluster_size)
    external = external_labels.reindex(stores).astype("Int64")
    frame = pd.DataFrame(
        {
            "STORE_NBR": stores.to_numpy(dtype=np.int64),
            "CATEGORY": category,
            "INTERNAL_CLUSTER": internal_labels.to_numpy(dtype=np.int64),
            "EXTERNAL_CLUSTER": external.to_numpy(),
            "DEMAND_CLUSTER": demand.to_numpy(dtype=object),
            "REBALANCED_CLUSTER": result.labels.reindex(stores).to_numpy(dtype=object),
            "REASSIGNED": result.reassigned.reindex(stores).to_numpy(dtype=bool),
            "DISTANCE": result.distance.reindex(stores).to_numpy(dtype=float),
        },
        columns=FINAL_COLUMNS,
    )
    frame["EXTERNAL_CLUSTER"] = frame["EXTERNAL_CLUSTER"].astype("Int64")
    summary = MergeSummary(
        category=category,
        stores=len(frame),
        demand_clusters=int(demand.nunique()),
        small_clusters=result.small_clusters,
        rebalanced_clusters=int(frame["REBALANCED_CLUSTER"].nunique()),
        reassigned_stores=int(frame["REASSIGNED"].sum()),
        stores_without_external=int(external.isna().sum()),
        note=result.note,
    )
    return frame.sort_values("STORE_NBR", kind="stable").reset_index(drop=True), summary
