"""Start the Dagster webserver and daemon for one environment, and stop them cleanly.

``dagster dev`` runs both (plus a code server). It is started in its own process group so the
whole tree can be stopped: started from a non-interactive shell it ignores SIGINT and SIGTERM
itself, so on Ctrl-C or SIGTERM this module terminates the group, waits, and kills what is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from clustering.core.errors import ConfigError
from clustering.infra.config import load_config
from clustering.infra.instance import ensure_dagster_home

DEFINITIONS_MODULE = "clustering.dagster.definitions"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children, ...), from /proc."""
    found: set[int] = set()
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    children = {int(child) for child in handle.read().split()} - found
            except FileNotFoundError:
                continue
            found |= children
            stack.extend(children)
    return found


def stop_group(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT_S) -> None:
    """Terminate ``process``'s process group; kill it, and any descendant that left the group
    (dagster starts some servers in sessions of their own), if they do not end in time."""
    if process.poll() is not None:
        return
    tree = descendants(process.pid)
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(is_running(pid) for pid in tree):
        time.sleep(0.2)
    for pid in tree:
        if is_running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def is_running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _supervise(
    command: list[str],
    env: str,
    root: Path,
    home: Path,
    out: Callable[[str], None],
    ready: Callable[[], bool],
    banner: str,
    what: str,
) -> int:
    """Run ``command`` in its own process group until SIGINT/SIGTERM; print ``banner`` once
    ``ready()``; stop the whole group on the way out."""
    environ = {**os.environ, "DAGSTER_HOME": str(home), "CLUSTERING_ENV": env}
    process = subprocess.Popen(command, cwd=root, env=environ, start_new_session=True)
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        announced = False
        while not stopping and process.poll() is None:
            if not announced and ready():
                out(banner)
                announced = True
            elif not announced and time.monotonic() > deadline:
                out(f"{what} was not ready within {READY_TIMEOUT_S:.0f} s; stopping.")
                return 1
            time.sleep(0.5)
        if not stopping:
            out(f"{what} exited with status {process.returncode}.")
            return 1
        out(f"Stopping {what}...")
        return 0
    finally:
        stop_group(process)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _dagster_tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def serve(
    env: str,
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    project_root: Path | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """Run the UI and the daemon until interrupted; returns the exit code."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}.")
    if not port_is_free(host, port):
        raise ConfigError(
            f"port {port} on {host} is already in use; stop what uses it or pass --port."
        )
    root = (project_root or Path.cwd()).resolve()
    # The environment's configuration must load before anything starts: a missing variable is
    # one sentence here, not a UI whose code location is broken.
    load_config(env, project_root=root)
    home = ensure_dagster_home(root, env=env)
    command = [_dagster_tool("dagster"), "dev", "-m", DEFINITIONS_MODULE]
    command += ["--host", host, "--port", str(port)]
    url = f"http://{host}:{port}"
    banner = f"Dagster UI for '{env}': {url}  (instance {home}; Ctrl-C to stop)"
    return _supervise(
        command, env, root, home, out, lambda: _ready(url), banner, "the UI and the daemon"
    )


def run_daemon(
    env: str, *, project_root: Path | None = None, out: Callable[[str], None] = print
) -> int:
    """Run the Dagster daemon alone until interrupted; returns the exit code."""
    root = (project_root or Path.cwd()).resolve()
    load_config(env, project_root=root)
    home = ensure_dagster_home(root, env=env)
    command = [_dagster_tool("dagster-daemon"), "run", "-m", DEFINITIONS_MODULE]
    banner = f"Dagster daemon for '{env}' running (instance {home}; Ctrl-C to stop)"
    return _supervise(command, env, root, home, out, lambda: True, banner, "the daemon")
