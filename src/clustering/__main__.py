"""``python -m clustering`` entry point (also the ``clustering`` command)."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys

_status = [1]  # the exit status; 1 until main() returns (an uncaught error exits with 1)


def _leave_without_teardown() -> None:
    """The last exit handler: every other one (logging, multiprocessing, file locks) has run
    and the output is flushed here, so the process ends without Python tearing down each of
    its ~2,300 modules one object at a time, which took ~2 s after every command (importing
    Dagster alone leaves 0.8 s of it). No file is left open by then: the warehouse, the run
    storage and the outputs are closed by the commands themselves."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(_status[0])


def run() -> None:
    """Run the command line and exit with its status."""
    # Registered before anything else imports: exit handlers run last-registered first.
    atexit.register(_leave_without_teardown)
    from clustering.cli.main import main

    try:
        _status[0] = main()
    except SystemExit as exc:  # argparse's --help and usage errors
        _status[0] = _exit_status(exc.code)
        raise
    raise SystemExit(_status[0])


def _exit_status(code: object) -> int:
    """The status Python gives ``SystemExit(code)``: None is 0, a number itself, text 1."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


if __name__ == "__main__":
    run()
