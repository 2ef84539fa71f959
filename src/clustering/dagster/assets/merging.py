"""Merging assets: the final clusters per category (internal first, or the reference system's
demand clusters folded by nearest centroid) as the final table and a per-category summary, with
the category managers' overrides honoured and audited."""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from clustering.core.external_preprocessing import external_coverage
from clustering.core.merging import (
    OUTCOME_TOO_SMALL,
    MergedCategory,
    MergeSummary,
    merge_categories,
)
from clustering.core.overrides import AUDIT_COLUMNS, REVIEW
from clustering.core.placement import MODEL_TABLE_COLUMNS
from clustering.core.plots import cluster_sizes_svg, markdown_image
from clustering.core.quality import coverage_findings, failures
from clustering.core.tables import (
    EXTERNAL_SET,
    frames_from_table,
    labels_from_table,
    smallest_groups,
    wide_matrix,
)
from clustering.dagster.assets.common import (
    OWNERS,
    WORKER_OP_TAGS,
    MergingRunConfig,
    catalogue,
    coverage_check,
    for_check,
    quality_check,
    size_check,
    store_metadata,
    table_schema,
    user_errors,
)
from clustering.dagster.assets.workbench import honour_overrides
from clustering.dagster.metadata import preview
from clustering.dagster.resources.io_manager import LOAD_BY_KEY
from clustering.dagster.resources.settings import ClusteringSettings
from clustering.io.duckdb_store import TableByKey, qualified_name
from clustering.io.memory import release_unused_memory

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
    op_tags=WORKER_OP_TAGS,
    # The internal features and assignments are the largest tables the step reads: one
    # category at a time.
    ins={
        "internal_features": dg.AssetIn(metadata={LOAD_BY_KEY: "CATEGORY"}),
        "internal_assignments": dg.AssetIn(metadata={LOAD_BY_KEY: "CATEGORY"}),
    },
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
        "final_fitted_models": dg.AssetOut(
            description="The final clusters as the model made them (before overrides), one JSON "
            "document per category: the balanced-space blocks, final centroids and the rules "
            "that formed them, to place new stores (python -m clustering assign).",
            metadata=catalogue(
                table_schema(
                    CATEGORY="string",
                    MODEL="string: JSON: blocks, final centroids and pair rules",
                )
            ),
            kinds={"pandas", "duckdb"},
            owners=OWNERS,
            tags={"stage": "merging"},
        ),
    },
    # The step checks its own results while they are in memory: no check re-reads a table.
    check_specs=[
        dg.AssetCheckSpec(
            "every_store_assigned",
            asset="final_store_clusters",
            description="Every store of every category (of the internal assignments) appears "
            "exactly once in the final table.",
        ),
        dg.AssetCheckSpec(
            "min_cluster_size_respected",
            asset="final_store_clusters",
            description="Every final cluster reaches the minimum size; a category with fewer "
            "stores than that forms one cluster and is listed (a warning).",
        ),
        dg.AssetCheckSpec(
            "external_coverage",
            asset="final_store_clusters",
            description="Stores with mapped sales but no external features stay below "
            "params.quality.stores_without_external_warn (a warning).",
        ),
        dg.AssetCheckSpec(
            "every_override_honoured",
            asset="store_overrides",
            description="Every pinned store is where its override put it (applied, or mapped to "
            "where a vanished cluster's stores went); rows flagged for review are listed (a "
            "warning).",
        ),
    ],
)
def merge_clusters(
    context: dg.AssetExecutionContext,
    settings: ClusteringSettings,
    config: MergingRunConfig,
    internal_assignments: Any,  # tables read one category at a time (TableByKey)
    internal_features: Any,
    external_assignments: pd.DataFrame,
    external_features: pd.DataFrame,
) -> Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]:
    """Final clusters per category by ``merging.strategy`` (default internal_first: internal
    clusters split by external cluster where every part keeps the minimum size), with the
    overrides file honoured."""
    params = config.apply(settings.config.params.merging)
    external_matrix = frames_from_table(external_features).get(EXTERNAL_SET)
    internal_labels = _Labels(internal_assignments)
    coverage = external_coverage(
        external_matrix if external_matrix is not None else pd.DataFrame(),
        internal_labels.all_stores(),
    )
    findings = coverage_findings(coverage, settings.config.params.quality)
    stop = failures(findings)
    if stop:
        raise dg.Failure(description=f"data quality: {stop[0]}", allow_retries=False)
    models: dict[str, pd.DataFrame | None] = {}

    def collect(category: str, merged: MergedCategory) -> None:
        models[category] = merged.model

    # Categories are merged in parallel processes; each worker also builds its category's
    # final model (the final clusters as the model made them, before overrides, as data to
    # place new stores) while the feature matrix is at hand.
    final, summaries = merge_categories(
        internal_labels,
        _Matrices(internal_features),
        labels_from_table(external_assignments).get(EXTERNAL_SET),
        external_matrix,
        params,
        with_models=True,
        each=collect,
        workers=settings.config.params.workers,
    )
    final_models = (
        pd.concat([models[c] for c in sorted(models)], ignore_index=True)
        if models
        else pd.DataFrame(columns=MODEL_TABLE_COLUMNS)
    )
    # What the categories' rows and the workers' results held before they were joined.
    release_unused_memory()
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
                    *coverage.describe().splitlines(),
                    *(f"  warning: {f.sentence}" for f in findings),
                    applied.describe(),
                ]
            ),
            "overridden_stores": int(final["OVERRIDDEN"].sum()),
            "stores_without_external": int(final["EXTERNAL_CLUSTER"].isna().sum()),
            "rebalanced_sizes": dg.MetadataValue.md(
                markdown_image(
                    cluster_sizes_svg(final, "REBALANCED_CLUSTER"), "rebalanced cluster sizes"
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
    yield dg.Output(final, output_name="final_store_clusters")
    yield dg.Output(summary, output_name="merging_summary")
    yield dg.Output(applied.audit[AUDIT_COLUMNS], output_name="store_overrides")
    yield dg.Output(final_models, output_name="final_fitted_models")
    asset = "final_store_clusters"
    expected = internal_labels.stores
    yield for_check(coverage_check(expected, final), asset, "every_store_assigned")
    yield for_check(_final_size_check(final, summary), asset, "min_cluster_size_respected")
    yield for_check(quality_check("external_coverage", findings), asset, "external_coverage")
    yield for_check(_overrides_check(applied.audit), "store_overrides", "every_override_honoured")
    release_unused_memory()


class _Labels(Mapping[str, pd.Series]):
    """Per-category internal clusters (index STORE_NBR, sorted) of the stored assignments,
    read one category at a time; remembers the stores of each category it gave out."""

    def __init__(self, table: TableByKey) -> None:
        self._table = table
        self.stores: dict[str, np.ndarray] = {}

    def all_stores(self) -> np.ndarray:
        """Every store with an internal cluster in any category."""
        stored = qualified_name(self._table.schema, self._table.table)
        found = self._table.store.query(f"SELECT DISTINCT STORE_NBR FROM {stored}")
        return found["STORE_NBR"].to_numpy(dtype=np.int64)

    def __getitem__(self, category: str) -> pd.Series:
        part = self._table.arrow(category, ["STORE_NBR", "CLUSTER"])
        labels = pd.Series(
            part["CLUSTER"].to_numpy(),
            index=pd.Index(part["STORE_NBR"].to_numpy(), dtype=np.int64, name="STORE_NBR"),
            name="CLUSTER",
        ).sort_index()
        self.stores[category] = labels.index.to_numpy()
        return labels

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)


class _Matrices(Mapping[str, pd.DataFrame]):
    """Per-category feature matrices of a long features table read one category at a time."""

    def __init__(self, table: TableByKey) -> None:
        self._table = table

    def __getitem__(self, category: str) -> pd.DataFrame:
        return wide_matrix(self._table.arrow(category, ["STORE_NBR", "FEATURE", "VALUE"]))

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)


def _category_line(summary: MergeSummary) -> str:
    """``"SNACKS: 6 final clusters (smallest 24), 31 stores moved"`` plus any note."""
    note = f"; {summary.note}" if summary.note else ""
    moved = summary.reassigned_stores
    return (
        f"{summary.category}: {summary.final_clusters} final clusters (smallest "
        f"{summary.smallest_final_cluster}), {moved} {'store' if moved == 1 else 'stores'} "
        f"moved{note}"
    )


def _final_size_check(
    final_store_clusters: pd.DataFrame, summary: pd.DataFrame
) -> dg.AssetCheckResult:
    min_size = dict(zip(summary["CATEGORY"], summary["MIN_CLUSTER_SIZE"], strict=True))
    tiny = summary[summary["OUTCOME"] == OUTCOME_TOO_SMALL]
    too_small = {str(c): int(n) for c, n in zip(tiny["CATEGORY"], tiny["STORES"], strict=True)}
    smallest = smallest_groups(final_store_clusters, "REBALANCED_CLUSTER")
    below = {
        name: size
        for name, size in smallest.items()
        if size < min_size[name] and name not in too_small
    }
    return size_check(below, too_small)


def _overrides_check(store_overrides: pd.DataFrame) -> dg.AssetCheckResult:
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


merging_assets: list[dg.AssetsDefinition] = [merge_clusters]
