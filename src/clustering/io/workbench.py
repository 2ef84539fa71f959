"""What the category manager's commands and the workbench assets share: finding a run or a
what-if scenario in the history, building its report, comparing two of them, and placing new
stores with a run's stored models.

A *reference* to a run is a run id (or its first characters, as the UI shows them), the name of
a what-if scenario (its latest run), or nothing for the latest run of the current result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import ibis
import pandas as pd

from clustering.core.comparison import Comparison, compare_final_tables, parameter_changes
from clustering.core.errors import ConfigError, InputContractError
from clustering.core.external_preprocessing import combine_external_sources
from clustering.core.internal_preprocessing import share_matrices, shares_frame
from clustering.core.params import PipelineParams
from clustering.core.placement import ClusterModel, RunModels, place_stores
from clustering.core.report_html import ReportData, render_report
from clustering.core.tables import EXTERNAL_SET
from clustering.infra.config import AppConfig
from clustering.infra.scenarios import list_scenarios, report_file, result_paths
from clustering.io.duckdb_store import DuckDBStore, TableNotFoundError
from clustering.io.history import HistoryStore, RunNotFoundError, RunRecord
from clustering.io.readers import connect, read_external_sources, read_internal_sales
from clustering.io.writers import atomic_path, write_frame

#: Shortest run-id prefix accepted (the UI shows 8 characters).
MIN_PREFIX = 4


@dataclass(frozen=True)
class RunRef:
    """A recorded run and the warehouse whose history holds it."""

    store: HistoryStore
    record: RunRecord
    exports_dir: Path

    @property
    def name(self) -> str:
        """``run 1a2b3c4d`` or ``scenario fewer_k (run 5e6f7a8b)``."""
        if self.record.scenario:
            return f"scenario {self.record.scenario} (run {self.record.short_id})"
        return f"run {self.record.short_id}"


def history(config: AppConfig, scenario: str = "") -> tuple[HistoryStore, Path]:
    """The history store and exports folder of the current result or of a scenario."""
    duckdb_path, exports = result_paths(
        config.paths.duckdb_path, config.paths.exports_dir, scenario
    )
    return HistoryStore(duckdb_path), exports


def _listing(config: AppConfig) -> str:
    store, _ = history(config)
    runs = store.runs(scenario="")[-5:]
    scenarios = list_scenarios(config.paths.exports_dir, config.paths.duckdb_path.name)
    shown = ", ".join(f"{r.short_id} ({r.recorded_at[:16].replace('T', ' ')})" for r in runs)
    return f"recent runs: {shown or 'none yet'}; scenarios: {', '.join(scenarios) or 'none yet'}"


def find_run(config: AppConfig, reference: str | None = None) -> RunRef:
    """The run ``reference`` names (see the module text); one sentence when there is none."""
    store, exports = history(config)
    runs = store.runs(scenario="")
    if reference in (None, "", "latest"):
        if not runs:
            raise RunNotFoundError(
                f"no run is recorded in {store.path} yet; run the pipeline first "
                "(make run, or python -m clustering run full_pipeline_job)."
            )
        return RunRef(store, runs[-1], exports)
    text = str(reference)
    matches = [r for r in store.runs() if r.run_id == text]
    if not matches and len(text) >= MIN_PREFIX:
        matches = [r for r in store.runs() if r.run_id.startswith(text)]
    if len(matches) > 1:
        raise RunNotFoundError(
            f"run id prefix {text!r} matches {len(matches)} runs; give more characters."
        )
    if matches:
        return RunRef(store, matches[0], exports)
    if text in list_scenarios(config.paths.exports_dir, config.paths.duckdb_path.name):
        scenario_store, scenario_exports = history(config, text)
        recorded = scenario_store.runs(scenario=text)
        if recorded:
            return RunRef(scenario_store, recorded[-1], scenario_exports)
    raise RunNotFoundError(f"no run or scenario {text!r} in {store.path} ({_listing(config)}).")


def latest_two(config: AppConfig) -> tuple[RunRef, RunRef]:
    """The last two runs of the current result, older first."""
    store, exports = history(config)
    runs = store.runs(scenario="")
    if len(runs) < 2:
        raise RunNotFoundError(
            f"compare needs two runs and {store.path} has {len(runs)}; run the pipeline again "
            "(e.g. with other parameters) or name a what-if scenario."
        )
    return RunRef(store, runs[-2], exports), RunRef(store, runs[-1], exports)


def baseline(config: AppConfig, ref: RunRef) -> RunRef | None:
    """What a run's report compares with: the run before it, or for a what-if the latest run
    of the current result."""
    store, exports = history(config)
    runs = store.runs(scenario="")
    if ref.record.scenario:
        return RunRef(store, runs[-1], exports) if runs else None
    earlier = [r for r in runs if r.recorded_at < ref.record.recorded_at]
    return RunRef(store, earlier[-1], exports) if earlier else None


# -- comparison -------------------------------------------------------------------------------


#: What a comparison reads of each final table.
COMPARED_COLUMNS = ["CATEGORY", "STORE_NBR", "REBALANCED_CLUSTER"]


def compare_runs(
    a: RunRef, b: RunRef, *, b_final: pd.DataFrame | None = None, only_moved: bool = False
) -> tuple[Comparison, list[str]]:
    """Per category comparison of two runs' final tables and the parameters that differ.

    ``b_final`` is B's final table when the caller already holds it; ``only_moved`` keeps only
    the stores that moved in the store list (the report's use: a chain's every store would be
    millions of rows).
    """
    left = a.store.table("final_store_clusters", a.record.run_id, COMPARED_COLUMNS)
    right = (
        b_final[COMPARED_COLUMNS]
        if b_final is not None
        else b.store.table("final_store_clusters", b.record.run_id, COMPARED_COLUMNS)
    )
    changes = parameter_changes(a.record.params, b.record.params)
    return compare_final_tables(left, right, only_moved=only_moved), changes


def write_comparison(comparison: Comparison, folder: Path) -> list[Path]:
    """``summary.csv``, ``stores.csv`` (every store, moved or not) and ``clusters.csv``."""
    return [
        write_frame(comparison.summary, folder / "summary.csv"),
        write_frame(comparison.stores, folder / "stores.csv"),
        write_frame(comparison.clusters, folder / "clusters.csv"),
    ]


def comparison_folder(config: AppConfig, a: RunRef, b: RunRef) -> Path:
    """Default folder for a comparison's CSV files."""

    def tag(ref: RunRef) -> str:
        return (
            f"{ref.record.scenario}-{ref.record.short_id}"
            if ref.record.scenario
            else (ref.record.short_id)
        )

    return config.paths.exports_dir / "compare" / f"{tag(a)}_vs_{tag(b)}"


# -- report -----------------------------------------------------------------------------------


def report_data(ref: RunRef, against: RunRef | None) -> ReportData:
    """Everything the report of ``ref`` shows, read from its history."""
    run_id = ref.record.run_id
    tables = {
        name: ref.store.table(name, run_id)
        for name in ("final_store_clusters", "merging_summary", "k_curves", "profiles", "overrides")
    }
    if tables["final_store_clusters"].empty:
        raise RunNotFoundError(f"{ref.name} recorded no final table in {ref.store.path}.")
    comparison: Comparison | None = None
    changes: list[str] = []
    against_name = ""
    if against is not None and against.record.run_id != run_id:
        comparison, changes = compare_runs(
            against, ref, b_final=tables["final_store_clusters"], only_moved=True
        )
        against_name = (
            f"the current result ({against.name})" if ref.record.scenario else against.name
        )
    title = (
        f"What-if scenario {ref.record.scenario}"
        if ref.record.scenario
        else "Store clusters per category"
    )
    overrides = tables["overrides"]
    if overrides.empty:
        overrides = pd.DataFrame(columns=["STORE_NBR", "CATEGORY", "STATUS", "NOTE"])
    return ReportData(
        title=title,
        run_id=run_id,
        recorded_at=ref.record.recorded_at,
        env=ref.record.env,
        scenario=ref.record.scenario,
        final=tables["final_store_clusters"],
        merging_summary=tables["merging_summary"],
        k_curves=tables["k_curves"],
        profiles=tables["profiles"],
        overrides=overrides,
        quality=ref.record.quality,
        scope=ref.record.scope,
        parameter_changes=changes,
        changes=comparison,
        changes_against=against_name,
    )


def write_report(config: AppConfig, ref: RunRef, out: Path | None = None) -> Path:
    """Write the report of ``ref`` (default: ``report/index.html`` of its exports folder)."""
    target = out or report_file(ref.exports_dir)
    page = render_report(report_data(ref, baseline(config, ref)))
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
        tmp.chmod(0o644)  # a page to share: readable by others, like a file saved by a browser
    return target


# -- placing new stores -----------------------------------------------------------------------


def run_models(ref: RunRef) -> RunModels:
    """The models ``ref`` stored (external, internal per category, final per category)."""
    table = ref.store.table("fitted_models", ref.record.run_id)
    if table.empty:
        raise RunNotFoundError(
            f"{ref.name} stored no models (it was recorded by an older version); run the "
            "pipeline again to place stores with it."
        )
    external = None
    internal: dict[str, ClusterModel] = {}
    final: dict[str, dict[str, object]] = {}
    for track, category, model in zip(
        table["TRACK"], table["CATEGORY"], table["MODEL"], strict=True
    ):
        document = json.loads(str(model))
        if track == "external" and category == EXTERNAL_SET:
            external = ClusterModel.from_dict(document)
        elif track == "internal":
            internal[str(category)] = ClusterModel.from_dict(document)
        elif track == "final":
            final[str(category)] = document
    return RunModels(external=external, internal=internal, final=final)


def _need_state_map(ref: RunRef) -> pd.DataFrame:
    try:
        return DuckDBStore(ref.store.path).read_table("preprocessing", "need_state_map")
    except TableNotFoundError:
        raise ConfigError(
            f"--sales needs the need-state map, and {ref.store.path} has none; run "
            "internal_preprocessing_job first."
        ) from None


def read_new_stores(
    ref: RunRef, stores_file: Path | None, sales_file: Path | None
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame | None]:
    """Need-state shares per category (from ``sales_file``, through the need-state map of the
    run's warehouse) and external features (from ``stores_file``) of the stores to place."""
    if stores_file is None and sales_file is None:
        raise ConfigError("give --stores (external features) and/or --sales (SKU sales).")
    params = PipelineParams.model_validate(ref.record.params or {})
    con = connect()
    external = None
    if stores_file is not None:
        sources = read_external_sources(con, [str(stores_file)])
        external = combine_external_sources(sources, params.external).features
    shares: dict[str, pd.DataFrame] = {}
    if sales_file is not None:
        sales = read_internal_sales(con, str(sales_file))
        mapping = ibis.memtable(_need_state_map(ref))
        shares = share_matrices(shares_frame(sales, mapping))
        if not shares:
            raise InputContractError(
                f"internal sales '{sales_file}': no sales of a SKU in the need-state map; "
                "nothing to place the stores by."
            )
    return shares, external


def assign_stores(
    config: AppConfig,
    stores_file: Path | None,
    sales_file: Path | None,
    reference: str | None = None,
) -> tuple[RunRef, pd.DataFrame]:
    """Place the stores of the given files with the models of run ``reference``."""
    ref = find_run(config, reference)
    models = run_models(ref)
    shares, external = read_new_stores(ref, stores_file, sales_file)
    placed = place_stores(models, shares, external)
    placed.insert(0, "RUN_ID", ref.record.run_id)
    return ref, placed


def now_utc() -> str:
    """The current time as the history records it (ISO 8601, UTC, seconds)."""
    return datetime.now(UTC).replace(microsecond=0, tzinfo=None).isoformat()
