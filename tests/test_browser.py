"""The web UI in a real browser: the asset graph shows the five groups, the Automation page
lists every schedule and sensor, and `full_pipeline_job` launched from the job page
("Materialize all") runs to success and is shown as such.

Drives the system's Chromium (Debian's `chromium` package, installed by `make test` when it is
missing) through Playwright; Playwright's own browser download is never used. Screenshots of the
asset graph and of the finished run are saved to outputs/browser/ (ignored by git).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from clustering.infra.ui_server import STOP_TIMEOUT_S, stop_group

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# Headless on a closed network: without the background-networking flags Chromium stalls on
# requests to Google services that cannot be reached.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
GROUPS = (
    "raw_inputs",
    "preprocessing",
    "internal_clustering",
    "external_clustering",
    "merging",
    "workbench",
)
AUTOMATIONS = (
    "daily_internal_clustering_schedule",
    "weekly_external_clustering_schedule",
    "monthly_full_pipeline_schedule",
    "internal_data_sensor",
    "external_data_sensor",
    "internal_clustering_complete_sensor",
    "run_failure_alert_sensor",
    "asset_check_alert_sensor",
)
INPUTS = ("internal_sales.parquet", "need_state.csv", "external_sales.parquet")
JOB = "full_pipeline_job"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "outputs" / "browser"
UI_START_TIMEOUT_S = 150
PAGE_TIMEOUT_MS = 60_000
RUN_TIMEOUT_MS = 300_000


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing (Debian's chromium package; `make test` installs it as root)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser test, not skip it.")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _graphql(base: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{base}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload["errors"]
    data: dict[str, Any] = payload["data"]
    return data


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _start_ui(project: Path, port: int, log: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERING_")}
    env["DAGSTER_HOME"] = str(project / "home")
    env["CLUSTERING_WORKERS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    # Output goes to a file, never to an unread pipe: a full pipe would block the run's logging.
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "clustering", "ui", "--port", str(port)],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    deadline = time.monotonic() + UI_START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        if f"Dagster UI for 'dev': http://127.0.0.1:{port}" in log.read_text(errors="replace"):
            return process
        time.sleep(0.5)
    stop_group(process)
    pytest.fail(f"the UI did not start within {UI_START_TIMEOUT_S} s:\n{_tail(log)}")


def _code_location(base: str) -> str:
    """The path segment of the only code location's repository, as the UI's routes spell it."""
    query = """
        { repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }
    """
    data = _graphql(base, query)
    [repository] = data["repositoriesOrError"]["nodes"]
    name, location = repository["name"], repository["location"]["name"]
    return location if name == "__repository__" else f"{name}@{location}"


def _expect_groups_in_graph(page: Page) -> None:
    """Every group in the lineage's group list, and the graph drawn (its boxes abbreviate long
    group names, so the list is where the full names are)."""
    for group in GROUPS:
        expect(page.get_by_text(group, exact=True).first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    graph = page.locator("svg foreignObject")
    for group in ("raw_inputs", "preprocessing", "merging", "workbench"):
        expect(graph.get_by_text(group, exact=True).first).to_be_visible(timeout=PAGE_TIMEOUT_MS)


def _launched_run(base: str) -> str:
    """The run the click launched: the only run of the job, covering every asset of the job
    (the raw inputs are read, never built)."""
    query = """
        query ($job: String!) {
          runsOrError(filter: {pipelineName: $job}) {
            ... on Runs { results { runId assetSelection { path } } }
          }
          assetNodes { assetKey { path } jobNames }
        }
    """
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        data = _graphql(base, query, {"job": JOB})
        runs = data["runsOrError"]["results"]
        if runs:
            assert len(runs) == 1, runs
            selected = runs[0]["assetSelection"]
            if selected is not None:  # None: the whole job
                every_asset = {
                    tuple(node["assetKey"]["path"])
                    for node in data["assetNodes"]
                    if JOB in node["jobNames"]
                    and not node["assetKey"]["path"][-1].startswith("raw_")
                }
                assert {tuple(key["path"]) for key in selected} == every_asset
            return str(runs[0]["runId"])
        time.sleep(0.5)
    pytest.fail(f"no run of {JOB} appeared within 60 s of clicking 'Materialize all'.")


def _run_status(base: str, run_id: str) -> str:
    query = "query ($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
    return str(_graphql(base, query, {"id": run_id})["runOrError"]["status"])


def test_ui_in_browser_shows_groups_and_runs_full_pipeline(
    tmp_path: Path, small_data: Path
) -> None:
    _require_chromium()
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    for name in INPUTS:
        shutil.copy2(small_data / name, raw / name)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "ui.log"

    process = _start_ui(tmp_path, port, log)
    try:
        # A fresh instance greets the first visitor with a "Join the Dagster community" dialog.
        show_nux = bool(_graphql(base, "{ shouldShowNux }")["shouldShowNux"])
        with sync_playwright() as playwright:
            # Playwright gives the browser a fresh, empty profile (user-data-dir) of its own.
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.set_default_timeout(PAGE_TIMEOUT_MS)

                page.goto(f"{base}/asset-groups")
                expect(page.get_by_text("Global asset lineage")).to_be_visible()
                if show_nux:
                    skip = page.get_by_role("button", name="Skip", exact=True)
                    skip.click()
                    expect(skip).to_be_hidden()
                _expect_groups_in_graph(page)
                page.screenshot(path=SCREENSHOTS / "asset_graph.png")

                # Every schedule and sensor is listed on the Automation page.
                page.goto(f"{base}/automation")
                for name in AUTOMATIONS:
                    expect(page.get_by_text(name, exact=True).first).to_be_visible()
                page.screenshot(path=SCREENSHOTS / "automation.png", full_page=True)

                page.goto(f"{base}/locations/{_code_location(base)}/jobs/{JOB}")
                # The job's graph is narrower (group names are truncated): wait for it to be drawn.
                expect(page.locator("svg foreignObject").first).to_be_visible()
                page.get_by_role("button", name="Materialize all").click()
                run_id = _launched_run(base)

                page.goto(f"{base}/runs/{run_id}")
                finished = (
                    page.get_by_text("Success", exact=True)
                    .or_(page.get_by_text("Failure", exact=True))
                    .or_(page.get_by_text("Canceled", exact=True))
                )
                expect(finished.first).to_be_visible(timeout=RUN_TIMEOUT_MS)
                status = _run_status(base, run_id)
                page.screenshot(path=SCREENSHOTS / "full_pipeline_run.png")
                assert status == "SUCCESS", f"run {run_id} ended {status}:\n{_tail(log)}"
                expect(page.get_by_text("Success", exact=True)).to_be_visible()
            finally:
                browser.close()
    finally:
        # The ui command itself waits up to STOP_TIMEOUT_S for the webserver and the daemon to
        # end; waiting exactly as long here killed it under a loaded CI machine.
        stop_group(process, timeout=3 * STOP_TIMEOUT_S)
    assert process.returncode == 0, _tail(log)
