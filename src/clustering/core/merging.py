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

import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clustering.core.params import MergingParams
from clustering.core.placement import final_model_table
from clustering.core.tables import (
    MISSING_LAST,
    compact_text,
    concat_taking,
    integer_pairs,
    missing_last,
)

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
#: The final table's text columns, kept in Arrow buffers (a chain of 50,000 stores × 100
#: categories has 5 million rows: as Python strings they took over a gigabyte).
TEXT_COLUMNS = ["CATEGORY", "DEMAND_CLUSTER", "REBALANCED_CLUSTER"]


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
    ext = pd.to_numeric(external.reindex(internal.index), errors="coerce").to_numpy(dtype=float)
    pairs, pair_of_row, _ = integer_pairs(internal.to_numpy().astype(np.int64), missing_last(ext))
    texts = np.array(
        [f"I{i}-" + (NO_EXTERNAL if e == MISSING_LAST else f"E{e}") for i, e in pairs.tolist()],
        dtype=object,
    )
    return pd.Series(texts[pair_of_row], index=internal.index, name="DEMAND_CLUSTER")


def balanced_space(internal: pd.DataFrame, external: pd.DataFrame) -> pd.DataFrame:
    """Internal and external clustering features side by side for the stores of ``internal``.

    Each block is centred and divided by the square root of its total variance, so both blocks
    weigh the same whatever their number of columns. External columns are NaN for stores without
    external features (and left out when no store of ``internal`` has any).
    """
    points, has_external = _balanced_points(internal, external)
    columns = [f"INT:{c}" for c in internal.columns]
    if has_external:
        columns += [f"EXT:{c}" for c in external.columns]
    return pd.DataFrame(points, index=internal.index, columns=columns)


def _balanced_points(internal: pd.DataFrame, external: pd.DataFrame) -> tuple[np.ndarray, bool]:
    """The values of :func:`balanced_space`, and whether they include the external block (in
    numpy: the pandas version took a sixth of a category's merge)."""
    blocks = [_unit_block(internal.to_numpy(dtype=float))]
    values = external.reindex(internal.index).to_numpy(dtype=float)
    present = ~np.isnan(values).all(axis=1)
    if present.any():
        block = np.full(values.shape, np.nan)
        block[present] = _unit_block(values[present])
        blocks.append(block)
    return np.hstack(blocks), bool(present.any())


def _unit_block(values: np.ndarray) -> np.ndarray:
    """``values`` centred per column and divided by the square root of their total variance,
    missing values left out (a column with none present stays missing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: NaN, as meant
        centred: np.ndarray = values - np.nanmean(values, axis=0)
        total = float(np.nansum(np.nanvar(centred, axis=0)))
    return centred / (np.sqrt(total) if total > 0 else 1.0)


def _masked_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Euclidean distance over the dimensions each point has; inf where a centroid lacks one."""
    valid = ~np.isnan(points)
    diff = points[:, None, :] - centroids[None, :, :]
    squared = np.where(valid[:, None, :], np.nan_to_num(diff) ** 2, 0.0)
    missing = (valid[:, None, :] & np.isnan(centroids)[None, :, :]).any(axis=2)
    distances = np.sqrt(squared.sum(axis=2))
    distances[missing] = np.inf
    return np.asarray(distances)


def _centroids(points: np.ndarray, codes: np.ndarray, groups: int) -> np.ndarray:
    """Mean of ``points`` per group ``codes`` (0..groups-1), ignoring NaN (NaN when none)."""
    present = ~np.isnan(points)
    values = np.where(present, points, 0.0)
    sums = np.zeros((groups, points.shape[1]))
    counts = np.zeros((groups, points.shape[1]))
    for column in range(points.shape[1]):  # bincount: far faster than np.add.at
        sums[:, column] = np.bincount(codes, weights=values[:, column], minlength=groups)
        counts[:, column] = np.bincount(codes, weights=present[:, column], minlength=groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _distance_to_own(points: np.ndarray, final: np.ndarray) -> np.ndarray:
    """Each store's distance to the centroid of its own final cluster (masked as above)."""
    codes, names = pd.factorize(final)
    centres = _centroids(points, np.asarray(codes), len(names))[codes]
    valid = ~np.isnan(points)
    squared = np.where(valid, np.nan_to_num(points - centres) ** 2, 0.0).sum(axis=1)
    distance = np.sqrt(squared)
    distance[(valid & np.isnan(centres)).any(axis=1)] = np.inf
    return np.asarray(distance)


def _nearest(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each point, the row of the nearest target centroid."""
    distances = _masked_distances(points, targets)
    # A store with external features never lands on a centroid that lacks them; when every
    # target lacks some dimension, compare over the dimensions both have.
    unreachable = ~np.isfinite(distances).any(axis=1)
    if unreachable.any():
        fallback = _masked_distances(np.nan_to_num(points[unreachable]), np.nan_to_num(targets))
        distances[unreachable] = fallback
    return np.asarray(distances.argmin(axis=1))


def _part_label(internal: int, externals: list[int]) -> str:
    return f"I{internal}-" + "+".join(f"E{e}" for e in sorted(externals))


def _internal_first(
    points: np.ndarray, internal: np.ndarray, external: np.ndarray, params: MergingParams
) -> tuple[np.ndarray, np.ndarray, str]:
    """Final labels under the internal-first rule, who moved, and a note on anything special.

    ``internal`` holds each store's internal cluster, ``external`` its external cluster (NaN
    without external features), ``points`` its row of the balanced space.
    """
    # Stores carry the number of their label in ``texts`` while the rule runs; the text of
    # each store is looked up once at the end (comparing 10,000 texts at every join of two
    # parts took a quarter of a category's merge).
    texts: list[str] = []
    final = np.empty(len(internal), dtype=np.int64)
    moved = np.zeros(len(internal), dtype=bool)

    def numbered(text: str) -> int:
        texts.append(text)
        return len(texts) - 1

    # parts[i] maps a part label to its external clusters; filled per internal cluster.
    parts: dict[int, dict[str, list[int]]] = {}
    number: dict[str, int] = {}  # the number of each part label
    for cluster in np.unique(internal):
        members = np.flatnonzero(internal == cluster)
        ext = external[members]
        known = ~np.isnan(ext)
        values, counts = np.unique(ext[known].astype(np.int64), return_counts=True)
        kept = [int(e) for e, n in zip(values, counts, strict=True) if n >= params.min_cluster_size]
        if len(kept) < 2:
            final[members] = numbered(f"I{int(cluster)}")
            continue
        labels = [_part_label(int(cluster), [e]) for e in kept]
        parts[int(cluster)] = {label: [e] for label, e in zip(labels, kept, strict=True)}
        codes = np.array([numbered(label) for label in labels])
        number.update(zip(labels, codes.tolist(), strict=True))
        in_kept = known & np.isin(ext, kept)
        part_of = np.searchsorted(np.array(kept), ext[in_kept].astype(np.int64))
        final[members[in_kept]] = codes[part_of]
        movers = members[~in_kept]
        if len(movers):
            centres = _centroids(points[members[in_kept]], part_of, len(kept))
            final[movers] = codes[_nearest(points[movers], centres)]
            moved[movers] = True

    total = sum(len(p) for p in parts.values()) + sum(
        1 for c in np.unique(internal) if int(c) not in parts
    )
    # The closest pair of parts per internal cluster; recomputed only where a join happened.
    closest: dict[int, tuple[float, str, str]] = {}
    while total > params.max_final_clusters and parts:
        for cluster, cluster_parts in parts.items():
            if cluster in closest or len(cluster_parts) < 2:
                continue
            names = sorted(cluster_parts)
            # Each store's position in ``names`` (-1: another part).
            position = np.full(len(texts), -1)
            position[[number[name] for name in names]] = np.arange(len(names))
            of_store = position[final]
            rows = np.flatnonzero(of_store >= 0)
            values = np.nan_to_num(_centroids(points[rows], of_store[rows], len(names)))
            gaps = np.sqrt(((values[:, None, :] - values[None, :, :]) ** 2).sum(axis=2))
            np.fill_diagonal(gaps, np.inf)
            i, j = np.unravel_index(int(np.argmin(gaps)), gaps.shape)
            closest[cluster] = (float(gaps[i, j]), names[i], names[j])
        if not closest:
            break
        cluster = min(closest, key=lambda c: (closest[c][0], c))
        _, first, second = closest.pop(cluster)
        joined = parts[cluster].pop(first) + parts[cluster].pop(second)
        label = _part_label(cluster, joined)
        parts[cluster][label] = joined
        number[label] = numbered(label)
        final[np.isin(final, [number[first], number[second]])] = number[label]
        if len(parts[cluster]) == 1:
            # A single remaining part is the whole internal cluster again.
            only = next(iter(parts[cluster]))
            final[final == number[only]] = numbered(f"I{cluster}")
            del parts[cluster]
        total -= 1
    note = ""
    if total > params.max_final_clusters:
        note = (
            f"{total} internal clusters exceed max_final_clusters = "
            f"{params.max_final_clusters}; internal clusters are never mixed"
        )
    return np.array(texts, dtype=object)[final], moved, note


def _nearest_centroid(
    points: np.ndarray, internal: np.ndarray, demand: np.ndarray, params: MergingParams
) -> tuple[np.ndarray, np.ndarray, str]:
    """Final labels under the reference system's rule (balanced space, size and count caps)."""
    codes, names = pd.factorize(demand, sort=True)
    sizes = np.bincount(codes, minlength=len(names))
    large = [i for i in range(len(names)) if sizes[i] >= params.min_cluster_size]
    # The largest clusters are kept first; ties by label so the choice never depends on order.
    kept = sorted(large, key=lambda i: (-int(sizes[i]), str(names[i])))[: params.max_final_clusters]
    if not kept:
        note = (
            f"no demand cluster reaches {params.min_cluster_size} stores; the final clusters "
            "are the internal clusters"
        )
        labels = np.array([f"I{int(c)}" for c in internal], dtype=object)
        return labels, np.zeros(len(internal), dtype=bool), note
    final = demand.astype(object).copy()
    moved = ~np.isin(codes, kept)
    if moved.any():
        centres = _centroids(points, codes, len(names))[kept]
        final[moved] = np.asarray(names)[np.array(kept)][_nearest(points[moved], centres)]
    return final, moved, ""


def _homogeneity(truth: pd.Series, found: pd.Series) -> float:
    """Homogeneity of ``found`` with respect to ``truth`` (1: no found cluster mixes two truth
    classes), over the stores where both are known; 1.0 when truth has one class."""
    if truth.index.equals(found.index):
        truth_values, found_values = truth.to_numpy(), found.to_numpy()
    else:
        both = pd.concat([truth.rename("t"), found.rename("f")], axis=1)
        truth_values, found_values = both["t"].to_numpy(), both["f"].to_numpy()
    known = ~(pd.isna(truth_values) | pd.isna(found_values))
    true_codes, true_names = pd.factorize(truth_values[known])
    found_codes, found_names = pd.factorize(found_values[known])
    if len(true_names) < 2:
        return 1.0
    table = np.bincount(
        true_codes * len(found_names) + found_codes, minlength=len(true_names) * len(found_names)
    ).reshape(len(true_names), len(found_names))
    n = table.sum()
    class_p = table.sum(axis=1) / n
    entropy = -float(np.sum(class_p[class_p > 0] * np.log(class_p[class_p > 0])))
    cluster_n = table.sum(axis=0)
    nonzero = table > 0
    joint = table[nonzero] / n
    conditional = -float(np.sum(joint * np.log(table[nonzero] / cluster_n[np.nonzero(nonzero)[1]])))
    return 1.0 - conditional / entropy if entropy > 0 else 1.0


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
    internal = internal_labels.astype(np.int64)
    external = pd.to_numeric(external_labels.reindex(stores), errors="coerce")
    points, _ = _balanced_points(internal_matrix.reindex(stores), external_matrix)
    demand = demand_labels(internal, external_labels)
    internal_values = internal.to_numpy()

    if len(stores) < params.min_cluster_size:
        only = f"I{int(internal_values[0])}" if internal.nunique() == 1 else "ALL"
        final = np.full(len(stores), only, dtype=object)
        moved = np.zeros(len(stores), dtype=bool)
        outcome = OUTCOME_TOO_SMALL
        note = (
            f"{len(stores)} stores, fewer than min_cluster_size = {params.min_cluster_size}: "
            "the category forms one final cluster"
        )
    elif params.strategy == "internal_first":
        final, moved, note = _internal_first(
            points, internal_values, external.to_numpy(dtype=float), params
        )
        split = any("-E" in str(label) for label in set(final))
        outcome = OUTCOME_SPLIT if split else OUTCOME_UNSPLIT
    else:
        final, moved, note = _nearest_centroid(
            points, internal_values, demand.to_numpy(dtype=object), params
        )
        outcome = OUTCOME_INTERNAL_FALLBACK if note else OUTCOME_SPLIT

    frame = pd.DataFrame(
        {
            "STORE_NBR": stores.to_numpy(dtype=np.int64),
            "CATEGORY": category,
            "INTERNAL_CLUSTER": internal_values,
            "EXTERNAL_CLUSTER": external.astype("Int64").array,
            "DEMAND_CLUSTER": demand.to_numpy(dtype=object),
            "REBALANCED_CLUSTER": final,
            "REASSIGNED": moved,
            "DISTANCE": _distance_to_own(points, final),
        },
        columns=FINAL_COLUMNS,
    )
    sizes = frame["REBALANCED_CLUSTER"].value_counts()
    final_series = pd.Series(final, index=stores)
    summary = MergeSummary(
        category=category,
        strategy=params.strategy,
        stores=len(frame),
        internal_clusters=int(internal.nunique()),
        demand_clusters=int(demand.nunique()),
        final_clusters=len(sizes),
        smallest_final_cluster=int(sizes.min()) if len(sizes) else 0,
        reassigned_stores=int(moved.sum()),
        stores_without_external=int(external.isna().sum()),
        homogeneity_internal=_homogeneity(internal, final_series),
        homogeneity_external=_homogeneity(external, final_series),
        outcome=outcome,
        note=note,
    )
    return frame.sort_values("STORE_NBR", kind="stable").reset_index(drop=True), summary


@dataclass(frozen=True)
class MergedCategory:
    """One category's merge: its final rows (text in Arrow buffers), its summary and, when
    asked for, its final model (a :func:`~clustering.core.placement.final_model_table`)."""

    rows: pd.DataFrame
    summary: MergeSummary
    model: pd.DataFrame | None = None


def merge_one(
    category: str,
    inputs: tuple[pd.Series, pd.DataFrame],
    external_labels: pd.Series,
    external_matrix: pd.DataFrame,
    params: MergingParams,
    with_model: bool = False,
) -> MergedCategory:
    """:func:`merge_category` of ``inputs`` (internal labels, internal matrix) and, with
    ``with_model``, the category's final model, built while its matrix is at hand."""
    labels, matrix = inputs
    frame, summary = merge_category(
        category, labels, external_labels, matrix, external_matrix, params
    )
    model = None
    if with_model:
        external = external_matrix if len(external_matrix.columns) else None
        model = final_model_table(frame, {category: matrix}, external, params.strategy)
    return MergedCategory(compact_text(frame, TEXT_COLUMNS), summary, model)


class _Inputs(Mapping[str, tuple[pd.Series, pd.DataFrame]]):
    """(labels, matrix) per category, each read when a worker is about to need it."""

    def __init__(
        self, labels: Mapping[str, pd.Series], matrices: Mapping[str, pd.DataFrame]
    ) -> None:
        self._labels = labels
        self._matrices = matrices

    def __getitem__(self, category: str) -> tuple[pd.Series, pd.DataFrame]:
        return self._labels[category], self._matrices[category]

    def __iter__(self) -> Iterator[str]:
        return iter(self._labels)

    def __len__(self) -> int:
        return len(self._labels)


def merge_categories(
    internal_labels: Mapping[str, pd.Series],
    internal_matrices: Mapping[str, pd.DataFrame],
    external_labels: pd.Series | None,
    external_matrix: pd.DataFrame | None,
    params: MergingParams,
    *,
    with_models: bool = False,
    each: Callable[[str, MergedCategory], None] | None = None,
    workers: int | None = 1,
) -> tuple[pd.DataFrame, list[MergeSummary]]:
    """The final table (one row per store × category) and a merge summary per category.

    Labels and matrices are indexed by ``STORE_NBR``; the external ones cover every store with
    external features, or are None when there are none. The mappings may be lazy: each
    category's labels and matrix are taken once, when a worker is about to need them.
    Categories are merged in ``workers`` processes (None: one per core), each worker also
    building the category's final model with ``with_models``; ``each(category, merged)`` is
    called in this process as each category finishes.
    """
    from clustering.core.engine import map_categories

    if external_labels is None or external_matrix is None:
        external_labels = pd.Series(dtype="Int64")
        external_matrix = pd.DataFrame()
    frames: dict[str, pd.DataFrame] = {}
    summaries: dict[str, MergeSummary] = {}

    def take(category: str, merged: MergedCategory) -> None:
        frames[category] = merged.rows
        summaries[category] = merged.summary
        if each is not None:
            each(category, merged)

    map_categories(
        merge_one,
        _Inputs(internal_labels, internal_matrices),
        external_labels,
        external_matrix,
        params,
        with_models,
        workers=workers,
        progress=take,
        keep=False,
    )
    order = sorted(frames)
    if not order:
        return pd.DataFrame(columns=FINAL_COLUMNS), [summaries[c] for c in sorted(summaries)]
    final = concat_taking([frames.pop(c) for c in order])
    final["EXTERNAL_CLUSTER"] = final["EXTERNAL_CLUSTER"].astype("Int64")
    return final, [summaries[c] for c in order]
