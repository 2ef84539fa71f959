"""The whole pipeline on already-opened inputs, stage by stage, with no orchestration framework.

The Dagster assets call the same stage functions one by one; this module chains them for the
``clustering cluster`` command, tests and benchmarks. Inputs are Ibis tables (so the raw-sales
aggregation runs where the data lives) and small pandas frames for the external sources.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import ibis
import pandas as pd

from clustering.core.engine import ClusteredSet, Progress, cluster_categories, merge_all
from clustering.core.external_preprocessing import (
    CoverageSummary,
    ExternalFeatures,
    combine_external_sources,
    external_coverage,
)
from clustering.core.internal_preprocessing import (
    MatchSummary,
    execute_shares,
    match_summary,
    share_matrices,
    share_table,
)
from clustering.core.merging import MergeSummary
from clustering.core.params import PipelineParams


@dataclass
class PipelineResult:
    """Everything a run produced: the final table and the evidence behind it."""

    final: pd.DataFrame
    share_matrices: dict[str, pd.DataFrame]
    internal: dict[str, ClusteredSet]
    external: ClusteredSet | None
    external_features: ExternalFeatures
    match: MatchSummary
    coverage: CoverageSummary
    merges: list[MergeSummary]
    stage_seconds: dict[str, float] = field(default_factory=dict)


def _note(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def preprocess_internal(
    sales: ibis.Table, need_states: ibis.Table
) -> tuple[dict[str, pd.DataFrame], MatchSummary]:
    """Share matrices per category (executed on the tables' backend) and the match summary."""
    shares = execute_shares(share_table(sales, need_states))
    return share_matrices(shares), match_summary(sales, need_states)


def cluster_all(
    matrices: Mapping[str, pd.DataFrame],
    external_features: ExternalFeatures,
    params: PipelineParams,
    progress: Progress | None = None,
) -> tuple[dict[str, ClusteredSet], ClusteredSet | None]:
    """Cluster every category's share matrix and, if there are any, the external features."""
    external: ClusteredSet | None = None
    if len(external_features.features):
        external = cluster_categories(
            {"external": external_features.features},
            params.external_features,
            params.external_clustering,
            workers=1,
        )["external"]
        _note(progress, f"external clustering: k={external.result.k}")
    internal = cluster_categories(
        matrices,
        params.internal_features,
        params.internal_clustering,
        workers=params.workers,
        progress=progress,
    )
    return internal, external


def merge_clustered(
    internal: Mapping[str, ClusteredSet], external: ClusteredSet | None, params: PipelineParams
) -> tuple[pd.DataFrame, list[MergeSummary]]:
    """Merge clustered categories with the external clusters into the final table."""
    return merge_all(
        {name: clustered.labels for name, clustered in internal.items()},
        {name: clustered.features.matrix for name, clustered in internal.items()},
        external.labels if external else None,
        external.features.matrix if external else None,
        params.merging,
    )


def run_pipeline(
    sales: ibis.Table,
    need_states: ibis.Table,
    external_sources: Sequence[tuple[str, pd.DataFrame]],
    params: PipelineParams,
    progress: Progress | None = None,
) -> PipelineResult:
    """Run every stage and return the final store × category table with its evidence."""
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    matrices, match = preprocess_internal(sales, need_states)
    seconds["internal_preprocessing"] = time.perf_counter() - start
    _note(progress, f"internal preprocessing: {len(matrices)} categories")
    _note(progress, match.describe())

    start = time.perf_counter()
    external_features = combine_external_sources(external_sources, params.external)
    stores = sorted({int(s) for matrix in matrices.values() for s in matrix.index})
    coverage = external_coverage(external_features, stores)
    seconds["external_preprocessing"] = time.perf_counter() - start
    _note(progress, coverage.describe())

    start = time.perf_counter()
    internal, external = cluster_all(matrices, external_features, params, progress)
    seconds["clustering"] = time.perf_counter() - start

    start = time.perf_counter()
    final, merges = merge_clustered(internal, external, params)
    seconds["merging"] = time.perf_counter() - start
    _note(progress, f"merging: {len(final)} store × category rows")

    return PipelineResult(
        final=final,
        share_matrices=matrices,
        internal=internal,
        external=external,
        external_features=external_features,
        match=match,
        coverage=coverage,
        merges=merges,
        stage_seconds=seconds,
    )
