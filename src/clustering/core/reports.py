"""Tables and summaries a category manager reads, built from a pipeline result."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import pandas as pd

from clustering.core.engine import ClusteredSet
from clustering.core.pipeline import PipelineResult


def _stacked(
    internal: Mapping[str, ClusteredSet],
    external: ClusteredSet | None,
    table: Callable[[ClusteredSet], pd.DataFrame],
) -> pd.DataFrame:
    """``table(clustered)`` for every category and the external set, led by SOURCE, CATEGORY."""
    frames = [
        table(clustered).assign(SOURCE="internal", CATEGORY=name)
        for name, clustered in sorted(internal.items())
    ]
    if external is not None:
        frames.append(table(external).assign(SOURCE="external", CATEGORY="EXTERNAL"))
    if not frames:
        return pd.DataFrame()
    stacked = pd.concat(frames, ignore_index=True)
    leading = ["SOURCE", "CATEGORY"]
    return stacked[leading + [c for c in stacked.columns if c not in leading]]


def k_curves(internal: Mapping[str, ClusteredSet], external: ClusteredSet | None) -> pd.DataFrame:
    """Every k tried per category (and ``EXTERNAL``), its metrics, and whether it was chosen."""
    return _stacked(internal, external, lambda clustered: clustered.result.k_curve)


def cluster_summaries(
    internal: Mapping[str, ClusteredSet], external: ClusteredSet | None
) -> pd.DataFrame:
    """One row per cluster: size, generated label and top features, per category."""
    return _stacked(internal, external, lambda clustered: clustered.profiles.summary)


def _finite(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


def run_summary(result: PipelineResult) -> dict[str, object]:
    """JSON-safe summary: per category k, metrics, sizes; external; merging; data quality."""
    categories = {}
    for name, clustered in result.internal.items():
        categories[name] = {
            "stores": len(clustered.labels),
            "k": clustered.result.k,
            "silhouette": _finite(clustered.result.metrics["silhouette"]),
            "calinski_harabasz": _finite(clustered.result.metrics["calinski_harabasz"]),
            "davies_bouldin": _finite(clustered.result.metrics["davies_bouldin"]),
            "cluster_sizes": {
                str(k): int(v) for k, v in clustered.labels.value_counts().sort_index().items()
            },
            "fallback": clustered.result.fallback,
            "features": clustered.features.report.as_dict(),
        }
    external: dict[str, object] | None = None
    if result.external is not None:
        external = {
            "stores": len(result.external.labels),
            "k": result.external.result.k,
            "silhouette": _finite(result.external.result.metrics["silhouette"]),
            "fallback": result.external.result.fallback,
            "features": result.external.features.report.as_dict(),
            "dropped_columns": result.external_features.dropped_columns,
        }
    return {
        "rows": len(result.final),
        "stores": int(result.final["STORE_NBR"].nunique()) if len(result.final) else 0,
        "categories": categories,
        "external": external,
        "merging": [summary.as_dict() for summary in result.merges],
        "input_matching": result.match.model_dump(),
        "external_coverage": {
            "stores_total": result.coverage.stores_total,
            "stores_with_features": result.coverage.stores_with_features,
            "stores_without_features": len(result.coverage.stores_without_features),
        },
        "stage_seconds": {k: round(v, 3) for k, v in result.stage_seconds.items()},
    }
