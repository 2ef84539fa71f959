"""Clustering assets, built twice: for the internal share matrices and the external features.

Each track has the same four data products — features, models (the whole k-curve), assignments
(with centroids) and profiles — and the same quality checks: every store assigned once, the
minimum cluster size respected, and a silhouette floor (warning).
"""

from collections.abc import Callable
from typing import Literal

import dagster as dg
import pandas as pd

from clustering.core.engine import choose_k_named, describe_result, map_categories
from clustering.core.features import engineer_features
from clustering.core.internal_preprocessing import share_matrices
from clustering.core.params import ClusteringParams, FeatureParams, PipelineParams
from clustering.core.plots import cluster_sizes_png, k_curve_png, markdown_image
from clustering.core.tables import (
    assignment_table,
    centroid_table,
    chosen_models,
    cluster_labels_table,
    external_frames,
    feature_table,
    frames_from_table,
    labels_from_table,
    model_table,
    profile_table,
)
from clustering.dagster.assets.common import (
    ClusteringRunConfig,
    coverage_check,
    load_settings,
    preview,
    progress_to,
    store_metadata,
)
from clustering.dagster.resources.config import ClusteringConfigResource
from clustering.dagster.resources.logging import LoggerResource

Kind = Literal["internal", "external"]
FrameSource = Callable[[pd.DataFrame], dict[str, pd.DataFrame]]


def _feature_params(params: PipelineParams, kind: Kind) -> FeatureParams:
    return params.internal_features if kind == "internal" else params.external_features


def _clustering_params(params: PipelineParams, kind: Kind) -> ClusteringParams:
    return params.internal_clustering if kind == "internal" else params.external_clustering


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
    chosen = chosen_models(models)
    lines = [
        "| category | k | silhouette | stability | note |",
        "|---|---|---|---|---|",
    ]
    for name, row in chosen.iterrows():
        lines.append(
            f"| {name} | {row['k']} | {row['silhouette']:.3f} | {row['stability']:.2f} "
            f"| {row['FALLBACK']} |"
        )
    return "\n".join(lines)


def build_clustering_assets(
    kind: Kind, source: str, to_frames: FrameSource
) -> list[dg.AssetsDefinition | dg.AssetChecksDefinition]:
    """Assets and checks of one clustering track reading the asset ``source``."""
    group = f"{kind}_clustering"
    features_key, models_key = f"{kind}_features", f"{kind}_models"
    assignments_key, centroids_key = f"{kind}_assignments", f"{kind}_centroids"
    profiles_key = f"{kind}_profiles"

    @dg.asset(
        name=features_key,
        group_name=group,
        ins={"source_table": dg.AssetIn(source)},
        compute_kind="scikit-learn",
    )
    def features_asset(
        context: dg.AssetExecutionContext,
        settings: ClusteringConfigResource,
        source_table: pd.DataFrame,
    ) -> pd.DataFrame:
        """Clustering input per category: imputed, pruned, scaled (optionally PCA) features;
        outliers flagged, never removed."""
        params = _feature_params(load_settings(settings, context).params, kind)
        engineered = {
            name: engineer_features(frame, params)
            for name, frame in to_frames(source_table).items()
        }
        table = feature_table(engineered)
        reports = {name: fm.report.as_dict() for name, fm in engineered.items()}
        for report in reports.values():
            report["outlier_stores"] = len(report["outlier_stores"])  # type: ignore[arg-type]
        context.add_output_metadata(
            {
                **store_metadata(table),
                "outlier_rows": int(table["OUTLIER"].sum()),
                "feature_reports": dg.MetadataValue.json(reports),
            }
        )
        return table

    @dg.multi_asset(
        name=f"{kind}_clustering_models",
        group_name=group,
        ins={"features": dg.AssetIn(features_key)},
        outs={
            models_key: dg.AssetOut(description="Every k tried per category: metrics, chosen k."),
            assignments_key: dg.AssetOut(description="The cluster (1..k) of every store."),
            centroids_key: dg.AssetOut(description="Cluster centroids in the clustering space."),
        },
        compute_kind="scikit-learn",
    )
    def models_asset(
        context: dg.AssetExecutionContext,
        settings: ClusteringConfigResource,
        logger: LoggerResource,
        config: ClusteringRunConfig,
        features: pd.DataFrame,
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Choose k and cluster every category in parallel processes."""
        pipeline_params = load_settings(settings, context).params
        params = config.apply(_clustering_params(pipeline_params, kind))
        results = map_categories(
            choose_k_named,
            frames_from_table(features),
            params,
            workers=pipeline_params.workers,
            progress=progress_to(context, logger.get_logger()),
            describe=describe_result,
        )
        models = model_table(results).assign(
            MIN_CLUSTER_SIZE=params.min_cluster_size,
            SILHOUETTE_FLOOR=params.silhouette_floor,
            STABILITY_FLOOR=params.stability_floor,
            SELECTION=params.selection,
        )
        assignments = assignment_table(results)
        centroids = centroid_table(results)
        context.add_output_metadata(
            {
                "chosen_k": dg.MetadataValue.md(_chosen_k_markdown(models)),
                "summary": _chosen_k_text(models),
                "k_curve": dg.MetadataValue.md(markdown_image(k_curve_png(models), "k-curve")),
                "rows": len(models),
            },
            output_name=models_key,
        )
        context.add_output_metadata(
            {
                **store_metadata(assignments),
                "cluster_sizes": dg.MetadataValue.md(
                    markdown_image(cluster_sizes_png(assignments), "cluster sizes")
                ),
            },
            output_name=assignments_key,
        )
        context.add_output_metadata({"rows": len(centroids)}, output_name=centroids_key)
        return models, assignments, centroids

    @dg.asset(
        name=profiles_key,
        group_name=group,
        ins={"source_table": dg.AssetIn(source), "assignments": dg.AssetIn(assignments_key)},
        compute_kind="pandas",
    )
    def profiles_asset(
        context: dg.AssetExecutionContext,
        source_table: pd.DataFrame,
        assignments: pd.DataFrame,
    ) -> pd.DataFrame:
        """Each cluster in original units: mean vs average (index, 100 = average), size and a
        generated label that names it."""
        profiles = profile_table(to_frames(source_table), labels_from_table(assignments))
        labels = cluster_labels_table(profiles)
        context.add_output_metadata(
            {**store_metadata(profiles), "clusters": preview(labels, rows=len(labels))}
        )
        return profiles

    @dg.asset_check(
        asset=assignments_key,
        name="every_store_assigned",
        additional_ins={"source_table": dg.AssetIn(source)},
        description="Every store of every category has exactly one cluster.",
    )
    def every_store_assigned(
        assignments: pd.DataFrame, source_table: pd.DataFrame
    ) -> dg.AssetCheckResult:
        return coverage_check(to_frames(source_table), assignments)

    @dg.asset_check(
        asset=assignments_key,
        name="min_cluster_size_respected",
        additional_ins={"models": dg.AssetIn(models_key)},
        description="No cluster is smaller than min_cluster_size; a category with fewer stores "
        "than that forms one cluster and is listed (a warning).",
    )
    def min_cluster_size_respected(
        assignments: pd.DataFrame, models: pd.DataFrame
    ) -> dg.AssetCheckResult:
        chosen = chosen_models(models)
        k = chosen["k"].to_dict()
        min_size = chosen["MIN_CLUSTER_SIZE"].to_dict()
        sizes = assignments.groupby(["CATEGORY", "CLUSTER"]).size().groupby("CATEGORY").min()
        below = {str(n): int(s) for n, s in sizes.items() if s < min_size[n]}
        too_small = {n: s for n, s in below.items() if k[n] > 1}
        tiny = {n: s for n, s in below.items() if k[n] == 1}
        metadata = {
            "clusters_below_min_size": dg.MetadataValue.json(too_small),
            "categories_too_small_to_split": dg.MetadataValue.json(tiny),
        }
        if too_small:
            return dg.AssetCheckResult(
                passed=False, metadata=metadata, description="clusters too small"
            )
        return dg.AssetCheckResult(
            passed=not tiny,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
            description=(
                "all clusters large enough"
                if not tiny
                else f"{len(tiny)} categories have fewer stores than the minimum cluster size "
                "and form one cluster each: "
                + ", ".join(f"{n} ({s})" for n, s in sorted(tiny.items()))
            ),
        )

    @dg.asset_check(
        asset=models_key,
        name="silhouette_above_floor",
        description="The chosen k separates stores at least as well as silhouette_floor.",
    )
    def silhouette_above_floor(models: pd.DataFrame) -> dg.AssetCheckResult:
        chosen = chosen_models(models)
        weak = chosen[(chosen["k"] > 1) & (chosen["silhouette"] < chosen["SILHOUETTE_FLOOR"])]
        return dg.AssetCheckResult(
            passed=weak.empty,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "weak_categories": dg.MetadataValue.json(
                    {str(name): round(float(v), 4) for name, v in weak["silhouette"].items()}
                )
            },
            description=(
                "every chosen k above the silhouette floor"
                if weak.empty
                else f"{len(weak)} categories below the silhouette floor"
            ),
        )

    @dg.asset_check(
        asset=models_key,
        name="stability_above_floor",
        description="The chosen clusters reproduce across resamples (mean ARI) at least as well "
        "as stability_floor.",
    )
    def stability_above_floor(models: pd.DataFrame) -> dg.AssetCheckResult:
        chosen = chosen_models(models)
        weak = chosen[(chosen["k"] > 1) & (chosen["stability"] < chosen["STABILITY_FLOOR"])]
        return dg.AssetCheckResult(
            passed=weak.empty,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "stability_by_category": dg.MetadataValue.json(
                    {str(name): round(float(v), 3) for name, v in chosen["stability"].items()}
                ),
                "unstable_categories": dg.MetadataValue.json(
                    {str(name): round(float(v), 3) for name, v in weak["stability"].items()}
                ),
            },
            description=(
                "every chosen clustering stable across resamples"
                if weak.empty
                else f"{len(weak)} categories below the stability floor: "
                + ", ".join(f"{n} ({v:.2f})" for n, v in weak["stability"].items())
            ),
        )

    return [
        features_asset,
        models_asset,
        profiles_asset,
        every_store_assigned,
        min_cluster_size_respected,
        silhouette_above_floor,
        stability_above_floor,
    ]


internal_clustering_assets = build_clustering_assets(
    "internal", "internal_need_state_sales", share_matrices
)
external_clustering_assets = build_clustering_assets(
    "external", "external_store_features", external_frames
)
