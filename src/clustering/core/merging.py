"""From internal and external clusters to the final clusters a planner works with, per category.

Two strategies, chosen by ``MergingParams.strategy``:

``internal_first`` (default)
    The need-state mix drives the assortment, so a final cluster never mixes stores of different
    internal clusters. An internal cluster is split by external cluster only into parts that each
    keep at least ``min_cluster_size`` stores; stores of smaller parts (and stores without
    external features) join the nearest kept part of the *same* internal cluster. Above
    ``max_final_clusters`` the two closest parts of one internal cluster are joined, repeatedly.
    Labels read ``I2-E3`` (internal cluster 2, external cluster 3), ``I2-E1+E3`` for joined
    parts, and ``I2`` when the internal cluster is not split.

``nearest_centroid`` (the reference system's rule)
    Demand cluster = internal × external; stores of demand clusters below the minimum size (or
    beyond the ``max_final_clusters`` largest) move to the nearest centroid of a kept demand
    cluster. Distances run in a space where the internal and the external block each have unit
    total variance, so neither block wins by having more columns. Measured on generated retailers
    this rule lets the external block override the need-state types; it stays selectable.

Both strategies share one rule for categories too small to split: a category with fewer stores
than ``min_cluster_size`` forms one final cluster (``outcome = "too_small"``), reported by the
size check; otherwise every final cluster reaches the minimum size.

``DISTANCE`` is each store's distance to the centroid of its final cluster in the balanced space
(internal dimensions only for stores without external features). Rows are keyed by
``STORE_NBR`` at every step, never by position.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clustering.core.params import MergingParams

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

#: Outcomes recorded per category (the size check reads this field, never the note text).
OUTCOME_SPLIT = "split"
OUTCOME_UNSPLIT = "not_split"
OUTCOME_TOO_SMALL = "too_small"
OUTCOME_INTERNAL_FALLBACK = "internal_clusters"


@dataclass(frozen=True)
class MergeSummary:
    """What merging did in one category."""

    category: str
    strategy: str
    stores: int
    internal_clusters: int
    demand_clusters: int
    final_clusters: int
    smallest_final_cluster: int
    reassigned_stores: int
    stores_without_external: int
    homogeneity_internal: float
    homogeneity_external: float
    outcome: str
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        """Plain, JSON-safe form."""
        return dict(self.__dict__)


def demand_labels(internal: pd.Series, external: pd.Series) -> pd.Series:
    """``"I<int>-E<ext>"`` per store of ``internal``; ``"I<int>-NOEXT"`` without external."""
    ext = external.reindex(internal.index)
    ext_part = ext.map(lambda v: NO_EXTERNAL if pd.isna(v) else f"E{int(v)}")
    return ("I" + internal.astype(int).astype(str) + "-" + ext_part).rename("DEMAND_CLUSTER")


def balanced_space(internal: pd.DataFrame, external: pd.DataFrame) -> pd.DataFrame:
    """Internal and external clustering features side by side for the stores of ``internal``.

    Each block is centred and divided by the square root of its total variance, so both blocks
    weigh the same whatever their number of columns. External columns are NaN for stores without
    external features.
    """

    def unit_block(block: pd.DataFrame, prefix: str) -> pd.DataFrame:
        block = block.astype(float)
        centred = block - block.mean()
        total = float(np.nansum(centred.var(ddof=0).to_numpy()))
        return (centred / (np.sqrt(total) if total > 0 else 1.0)).add_prefix(prefix)

    ext = external.reindex(internal.index)
    present = ext.dropna(how="all")
    ext_block = (
        unit_block(present, "EXT:").reindex(internal.index)
        if len(present)
        else pd.DataFrame(index=internal.index)
    )
    return pd.concat([unit_block(internal, "INT:"), ext_block], axis=1)


def _masked_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Euclidean distance over the dimensions each point has; inf where a centroid lacks one."""
    valid = ~np.isnan(points)
    diff = points[:, None, :] - centroids[None, :, :]
    squared = np.where(valid[:, None, :], np.nan_to_num(diff) ** 2, 0.0)
    missing = (valid[:, None, :] & np.isnan(centroids)[None, :, :]).any(axis=2)
    distances = np.sqrt(squared.sum(axis=2))
    distances[missing] = np.inf
    return np.asarray(distances)


def _centroids(space: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    return space.groupby(labels.reindex(space.index).to_numpy()).mean()


def _distance_to_own(space: pd.DataFrame, labels: pd.Series) -> pd.Series:
    centroids = _centroids(space, labels)
    own = centroids.index.get_indexer(pd.Index(labels.reindex(space.index).to_numpy()))
    distances = _masked_distances(space.to_numpy(dtype=float), centroids.to_numpy(dtype=float))
    return pd.Series(distances[np.arange(len(space)), own], index=space.index, name="DISTANCE")


def _nearest(space: pd.DataFrame, stores: pd.Index, targets: pd.DataFrame) -> pd.Series:
    """For each store, the label (index of ``targets``) of the nearest target centroid."""
    points = space.loc[stores].to_numpy(dtype=float)
    distances = _masked_distances(points, targets.to_numpy(dtype=float))
    # A store with external features never lands on a centroid that lacks them; when every
    # target lacks some dimension, compare over the dimensions both have.
    unreachable = ~np.isfinite(distances).any(axis=1)
    if unreachable.any():
        filled = np.nan_to_num(targets.to_numpy(dtype=float))
        fallback = _masked_distances(np.nan_to_num(points[unreachable]), filled)
        distances[unreachable] = fallback
    return pd.Series(targets.index.to_numpy()[distances.argmin(axis=1)], index=stores)


def _part_label(internal: int, externals: list[int]) -> str:
    return f"I{internal}-" + "+".join(f"E{e}" for e in sorted(externals))


def _internal_first(
    space: pd.DataFrame,
    internal: pd.Series,
    external: pd.Series,
    params: MergingParams,
) -> tuple[pd.Series, str]:
    """Final labels under the internal-first rule, and a note on anything special."""
    final = pd.Series("", index=internal.index, dtype=object)
    # parts[i] maps a part label to its external clusters; filled per internal cluster.
    parts: dict[int, dict[str, list[int]]] = {}
    for cluster in sorted(internal.unique()):
        members = internal.index[internal == cluster]
        ext = external.reindex(members)
        sizes = ext.dropna().astype(int).value_counts()
        kept = sorted(int(e) for e in sizes[sizes >= params.min_cluster_size].index)
        if len(kept) < 2:
            final.loc[members] = f"I{int(cluster)}"
            continue
        labels = {e: _part_label(int(cluster), [e]) for e in kept}
        parts[int(cluster)] = {labels[e]: [e] for e in kept}
        in_kept = ext.isin(kept)
        final.loc[members[in_kept.to_numpy()]] = np.array(
            [labels[int(e)] for e in ext[in_kept]], dtype=object
        )
        movers = members[~in_kept.to_numpy()]
        if len(movers):
            kept_stores = members[in_kept.to_numpy()]
            targets = _centroids(space.loc[kept_stores], final.loc[kept_stores])
            final.loc[movers] = _nearest(space, movers, targets)

    note = ""
    total = sum(len(p) for p in parts.values()) + sum(
        1 for c in internal.unique() if int(c) not in parts
    )
    while total > params.max_final_clusters and parts:
        best: tuple[float, int, str, str] | None = None
        for cluster, cluster_parts in parts.items():
            if len(cluster_parts) < 2:
                continue
            names = sorted(cluster_parts)
            centres = _centroids(space.loc[final.index[final.isin(names)]], final)
            centres = centres.loc[names].fillna(0.0)
            values = centres.to_numpy(dtype=float)
            gaps = np.sqrt(((values[:, None, :] - values[None, :, :]) ** 2).sum(axis=2))
            np.fill_diagonal(gaps, np.inf)
            i, j = np.unravel_index(int(np.argmin(gaps)), gaps.shape)
            if best is None or gaps[i, j] < best[0]:
                best = (float(gaps[i, j]), cluster, names[i], names[j])
        if best is None:
            break
        _, cluster, first, second = best
        joined = parts[cluster].pop(first) + parts[cluster].pop(second)
        label = _part_label(cluster, joined)
        parts[cluster][label] = joined
        final[final.isin([first, second])] = label
        if len(parts[cluster]) == 1:
            # A single remaining part is the whole internal cluster again.
            only = next(iter(parts[cluster]))
            final[final == only] = f"I{cluster}"
            del parts[cluster]
        total -= 1
    if total > params.max_final_clusters:
        note = (
            f"{total} internal clusters exceed max_final_clusters = "
            f"{params.max_final_clusters}; internal clusters are never mixed"
        )
    return final, note


def _nearest_centroid(
    space: pd.DataFrame,
    internal: pd.Series,
    external: pd.Series,
    params: MergingParams,
) -> tuple[pd.Series, str]:
    """Final labels under the reference system's rule (balanced space, size and count caps)."""
    demand = demand_labels(internal, external)
    sizes = demand.value_counts()
    large = sizes[sizes >= params.min_cluster_size]
    # The largest clusters are kept first; ties by label so the choice never depends on order.
    kept = sorted(large.index, key=lambda label: (-int(large[label]), str(label)))[
        : params.max_final_clusters
    ]
    if not kept:
        note = (
            f"no demand cluster reaches {params.min_cluster_size} stores; the final clusters "
            "are the internal clusters"
        )
        return internal.map(lambda c: f"I{int(c)}").astype(object), note
    final = demand.astype(object).copy()
    movers = demand.index[~demand.isin(kept).to_numpy()]
    if len(movers):
        targets = _centroids(space, demand).loc[kept]
        final.loc[movers] = _nearest(space, movers, targets)
    return final, ""


def _homogeneity(truth: pd.Series, found: pd.Series) -> float:
    from sklearn.metrics import homogeneity_score

    both = pd.concat([truth.rename("t"), found.rename("f")], axis=1).dropna()
    if both.empty or both["t"].nunique() < 2:
        return 1.0
    return float(homogeneity_score(both["t"].astype(str), both["f"].astype(str)))


def merge_category(
    category: str,
    internal_labels: pd.Series,
    external_labels: pd.Series,
    internal_matrix: pd.DataFrame,
    external_matrix: pd.DataFrame,
    params: MergingParams,
) -> tuple[pd.DataFrame, MergeSummary]:
    """Final rows (``FINAL_COLUMNS``) for one category's stores, and what merging did.

    ``internal_labels``/``internal_matrix`` cover the category's stores (index ``STORE_NBR``);
    ``external_labels``/``external_matrix`` cover every store with external features.
    """
    stores = internal_labels.index
    internal = internal_labels.astype(int)
    external = external_labels.reindex(stores)
    space = balanced_space(internal_matrix.reindex(stores), external_matrix)
    demand = demand_labels(internal, external_labels)

    if len(stores) < params.min_cluster_size:
        only = f"I{int(internal.iloc[0])}" if internal.nunique() == 1 else "ALL"
        final = pd.Series(only, index=stores, dtype=object)
        outcome = OUTCOME_TOO_SMALL
        note = (
            f"{len(stores)} stores, fewer than min_cluster_size = {params.min_cluster_size}: "
            "the category forms one final cluster"
        )
    elif params.strategy == "internal_first":
        final, note = _internal_first(space, internal, external, params)
        split = final.str.contains("-E", regex=False).any()
        outcome = OUTCOME_SPLIT if split else OUTCOME_UNSPLIT
    else:
        final, note = _nearest_centroid(space, internal, external, params)
        outcome = OUTCOME_INTERNAL_FALLBACK if note else OUTCOME_SPLIT

    # A store is reassigned when its final cluster is not the one its own internal × external
    # pair would give: it joined another part (or another demand cluster's centroid).
    own = _own_label(final, internal, external, params.strategy)
    moved_anyone = outcome not in (OUTCOME_TOO_SMALL, OUTCOME_INTERNAL_FALLBACK)
    reassigned = (final != own) & moved_anyone
    distance = _distance_to_own(space, final)
    frame = pd.DataFrame(
        {
            "STORE_NBR": stores.to_numpy(dtype=np.int64),
            "CATEGORY": category,
            "INTERNAL_CLUSTER": internal.to_numpy(dtype=np.int64),
            "EXTERNAL_CLUSTER": external.astype("Int64").to_numpy(),
            "DEMAND_CLUSTER": demand.reindex(stores).to_numpy(dtype=object),
            "REBALANCED_CLUSTER": final.reindex(stores).to_numpy(dtype=object),
            "REASSIGNED": reassigned.reindex(stores).to_numpy(dtype=bool),
            "DISTANCE": distance.reindex(stores).to_numpy(dtype=float),
        },
        columns=FINAL_COLUMNS,
    )
    frame["EXTERNAL_CLUSTER"] = frame["EXTERNAL_CLUSTER"].astype("Int64")
    sizes = frame["REBALANCED_CLUSTER"].value_counts()
    summary = MergeSummary(
        category=category,
        strategy=params.strategy,
        stores=len(frame),
        internal_clusters=int(internal.nunique()),
        demand_clusters=int(demand.nunique()),
        final_clusters=len(sizes),
        smallest_final_cluster=int(sizes.min()) if len(sizes) else 0,
        reassigned_stores=int(frame["REASSIGNED"].sum()),
        stores_without_external=int(external.isna().sum()),
        homogeneity_internal=_homogeneity(internal, final),
        homogeneity_external=_homogeneity(external, final),
        outcome=outcome,
        note=note,
    )
    return frame.sort_values("STORE_NBR", kind="stable").reset_index(drop=True), summary


def _own_label(
    final: pd.Series, internal: pd.Series, external: pd.Series, strategy: str
) -> pd.Series:
    """The label each store would carry if it had stayed with its own internal × external pair."""
    if strategy != "internal_first":
        return demand_labels(internal, external).astype(object)
    ext = external.reindex(final.index)
    tags = ext.map(lambda v: "" if pd.isna(v) else f"E{int(v)}")
    members = [
        "-E" not in label or (tag != "" and tag in label.split("-", 1)[1].split("+"))
        for label, tag in zip(final, tags, strict=True)
    ]
    # An unsplit internal cluster moves nobody; in a split one a store stays when its external
    # cluster is one of its part's.
    return final.where(pd.Series(members, index=final.index), final + "*")


def merge_categories(
    internal_labels: Mapping[str, pd.Series],
    internal_matrices: Mapping[str, pd.DataFrame],
    external_labels: pd.Series | None,
    external_matrix: pd.DataFrame | None,
    params: MergingParams,
) -> tuple[pd.DataFrame, list[MergeSummary]]:
    """The final table (one row per store × category) and a merge summary per category.

    Labels and matrices are indexed by ``STORE_NBR``; the external ones cover every store with
    external features, or are None when there are none.
    """
    if external_labels is None or external_matrix is None:
        external_labels = pd.Series(dtype="Int64")
        external_matrix = pd.DataFrame()
    frames = []
    summaries = []
    for category in sorted(internal_labels):
        frame, summary = merge_category(
            category,
            internal_labels[category],
            external_labels,
            internal_matrices[category],
            external_matrix,
            params,
        )
        frames.append(frame)
        summaries.append(summary)
    if not frames:
        return pd.DataFrame(columns=FINAL_COLUMNS), summaries
    final = pd.concat(frames, ignore_index=True)
    final["EXTERNAL_CLUSTER"] = final["EXTERNAL_CLUSTER"].astype("Int64")
    return final, summaries
