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

import pandas as pd

from clustering.core.clustering import ClusterResult, choose_k
from clustering.core.features import FeatureMatrix, engineer_features
from clustering.core.merging import FINAL_COLUMNS, MergeSummary, merge_category
from clustering.core.params import ClusteringParams, FeatureParams
from clustering.core.profiles import ClusterProfiles, describe_clusters

Progress = Callable[[str], None]


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


def cluster_categories(
    tables: Mapping[str, pd.DataFrame],
    feature_params: FeatureParams,
    clustering_params: ClusteringParams,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, ClusteredSet]:
    """Cluster every category's table; results in sorted category order.

    With more than one worker the categories run in a pool of processes started by a fork
    server (forking a process that already ran OpenMP or DuckDB threads can hang the child).
    """
    names = sorted(tables)
    n_workers = resolve_workers(workers, len(names))
    results: dict[str, ClusteredSet] = {}

    def report(done: ClusteredSet) -> None:
        results[done.name] = done
        if progress is not None:
            note = f" ({done.result.fallback})" if done.result.fallback else ""
            progress(f"clustered {len(results)}/{len(names)}: {done.name} k={done.result.k}{note}")

    if n_workers == 1:
        for name in names:
            report(cluster_feature_table(name, tables[name], feature_params, clustering_params))
    else:
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=context) as pool:
            futures = [
                pool.submit(
                    cluster_feature_table, name, tables[name], feature_params, clustering_params
                )
                for name in names
            ]
            for future in futures:
                report(future.result())
    return {name: results[name] for name in names}


def merge_all(
    internal: Mapping[str, ClusteredSet],
    external: ClusteredSet | None,
    min_cluster_size: int,
) -> tuple[pd.DataFrame, list[MergeSummary]]:
    """The final table (one row per store × category) and a merge summary per category."""
    if external is not None:
        external_labels = external.labels
        external_matrix = external.features.matrix
    else:
        external_labels = pd.Series(dtype="Int64")
        external_matrix = pd.DataFrame()
    frames = []
    summaries = []
    for category in sorted(internal):
        clustered = internal[category]
        frame, summary = merge_category(
            category,
            clustered.labels,
            external_labels,
            clustered.features.matrix,
            external_matrix,
            min_cluster_size,
        )
        frames.append(frame)
        summaries.append(summary)
    if not frames:
        return pd.DataFrame(columns=FINAL_COLUMNS), summaries
    final = pd.concat(frames, ignore_index=True)
    final["EXTERNAL_CLUSTER"] = final["EXTERNAL_CLUSTER"].astype("Int64")
    return final, summaries
