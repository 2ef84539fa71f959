"""The category manager's commands: ``report``, ``whatif``, ``compare`` and ``assign``.

Argument parsing and printing only: ``whatif`` runs ``full_pipeline_job`` (the same assets as
every run) tagged with the scenario; the others read the run history through
:mod:`clustering.io.workbench`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clustering.core.errors import ConfigError
from clustering.infra.config import ENVIRONMENTS, AppConfig, load_config
from clustering.infra.scenarios import SCENARIO_TAG, check_scenario_name

if TYPE_CHECKING:
    from clustering.core.comparison import Comparison

# pandas, YAML and the pipeline's modules are imported by the commands that need them, so
# `python -m clustering --help` stays fast.

Printer = Callable[[str], None]

#: ``--set`` sections and the op whose run config takes them.
SET_SECTIONS = {
    "internal_clustering": "internal_clustering",
    "external_clustering": "external_clustering",
    "merging": "merge_clusters",
}
#: Fields a what-if may change (those of the run configs the Launchpad offers).
CLUSTERING_FIELDS = ("algorithm", "min_k", "max_k", "min_cluster_size", "selection", "seed")
MERGING_FIELDS = ("strategy", "min_cluster_size", "max_final_clusters")
LISTED = 10


def _say(line: str) -> None:
    print(line, flush=True)


def _env(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        default=os.environ.get("CLUSTERING_ENV", "dev"),
        choices=list(ENVIRONMENTS),
        help="environment whose results are used (default: $CLUSTERING_ENV or dev)",
    )


def add_commands(commands: Any) -> None:
    """Add ``report``, ``whatif``, ``compare`` and ``assign`` to the command parser."""
    report = commands.add_parser(
        "report",
        help="write the HTML report of a run (default: the latest)",
        description=(
            "Write the self-contained HTML report of a recorded run (overview, data quality, "
            "warnings, changes since the previous run, k-curves, cluster sizes before and after "
            "merging, need-state heatmaps, external profiles, labels, moved and overridden "
            "stores, store search) to report/index.html under the exports (a scenario's report "
            "under its folder). Every successful run writes it already; this regenerates it, "
            "for any run of the history."
        ),
    )
    report.add_argument(
        "--run", metavar="RUN_ID", help="run id (or its first 8 characters) or scenario name"
    )
    report.add_argument("--out", type=Path, help="write here instead of report/index.html")
    _env(report)

    whatif = commands.add_parser(
        "whatif",
        help="run the pipeline with changed parameters into a scenario",
        description=(
            "Run full_pipeline_job with changed parameters, optionally for some categories only, "
            "into what-if scenario NAME: its tables, exports, history and report go to "
            "<exports>/scenarios/NAME/ and the current result is not touched. The run is "
            "recorded in the Dagster instance with the tag clustering/scenario=NAME (the same "
            "run can be launched from the UI with that tag and run config). Ends with a "
            "comparison against the current result."
        ),
    )
    whatif.add_argument("--name", help="scenario name (letters, digits, _ - .)")
    whatif.add_argument(
        "--category",
        action="append",
        default=[],
        metavar="CAT",
        help="cluster only this category (repeatable; default: all)",
    )
    whatif.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a parameter, e.g. internal_clustering.max_k=6 or merging.strategy="
        "nearest_centroid (repeatable); keys: "
        + ", ".join(f"{s}.{{{','.join(_fields(s))}}}" for s in SET_SECTIONS),
    )
    whatif.add_argument(
        "--scenario",
        type=Path,
        metavar="FILE",
        help="YAML file with name, categories and set (a mapping of KEY: VALUE); options given "
        "on the command line win",
    )
    _env(whatif)

    compare = commands.add_parser(
        "compare",
        help="compare two runs or scenarios (default: the latest two runs)",
        description=(
            "Compare the final clusters of two runs or what-if scenarios, per category: the "
            "agreement (adjusted Rand index), the stores that changed cluster and how cluster "
            "sizes changed (clusters matched by the stores they share, whatever their names). "
            "A and B are run ids (or their first 8 characters) or scenario names; with one, it "
            "is compared with the latest run; with none, the latest two runs. Writes "
            "summary.csv, stores.csv and clusters.csv."
        ),
    )
    compare.add_argument("a", nargs="?", metavar="A", help="the earlier run or a scenario")
    compare.add_argument("b", nargs="?", metavar="B", help="the later run or a scenario")
    compare.add_argument(
        "--out", type=Path, help="folder for the CSV files (default: <exports>/compare/A_vs_B)"
    )
    _env(compare)

    assign = commands.add_parser(
        "assign",
        help="place new stores in a run's clusters with its stored models",
        description=(
            "Place stores in the final clusters of a recorded run (default: the latest) with "
            "the models it stored (scaling, features, centres): per category the nearest "
            "internal cluster (when the store has sales there), the nearest external cluster "
            "and the final cluster merging would give, with the distances. A store without "
            "sales in a category is placed on its external features alone (PLACEMENT "
            "external_only)."
        ),
    )
    assign.add_argument(
        "--stores",
        type=Path,
        metavar="FILE",
        help="external features of the stores (STORE_NBR + the same columns as the external "
        "input; Parquet or CSV)",
    )
    assign.add_argument(
        "--sales",
        type=Path,
        metavar="FILE",
        help="their SKU sales, when they have some (SKU_NBR, STORE_NBR, CAT_DSC, TOTAL_SALES; "
        "mapped with the run's need-state map)",
    )
    assign.add_argument(
        "--run", metavar="RUN_ID", help="run id (or first 8 characters) or scenario name"
    )
    assign.add_argument("--out", type=Path, required=True, help="result file (.csv or .parquet)")
    _env(assign)


def _fields(section: str) -> tuple[str, ...]:
    return MERGING_FIELDS if section == "merging" else CLUSTERING_FIELDS


def _config(env: str) -> AppConfig:
    return load_config(env, project_root=Path.cwd())


# -- report -----------------------------------------------------------------------------------


def report_command(args: argparse.Namespace, out: Printer = _say) -> int:
    """``report``: write a run's HTML report and say where."""
    from clustering.io.workbench import find_run, write_report

    config = _config(args.env)
    ref = find_run(config, args.run)
    path = write_report(config, ref, args.out)
    out(f"Report of {ref.name}, recorded {ref.record.recorded_at.replace('T', ' ')} UTC:")
    out(f"  {path}")
    return 0


# -- what-if ----------------------------------------------------------------------------------


def _parse_value(text: str) -> object:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _read_scenario_file(path: Path) -> dict[str, Any]:
    from clustering.infra.params_file import read_mapping_file

    data = read_mapping_file(path, "scenario file", "a mapping (name, categories, set)")
    unknown = sorted(set(data) - {"name", "categories", "set"})
    if unknown:
        raise ConfigError(
            f"scenario file '{path}': {unknown[0]}: unknown key (expected name, categories, set)."
        )
    return data


def scenario_run_config(settings: Mapping[str, object], categories: list[str]) -> dict[str, Any]:
    """The run config of a what-if: ``settings`` maps ``section.field`` to a value."""
    from clustering.core.params import parse_params

    ops: dict[str, dict[str, Any]] = {}
    nested: dict[str, dict[str, object]] = {}
    for key, value in settings.items():
        section, _, name = key.partition(".")
        if section not in SET_SECTIONS or name not in _fields(section):
            allowed = ", ".join(f"{s}.{f}" for s in SET_SECTIONS for f in _fields(s))
            raise ConfigError(f"--set {key}: a what-if can change {allowed}.")
        ops.setdefault(SET_SECTIONS[section], {})[name] = value
        nested.setdefault(section, {})[name] = value
    # Checked here, before anything runs: same sentences as a parameters file.
    parse_params(nested, source="what-if")  # type: ignore[arg-type]
    if categories:
        ops.setdefault("internal_clustering", {})["categories"] = sorted(set(categories))
    return {"ops": {op: {"config": fields} for op, fields in ops.items()}}


def whatif_command(args: argparse.Namespace, out: Printer = _say) -> int:
    """``whatif``: run the pipeline into a scenario, then compare it with the current result."""
    from clustering.cli.run import run_job

    file_data = _read_scenario_file(args.scenario) if args.scenario else {}
    name = args.name or file_data.get("name")
    if not name:
        raise ConfigError("whatif needs --name NAME (or name: in the scenario file).")
    check_scenario_name(str(name))
    settings: dict[str, object] = dict(file_data.get("set") or {})
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} must have the form key=value.")
        settings[key.strip()] = _parse_value(value.strip())
    categories = list(args.category) or [str(c) for c in file_data.get("categories") or []]
    run_config = scenario_run_config(settings, categories)
    tags = {SCENARIO_TAG: str(name), "clustering/trigger": "whatif"}
    out(
        f"What-if scenario {name}: "
        + ("; ".join(f"{k}={v}" for k, v in settings.items()) or "same parameters")
        + (f"; categories {', '.join(sorted(set(categories)))}" if categories else "")
    )
    code = run_job("full_pipeline_job", args.env, tags, out=out, run_config=run_config)
    if code != 0:
        return code
    return _compare_with_current(args.env, str(name), out)


def _compare_with_current(env: str, name: str, out: Printer) -> int:
    from clustering.core.errors import ClusteringError
    from clustering.io.workbench import compare_runs, find_run

    config = _config(env)
    scenario = find_run(config, name)
    try:
        current = find_run(config)
    except ClusteringError:
        out("No run of the current result to compare the scenario with yet.")
        return 0
    comparison, changes = compare_runs(current, scenario)
    out("")
    out(f"Scenario {name} against the current result ({current.name}):")
    _print_comparison(comparison, changes, out)
    out(f"Compare again any time: python -m clustering compare {current.record.short_id} {name}")
    return 0


# -- compare ----------------------------------------------------------------------------------


def _print_comparison(comparison: Comparison, changes: list[str], out: Printer) -> None:
    import pandas as pd

    out(f"Parameters changed: {'; '.join(changes) if changes else 'none'}")
    summary = comparison.summary
    if summary.empty:
        out("No category in common.")
        return
    width = max(len("category"), *(len(str(c)) for c in summary["CATEGORY"]))
    out(f"  {'category'.ljust(width)}  {'ARI':>5}  {'moved':>12}  clusters")
    for _, row in summary.iterrows():
        moved = f"{int(row['MOVED'])} of {int(row['STORES'])}"
        ari = "–" if pd.isna(row["ARI"]) else f"{float(row['ARI']):.3f}"
        clusters = f"{int(row['CLUSTERS_A'])} → {int(row['CLUSTERS_B'])}"
        out(f"  {str(row['CATEGORY']).ljust(width)}  {ari:>5}  {moved:>12}  {clusters}")
    moved_stores = comparison.moved
    if len(moved_stores):
        out(f"Stores that changed cluster ({len(moved_stores)}; first {LISTED} per category):")
        for category, group in moved_stores.groupby("CATEGORY", sort=True):
            shown = [
                # Same name, other stores: A's cluster continues under another name in B.
                f"{s} ({a} → {'another ' if a == b else ''}{b})"
                for s, a, b in zip(
                    group["STORE_NBR"], group["CLUSTER_A"], group["CLUSTER_B"], strict=True
                )
            ][:LISTED]
            more = f", … {len(group) - LISTED} more" if len(group) > LISTED else ""
            out(f"  {category!s}: {', '.join(shown)}{more}")
    else:
        out("No store changed cluster.")
    changed = comparison.clusters[comparison.clusters["SIZE_CHANGE"] != 0]
    if len(changed):
        out("Cluster sizes that changed:")
        for category, group in changed.groupby("CATEGORY", sort=True):
            parts = []
            for _, row in group.iterrows():
                a = row["CLUSTER_A"] if isinstance(row["CLUSTER_A"], str) else "(new)"
                b = row["CLUSTER_B"] if isinstance(row["CLUSTER_B"], str) else "(gone)"
                parts.append(f"{a} {int(row['SIZE_A'])} → {b} {int(row['SIZE_B'])}")
            out(f"  {category!s}: {'; '.join(parts)}")


def compare_command(args: argparse.Namespace, out: Printer = _say) -> int:
    """``compare``: per category agreement, moved stores and sizes; CSV details."""
    from clustering.io.workbench import (
        compare_runs,
        comparison_folder,
        find_run,
        latest_two,
        write_comparison,
    )

    config = _config(args.env)
    if args.a is None:
        a, b = latest_two(config)
    else:
        a, b = find_run(config, args.a), find_run(config, args.b)
    comparison, changes = compare_runs(a, b)
    when = {ref.name: ref.record.recorded_at.replace("T", " ")[:16] for ref in (a, b)}
    out(f"A: {a.name}, {when[a.name]} UTC")
    out(f"B: {b.name}, {when[b.name]} UTC")
    _print_comparison(comparison, changes, out)
    paths = write_comparison(comparison, args.out or comparison_folder(config, a, b))
    out("Details (every store, every cluster):")
    for path in paths:
        out(f"  {path}")
    return 0


# -- assign -----------------------------------------------------------------------------------


def assign_command(args: argparse.Namespace, out: Printer = _say) -> int:
    """``assign``: place new stores with a run's models and write the result."""
    import pandas as pd

    from clustering.io.workbench import assign_stores
    from clustering.io.writers import write_frame

    if args.out.suffix not in (".csv", ".parquet"):
        raise ConfigError(f"--out {args.out}: give a .csv or .parquet file name.")
    config = _config(args.env)
    ref, placed = assign_stores(config, args.stores, args.sales, args.run)
    write_frame(placed, args.out)
    stores = placed["STORE_NBR"].nunique()
    out(f"Placed {stores} stores in the {placed['CATEGORY'].nunique()} categories of {ref.name}:")
    columns = ["STORE_NBR", "CATEGORY", "PLACEMENT", "REBALANCED_CLUSTER", "DISTANCE"]
    shown = placed[columns].head(40).copy()
    shown["DISTANCE"] = shown["DISTANCE"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    shown["REBALANCED_CLUSTER"] = shown["REBALANCED_CLUSTER"].fillna("–")
    for line in shown.to_string(index=False).splitlines():
        out(f"  {line}")
    if len(placed) > len(shown):
        out(f"  … {len(placed) - len(shown)} more rows")
    counts = placed["PLACEMENT"].value_counts()
    out("Placements: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))
    out(f"Written: {args.out}")
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "report": report_command,
    "whatif": whatif_command,
    "compare": compare_command,
    "assign": assign_command,
}
