"""``python -m clustering``: command-line entry point (argument parsing and printing only)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from clustering import __version__
from clustering.cli.workbench import HANDLERS as WORKBENCH_HANDLERS
from clustering.cli.workbench import add_commands as add_workbench_commands
from clustering.core.errors import ClusteringError, ConfigError
from clustering.dagster.app import add_ui_arguments
from clustering.infra.config import ENVIRONMENTS

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _say(message: str) -> None:
    print(message, flush=True)


def _add_env_argument(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument(
        "--env",
        default=os.environ.get("CLUSTERING_ENV", "dev"),
        choices=list(ENVIRONMENTS),
        help=f"{purpose} (default: $CLUSTERING_ENV or dev)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clustering",
        description=(
            "Store clustering per product category: internal clusters from sales by need "
            "state, external clusters from store features, merged into demand clusters."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    gen = commands.add_parser(
        "generate-data",
        help="write sample inputs with planted clusters",
        description=(
            "Write internal_sales.parquet, need_state.csv and external_sales.parquet with "
            "planted store types (and the truth, under OUT/truth/, which the pipeline never "
            "reads). Presets: small (~200 stores, 4 categories), medium (2,000 stores, 20 "
            "categories), large (10,000 stores, 100 categories, ~22M sales rows), xlarge "
            "(50,000 stores, 100 categories, ~106M sales rows, about 1.3 GB of Parquet; written "
            "one category at a time, so memory stays bounded)."
        ),
    )
    gen.add_argument(
        "--preset", default="small", help="small, medium, large or xlarge (default: small)"
    )
    gen.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    gen.add_argument("--stores", type=int, help="number of stores (overrides the preset)")
    gen.add_argument("--categories", type=int, help="number of categories (overrides the preset)")
    gen.add_argument(
        "--if-missing",
        action="store_true",
        help="write nothing when OUT already holds the three inputs (as .parquet or .csv "
        "files or folders); stop with a sentence when it holds only some of them",
    )
    gen.add_argument(
        "--difficulty",
        default="classic",
        help="how hard the planted internal store types are to find: classic (default; 3-5 well "
        "separated types) or a ladder rung separated, clear, moderate, overlapping (2-8 types "
        "of unequal size, leaning and noise stores)",
    )
    gen.add_argument(
        "--out", type=Path, default=Path("data/raw"), help="output folder (default: data/raw)"
    )

    cluster = commands.add_parser(
        "cluster",
        help="run the whole pipeline in this process, without recording a run",
        description=(
            "Run full_pipeline_job (the same assets and checks as `run`, the UI, schedules and "
            "sensors) in this process on a throwaway Dagster instance, with the inputs, output "
            "folder and parameters given here over the environment's configuration. Writes the "
            "DuckDB warehouse and the exports (final_store_clusters.parquet/.csv, "
            "merging_summary.csv, internal_models.csv with the k-curves, internal_profiles.csv) "
            "and prints the results; the run is not kept in the run history."
        ),
    )
    _add_env_argument(cluster, "environment whose configuration the options are layered over")
    cluster.add_argument(
        "--raw-dir",
        type=Path,
        help="folder with the three inputs (default: the environment's paths.raw_dir; for dev "
        "$CLUSTERING_RAW_DIR or data/raw)",
    )
    cluster.add_argument("--sales", help="internal sales: file, folder or glob (overrides)")
    cluster.add_argument("--need-states", help="need-state map: file, folder or glob (overrides)")
    cluster.add_argument(
        "--external",
        nargs="+",
        action="extend",
        metavar="SOURCE",
        help="external feature sources, joined on STORE_NBR (one or more files, folders or "
        "globs; overrides RAW_DIR/external_sales.parquet)",
    )
    cluster.add_argument(
        "--out",
        type=Path,
        help="folder for the exports and the DuckDB file (default: the environment's "
        "paths.exports_dir and paths.duckdb_path)",
    )
    cluster.add_argument("--params", type=Path, help="YAML or JSON file of pipeline parameters")
    cluster.add_argument("--workers", type=int, help="processes for per-category work")

    run = commands.add_parser(
        "run",
        help="run a Dagster job against the project's Dagster instance",
        description=(
            "Run one Dagster job in this process against the project's Dagster instance "
            "($DAGSTER_HOME, or dagster_home/ here), so the run shows in the Dagster UI later. "
            "Prints each step as it starts and finishes, then what was written where. Exit "
            "status: 0 success, 1 the run failed, 2 usage or configuration error."
        ),
    )
    run.add_argument(
        "job",
        metavar="JOB",
        help="job to run (list them with `jobs`); internal_ml_job and external_ml_job are "
        "accepted for internal_clustering_job and external_clustering_job",
    )
    _add_env_argument(run, "environment whose configuration the job uses")
    run.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="tag the run (repeatable); clustering/env=ENV and clustering/invocation (which "
        "the progress lines find the run by) are always added",
    )
    run.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="run config as YAML, as the Launchpad takes it, e.g. ops: {internal_clustering: "
        "{config: {max_k: 6}}}",
    )

    jobs = commands.add_parser(
        "jobs",
        help="list the Dagster jobs",
        description="List the Dagster jobs `run` accepts, with their descriptions.",
    )
    _add_env_argument(jobs, "environment whose definitions are listed")
    ui = commands.add_parser(
        "ui",
        help="start the Dagster web UI and daemon",
        description=(
            "Start the Dagster web UI and the daemon (schedules, sensors, queued runs) for an "
            "environment against the project's instance; prints the URL; Ctrl-C or SIGTERM "
            "stops both."
        ),
    )
    add_ui_arguments(ui)

    for kind, example in (("sensor", "internal_data"), ("schedule", "daily_internal_clustering")):
        group = commands.add_parser(
            kind,
            help=f"list, start, stop{' or preview' if kind == 'sensor' else ''} {kind}s",
            description=(
                f"Manage {kind}s in the project's Dagster instance (no webserver needed; the "
                f"daemon started by `ui` or `daemon` acts on the stored state). Names may omit "
                f"the _{kind} suffix, e.g. {example}."
            ),
        )
        actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
        listing = actions.add_parser("list", help=f"every {kind}: status and target job")
        _add_env_argument(listing, "environment")
        for action in ("start", "stop"):
            sub = actions.add_parser(action, help=f"{action} the named {kind}s (all when none)")
            sub.add_argument("names", nargs="*", metavar="NAME")
            _add_env_argument(sub, "environment")
        if kind == "sensor":
            preview = actions.add_parser(
                "preview", help="evaluate one tick now without launching: what would run and why"
            )
            preview.add_argument("names", nargs=1, metavar="NAME")
            _add_env_argument(preview, "environment")

    add_workbench_commands(commands)

    daemon = commands.add_parser(
        "daemon",
        help="run the Dagster daemon alone (schedules, sensors, queued runs)",
        description="Run the Dagster daemon for an environment until Ctrl-C or SIGTERM.",
    )
    _add_env_argument(daemon, "environment")
    return parser


def _generate_data(args: argparse.Namespace) -> int:
    from clustering.sample.files import existing_inputs, write_sample_data

    if args.if_missing:
        present, missing = existing_inputs(args.out)
        if not missing:
            _say(f"Using the inputs in {args.out}: {', '.join(str(p) for p in present)}.")
            return EXIT_OK
        if present:
            raise ConfigError(
                f"{args.out} holds {', '.join(p.name for p in present)} but no "
                f"{' or '.join(missing)}; add the missing inputs, or empty the folder to get "
                "the sample data."
            )
    report = write_sample_data(
        args.out,
        preset=args.preset,
        seed=args.seed,
        stores=args.stores,
        categories=args.categories,
        progress=_say,
        difficulty=args.difficulty,
    )
    _say(
        f"Wrote {report.stores:,} stores, {report.categories} categories, "
        f"{report.sales_rows:,} sales rows to {report.out_dir} in {report.seconds:.1f} s "
        f"(planted truth in {report.truth_dir})."
    )
    return EXIT_OK


def _cluster(args: argparse.Namespace) -> int:
    from clustering.cli.run import run_in_memory
    from clustering.infra.params_file import read_params_file

    paths: dict[str, object] = {}
    if args.raw_dir is not None:
        paths["raw_dir"] = str(args.raw_dir)
    if args.sales:
        paths["internal_sales"] = args.sales
    if args.need_states:
        paths["need_states"] = args.need_states
    if args.external:
        paths["external"] = list(args.external)
    if args.out is not None:
        paths["exports_dir"] = str(args.out)
        paths["duckdb_path"] = str(Path(args.out) / f"clustering_{args.env}.duckdb")
    params: dict[str, object] = read_params_file(args.params) if args.params else {}
    if args.workers is not None:
        if args.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {args.workers}.")
        params = {**params, "workers": args.workers}
    overrides = {key: value for key, value in (("paths", paths), ("params", params)) if value}
    return run_in_memory(args.env, overrides)


def _run(args: argparse.Namespace) -> int:
    from clustering.cli.run import read_run_config, run_job

    run_config = read_run_config(args.config) if args.config else None
    return run_job(args.job, args.env, args.tag, run_config=run_config)


def _jobs(args: argparse.Namespace) -> int:
    from clustering.cli.run import jobs_command

    return jobs_command(args.env)


def _ui(args: argparse.Namespace) -> int:
    from clustering.infra.ui_server import serve

    return serve(args.env, args.host, args.port, out=_say)


def _instigators(args: argparse.Namespace) -> int:
    from clustering.dagster import control

    kind = args.command
    if args.action == "list":
        rows = control.list_instigators(kind, args.env)
        width = max((len(row.name) for row in rows), default=0)
        for row in rows:
            _say(f"{row.name.ljust(width)}  {row.status:<8} {row.target}  {row.detail}".rstrip())
        return EXIT_OK
    if args.action == "preview":
        for line in control.preview_sensor(args.names[0], args.env):
            _say(line)
        return EXIT_OK
    running = args.action == "start"
    changed = control.set_running(kind, args.names, running, args.env)
    _say(f"{'Started' if running else 'Stopped'}: {', '.join(changed) or 'nothing'}.")
    return EXIT_OK


def _daemon(args: argparse.Namespace) -> int:
    from clustering.infra.ui_server import run_daemon

    return run_daemon(args.env, out=_say)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    handlers = {
        "generate-data": _generate_data,
        "cluster": _cluster,
        "run": _run,
        "jobs": _jobs,
        "ui": _ui,
        "sensor": _instigators,
        "schedule": _instigators,
        "daemon": _daemon,
        **WORKBENCH_HANDLERS,
    }
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ClusteringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted; nothing more was written.", file=sys.stderr)
        return 130
