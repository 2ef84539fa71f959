"""The UI command: serves the asset graph, stops cleanly with no orphan processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from clustering.infra.ui_server import descendants, is_running

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("module", [["clustering", "ui"], ["clustering.dagster_app"]])
def test_ui_serves_then_stops_on_sigterm(tmp_path: Path, module: list[str]) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERING_")}
    env["DAGSTER_HOME"] = str(tmp_path / "home")
    process = subprocess.Popen(
        [sys.executable, "-m", *module, "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 150
        line = ""
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if "Dagster UI" in line or not line:
                break
        assert f"http://127.0.0.1:{port}" in line, line
        query = json.dumps({"query": "{ assetNodes { groupName } }"}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/graphql",
            data=query,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            groups = {n["groupName"] for n in json.loads(response.read())["data"]["assetNodes"]}
        assert groups == {
            "raw_inputs",
            "preprocessing",
            "internal_clustering",
            "external_clustering",
            "merging",
            "workbench",
        }
        children = descendants(process.pid)
        assert children, "dagster dev should be running under the command"

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        alive = [pid for pid in children if is_running(pid)]
        assert not alive, f"orphan processes left: {alive}"
    finally:
        if _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)


def test_port_in_use_is_one_sentence(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "clustering", "ui", "--port", str(port)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "DAGSTER_HOME": str(tmp_path / "home")},
        )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: port {port} on 127.0.0.1 is already in use; stop what uses it or pass --port."
    )
