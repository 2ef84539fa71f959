"""Merging assets: the final clusters per category (internal first, or the reference system's
demand clusters folded by nearest centroid) as the final table and a per-category summary, with
the category managers' overrides honoured and audited."""

import dagster as dg
import pandas as pd

from clustering.core.merging import OUTCOME_TOO_SMALL, MergeSummary, merge_categories
from clustering.core.overrides import AUDIT_COLUMNS, REVIEW
from clustering.core.plots import cluster_sizes_png, markdown_image
from clustering.core.tables import (
    EXTERNAL_SET,
    frames_from_table,
    labels_from_table,
    stores_by_category,
)
from clustering.dagster.assets.common import (
    OWNERS,
    MergingRunConfig,
    catalogue,
    coverage_check,
    in_scope,
    preview,
    run_scope,
    size_check,
    store_metadata,
    table_schema,
    user_errors,
)
from clustering.dagster.assets.workbench import honour_overrides
from clustering.dagster.resources.settings import ClusteringSettings

GROUP = "merging"

FINAL_SCHEMA = table_schema(
    STORE_NBR="int64",
    CATEGORY="string",
    INTERNAL_CLUSTER="int64: cluster of the store's need-state mix",
    EXTERNAL_CLUSTER="int64: cluster of its external features (null without them)",
    DEMAND_CLUSTER="string: internal × external, I2-E3 (I2-NOEXT without external features)",
    REBALANCED_CLUSTER="string: the final cluster a planner works with (I2-E3, I2-E1+E3, I2)",
    REASSIGNED="bool: moved out of its own part or demand cluster",
    DISTANCE="float64: distance to the final cluster's centroid (balanced space); empty for a "
    "store an override moved",
    OVERRIDDEN="bool: the store is where a manual override pinned it",
    OVERRIDE_REASON="string: the override's reason (REVIEW: … when it could not be honoured)",
)
OVERRIDES_SCHEMA = table_schema(
    STORE_NBR="int64",
    CATEGORY="string",
    PINNED_CLUSTER="string: the cluster the overrides file names",
    MODEL_CLUSTER="string: the cluster the model gave the store",
    FINAL_CLUSTER="string: where the store is in the final table",
    STATUS="string: applied, mapped (pinned cluster gone), review, out_of_scope",
    REASON="string",
    APPROVED_BY="string",
    NOTE="string: how a vanished cluster was mapped, or why it needs review",
)
SUMMARY_SCHEMA = table_schema(
    CATEGORY="string",
    STRATEGY="string: internal_first or nearest_centroid",
    STORES="int64",
    INTERNAL_CLUSTERS="int64",
    DEMAND_CLUSTERS="int64",
    FINAL_CLUSTERS="int64",
    SMALLEST_FINAL_CLUSTER="int64",
    REASSIGNED_STORES="int64",
    STORES_WITHOUT_EXTERNAL="int64",
    HOMOGENEITY_INTERNAL="float64: 1 = no final cluster mixes internal clusters",
    HOMOGENEITY_EXTERNAL="float64: 1 = no final cluster mixes external clusters",
    OUTCOME="string: split, not_split, too_small or internal_clusters",
    NOTE="string",
    MIN_CLUSTER_SIZE="int64",
)


@dg.multi_asset(
    name="merge_clusters",
    group_name=GROUP,
    outs={
        "final_store_clusters": dg.AssetOut(
            description="One row per store × category: internal, external, demand and final "
            "(REBALANCED_CLUSTER) cluster, whether the store was moved, and its distance to the "
            "final cluster's centroid.",
            metadata=catalogue(FINAL_SCHEMA, "parquet,csv"),
            kinds={"pandas", "duckdb"},
            owners=OWNERS,
            tags={"stage": "merging"},
        ),
        "merging_summary": dg.AssetOut(
            description="Per category: strategy, final clusters and the smallest, stores moved, "
            "stores without external features, how well the final clusters keep the internal "
            "and external clusters (homogeneity), and the outcome.",
            metadata=catalogue(SUMMARY_SCHEMA, "csv"),
            kinds={"pandas", "duckdb"},
            owners=OWNERS,
            tags={"stage": "merging"},
        ),
        "store_overrides": dg.AssetOut(
            description="The overrides file (paths.overrides) as this run honoured it: each "
            "pinned store, the model's cluster, where it ended and how (applied, mapped to the "
            "cluster holding most of a vanished cluster's stores, or flagged for review).",
            metadata=catalogue(OVERRIDES_SCHEMA, "csv"),
            kinds={"pandas", "duckdb"},
            owners=OWNERS,
            tags={"stage": "merging"},
        ),
    },
)
def merge_clusters(
    context: dg.AssetExecutionContext,
    settings: ClusteringSettings,
    config: MergingRunConfig,
    internal_assignments: pd.DataFrame,
    internal_features: pd.DataFrame,
    external_assignments: pd.DataFrame,
    external_features: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Final clusters per category by ``merging.strategy`` (default internal_first: internal
    clusters split by external cluster where every part keeps the minimum size), with the
    overrides file honoured."""
    params = config.apply(settings.config.params.merging)
    final, summaries = merge_categories(
        labels_from_table(internal_assignments),
        frames_from_table(internal_features),
        labels_from_table(external_assignments).get(EXTERNAL_SET),
        frames_from_table(external_features).get(EXTERNAL_SET),
        params,
    )
    with user_errors():
        applied = honour_overrides(context, settings, final)
    final = applied.final
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
                    applied.describe(),
                ]
            ),
            "overridden_stores": int(final["OVERRIDDEN"].sum()),
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
    context.add_output_metadata(
        {
            "rows": len(applied.audit),
            "overrides_file": str(settings.config.paths.overrides),
            "preview": preview(applied.audit, rows=20),
        },
        output_name="store_overrides",
    )
    return final, summary, applied.audit[AUDIT_COLUMNS]


def _category_line(summary: MergeSummary) -> str:
    """``"SNACKS: 6 final clusters (smallest 24), 31 stores moved"`` plus any note."""
    note = f"; {summary.note}" if summary.note else ""
    moved = summary.reassigned_stores
    return (
        f"{summary.category}: {summary.final_clusters} final clusters (smallest "
        f"{summary.smallest_final_cluster}), {moved} {'store' if moved == 1 else 'stores'} "
        f"moved{note}"
    )


@dg.asset_check(
    asset="final_store_clusters",
    name="every_store_assigned",
    additional_ins={"shares": dg.AssetIn("internal_need_state_sales")},
    description="Every store of every category appears exactly once in the final table.",
)
def final_every_store_assigned(
    context: dg.AssetCheckExecutionContext, final_store_clusters: pd.DataFrame, shares: pd.DataFrame
) -> dg.AssetCheckResult:
    expected = in_scope(stores_by_category(shares), run_scope(context.run))
    return coverage_check(expected, final_store_clusters)


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
    too_small = {str(c): int(n) for c, n in zip(tiny["CATEGORY"], tiny["STORES"], strict=True)}
    sizes = final_store_clusters.groupby(["CATEGORY", "REBALANCED_CLUSTER"]).size()
    smallest = sizes.groupby("CATEGORY").min()
    below = {
        str(name): int(size)
        for name, size in smallest.items()
        if size < min_size[name] and str(name) not in too_small
    }
    return size_check(below, too_small)


@dg.asset_check(
    asset="store_overrides",
    name="every_override_honoured",
    description="Every pinned store is where its override put it (applied, or mapped to where "
    "a vanished cluster's stores went); rows flagged for review are listed (a warning).",
)
def every_override_honoured(store_overrides: pd.DataFrame) -> dg.AssetCheckResult:
    review = store_overrides[store_overrides["STATUS"] == REVIEW]
    listed = [
        f"store {s} in {c}" for s, c in zip(review["STORE_NBR"], review["CATEGORY"], strict=True)
    ]
    return dg.AssetCheckResult(
        passed=review.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "status": dg.MetadataValue.json(
                {str(k): int(v) for k, v in store_overrides["STATUS"].value_counts().items()}
            )
        },
        description=(
            f"{len(store_overrides)} overrides, none to review"
            if review.empty
            else f"{len(review)} overrides need review (their pinned cluster exists in no run): "
            + ", ".join(listed)
        ),
    )


merging_assets: list[dg.AssetsDefinition | dg.AssetChecksDefinition] = [
    merge_clusters,
    final_every_store_assigned,
    final_min_cluster_size,
    every_override_honoured,
]
