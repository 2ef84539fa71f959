"""Place stores in an existing clustering with the models a run stored as data.

A run keeps, per feature set, a *cluster model* — the fitted feature transformation
(:mod:`clustering.core.transform`) and the cluster centres in the clustering space — and, per
category, a *final model*: the balanced space merging measured distances in (each block's
centre and scale), the centroid of every final cluster in it, and which final cluster each
internal × external pair went to. All are JSON documents (no pickles).

Placing a store in a category:

1. its external features go through the external cluster model: nearest external centre;
2. when it has need-state sales in the category, its shares go through the category's internal
   cluster model: nearest internal centre;
3. the final cluster is the one training stores with the same internal × external pair went to;
   a pair no training store kept goes to the nearest final cluster the merging rule allows (the
   same internal cluster under ``internal_first``), as merging moves stores;
4. without sales in the category the placement is *external only*: the final cluster holding
   most of the category's stores of the same external cluster (the nearest on the external
   features when the category has none).

Centres are the mean of each cluster's stores that pulled the k-means centres (the sparse stores
left out of fitting are not), i.e. the fitted centres themselves, so placing the training stores
again gives their own clusters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clustering.core.engine import ClusteredSet
from clustering.core.tables import MISSING_LAST, integer_pairs, missing_last
from clustering.core.transform import FittedTransform, apply_transform

CLUSTER_MODEL_FORMAT = "clustering.cluster_model/1"
FINAL_MODEL_FORMAT = "clustering.final_model/1"
MODEL_TABLE_COLUMNS = ["CATEGORY", "MODEL"]

PLACED_BOTH = "internal_and_external"
PLACED_INTERNAL_ONLY = "internal_only"
PLACED_EXTERNAL_ONLY = "external_only"
NOT_PLACED = "not_placed"

PLACEMENT_COLUMNS = [
    "STORE_NBR",
    "CATEGORY",
    "PLACEMENT",
    "INTERNAL_CLUSTER",
    "INTERNAL_DISTANCE",
    "EXTERNAL_CLUSTER",
    "EXTERNAL_DISTANCE",
    "REBALANCED_CLUSTER",
    "DISTANCE",
]


# -- cluster models (one feature set) ---------------------------------------------------------


@dataclass(frozen=True)
class ClusterModel:
    """A feature set's fitted transformation and its cluster centres (clustering space)."""

    transform: FittedTransform
    clusters: list[int]
    centres: np.ndarray  # clusters × transform.columns

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "format": CLUSTER_MODEL_FORMAT,
            "transform": self.transform.as_dict(),
            "clusters": list(self.clusters),
            "centres": [[float(v) for v in row] for row in self.centres],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterModel:
        """The model stored by :meth:`as_dict`."""
        return cls(
            transform=FittedTransform.from_dict(dict(data["transform"])),
            clusters=[int(c) for c in data["clusters"]],
            centres=np.asarray(data["centres"], dtype=float),
        )

    def place(self, table: pd.DataFrame) -> pd.DataFrame:
        """CLUSTER and DISTANCE (to the nearest centre) for each row of a store × feature table."""
        values = apply_transform(table, self.transform).to_numpy(dtype=float)
        distances = np.sqrt(((values[:, None, :] - self.centres[None, :, :]) ** 2).sum(axis=2))
        nearest = distances.argmin(axis=1)
        return pd.DataFrame(
            {
                "CLUSTER": np.asarray(self.clusters, dtype=np.int64)[nearest],
                "DISTANCE": distances[np.arange(len(values)), nearest],
            },
            index=table.index.copy(),
        )


def cluster_model(item: ClusteredSet) -> ClusterModel:
    """The model of one clustered feature set: its transform and fitted centres."""
    if item.features.fitted is None:
        raise ValueError(f"{item.name}: feature engineering recorded no fitted transform")
    matrix = item.features.matrix
    labels = item.labels.reindex(matrix.index)
    core = ~matrix.index.isin(item.result.trimmed)
    clusters = sorted(int(c) for c in labels.unique())
    centres = []
    for cluster in clusters:
        members = (labels == cluster).to_numpy()
        # A cluster made only of sparse stores (never seen in practice) keeps all its members.
        chosen = members & core if (members & core).any() else members
        centres.append(matrix.to_numpy(dtype=float)[chosen].mean(axis=0))
    return ClusterModel(item.features.fitted, clusters, np.vstack(centres))


def cluster_model_table(clustered: Mapping[str, ClusteredSet]) -> pd.DataFrame:
    """CATEGORY and MODEL (the JSON of :class:`ClusterModel`) for every clustered set."""
    rows = [
        {"CATEGORY": name, "MODEL": json.dumps(cluster_model(item).as_dict())}
        for name, item in sorted(clustered.items())
    ]
    return pd.DataFrame(rows, columns=MODEL_TABLE_COLUMNS)


def models_from_table(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The JSON documents of a model table, by category."""
    return {
        str(c): json.loads(str(m)) for c, m in zip(table["CATEGORY"], table["MODEL"], strict=True)
    }


# -- final models (one category's merging) ----------------------------------------------------


def _block(frame: pd.DataFrame) -> dict[str, Any]:
    """Centre and scale that give ``frame`` unit total variance (as merging's balanced space)."""
    mean = frame.mean()
    total = float(np.nansum((frame - mean).var(ddof=0).to_numpy()))
    return {
        "columns": [str(c) for c in frame.columns],
        "mean": [float(v) for v in mean],
        "norm": float(np.sqrt(total)) if total > 0 else 1.0,
    }


def _scaled(frame: pd.DataFrame, block: Mapping[str, Any], prefix: str) -> pd.DataFrame:
    values = frame.reindex(columns=block["columns"]).astype(float)
    scaled = (values - np.asarray(block["mean"])) / float(block["norm"])
    return scaled.add_prefix(prefix)


def _internal_of(label: str) -> int | None:
    """``I2-E3`` → 2; ``ALL`` (a category too small to split) → None."""
    head = label.split("-", 1)[0]
    return int(head[1:]) if head.startswith("I") and head[1:].isdigit() else None


def _most_common_label(
    internal: np.ndarray, external: np.ndarray, labels: np.ndarray
) -> list[tuple[int, float, int]]:
    """Per (internal, external) pair, sorted with a missing external cluster (NaN) last: the
    label code most of its rows carry (the smallest code on a tie)."""
    pairs, pair_of_row, _ = integer_pairs(internal, missing_last(external))
    width = int(labels.max()) + 1 if len(labels) else 1
    counts = np.bincount(pair_of_row * width + labels, minlength=len(pairs) * width)
    most = counts.reshape(len(pairs), width).argmax(axis=1)
    return [
        (i, float("nan") if e == MISSING_LAST else float(e), label)
        for (i, e), label in zip(pairs.tolist(), most.tolist(), strict=True)
    ]


def final_model(
    final: pd.DataFrame,
    internal_matrix: pd.DataFrame,
    external_matrix: pd.DataFrame | None,
    strategy: str,
) -> dict[str, Any]:
    """The final model of one category, from its final rows as the model made them (before
    manual overrides) and the clustering spaces the rows were merged in (index STORE_NBR)."""
    rows = final.set_index("STORE_NBR")
    stores = rows.index
    internal = internal_matrix.reindex(stores).astype(float)
    internal_block = _block(internal)
    parts = [_scaled(internal, internal_block, "INT:")]
    external_block = None
    if external_matrix is not None and len(external_matrix.columns):
        present = external_matrix.reindex(stores).dropna(how="all")
        if len(present):
            external_block = _block(present.astype(float))
            parts.append(_scaled(present, external_block, "EXT:").reindex(stores))
    space = pd.concat(parts, axis=1)
    labels = rows["REBALANCED_CLUSTER"].astype(str)
    names = sorted(labels.unique())
    centroids = space.groupby(labels.to_numpy()).mean().loc[names]
    kept = ~rows["REASSIGNED"].astype(bool)
    targets = space[kept.to_numpy()].groupby(labels[kept].to_numpy()).mean()
    targets = targets.reindex(names).fillna(centroids)

    external = rows["EXTERNAL_CLUSTER"].to_numpy(dtype=float, na_value=np.nan)
    internal_clusters = rows["INTERNAL_CLUSTER"].to_numpy().astype(np.int64)
    label_codes = pd.Index(names).get_indexer(labels.to_numpy())
    rules = [
        [int(i), None if np.isnan(e) else int(e), names[label]]
        for i, e, label in _most_common_label(
            internal_clusters[kept.to_numpy()], external[kept.to_numpy()], label_codes[kept]
        )
    ]

    # Where the stores of each external cluster went: an external-only placement follows them.
    with_external = ~np.isnan(external)
    votes, _, counts = integer_pairs(
        external[with_external].astype(np.int64), label_codes[with_external]
    )
    external_votes = [
        [e, names[label], n] for (e, label), n in zip(votes.tolist(), counts.tolist(), strict=True)
    ]

    def matrix(frame: pd.DataFrame) -> list[list[float | None]]:
        return [[None if pd.isna(v) else float(v) for v in row] for row in frame.to_numpy()]

    return {
        "format": FINAL_MODEL_FORMAT,
        "strategy": strategy,
        "internal": internal_block,
        "external": external_block,
        "columns": [str(c) for c in space.columns],
        "clusters": names,
        "centroids": matrix(centroids),
        "targets": matrix(targets),
        "rules": rules,
        "external_votes": external_votes,
    }


def final_model_table(
    final: pd.DataFrame,
    internal_matrices: Mapping[str, pd.DataFrame],
    external_matrix: pd.DataFrame | None,
    strategy: str,
) -> pd.DataFrame:
    """CATEGORY and MODEL (JSON of :func:`final_model`) for every category of ``final``."""
    rows = [
        {
            "CATEGORY": str(category),
            "MODEL": json.dumps(
                final_model(group, internal_matrices[str(category)], external_matrix, strategy)
            ),
        }
        for category, group in final.groupby("CATEGORY", sort=True)
    ]
    return pd.DataFrame(rows, columns=MODEL_TABLE_COLUMNS)


def _masked_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Euclidean distance over the dimensions each point has; inf where a centroid lacks one."""
    valid = ~np.isnan(points)
    diff = points[:, None, :] - centroids[None, :, :]
    squared = np.where(valid[:, None, :], np.nan_to_num(diff) ** 2, 0.0)
    missing = (valid[:, None, :] & np.isnan(centroids)[None, :, :]).any(axis=2)
    distances = np.sqrt(squared.sum(axis=2))
    distances[missing] = np.inf
    return np.asarray(distances)


def _nearest(values: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centroid per row (-1 when none is reachable) and the distance."""
    distances = _masked_distances(values, centroids)
    reachable = np.isfinite(distances).any(axis=1)
    # A point whose every reachable centroid lacks a dimension it has: compare on shared ones.
    if len(values) and not reachable.all() and (~np.isnan(values[~reachable])).any():
        fallback = _masked_distances(np.nan_to_num(values[~reachable]), np.nan_to_num(centroids))
        distances[~reachable] = fallback
    nearest = np.where(np.isfinite(distances).any(axis=1), distances.argmin(axis=1), -1)
    picked = np.where(
        nearest >= 0, distances[np.arange(len(values)), np.maximum(nearest, 0)], np.nan
    )
    return nearest, picked


def place_final(
    model: Mapping[str, Any],
    internal_points: pd.DataFrame,
    external_points: pd.DataFrame,
    internal_clusters: pd.Series,
    external_clusters: pd.Series,
) -> pd.DataFrame:
    """REBALANCED_CLUSTER and DISTANCE for stores of one category (index STORE_NBR).

    ``internal_points``/``internal_clusters`` cover the stores with sales in the category
    (clustering space, nearest internal cluster); ``external_points``/``external_clusters`` the
    stores with external features. A store with internal data follows the rule of its
    internal × external pair, or moves to the nearest final cluster merging allows; a store with
    external data only goes where most of the category's stores of its external cluster are.
    """
    stores = internal_points.index.union(external_points.index)
    columns = list(model["columns"])
    space = pd.DataFrame(np.nan, index=stores, columns=columns)
    if len(internal_points):
        scaled = _scaled(internal_points, model["internal"], "INT:")
        space.loc[scaled.index, scaled.columns] = scaled.to_numpy()
    if len(external_points) and model["external"] is not None:
        scaled = _scaled(external_points, model["external"], "EXT:")
        space.loc[scaled.index, scaled.columns] = scaled.to_numpy()
    names = np.asarray(model["clusters"], dtype=object)
    centroids = np.asarray(model["centroids"], dtype=float)
    labels = pd.Series(None, index=stores, dtype=object)

    # Stores with sales: the rule of their pair, else the nearest allowed target.
    pairs = pd.DataFrame(
        {"I": internal_clusters.astype(int), "E": external_clusters.reindex(internal_points.index)}
    )
    rules = {(int(i), None if e is None else int(e)): str(label) for i, e, label in model["rules"]}
    for store, i, e in zip(pairs.index, pairs["I"], pairs["E"], strict=True):
        key = (int(i), None if pd.isna(e) else int(e))
        if key in rules:
            labels[store] = rules[key]
    movers = pairs.index[labels.reindex(pairs.index).isna().to_numpy()]
    targets = np.asarray(model["targets"], dtype=float)
    for internal, group in pairs.loc[movers].groupby("I"):
        allowed = np.arange(len(names))
        if model["strategy"] == "internal_first":
            same = [j for j, name in enumerate(names) if _internal_of(str(name)) == internal]
            allowed = np.asarray(same) if same else allowed
        nearest, _ = _nearest(space.loc[group.index].to_numpy(dtype=float), targets[allowed])
        labels[group.index] = names[allowed[np.maximum(nearest, 0)]]

    # External only: the final cluster most stores of the same external cluster are in; for an
    # external cluster with no store in the category, the nearest on the external features.
    outside = stores.difference(internal_points.index)
    if len(outside) and model["external"] is not None:
        best: dict[int, tuple[int, str]] = {}
        for e, label, n in model["external_votes"]:
            if int(n) > best.get(int(e), (0, ""))[0]:
                best[int(e)] = (int(n), str(label))
        clusters = external_clusters.reindex(outside)
        known = clusters.dropna()
        for store, e in zip(known.index, known.to_numpy(), strict=True):
            if int(e) in best:
                labels.loc[store] = best[int(e)][1]
        rest = outside[labels.reindex(outside).isna().to_numpy()]
        if len(rest):
            nearest, _ = _nearest(space.loc[rest].to_numpy(dtype=float), centroids)
            found = nearest >= 0
            labels[rest[found]] = names[nearest[found]]

    own = labels.map({str(n): j for j, n in enumerate(names)})
    distance = pd.Series(np.nan, index=stores)
    placed = own.notna().to_numpy()
    if placed.any():
        rows = space.to_numpy(dtype=float)[placed]
        every = _masked_distances(rows, centroids)
        distance[placed] = every[np.arange(len(rows)), own[placed].astype(int).to_numpy()]
    return pd.DataFrame({"REBALANCED_CLUSTER": labels, "DISTANCE": distance})


# -- placing stores ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunModels:
    """Every model of one run: external, internal per category, final per category."""

    external: ClusterModel | None
    internal: dict[str, ClusterModel]
    final: dict[str, dict[str, Any]]

    @property
    def categories(self) -> list[str]:
        """The categories the run clustered, sorted."""
        return sorted(self.final)


def place_stores(
    models: RunModels,
    shares: Mapping[str, pd.DataFrame],
    external: pd.DataFrame | None,
) -> pd.DataFrame:
    """One row per store × category of the run (``PLACEMENT_COLUMNS``).

    ``shares`` holds per category a store × need-state table of % shares (index STORE_NBR);
    ``external`` a store × feature table (index STORE_NBR) or None. A store is placed in every
    category of the run: with its need-state mix where it has sales there, else on its external
    features alone (``external_only``); a store with neither is listed as ``not_placed``.
    """
    empty = pd.DataFrame(index=pd.Index([], dtype=np.int64, name="STORE_NBR"))
    features = external if external is not None else empty
    stores = features.index.astype(np.int64)
    for matrix in shares.values():
        stores = stores.union(matrix.index.astype(np.int64))
    stores = stores.sort_values()
    if len(features) and models.external is not None:
        ext_placed = models.external.place(features)
        ext_points = apply_transform(features, models.external.transform)
    else:
        ext_placed = pd.DataFrame({"CLUSTER": [], "DISTANCE": []}, index=empty.index)
        ext_points = empty
    parts = []
    for category in models.categories:
        table = shares.get(category)
        internal_model = models.internal.get(category)
        if table is not None and len(table) and internal_model is not None:
            # A need state the store did not sell in has share 0, as in the training matrices.
            filled = table.reindex(columns=internal_model.transform.input_features, fill_value=0.0)
            filled = filled.fillna(0.0)
            int_placed = internal_model.place(filled)
            int_points = apply_transform(filled, internal_model.transform)
        else:
            int_placed = pd.DataFrame({"CLUSTER": [], "DISTANCE": []}, index=empty.index)
            int_points = empty
        final = place_final(
            models.final[category], int_points, ext_points, int_placed["CLUSTER"],
            ext_placed["CLUSTER"],
        )  # fmt: skip
        frame = pd.DataFrame(index=stores)
        frame["CATEGORY"] = category
        frame["INTERNAL_CLUSTER"] = int_placed["CLUSTER"].reindex(stores)
        frame["INTERNAL_DISTANCE"] = int_placed["DISTANCE"].reindex(stores)
        frame["EXTERNAL_CLUSTER"] = ext_placed["CLUSTER"].reindex(stores)
        frame["EXTERNAL_DISTANCE"] = ext_placed["DISTANCE"].reindex(stores)
        frame = frame.join(final.reindex(stores))
        has_int = frame["INTERNAL_CLUSTER"].notna()
        has_ext = frame["EXTERNAL_CLUSTER"].notna()
        placement = np.select(
            [has_int & has_ext, has_int, has_ext],
            [PLACED_BOTH, PLACED_INTERNAL_ONLY, PLACED_EXTERNAL_ONLY],
            NOT_PLACED,
        )
        frame["PLACEMENT"] = np.where(frame["REBALANCED_CLUSTER"].isna(), NOT_PLACED, placement)
        parts.append(frame.rename_axis("STORE_NBR").reset_index())
    if not parts:
        return pd.DataFrame(columns=PLACEMENT_COLUMNS)
    result = pd.concat(parts, ignore_index=True)[PLACEMENT_COLUMNS]
    result["STORE_NBR"] = result["STORE_NBR"].astype(np.int64)
    for column in ("INTERNAL_CLUSTER", "EXTERNAL_CLUSTER"):
        result[column] = result[column].astype("Int64")
    return result.sort_values(["STORE_NBR", "CATEGORY"], kind="stable").reset_index(drop=True)
