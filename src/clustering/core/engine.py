"""The clustering engine: features → k selection → profiles, per category in parallel, then merging.

Everything after the raw-sales aggregation is small (stores × features), so it runs here in
pandas/scikit-learn. Categories are independent and run in separate processes, one thread each.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import pandas as pd

from clustering.core.clustering import ClusterResult, choose_k
from clustering.core.features import FeatureMatrix, engineer_features
from clustering.core.merging import FINAL_COLUMNS, MergeSummary, merge_category
from clustering.core.params import ClusteringParams, FeatureParams, MergingParams
from clustering.core.profiles import ClusterProfiles, describe_clusters

Progress = Callable[[str], None]
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ClusteredSet:
    """One clustered feature set (a category's need-state shares, or the external features)."""

    name: str
    features: FeatureMatrix
    result: ClusterResult
    profiles: ClusterProfiles

    @property
    def labels(self) -> pd.Series:
        """Cluster per store (1..k), indexed by ``STORE_NBR``."""
        return self.result.labels


def cluster_feature_table(
    name: str,
    table: pd.DataFrame,
    feature_params: FeatureParams,
    clustering_params: ClusteringParams,
) -> ClusteredSet:
    """Engineer features, choose k, fit, and profile one store × feature table."""
    features = engineer_features(table, feature_params)
    result = choose_k(features.matrix, clustering_params)
    profiles = describe_clusters(features.original, result.labels)
    return ClusteredSet(name=name, features=features, result=result, profiles=profiles)


def resolve_workers(workers: int | None, tasks: int) -> int:
    """Processes to use: the configured number, else the number of cores, never above tasks."""
    available = workers or os.cpu_count() or 1
    return max(1, min(available, tasks))


def map_categories(
    function: Callable[..., R],
    items: Mapping[str, T],
    *args: object,
    workers: int | None = None,
    progress: Progress | None = None,
    describe: Callable[[str, R], str] | None = None,
) -> dict[str, R]:
    """``function(name, item, *args)`` for every category, in parallel processes; sorted by name.

    ``function`` must be importable by name (a module-level function). With more than one worker
    the pool's processes are started by a fork server: forking a process that already ran OpenMP
    or DuckDB threads can hang the child.
    """
    names = sorted(items)
    n_workers = resolve_workers(workers, len(names))
    results: dict[str, R] = {}

    def report(name: str, value: R) -> None:
        results[name] = value
        if progress is not None:
            detail = f": {describe(name, value)}" if describe else f": {name}"
            progress(f"{len(results)}/{len(names)}{detail}")

    if n_workers == 1:
        for name in names:
            report(name, function(name, items[name], *args))
    else:
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=context) as pool:
            futures = {name: pool.submit(function, name, items[name], *args) for name in names}
            for name, future in futures.items():
                report(name, future.result())
    return {name: results[name] for name in names}


def describe_result(name: str, result: ClusterResult | ClusteredSet) -> str:
    """``"CANDY/SNACKS k=4"`` plus the fallback reason, for progress lines."""
    cluster_result = result.result if isinstance(result, ClusteredSet) else result
    note = f" ({cluster_result.fallback})" if cluster_result.fallback else ""
    return f"{name} k={cluster_result.k}{note}"


def cluster_categories(
    tables: Mapping[str, pd.DataFrame],
    feature_params: FeatureParams,
    clustering_params: ClusteringParams,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, ClusteredSet]:
    """Features, k selection and profiles for every category's table, in parallel."""
    return map_categories(
        cluster_feature_table,
        tables,
        feature_params,
        clustering_params,
        workers=workers,
        progress=progress,
        describe=describe_result,
    )


def choose_k_named(name: str, matrix: pd.DataFrame, params: ClusteringParams) -> ClusterResult:
    """:func:`choose_k` with the category name first, for :func:`map_categories`."""
    return choose_k(matrix, params)


def merge_all(
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
