"""Clustering assets, built twice: for the internal need-state shares and the external features.

Each track is one step: per category (in parallel processes) features → k → clusters → profiles,
written as six tables — features, models (the whole k-curve), assignments, centroids, profiles
and the fitted models as data (to place new stores) — with the same quality checks: every store
assigned once, the minimum cluster size respected, and silhouette and stability floors (warnings).
"""

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from clustering.core.engine import (
    ClusteredSet,
    cluster_feature_table,
    describe_result,
    map_categories,
)
from clustering.core.internal_preprocessing import SHARE_MATRIX_COLUMNS, share_matrix
from clustering.core.placement import MODEL_TABLE_COLUMNS, cluster_model_table
from clustering.core.plots import cluster_sizes_svg, k_curve_svg, markdown_image
from clustering.core.tables import (
    FEATURE_SCHEMA,
    CategoryTables,
    assignment_table,
    centroid_table,
    chosen_models,
    cluster_labels_table,
    external_frames,
    model_table,
    profile_table,
    smallest_groups,
)
from clustering.dagster.assets.common import (
    OWNERS,
    WORKER_OP_TAGS,
    ClusteringRunConfig,
    catalogue,
    category_progress,
    coverage_check,
    for_check,
    progress_to,
    size_check,
    store_metadata,
    table_schema,
)
from clustering.dagster.metadata import preview
from clustering.dagster.resources.io_manager import LOAD_BY_KEY
from clustering.dagster.resources.logging import LoggerResource
from clustering.dagster.resources.settings import ClusteringSettings
from clustering.io.duckdb_store import TableByKey
from clustering.io.memory import release_unused_memory
from clustering.io.spill import ArrowSpill

Kind = Literal["internal", "external"]
#: Builds the feature sets from the source asset's DataFrame.
FrameSource = Callable[[pd.DataFrame], dict[str, pd.DataFrame]]


@dataclass(frozen=True)
class ByCategory:
    """A source read one category at a time: the columns to read and how one category's rows
    (Arrow: text stays coded, no Python string per row) become its feature set."""

    columns: tuple[str, ...]
    to_frame: Callable[[pa.Table], pd.DataFrame]


_CATEGORY = "string: the category (EXTERNAL for the external features)"
SCHEMAS = {
    "features": table_schema(
        CATEGORY=_CATEGORY,
        STORE_NBR="int64",
        FEATURE="string: need state, store feature or principal component",
        VALUE="float64: in the clustering space (transformed, scaled)",
        OUTLIER="bool: the store is an outlier in this category (clipped, never dropped)",
    ),
    "models": table_schema(
        CATEGORY=_CATEGORY,
        k="int64",
        silhouette="float64: on a sample of at most 2,000 stores",
        calinski_harabasz="float64",
        davies_bouldin="float64",
        inertia="float64",
        bic="float64: Gaussian mixture with one shared diagonal covariance",
        smallest_cluster="int64: scaled to all stores",
        admissible="bool: every cluster reaches min_cluster_size",
        score="float64: the selection rule's score",
        stability="float64: mean ARI across resamples (chosen k)",
        chosen="bool",
        FALLBACK="string: why k was lowered, if it was",
    ),
    "assignments": table_schema(
        CATEGORY=_CATEGORY, STORE_NBR="int64", CLUSTER="int64: 1 = largest"
    ),
    "centroids": table_schema(
        CATEGORY=_CATEGORY, CLUSTER="int64", FEATURE="string", VALUE="float64"
    ),
    "profiles": table_schema(
        CATEGORY=_CATEGORY,
        CLUSTER="int64",
        STORES="int64",
        LABEL="string: generated name, e.g. high VITAMINS-IMMUNITY, low COLD-FLU",
        FEATURE="string",
        CLUSTER_MEAN="float64: in original units (share %, feature unit)",
        AVERAGE="float64: over all stores of the category",
        INDEX="float64: 100 = average",
        Z_DIFF="float64: difference in standard deviations",
    ),
    "fitted_models": table_schema(
        CATEGORY=_CATEGORY,
        MODEL="string: JSON: the fitted feature transformation and the cluster centres",
    ),
}
DESCRIPTIONS = {
    "features": "Clustering input per category: imputed, transformed, pruned, scaled (optionally "
    "PCA) features; outliers flagged, never removed.",
    "models": "Every k tried per category: silhouette, Calinski-Harabasz, Davies-Bouldin, BIC, "
    "sizes; the chosen k with its stability and any fallback reason.",
    "assignments": "The cluster (1..k, largest first) of every store in every category.",
    "centroids": "Cluster centroids in the clustering space.",
    "profiles": "Each cluster in original units: mean vs average (index, 100 = average), size "
    "and a generated label that names it.",
    "fitted_models": "The fitted models as data, one JSON document per category: kept features, "
    "fill values, centring, scaling, clipping, PCA and the cluster centres (used to place new "
    "stores; no pickles).",
}
EXPORTS = {"models": "csv", "profiles": "csv"}


def _chosen_k_text(models: pd.DataFrame) -> str:
    """One line per category for the run summary: chosen k, silhouette and stability."""
    lines = []
    for name, row in chosen_models(models).iterrows():
        note = f" ({row['FALLBACK']})" if row["FALLBACK"] else ""
        lines.append(
            f"{name}: k={row['k']}, silhouette {row['silhouette']:.3f}, "
            f"stability {row['stability']:.2f}{note}"
        )
    return "\n".join(lines)


def _chosen_k_markdown(models: pd.DataFrame) -> str:
    lines = ["| category | k | silhouette | stability | note |", "|---|---|---|---|---|"]
    for name, row in chosen_models(models).iterrows():
        lines.append(
            f"| {name} | {row['k']} | {row['silhouette']:.3f} | {row['stability']:.2f} "
            f"| {row['FALLBACK']} |"
        )
    return "\n".join(lines)


def _fitted_models(clustered: Mapping[str, ClusteredSet]) -> pd.DataFrame:
    return cluster_model_table(clustered)[MODEL_TABLE_COLUMNS]


#: The step's tables other than the features, each built per category as it finishes.
TABLE_BUILDERS: dict[str, Callable[[Mapping[str, ClusteredSet]], pd.DataFrame]] = {
    "models": model_table,
    "assignments": assignment_table,
    "centroids": centroid_table,
    "profiles": profile_table,
    "fitted_models": _fitted_models,
}


class _Frames(Mapping[str, pd.DataFrame]):
    """The feature sets to cluster by name, each built when asked for: from a table read one
    category at a time (the internal shares: never whole in memory) or from a loaded frame.
    Remembers the stores of every set it gave out, for the every_store_assigned check."""

    def __init__(self, source: pd.DataFrame | TableByKey, frames_from: FrameSource | ByCategory):
        self._source = source
        self._by_category = frames_from if isinstance(frames_from, ByCategory) else None
        self._built: dict[str, pd.DataFrame] = {}
        if isinstance(source, TableByKey) != (self._by_category is not None):
            raise TypeError(
                "a clustering source read by category needs a ByCategory, and only it does "
                f"(got {type(source).__name__} and {type(frames_from).__name__})"
            )
        if isinstance(source, TableByKey):
            self.names: list[str] = sorted(source)
        else:
            self._built = cast(FrameSource, frames_from)(source)
            self.names = sorted(self._built)
        self.stores: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self.names:
            raise KeyError(name)
        if isinstance(self._source, TableByKey) and self._by_category is not None:
            rows = self._source.arrow(name, columns=list(self._by_category.columns))
            frame = self._by_category.to_frame(rows)
        else:
            frame = self._built[name]
        self.stores[name] = frame.index.to_numpy(dtype=np.int64)
        return frame

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def build_clustering_assets(
    kind: Kind, source: str, frames_from: FrameSource | ByCategory
) -> list[dg.AssetsDefinition]:
    """The clustering step of one track reading the asset ``source`` (whole, made into feature
    sets by a :data:`FrameSource`, or one category at a time), and its checks."""
    by_category = isinstance(frames_from, ByCategory)
    group = f"{kind}_clustering"
    key = {part: f"{kind}_{part}" for part in SCHEMAS}

    checks = {
        "every_store_assigned": (
            key["assignments"],
            "Every store of every category has exactly one cluster.",
        ),
        "min_cluster_size_respected": (
            key["assignments"],
            "No cluster is smaller than min_cluster_size; a category with fewer stores than "
            "that forms one cluster and is listed (a warning).",
        ),
        "silhouette_above_floor": (
            key["models"],
            "The chosen clusters separate stores at least as well as silhouette_floor (a warning).",
        ),
        "stability_above_floor": (
            key["models"],
            "The chosen clusters reproduce across resamples (mean ARI) at least as well as "
            "stability_floor (a warning).",
        ),
    }

    @dg.multi_asset(
        name=f"{kind}_clustering",
        group_name=group,
        op_tags=WORKER_OP_TAGS,
        ins={
            "source_table": dg.AssetIn(
                source, metadata={LOAD_BY_KEY: "CATEGORY"} if by_category else None
            )
        },
        outs={
            key[part]: dg.AssetOut(
                description=DESCRIPTIONS[part],
                metadata=catalogue(SCHEMAS[part], EXPORTS.get(part, "")),
                kinds={"sklearn", "duckdb"},
                owners=OWNERS,
                tags={"stage": "clustering", "track": kind},
            )
            for part in SCHEMAS
        },
        # The step checks its own results while they are in memory: no check re-reads a table.
        check_specs=[
            dg.AssetCheckSpec(name, asset=asset, description=description)
            for name, (asset, description) in checks.items()
        ],
    )
    def clustering_step(
        context: dg.AssetExecutionContext,
        settings: ClusteringSettings,
        logger: LoggerResource,
        config: ClusteringRunConfig,
        # A DataFrame, or for the internal shares a table read one category at a time (Dagster
        # types no union annotation).
        source_table: Any,
    ) -> Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]:
        """Features, k, clusters and profiles for every category, in parallel processes."""
        params = settings.config.params
        feature_params = (
            params.internal_features if kind == "internal" else params.external_features
        )
        clustering_params = config.apply(
            params.internal_clustering if kind == "internal" else params.external_clustering
        )
        # A what-if limited to some categories clusters only those; the external set is whole.
        frames = _Frames(source_table, frames_from)
        frames.names = config.select(frames.names, kind)
        report = progress_to(context, logger.get_logger())
        spill = ArrowSpill(FEATURE_SCHEMA, settings.config.paths.outputs_dir)
        try:
            # Each category's results are turned into its rows of the output tables as soon as
            # it finishes (features spilled to disk): no step holds every category's matrices.
            collected = CategoryTables(TABLE_BUILDERS, spill.write)
            with category_progress(len(frames), report, describe_result) as finished:

                def take(name: str, item: ClusteredSet) -> None:
                    collected.add(name, item)
                    finished(name, item)

                map_categories(
                    cluster_feature_table,
                    frames,
                    feature_params,
                    clustering_params,
                    workers=params.workers,
                    progress=take,
                    keep=False,
                )
            expected = frames.stores
            del frames, source_table
            models = collected.table("models").assign(
                MIN_CLUSTER_SIZE=clustering_params.min_cluster_size,
                SILHOUETTE_FLOOR=clustering_params.silhouette_floor,
                STABILITY_FLOOR=clustering_params.stability_floor,
                SELECTION=clustering_params.selection,
            )
            assignments = collected.table("assignments")
            profiles = collected.table("profiles")
            labels = cluster_labels_table(profiles)
            # Streamed back from the spill file: the long table is the largest the step writes.
            yield dg.Output(
                spill.reader(),
                output_name=key["features"],
                metadata={"outlier_rows": collected.outlier_rows},
            )
        finally:
            spill.close()
        yield dg.Output(
            models,
            output_name=key["models"],
            metadata={
                "chosen_k": dg.MetadataValue.md(_chosen_k_markdown(models)),
                "summary": _chosen_k_text(models),
                "k_curve": dg.MetadataValue.md(markdown_image(k_curve_svg(models), "k-curve")),
                "rows": len(models),
            },
        )
        yield dg.Output(
            assignments,
            output_name=key["assignments"],
            metadata={
                **store_metadata(assignments),
                "cluster_sizes": dg.MetadataValue.md(
                    markdown_image(cluster_sizes_svg(assignments), "cluster sizes")
                ),
            },
        )
        yield dg.Output(collected.table("centroids"), output_name=key["centroids"])
        yield dg.Output(
            profiles,
            output_name=key["profiles"],
            metadata={**store_metadata(profiles), "clusters": preview(labels, rows=len(labels))},
        )
        yield dg.Output(collected.table("fitted_models"), output_name=key["fitted_models"])
        results = {
            "every_store_assigned": coverage_check(expected, assignments),
            "min_cluster_size_respected": _size_check(assignments, models),
            "silhouette_above_floor": _floor_check(models, "silhouette", "SILHOUETTE_FLOOR"),
            "stability_above_floor": _floor_check(models, "stability", "STABILITY_FLOOR"),
        }
        for name, result in results.items():
            yield for_check(result, checks[name][0], name)
        release_unused_memory()

    return [clustering_step]


def _size_check(assignments: pd.DataFrame, models: pd.DataFrame) -> dg.AssetCheckResult:
    chosen = chosen_models(models)
    k = chosen["k"].to_dict()
    min_size = chosen["MIN_CLUSTER_SIZE"].to_dict()
    sizes = smallest_groups(assignments, "CLUSTER")
    below = {n: s for n, s in sizes.items() if s < min_size[n]}
    return size_check(
        {n: s for n, s in below.items() if k[n] > 1},
        {n: s for n, s in below.items() if k[n] == 1},
    )


def _floor_check(models: pd.DataFrame, metric: str, floor: str) -> dg.AssetCheckResult:
    chosen = chosen_models(models)
    weak = chosen[(chosen["k"] > 1) & (chosen[metric] < chosen[floor])][metric]
    return dg.AssetCheckResult(
        passed=weak.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            f"{metric}_by_category": dg.MetadataValue.json(
                {str(n): round(float(v), 4) for n, v in chosen[metric].items()}
            ),
            "weak_categories": dg.MetadataValue.json(
                {str(n): round(float(v), 4) for n, v in weak.items()}
            ),
        },
        description=(
            f"every chosen k above the {metric} floor"
            if weak.empty
            else f"{len(weak)} categories below the {metric} floor: "
            + ", ".join(f"{n} ({v:.2f})" for n, v in weak.items())
        ),
    )


internal_clustering_assets = build_clustering_assets(
    "internal", "internal_need_state_sales", ByCategory(SHARE_MATRIX_COLUMNS, share_matrix)
)
external_clustering_assets = build_clustering_assets(
    "external", "external_store_features", external_frames
)
