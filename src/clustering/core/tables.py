"""Tidy tables for each stage's results, and their way back into per-category objects.

The orchestrated pipeline stores every stage as a table (one schema per asset group in the
warehouse) so a user can query it; these functions convert between those tables and the
per-category frames the algorithms work on. Every table carries ``CATEGORY`` and, where it
describes stores, ``STORE_NBR``: rows are always re-joined by key.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from clustering.core.clustering import K_CURVE_COLUMNS, ClusterResult
from clustering.core.features import FeatureMatrix
from clustering.core.profiles import ClusterProfiles, describe_clusters

FEATURE_COLUMNS = ["CATEGORY", "STORE_NBR", "FEATURE", "VALUE", "OUTLIER"]
ASSIGNMENT_COLUMNS = ["CATEGORY", "STORE_NBR", "CLUSTER"]
MODEL_COLUMNS = ["CATEGORY", *K_CURVE_COLUMNS, "FALLBACK"]
CENTROID_COLUMNS = ["CATEGORY", "CLUSTER", "FEATURE", "VALUE"]
PROFILE_COLUMNS = [
    "CATEGORY",
    "CLUSTER",
    "STORES",
    "LABEL",
    "FEATURE",
    "CLUSTER_MEAN",
    "AVERAGE",
    "INDEX",
    "Z_DIFF",
]


def _melt(frame: pd.DataFrame, key: str, value: str) -> pd.DataFrame:
    """Long form of a frame indexed by ``key``: key, FEATURE, value."""
    columns = [str(c) for c in frame.columns]
    flat = frame.set_axis(columns, axis=1).reset_index()
    return flat.melt(id_vars=key, value_vars=columns, var_name="FEATURE", value_name=value)


def wide_table(frames: Mapping[str, pd.DataFrame], value: str = "VALUE") -> pd.DataFrame:
    """Stack per-category wide frames (index STORE_NBR) into CATEGORY, STORE_NBR, FEATURE, value."""
    parts = []
    for category, frame in sorted(frames.items()):
        part = _melt(frame.rename_axis("STORE_NBR"), "STORE_NBR", value)
        part.insert(0, "CATEGORY", category)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["CATEGORY", "STORE_NBR", "FEATURE", value])
    table = pd.concat(parts, ignore_index=True)
    table["STORE_NBR"] = table["STORE_NBR"].astype(np.int64)
    table["FEATURE"] = table["FEATURE"].astype(str)
    return table


def frames_from_table(table: pd.DataFrame, value: str = "VALUE") -> dict[str, pd.DataFrame]:
    """Inverse of :func:`wide_table`: per category a frame indexed by STORE_NBR, sorted.

    Columns keep the order in which they first appear for the category.
    """
    frames: dict[str, pd.DataFrame] = {}
    for category, group in table.groupby("CATEGORY", sort=True):
        order = list(dict.fromkeys(group["FEATURE"]))
        wide = group.pivot(index="STORE_NBR", columns="FEATURE", values=value)
        wide = wide[order].sort_index().astype(float)
        wide.columns.name = None
        frames[str(category)] = wide
    return frames


def feature_table(features: Mapping[str, FeatureMatrix]) -> pd.DataFrame:
    """The clustering input per category as a table (with each store's outlier flag)."""
    table = wide_table({name: fm.matrix for name, fm in features.items()})
    flags = {
        (name, int(store)) for name, fm in features.items() for store in fm.report.outlier_stores
    }
    keys = zip(table["CATEGORY"], table["STORE_NBR"], strict=True)
    table["OUTLIER"] = [(category, int(store)) in flags for category, store in keys]
    return table[FEATURE_COLUMNS]


def model_table(results: Mapping[str, ClusterResult]) -> pd.DataFrame:
    """Every k tried per category with its metrics, the chosen one flagged, and any fallback."""
    parts = [
        result.k_curve.assign(CATEGORY=name, FALLBACK=result.fallback or "")
        for name, result in sorted(results.items())
    ]
    if not parts:
        return pd.DataFrame(columns=MODEL_COLUMNS)
    table = pd.concat(parts, ignore_index=True)
    table["chosen"] = table["chosen"].astype(bool)
    table["admissible"] = table["admissible"].astype(bool)
    return table[MODEL_COLUMNS].sort_values(["CATEGORY", "k"], kind="stable").reset_index(drop=True)


def chosen_models(models: pd.DataFrame) -> pd.DataFrame:
    """One row per category: the chosen k and its metrics."""
    return models[models["chosen"]].set_index("CATEGORY")


def assignment_table(results: Mapping[str, ClusterResult]) -> pd.DataFrame:
    """CATEGORY, STORE_NBR, CLUSTER for every store of every category."""
    parts = [
        result.labels.rename("CLUSTER").rename_axis("STORE_NBR").reset_index().assign(CATEGORY=name)
        for name, result in sorted(results.items())
    ]
    if not parts:
        return pd.DataFrame(columns=ASSIGNMENT_COLUMNS)
    table = pd.concat(parts, ignore_index=True)
    table["STORE_NBR"] = table["STORE_NBR"].astype(np.int64)
    table["CLUSTER"] = table["CLUSTER"].astype(np.int64)
    return table[ASSIGNMENT_COLUMNS]


def labels_from_table(assignments: pd.DataFrame) -> dict[str, pd.Series]:
    """Per category the CLUSTER of each store, indexed by STORE_NBR (sorted)."""
    return {
        str(category): group.set_index("STORE_NBR")["CLUSTER"].sort_index().rename("CLUSTER")
        for category, group in assignments.groupby("CATEGORY", sort=True)
    }


def centroid_table(results: Mapping[str, ClusterResult]) -> pd.DataFrame:
    """Cluster centroids in the clustering space: CATEGORY, CLUSTER, FEATURE, VALUE."""
    parts = []
    for name, result in sorted(results.items()):
        centroids = result.centroids.rename_axis("CLUSTER")
        parts.append(_melt(centroids, "CLUSTER", "VALUE").assign(CATEGORY=name))
    if not parts:
        return pd.DataFrame(columns=CENTROID_COLUMNS)
    table = pd.concat(parts, ignore_index=True)
    table["FEATURE"] = table["FEATURE"].astype(str)
    return table[CENTROID_COLUMNS]


def profile_table(
    originals: Mapping[str, pd.DataFrame], labels: Mapping[str, pd.Series]
) -> pd.DataFrame:
    """Each cluster's profile in original units, with its size and generated label."""
    parts = []
    for name in sorted(labels):
        profiles: ClusterProfiles = describe_clusters(originals[name], labels[name])
        summary = profiles.summary[["CLUSTER", "STORES", "LABEL"]]
        parts.append(profiles.profile.merge(summary, on="CLUSTER").assign(CATEGORY=name))
    if not parts:
        return pd.DataFrame(columns=PROFILE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[PROFILE_COLUMNS]


def cluster_labels_table(profiles: pd.DataFrame) -> pd.DataFrame:
    """One row per category × cluster: STORES and LABEL (from :func:`profile_table`)."""
    return (
        profiles[["CATEGORY", "CLUSTER", "STORES", "LABEL"]]
        .drop_duplicates(["CATEGORY", "CLUSTER"])
        .reset_index(drop=True)
    )


EXTERNAL_SET = "EXTERNAL"
"""Name under which the external features are clustered (one set for all categories)."""


def external_frames(features: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The external feature table (STORE_NBR + numeric columns) as the one set to cluster."""
    return {EXTERNAL_SET: features.set_index("STORE_NBR").sort_index().astype(float)}


def stores_by_set(frames: Mapping[str, pd.DataFrame]) -> dict[str, set[int]]:
    """The stores of each category (or set), for completeness checks."""
    return {name: {int(s) for s in frame.index} for name, frame in frames.items()}


def missing_or_extra_stores(
    expected: Mapping[str, set[int]], assignments: pd.DataFrame
) -> dict[str, dict[str, list[int]]]:
    """Per category the stores without an assignment and those assigned more than once or
    unexpectedly (first 10 of each); empty when every store has exactly one row."""
    problems: dict[str, dict[str, list[int]]] = {}
    duplicated = assignments[assignments.duplicated(["CATEGORY", "STORE_NBR"], keep=False)]
    for name in sorted(set(expected) | set(assignments["CATEGORY"].astype(str))):
        found = set(assignments.loc[assignments["CATEGORY"] == name, "STORE_NBR"].astype(int))
        wanted = expected.get(name, set())
        issue = {
            "missing": sorted(wanted - found)[:10],
            "unexpected": sorted(found - wanted)[:10],
            "duplicated": sorted(
                {int(s) for s in duplicated.loc[duplicated["CATEGORY"] == name, "STORE_NBR"]}
            )[:10],
        }
        if any(issue.values()):
            problems[name] = issue
    return problems
