"""The category manager's workbench: run history, the HTML report, overrides and comparison.

- ``run_history`` appends the run's final table, merging summary, k-curves, profiles, overrides
  and fitted models (as JSON) to the ``history`` schema of the warehouse, keyed by run id;
- ``clustering_report`` writes the run's self-contained HTML report (``report/index.html`` under
  the exports) and links to it;
- ``run_comparison`` (job ``compare_runs_job``, run config ``a`` and ``b``) compares two runs or
  what-if scenarios; the same as ``python -m clustering compare``.

A run tagged ``clustering/scenario=NAME`` keeps all of this in the scenario's own folder.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd

from clustering.core.overrides import (
    AppliedOverrides,
    apply_overrides,
    check_overrides,
    pins_to_look_up,
)
from clustering.core.params import PipelineParams
from clustering.dagster.assets.common import (
    OWNERS,
    ClusteringRunConfig,
    MergingRunConfig,
    catalogue,
    run_scope,
    table_schema,
    user_errors,
)
from clustering.dagster.metadata import preview
from clustering.dagster.resources.io_manager import LOAD_BY_KEY
from clustering.dagster.resources.settings import ClusteringSettings
from clustering.infra.scenarios import SCENARIO_TAG, result_paths
from clustering.io.duckdb_store import TableByKey, qualified_name
from clustering.io.history import SCHEMA as HISTORY_SCHEMA
from clustering.io.history import HistoryStore, RunRecord
from clustering.io.memory import release_unused_memory
from clustering.io.overrides_file import read_overrides
from clustering.io.workbench import (
    RunRef,
    compare_runs,
    find_run,
    history,
    latest_two,
    now_utc,
    write_report,
)

GROUP = "workbench"


def scenario_of(run: dg.DagsterRun) -> str:
    """The what-if scenario a run belongs to ("" for the current result)."""
    return run.tags.get(SCENARIO_TAG, "").strip()


def honour_overrides(
    context: dg.AssetExecutionContext, settings: ClusteringSettings, final: pd.DataFrame
) -> AppliedOverrides:
    """The overrides file applied to ``final``; the stores of each pinned cluster are looked up
    in the history (the current result's, then, for a what-if, the scenario's own)."""
    config = settings.config
    path = config.paths.overrides
    overrides = read_overrides(path)
    scope = run_scope(context.run)
    checked = check_overrides(overrides, final, str(path), scope)
    pins = pins_to_look_up(checked)
    earlier: dict[tuple[str, str], set[int]] = {}
    scenario = scenario_of(context.run)
    for name in ["", scenario] if scenario else [""]:
        store, _ = history(config, name)
        earlier.update(store.earlier_members(pins, context.run.run_id))
    return apply_overrides(final, overrides, earlier, scope)


def _ops_config(run: dg.DagsterRun, op: str) -> dict[str, Any]:
    run_config: Mapping[str, Any] = run.run_config or {}
    ops: Mapping[str, Any] = run_config.get("ops") or {}
    return dict((ops.get(op) or {}).get("config") or {})


def effective_params(settings: ClusteringSettings, run: dg.DagsterRun) -> PipelineParams:
    """The parameters a run used: the configuration with the run config's changes."""
    params = settings.config.params
    internal = ClusteringRunConfig(**_ops_config(run, "internal_clustering"))
    external = ClusteringRunConfig(**_ops_config(run, "external_clustering"))
    merging = MergingRunConfig(**_ops_config(run, "merge_clusters"))
    return params.model_copy(
        update={
            "internal_clustering": internal.apply(params.internal_clustering),
            "external_clustering": external.apply(params.external_clustering),
            "merging": merging.apply(params.merging),
        }
    )


def _latest_metadata(context: dg.AssetExecutionContext, asset: str) -> dict[str, object]:
    event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    materialization = event.asset_materialization if event is not None else None
    if materialization is None:
        return {}
    return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}


def quality_facts(
    context: dg.AssetExecutionContext, stores_without_external: int
) -> dict[str, object]:
    """Data-quality facts of the inputs the run used (from the preprocessing assets' latest
    materializations) and of the final table."""
    internal = _latest_metadata(context, "internal_need_state_sales")
    external = _latest_metadata(context, "external_store_features")
    facts: dict[str, object] = {
        key: internal[key]
        for key in ("sales_rows", "unmatched_skus", "unmatched_sales_pct")
        if key in internal
    }
    if "stores_without_matched_sales" in internal:
        facts["stores_without_matched_sales"] = internal["stores_without_matched_sales"]
    renamed = {
        "rows": "external_stores",
        "features": "external_features",
        "dropped_columns": "dropped_external_columns",
        "duplicate_rows_dropped": "duplicate_external_rows",
    }
    facts.update({new: external[old] for old, new in renamed.items() if old in external})
    facts["stores_without_external"] = stores_without_external
    return facts


def _final_counts(final: TableByKey) -> dict[str, int]:
    """Rows, stores, categories and stores without external features of the stored final
    table, counted by the warehouse."""
    found = final.store.query(
        "SELECT count(*) AS ROWS, count(DISTINCT STORE_NBR) AS STORES, "
        "count(DISTINCT CATEGORY) AS CATEGORIES, "
        "count(DISTINCT STORE_NBR) FILTER (WHERE EXTERNAL_CLUSTER IS NULL) "
        f"AS STORES_WITHOUT_EXTERNAL FROM {qualified_name(final.schema, final.table)}"
    )
    return {str(name): int(value) for name, value in found.iloc[0].items()}


def _with_track(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    parts = [frame.assign(TRACK=track) for track, frame in frames.items() if len(frame)]
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    return table[["TRACK", *[c for c in table.columns if c != "TRACK"]]]


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    owners=OWNERS,
    tags={"stage": "workbench"},
    # The final table is copied inside the warehouse, never read whole into Python.
    ins={"final_store_clusters": dg.AssetIn(metadata={LOAD_BY_KEY: "CATEGORY"})},
    description="Appends this run's final table, merging summary, k-curves, profiles, overrides "
    "and fitted models (JSON) to the append-only history schema of the warehouse, keyed by run "
    "id, so any two runs can be compared and new stores placed with any run's models.",
)
def run_history(
    context: dg.AssetExecutionContext,
    settings: ClusteringSettings,
    final_store_clusters: Any,  # the stored table (a TableByKey), copied by the warehouse
    merging_summary: pd.DataFrame,
    store_overrides: pd.DataFrame,
    internal_models: pd.DataFrame,
    external_models: pd.DataFrame,
    internal_profiles: pd.DataFrame,
    external_profiles: pd.DataFrame,
    internal_fitted_models: pd.DataFrame,
    external_fitted_models: pd.DataFrame,
    final_fitted_models: pd.DataFrame,
) -> dg.MaterializeResult[None]:
    """Record the run in the history (one transaction)."""
    config = settings.config
    scenario = scenario_of(context.run)
    params = effective_params(settings, context.run)
    fitted = _with_track(
        {
            "internal": internal_fitted_models,
            "external": external_fitted_models,
            "final": final_fitted_models,
        }
    )
    scope = run_scope(context.run)
    counts = _final_counts(final_store_clusters)
    record = RunRecord(
        run_id=context.run.run_id,
        recorded_at=now_utc(),
        env=config.env,
        scenario=scenario,
        job=context.run.job_name,
        stores=counts["STORES"],
        categories=counts["CATEGORIES"],
        scope=sorted(scope) if scope is not None else [],
        params=params.model_dump(mode="json"),
        quality=quality_facts(context, counts["STORES_WITHOUT_EXTERNAL"]),
    )
    store = HistoryStore(
        result_paths(config.paths.duckdb_path, config.paths.exports_dir, scenario)[0]
    )
    store.record_run(
        record,
        {
            "final_store_clusters": final_store_clusters,
            "merging_summary": merging_summary,
            "k_curves": _with_track({"internal": internal_models, "external": external_models}),
            "profiles": _with_track({"internal": internal_profiles, "external": external_profiles}),
            "overrides": store_overrides,
            "fitted_models": fitted,
        },
    )
    runs = len(store.runs(scenario=scenario))
    where = f"scenario {scenario}" if scenario else "the current result"
    return dg.MaterializeResult(
        metadata={
            "run_id": context.run.run_id,
            # Listed with the warehouse tables in the run summary: the rows this run added.
            "dagster/table_name": qualified_name(HISTORY_SCHEMA, "final_store_clusters"),
            "dagster/row_count": counts["ROWS"],
            "duckdb_file": dg.MetadataValue.path(str(store.path)),
            "runs_recorded": runs,
            "summary": f"History: run {context.run.run_id[:8]} recorded ({runs} "
            f"{'run' if runs == 1 else 'runs'} of {where}).",
        }
    )


@dg.asset(
    group_name=GROUP,
    deps=[run_history],
    kinds={"html"},
    owners=OWNERS,
    tags={"stage": "workbench"},
    description="The run's report for category managers: one self-contained HTML page (works "
    "offline) with the overview, data quality, warnings, changes since the previous run, "
    "k-curves, cluster sizes before and after merging, need-state heatmaps, external profiles, "
    "labels, moved and overridden stores and a store search.",
)
def clustering_report(
    context: dg.AssetExecutionContext, settings: ClusteringSettings
) -> dg.MaterializeResult[None]:
    """Write ``report/index.html`` for this run."""
    config = settings.config
    scenario = scenario_of(context.run)
    store, exports = history(config, scenario)
    with user_errors():
        ref = RunRef(store, store.run(context.run.run_id), exports)
        path = write_report(config, ref)
    release_unused_memory(collect=True)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "report": dg.MetadataValue.url(path.resolve().as_uri()),
            "summary": f"Report: {path} (open it in a browser; works offline)",
        }
    )


class ComparisonConfig(dg.Config):
    """The two runs to compare: run ids (or their first 8 characters) or scenario names; both
    empty compares the latest two runs, ``a`` alone compares it with the latest run."""

    a: str = ""
    b: str = ""


@dg.asset(
    group_name=GROUP,
    deps=[run_history],
    kinds={"pandas", "duckdb"},
    owners=OWNERS,
    tags={"stage": "workbench"},
    metadata=catalogue(
        table_schema(
            CATEGORY="string",
            STORE_NBR="int64",
            CLUSTER_A="string: final cluster in A",
            CLUSTER_B="string: final cluster in B",
            COUNTERPART_B="string: the cluster of B matched to CLUSTER_A (most shared stores)",
            MOVED="bool: CLUSTER_B is not the counterpart of CLUSTER_A",
        ),
        "csv",
    ),
    description="Two runs or what-if scenarios compared store by store (job compare_runs_job, "
    "run config a and b): per category the agreement (ARI), stores that changed cluster and "
    "size changes, in the metadata.",
)
def run_comparison(
    context: dg.AssetExecutionContext, settings: ClusteringSettings, config: ComparisonConfig
) -> pd.DataFrame:
    """Compare run (or scenario) ``a`` with ``b``."""
    with user_errors():
        if config.a or config.b:
            a = find_run(settings.config, config.a or None)
            b = find_run(settings.config, config.b or None)
        else:
            a, b = latest_two(settings.config)
        comparison, changes = compare_runs(a, b)
    summary = comparison.summary.assign(ARI=comparison.summary["ARI"].round(3))
    context.add_output_metadata(
        {
            "a": a.name,
            "b": b.name,
            "parameters_changed": "; ".join(changes) or "none",
            "by_category": preview(summary, rows=len(summary)),
            "moved_stores": int(comparison.stores["MOVED"].sum()),
            "size_changes": preview(comparison.clusters, rows=50),
            "summary": f"Compared {a.name} with {b.name}: "
            f"{int(comparison.stores['MOVED'].sum())} stores changed cluster.",
        }
    )
    return comparison.stores


workbench_assets: list[dg.AssetsDefinition] = [run_history, clustering_report, run_comparison]
