"""The Dagster web UI and daemon for one environment: ``python -m clustering.dagster_app``.

Same as ``python -m clustering ui``: starts both, prints the URL, stops cleanly on Ctrl-C or
SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clustering.core.errors import ClusteringError
from clustering.infra.config import ENVIRONMENTS


def add_ui_arguments(parser: argparse.ArgumentParser) -> None:
    """``--env``, ``--host`` and ``--port``, shared with ``python -m clustering ui``."""
    parser.add_argument("--env", default="dev", choices=list(ENVIRONMENTS), help="environment")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: loopback only)"
    )
    parser.add_argument("--port", type=int, default=3000, help="port (default: 3000)")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and serve until interrupted; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m clustering.dagster_app", description=(__doc__ or "").splitlines()[0]
    )
    add_ui_arguments(parser)
    args = parser.parse_args(argv)
    from clustering.infra.ui_server import serve

    try:
        return serve(args.env, args.host, args.port)
    except ClusteringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
