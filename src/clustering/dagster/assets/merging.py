"""Merging assets: the final clusters per category (internal first, or the reference system's
demand clusters folded by nearest centroid) as the final table and a per-category summary."""

import dagster as dg
import pandas as pd

from clustering.core.engine import merge_all
from clustering.core.internal_preprocessing import share_matrices
from clustering.core.merging import OUTCOME_TOO_SMALL, MergeSummary
from clustering.core.plots import cluster_sizes_png, markdown_image
from clustering.core.tables import (
    EXTERNAL_SET,
    frames_from_table,
    labels_from_table,
)
from clustering.dagster.assets.common import (
    MergingRunConfig,
    coverage_check,
    load_settings,
    preview,
    store_metadata,
)
from clustering.dagster.resources.config import ClusteringConfigResource

GROUP = "merging"


@dg.multi_asset(
    name="merge_clusters",
    group_name=GROUP,
    outs={
        "final_store_clusters": dg.AssetOut(
            description="One row per store × category: internal, external, demand and final "
            "(REBALANCED_CLUSTER) cluster, whether the store was moved, and its distance to the "
            "final cluster's centroid."
        ),
        "merging_summary": dg.AssetOut(
            description="Per category: strategy, final clusters and the smallest, stores moved, "
            "stores without external features, how well the final clusters keep the internal "
            "and external clusters (homogeneity), and the outcome."
        ),
    },
    compute_kind="pandas",
)
def merge_clusters(
    context: dg.AssetExecutionContext,
    settings: ClusteringConfigResource,
    config: MergingRunConfig,
    internal_assignments: pd.DataFrame,
    internal_features: pd.DataFrame,
    external_assignments: pd.DataFrame,
    external_features: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Final clusters per category by ``merging.strategy`` (default internal_first: internal
    clusters split by external cluster where every part keeps the minimum size)."""
    params = config.apply(load_settings(settings, context).params.merging)
    external_labels = labels_from_table(external_assignments).get(EXTERNAL_SET)
    external_matrix = frames_from_table(external_features).get(EXTERNAL_SET)
    final, summaries = merge_all(
        labels_from_table(internal_assignments),
        frames_from_table(internal_features),
        external_labels,
        external_matrix,
        params,
    )
    summary = pd.DataFrame([s.as_dict() for s in summaries])
    summary = summary.rename(columns=str.upper).assign(MIN_CLUSTER_SIZE=params.min_cluster_size)
    context.add_output_metadata(
        {
            **store_metadata(final),
            "reassigned_stores": int(final["REASSIGNED"].sum()),
            "summary": "\n".join(
                [
                    f"{final['STORE_NBR'].nunique():,} stores assigned in "
                    f"{final['CATEGORY'].nunique()} categories ({len(final):,} store × category "
                    f"rows, merging strategy {params.strategy})",
                    *(_category_line(s) for s in summaries),
                ]
            ),
            "stores_without_external": int(final["EXTERNAL_CLUSTER"].isna().sum()),
            "rebalanced_sizes": dg.MetadataValue.md(
                markdown_image(
                    cluster_sizes_png(final, "REBALANCED_CLUSTER"), "rebalanced cluster sizes"
                )
            ),
        },
        output_name="final_store_clusters",
    )
    context.add_output_metadata(
        {"rows": len(summary), "preview": preview(summary, rows=len(summary))},
        output_name="merging_summary",
    )
    return final, summary


def _category_line(summary: MergeSummary) -> str:
    """``"SNACKS: 6 final clusters (smallest 24), 31 stores moved"`` plus any note."""
    note = f"; {summary.note}" if summary.note else ""
    return (
        f"{summary.category}: {summary.final_clusters} final clusters (smallest "
        f"{summary.smallest_final_cluster}), {summary.reassigned_stores} "
        f"{'store' if summary.reassigned_stores == 1 else 'stores'} moved{note}"
    )


@dg.asset_check(
    asset="final_store_clusters",
    name="every_store_assigned",
    additional_ins={"shares": dg.AssetIn("internal_need_state_sales")},
    description="Every store of every category appears exactly once in the final table.",
)
def final_every_store_assigned(
    final_store_clusters: pd.DataFrame, shares: pd.DataFrame
) -> dg.AssetCheckResult:
    return coverage_check(share_matrices(shares), final_store_clusters)


@dg.asset_check(
    asset="final_store_clusters",
    name="min_cluster_size_respected",
    additional_ins={"summary": dg.AssetIn("merging_summary")},
    description="Every final cluster reaches the minimum size; a category with fewer stores than "
    "that forms one cluster and is listed (a warning).",
)
def final_min_cluster_size(
    final_store_clusters: pd.DataFrame, summary: pd.DataFrame
) -> dg.AssetCheckResult:
    min_size = dict(zip(summary["CATEGORY"], summary["MIN_CLUSTER_SIZE"], strict=True))
    tiny = summary[summary["OUTCOME"] == OUTCOME_TOO_SMALL]
    too_small_categories = {
        str(c): int(n) for c, n in zip(tiny["CATEGORY"], tiny["STORES"], strict=True)
    }
    sizes = final_store_clusters.groupby(["CATEGORY", "REBALANCED_CLUSTER"]).size()
    smallest = sizes.groupby("CATEGORY").min()
    below = {
        str(name): int(size)
        for name, size in smallest.items()
        if size < min_size[name] and str(name) not in too_small_categories
    }
    metadata = {
        "clusters_below_min_size": dg.MetadataValue.json(below),
        "categories_too_small_to_split": dg.MetadataValue.json(too_small_categories),
    }
    if below:
        return dg.AssetCheckResult(
            passed=False,
            metadata=metadata,
            description=f"final clusters below the minimum size in {len(below)} categories",
        )
    if too_small_categories:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
            description=(
                f"{len(too_small_categories)} categories have fewer stores than the minimum "
                "cluster size and form one cluster each: "
                + ", ".join(f"{c} ({n})" for c, n in sorted(too_small_categories.items()))
            ),
        )
    return dg.AssetCheckResult(
        passed=True, metadata=metadata, description="every final cluster large enough"
    )


merging_assets: list[dg.AssetsDefinition | dg.AssetChecksDefinition] = [
    merge_clusters,
    final_every_store_assigned,
    final_min_cluster_size,
]
