"""Preprocessing assets: the validated need-state map, sales by need state, external features."""

import dagster as dg
import ibis
import pandas as pd

from clustering.core.external_preprocessing import combine_external_sources
from clustering.core.internal_preprocessing import execute_shares, match_summary, share_table
from clustering.dagster.assets.common import (
    load_settings,
    preview,
    progress_to,
    store_metadata,
    user_errors,
)
from clustering.dagster.resources.config import ClusteringConfigResource
from clustering.dagster.resources.data_io import InputReaderResource
from clustering.dagster.resources.logging import LoggerResource

GROUP = "preprocessing"


@dg.asset(group_name=GROUP, compute_kind="ibis")
def need_state_map(
    context: dg.AssetExecutionContext,
    settings: ClusteringConfigResource,
    inputs: InputReaderResource,
) -> pd.DataFrame:
    """The product → need-state map, checked against its contract (PRODUCT_ID, CATEGORY,
    NEED_STATE, CDT); a SKU may map to several need states."""
    with user_errors():
        opened = inputs.open(load_settings(settings, context))
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


@dg.asset(group_name=GROUP, compute_kind="ibis")
def internal_need_state_sales(
    context: dg.AssetExecutionContext,
    settings: ClusteringConfigResource,
    inputs: InputReaderResource,
    logger: LoggerResource,
    need_state_map: pd.DataFrame,
) -> pd.DataFrame:
    """Sales per category × store × need state and the need state's SHARE (%) of the store's
    category sales. Aggregated where the sales live (DuckDB on files, or the SQL engine)."""
    with user_errors():
        opened = inputs.open(load_settings(settings, context))
        need_states = ibis.memtable(need_state_map)
        shares = execute_shares(share_table(opened.sales, need_states))
        summary = match_summary(opened.sales, need_states)
    report = progress_to(context, logger.get_logger())
    for line in summary.describe().splitlines():
        report(line)
    frame = shares.astype({"CATEGORY": str, "NEED_STATE": str})
    context.add_output_metadata(
        {
            **store_metadata(frame),
            "source": opened.describe(),
            "sales_rows": summary.sales_rows,
            "unmatched_skus": summary.unmatched_skus,
            "unmatched_sales_pct": round(summary.unmatched_sales_pct, 4),
            "stores_without_matched_sales": summary.stores_without_matched_sales_count,
            "matching": dg.MetadataValue.md(summary.describe().replace("\n", "  \n")),
        }
    )
    return frame


@dg.asset(group_name=GROUP, compute_kind="pandas")
def external_store_features(
    context: dg.AssetExecutionContext,
    settings: ClusteringConfigResource,
    inputs: InputReaderResource,
) -> pd.DataFrame:
    """External sources joined on STORE_NBR: numeric store features only (text and identifier
    columns dropped and listed), one row per store."""
    with user_errors():
        config = load_settings(settings, context)
        opened = inputs.open(config)
        combined = combine_external_sources(opened.external_sources, config.params.external)
    frame = combined.features.reset_index()
    context.add_output_metadata(
        {
            **store_metadata(frame),
            "sources": ", ".join(combined.sources),
            "features": len(combined.features.columns),
            "dropped_columns": dg.MetadataValue.json(combined.dropped_columns),
            "duplicate_rows_dropped": combined.duplicate_rows_dropped,
        }
    )
    return frame
