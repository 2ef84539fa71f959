"""Per-category work: features → k → clusters → profiles, run for every category in parallel.

Everything after the raw-sales aggregation is small (stores × features), so it runs here in
pandas/scikit-learn. Categories are independent and run in separate processes, one thread each
(k-means on two OpenMP threads was measured 2-2.7× slower than on one on a 2-core machine).

Worker processes are forked from a fork server that has already imported what they need
(``WORKER_MODULES``, ~2.7 s of imports): a worker starts in ~30 ms instead of importing
scikit-learn, SciPy and pandas itself, and unless ``workers`` is 1 the calling process never
imports scikit-learn. ``start_worker_server`` starts that server early, so its imports overlap
other work. A module of the list that cannot be imported is skipped by the server (Python's
rule for preloads): workers then import it themselves, only slower.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

import pandas as pd

from clustering.core.clustering import ClusterResult, choose_k
from clustering.core.features import FeatureMatrix, engineer_features
from clustering.core.params import ClusteringParams, FeatureParams
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


# What a worker needs, imported once by the fork server instead of by every worker.
WORKER_MODULES = (
    "clustering.core.engine",
    "clustering.core.merging",
    "clustering.core.placement",
    "scipy.spatial",
    "sklearn.cluster",
    "sklearn.decomposition",
    "sklearn.metrics",
    "sklearn.mixture",
    "sklearn.preprocessing",
    "threadpoolctl",
)


def resolve_workers(workers: int | None, tasks: int) -> int:
    """Processes to use: the configured number, else the number of cores, never above tasks.

    0 means no worker process: the tasks run one after another in the calling process
    (configured ``workers=1``, a single core, or no task).
    """
    available = workers or os.cpu_count() or 1
    if available == 1:
        return 0
    return min(available, tasks)


def _worker_context() -> multiprocessing.context.ForkServerContext:
    # Forking a process that already ran OpenMP or DuckDB threads can hang the child: workers
    # come from a fork server, a fresh process that has imported WORKER_MODULES.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_MODULES))
    return context


def start_worker_server() -> None:
    """Start the worker processes' fork server now (it imports ``WORKER_MODULES`` in the
    background); ``map_categories`` would otherwise start it when it first needs a worker.
    Does nothing when it is already running."""
    import multiprocessing.forkserver

    _worker_context()
    multiprocessing.forkserver.ensure_running()


def map_categories(
    function: Callable[..., R],
    items: Mapping[str, T],
    *args: object,
    workers: int | None = None,
    progress: Callable[[str, R], None] | None = None,
    keep: bool = True,
) -> dict[str, R]:
    """``function(name, item, *args)`` for every category, in parallel processes; sorted by name.

    ``progress(name, result)`` is called as each category finishes, in the order they finish.
    With ``keep=False`` results are only handed to ``progress`` (which takes what it needs)
    and the returned mapping is empty: no result outlives its turn.
    ``items`` may be a lazy mapping: each item is read when a worker is about to need it.
    ``function`` must be importable by name (a module-level function). Unless ``workers`` is 1
    (or the machine has one core), every category runs in a worker process, even a single one:
    workers come with scikit-learn imported, and this process stays without it.
    """
    names = sorted(items)
    n_workers = resolve_workers(workers, len(names))
    results: dict[str, R] = {}

    def report(name: str, value: R) -> None:
        if keep:
            results[name] = value
        if progress is not None:
            progress(name, value)

    if n_workers == 0:
        for name in names:
            report(name, function(name, items[name], *args))
    else:
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=_worker_context()) as pool:
            # Items are taken (and, from a lazy mapping, read) only as workers become free:
            # at most two per worker are in memory or in flight at any time.
            queue = iter(names)
            running: dict[Future[R], str] = {}

            def submit_next() -> None:
                name = next(queue, None)
                if name is not None:
                    running[pool.submit(function, name, items[name], *args)] = name

            for _ in range(2 * n_workers):
                submit_next()
            while running:
                done, _pending = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: running[f]):
                    report(running.pop(future), future.result())
                    submit_next()
    return {name: results[name] for name in names if name in results}


def describe_result(name: str, result: ClusterResult | ClusteredSet) -> str:
    """``"CANDY/SNACKS k=4"`` plus the fallback reason, for progress lines."""
    cluster_result = result.result if isinstance(result, ClusteredSet) else result
    note = f" ({cluster_result.fallback})" if cluster_result.fallback else ""
    return f"{name} k={cluster_result.k}{note}"
