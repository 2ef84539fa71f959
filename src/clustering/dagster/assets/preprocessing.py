"""The raw inputs (external assets: files or warehouse tables the pipeline reads, never writes)
and the preprocessing assets: the validated need-state map, sales by need state, and external
store features."""

from collections.abc import Iterator

import dagster as dg
import ibis
import pandas as pd
import pyarrow as pa

from clustering.core.contracts import EXTERNAL, INTERNAL_SALES, NEED_STATES, Contract
from clustering.core.errors import InputContractError
from clustering.core.external_preprocessing import combine_external_sources
from clustering.core.internal_preprocessing import (
    match_summary,
    no_matching_keys_error,
    stream_shares,
)
from clustering.core.quality import Finding, failures, internal_findings
from clustering.dagster.assets.common import (
    OWNERS,
    catalogue,
    progress_to,
    quality_check,
    store_metadata,
    table_schema,
    user_errors,
)
from clustering.dagster.metadata import preview
from clustering.dagster.resources.data_io import InputReaderResource
from clustering.dagster.resources.logging import LoggerResource
from clustering.dagster.resources.settings import ClusteringSettings
from clustering.io.memory import release_unused_memory

GROUP = "preprocessing"
RAW_GROUP = "raw_inputs"
_TYPES = {"int": "int64", "str": "string", "float": "float64"}


def _contract_schema(contract: Contract, extra: str = "") -> dg.TableSchema:
    columns = [
        dg.TableColumn(
            column.name,
            _TYPES[column.kind],
            description=column.expected,
            constraints=dg.TableColumnConstraints(nullable=not column.required_value),
        )
        for column in contract.columns
    ]
    if extra:
        columns.append(dg.TableColumn("…", "float64", description=extra))
    return dg.TableSchema(columns=columns)


def _raw(name: str, description: str, contract: Contract, extra: str = "") -> dg.AssetSpec:
    return dg.AssetSpec(
        name,
        group_name=RAW_GROUP,
        description=description,
        owners=OWNERS,
        kinds={"parquet", "csv"},
        tags={"stage": "input"},
        metadata={"dagster/column_schema": _contract_schema(contract, extra)},
    )


raw_internal_sales = _raw(
    "raw_internal_sales",
    "Sales per SKU and store (paths.internal_sales, or inputs.internal_sales_table in the SQL "
    "engine at inputs.backend_url). Extra columns are ignored.",
    INTERNAL_SALES,
)
raw_need_state_map = _raw(
    "raw_need_state_map",
    "Product → need-state map (paths.need_states or inputs.need_states_table); optional "
    "ATTRIBUTE_1…6, PLANOGRAM_*, NEW_ITEM, TO_BE_DROPPED are kept as they are.",
    NEED_STATES,
)
raw_external_features = _raw(
    "raw_external_features",
    "One or more external sources of store features (paths.external or inputs.external_tables), "
    "joined on STORE_NBR.",
    EXTERNAL,
    extra="numeric store features: demographics, competition, traffic, size",
)
RAW_INPUTS = [raw_internal_sales, raw_need_state_map, raw_external_features]


@dg.asset(
    group_name=GROUP,
    deps=[raw_need_state_map],
    kinds={"ibis", "duckdb"},
    owners=OWNERS,
    tags={"stage": "preprocessing", "track": "internal"},
    metadata=catalogue(
        table_schema(
            PRODUCT_ID="int64: the SKU (SKU_NBR in the sales)",
            CATEGORY="string",
            NEED_STATE="string",
            CDT="string: consumer decision tree node",
        )
    ),
)
def need_state_map(context: dg.AssetExecutionContext, inputs: InputReaderResource) -> pd.DataFrame:
    """The product → need-state map, checked against its contract (PRODUCT_ID, CATEGORY,
    NEED_STATE, CDT); a SKU may map to several need states."""
    with user_errors():
        opened = inputs.open()
        frame: pd.DataFrame = opened.need_states.execute()
    multi = int((frame.groupby("PRODUCT_ID")["NEED_STATE"].nunique() > 1).sum())
    context.add_output_metadata(
        {
            "source": opened.describe(),
            "products": int(frame["PRODUCT_ID"].nunique()),
            "need_states": int(frame["NEED_STATE"].nunique()),
            "products_in_several_need_states": multi,
            "preview": preview(frame),
        }
    )
    return frame


@dg.asset(
    group_name=GROUP,
    deps=[raw_internal_sales],
    kinds={"ibis", "duckdb"},
    owners=OWNERS,
    tags={"stage": "preprocessing", "track": "internal"},
    metadata=catalogue(
        table_schema(
            CATEGORY="string: CAT_DSC of the sales",
            STORE_NBR="int64",
            NEED_STATE="string",
            SALES="float64: the store's sales in the need state (multi-need-state SKUs split)",
            SHARE="float64: % of the store's category sales; 100 per store and category",
        )
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "data_quality",
            asset="internal_need_state_sales",
            description="Sales on SKUs missing from the need-state map, SKUs the map puts in "
            "another category, store × category pairs without shares: each below its "
            "params.quality threshold (a warning).",
        )
    ],
)
def internal_need_state_sales(
    context: dg.AssetExecutionContext,
    settings: ClusteringSettings,
    inputs: InputReaderResource,
    logger: LoggerResource,
    need_state_map: pd.DataFrame,
) -> Iterator[dg.Output[pa.RecordBatchReader] | dg.AssetCheckResult]:
    """Sales per category × store × need state and the need state's SHARE (%) of the store's
    category sales. Aggregated where the sales live (DuckDB on files, or the SQL engine) and
    streamed into the warehouse."""
    with user_errors():
        opened = inputs.open()
        need_states = ibis.memtable(need_state_map)
        summary = match_summary(opened.sales, need_states)
        if summary.skus and summary.unmatched_skus == summary.skus:
            raise no_matching_keys_error(opened.sales, need_states, opened.need_states_source)
        findings = internal_findings(summary, settings.config.params.quality)
        stop = failures(findings)
        if stop:
            raise InputContractError(f"data quality: {stop[0]}")
        # Streamed into the warehouse batch by batch: never the whole long table in memory.
        shares = stream_shares(opened.sales, need_states)
    report = progress_to(context, logger.get_logger())
    for line in summary.describe().splitlines():
        report(line)
    highlights = [
        f"Data quality: {summary.unmatched_sales_pct:.2f}% of sales on SKUs missing from the "
        f"need-state map ({summary.unmatched_skus:,} of {summary.skus:,} SKUs); "
        f"{summary.category_mismatch_skus:,} SKUs in another category than the map; "
        f"{summary.stores_without_matched_sales_count:,} store × category pairs without shares",
        *(f"  warning: {f.sentence}" for f in findings),
    ]
    yield dg.Output(
        shares,
        metadata={
            "source": opened.describe(),
            "sales_rows": summary.sales_rows,
            "unmatched_skus": summary.unmatched_skus,
            "unmatched_sales_pct": round(summary.unmatched_sales_pct, 4),
            "category_mismatch_skus": summary.category_mismatch_skus,
            "stores_without_matched_sales": summary.stores_without_matched_sales_count,
            "matching": dg.MetadataValue.md(summary.describe().replace("\n", "  \n")),
            "summary": "\n".join(highlights),
        },
    )
    yield quality_check("data_quality", findings)
    release_unused_memory()


@dg.asset(
    group_name=GROUP,
    deps=[raw_external_features],
    kinds={"pandas", "duckdb"},
    owners=OWNERS,
    tags={"stage": "preprocessing", "track": "external"},
    metadata=catalogue(
        table_schema(STORE_NBR="int64", **{"…": "float64: one column per numeric store feature"})
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "data_quality",
            asset="external_store_features",
            description="No rows de-duplicated and no column merged across sources (a warning "
            "when the sources needed either).",
        )
    ],
)
def external_store_features(
    context: dg.AssetExecutionContext, settings: ClusteringSettings, inputs: InputReaderResource
) -> Iterator[dg.Output[pd.DataFrame] | dg.AssetCheckResult]:
    """External sources joined on STORE_NBR: numeric store features only (text, identifier and
    coordinate columns left out and listed), one row per store."""
    with user_errors():
        combined = combine_external_sources(
            inputs.open().external_sources, settings.config.params.external
        )
    frame = combined.features.reset_index()
    left_out = ", ".join(f"{c} ({why})" for c, why in sorted(combined.dropped_columns.items()))
    highlights = [
        f"External features: {len(combined.features.columns)} from "
        f"{len(combined.sources)} source(s) for {len(frame):,} stores; left out: "
        f"{left_out or 'nothing'}",
        *(f"  warning: {w}" for w in combined.warnings),
    ]
    yield dg.Output(
        frame,
        metadata={
            **store_metadata(frame),
            "sources": ", ".join(combined.sources),
            "features": len(combined.features.columns),
            "dropped_columns": dg.MetadataValue.json(combined.dropped_columns),
            "duplicate_rows_dropped": combined.duplicate_rows_dropped,
            "summary": "\n".join(highlights),
        },
    )
    yield quality_check("data_quality", [Finding("warning", w) for w in combined.warnings])
