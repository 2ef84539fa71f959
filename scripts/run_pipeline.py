"""Run one pipeline job through Dagster, as ``python -m clustering run`` does.

    python scripts/run_pipeline.py --job full_pipeline_job --env dev --tag run_type=test

Same behaviour and exit codes as ``python -m clustering run JOB --env ENV --tag KEY=VALUE``: each
step printed as it runs, a summary of what was written where; 0 success, 1 the run failed,
2 usage error (for example an unknown job, with the list of jobs).
"""

from __future__ import annotations

import argparse
import sys

from clustering.cli.main import main


def _arguments(argv: list[str]) -> list[str]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--job", required=True, help="job to run, e.g. full_pipeline_job")
    parser.add_argument("--env", default=None, help="dev, staging or prod (default: dev)")
    parser.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="tag (repeatable)"
    )
    args = parser.parse_args(argv)
    command = ["run", args.job]
    if args.env:
        command += ["--env", args.env]
    for tag in args.tag:
        command += ["--tag", tag]
    return command


if __name__ == "__main__":
    sys.exit(main(_arguments(sys.argv[1:])))
