"""Merging assets: demand clusters (external × internal), rebalanced, as the final table."""

import dagster as dg
import pandas as pd

from clustering.core.engine import merge_all
from clustering.core.internal_preprocessing import share_matrices
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
            description="One row per store × category: internal, external, demand and "
            "rebalanced cluster, whether the store was moved, and its distance to the centroid."
        ),
        "merging_summary": dg.AssetOut(
            description="Per category: demand clusters, small ones, stores moved, stores "
            "without external features."
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
    """Demand cluster = external × internal; small demand clusters move to the nearest large
    centroid in the combined standardised feature space."""
    params = config.apply(load_settings(settings, context).params.merging)
    external_labels = labels_from_table(external_assignments).get(EXTERNAL_SET)
    external_matrix = frames_from_table(external_features).get(EXTERNAL_SET)
    final, summaries = merge_all(
        labels_from_table(internal_assignments),
        frames_from_table(internal_features),
        external_labels,
        external_matrix,
        params.min_cluster_size,
    )
    summary = pd.DataFrame([s.as_dict() for s in summaries])
    summary["small_clusters"] = summary["small_clusters"].map(", ".join)
    summary = summary.rename(columns=str.upper).assign(MIN_CLUSTER_SIZE=params.min_cluster_size)
    context.add_output_metadata(
        {
            **store_metadata(final),
            "reassigned_stores": int(final["REASSIGNED"].sum()),
            "summary": (
                f"{final['STORE_NBR'].nunique():,} stores assigned in "
                f"{final['CATEGORY'].nunique()} categories ({len(final):,} store × category "
                f"rows; {int(final['REASSIGNED'].sum()):,} moved out of small demand clusters)"
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
    description="Rebalanced clusters reach the minimum size wherever a large cluster exists.",
)
def final_min_cluster_size(
    final_store_clusters: pd.DataFrame, summary: pd.DataFrame
) -> dg.AssetCheckResult:
    min_size = dict(zip(summary["CATEGORY"], summary["MIN_CLUSTER_SIZE"], strict=True))
    no_large = dict(
        zip(
            summary["CATEGORY"],
            summary["NOTE"].str.startswith("no demand cluster reaches"),
            strict=True,
        )
    )
    sizes = final_store_clusters.groupby(["CATEGORY", "REBALANCED_CLUSTER"]).size()
    smallest = sizes.groupby("CATEGORY").min()
    too_small = {
        str(name): int(size)
        for name, size in smallest.items()
        if size < min_size[name] and not no_large[name]
    }
    return dg.AssetCheckResult(
        passed=not too_small,
        metadata={"smallest_cluster_by_category": dg.MetadataValue.json(too_small)},
        description="all rebalanced clusters large enough" if not too_small else "too small",
    )


merging_assets: list[dg.AssetsDefinition | dg.AssetChecksDefinition] = [
    merge_clusters,
    final_every_store_assigned,
    final_min_cluster_size,
]
