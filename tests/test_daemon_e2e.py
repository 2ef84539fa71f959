"""The daemon end to end, with real alert receivers on loopback.

One daemon session covers what a user relies on when nobody is watching:

* a started file sensor sees the inputs and launches one run, which succeeds;
* that run's failed quality check (a silhouette floor set out of reach) reaches a real SMTP
  server and a real HTTP webhook as a warning;
* ``python -m clustering run internal_clustering_job`` (in-process, no code-location origin)
  makes ``internal_clustering_complete_sensor`` launch ``merging_job``;
* a file still being written (temporary name) is not picked up until it is renamed into place;
  that bad sales file starts one run, which fails, and the failure (job, step, the contract's
  sentence, the run's link) arrives by e-mail and webhook;
* after a daemon restart, the identical file copied again starts nothing.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from alert_servers import HookServer, MailServer, serve_hooks, serve_mail, wait_until

from clustering.infra.ui_server import stop_group

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 240
ALERT_TIMEOUT_S = 90
# The file sensors tick every 30 s; a restarted daemon needs ~8 s before its first tick.
TICK_TIMEOUT_S = 120
FILE_SENSOR = "internal_data_sensor"
UI_URL = "http://127.0.0.1:3999"
SMTP_USER, SMTP_PASSWORD = "alerts-bot", "pa55-for-the-daemon-test"


def _settle(path: Path) -> None:
    past = time.time() - 120  # older than the sensor's settle time
    os.utime(path, (past, past))


def _runs(home: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(reversed(instance.get_runs()))  # oldest first


def _wait_for(home: Path, count: int, timeout: float = RUN_TIMEOUT_S) -> list[dg.DagsterRun]:
    """Wait until ``count`` runs exist and all have finished; return them, oldest first."""
    deadline = time.monotonic() + timeout
    runs: list[dg.DagsterRun] = []
    while time.monotonic() < deadline:
        runs = _runs(home)
        if len(runs) >= count and all(run.is_finished for run in runs):
            return runs
        time.sleep(2)
    raise AssertionError(f"expected {count} finished runs, found {[r.status for r in runs]}")


def _wait_for_file_tick(home: Path, since: float, timeout: float = TICK_TIMEOUT_S) -> None:
    """Wait until ``internal_data_sensor`` has finished a tick that started after ``since``:
    the daemon has looked at the raw folder as it is now (a stronger proof than sleeping)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            states = [
                s for s in instance.all_instigator_state() if s.instigator_name == FILE_SENSOR
            ]
            ticks = (
                instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id)
                if states
                else []
            )
            if any(t.timestamp > since and t.status.value != "STARTED" for t in ticks):
                return
        time.sleep(1)
    raise AssertionError(f"no finished tick of {FILE_SENSOR} within {timeout:.0f} s")


def _start_daemon(cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "clustering", "daemon"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _site_config(path: Path, mail_port: int) -> None:
    """Alert channels pointing at the test's servers, and a silhouette floor no k can reach."""
    path.write_text(
        f"""
alerts:
  min_severity: warning
  ui_base_url: {UI_URL}
  channels:
    - type: log
    - type: email
      smtp_host: 127.0.0.1
      smtp_port: {mail_port}
      smtp_starttls: false
      username_env: CLUSTERING_SMTP_USERNAME
      password_env: CLUSTERING_SMTP_PASSWORD
      sender: clustering@example.com
      recipients: ops@example.com, planner@example.com
    - type: webhook
      url_env: CLUSTERING_ALERT_WEBHOOK_URL
params:
  internal_clustering:
    silhouette_floor: 0.99
""",
        encoding="utf-8",
    )


def _mails(server: MailServer) -> list[EmailMessage]:
    parsed = [
        email.message_from_string(m["data"], policy=email.policy.default) for m in server.messages
    ]
    return [m for m in parsed if isinstance(m, EmailMessage)]


def _hooks(server: HookServer) -> list[dict[str, Any]]:
    return [r["body"] for r in server.requests]


@pytest.fixture
def receivers() -> Iterator[tuple[MailServer, HookServer]]:
    with serve_mail(SMTP_USER, SMTP_PASSWORD) as mail, serve_hooks() as hooks:
        yield mail, hooks


def test_daemon_runs_sensors_and_alerts_by_mail_and_webhook(
    small_data: Path, tmp_path: Path, receivers: tuple[MailServer, HookServer]
) -> None:
    mail, hooks = receivers
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    for name in ["internal_sales.parquet", "need_state.csv", "external_sales.parquet"]:
        shutil.copy(small_data / name, raw / name)
        _settle(raw / name)
    _site_config(tmp_path / "site.yml", mail.port)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERING_")}
    env.update(
        DAGSTER_HOME=str(home),
        CLUSTERING_WORKERS="1",
        CLUSTERING_CONFIG="site.yml",
        CLUSTERING_SMTP_USERNAME=SMTP_USER,
        CLUSTERING_SMTP_PASSWORD=SMTP_PASSWORD,
        CLUSTERING_ALERT_WEBHOOK_URL=hooks.url("/hooks/T0KEN"),
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clustering", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    for sensor in ["internal_data", "internal_clustering_complete_sensor"]:
        started = cli("sensor", "start", sensor)
        assert started.returncode == 0, started.stderr
    listing = cli("sensor", "list").stdout
    status = {line.split()[0]: line.split()[1] for line in listing.splitlines() if line.strip()}
    assert status["run_failure_alert_sensor"] == "RUNNING"  # alert sensors need no start
    assert status["asset_check_alert_sensor"] == "RUNNING"

    daemon = _start_daemon(tmp_path, env)
    try:
        # First tick: the inputs present are new to the sensor -> one run, which succeeds.
        [first] = _wait_for(home, 1)
        assert first.status == dg.DagsterRunStatus.SUCCESS
        assert first.job_name == "full_pipeline_job"
        assert first.tags.get("dagster/sensor_name") == "internal_data_sensor"

        # Its silhouette check failed (WARN) -> a quality warning by e-mail and webhook.
        wait_until(
            lambda: len(hooks.requests) >= 1 and len(mail.messages) >= 1,
            ALERT_TIMEOUT_S,
            "the quality alert of the first run",
        )
        [quality] = _hooks(hooks)
        assert quality["severity"] == "warning"
        assert quality["title"] == "1 quality check failed in full_pipeline_job"
        assert "internal_models: silhouette_above_floor failed (warning)" in quality["message"]
        assert quality["run_url"] == f"{UI_URL}/runs/{first.run_id}"
        [quality_mail] = _mails(mail)
        assert quality_mail["Subject"] == "[WARNING] 1 quality check failed in full_pipeline_job"
        assert mail.logins[0] == (SMTP_USER, SMTP_PASSWORD)

        # An internal clustering run from the command line -> merging_job by the sensor.
        ran = cli("run", "internal_clustering_job")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        runs = _wait_for(home, 3)
        merging = runs[2]
        assert runs[1].job_name == "internal_clustering_job"
        assert merging.job_name == "merging_job"
        assert merging.status == dg.DagsterRunStatus.SUCCESS
        assert merging.tags.get("clustering/trigger") == "internal_clustering_complete_sensor"

        # A file still being written under a temporary name is left alone ...
        sales = pd.read_parquet(raw / "internal_sales.parquet")
        bad = tmp_path / "bad_sales.parquet"
        sales.drop(columns=["TOTAL_SALES"]).to_parquet(bad, index=False)
        partial = raw / ".internal_sales.parquet.tmp"
        shutil.copy(bad, partial)
        _settle(partial)
        _wait_for_file_tick(home, since=time.time())  # the sensor has seen the partial file
        assert len(_runs(home)) == 3
        # ... and picked up once complete (renamed into place): one run, which fails.
        os.replace(partial, raw / "internal_sales.parquet")
        _settle(raw / "internal_sales.parquet")
        runs = _wait_for(home, 4)
        failed = runs[3]
        assert failed.status == dg.DagsterRunStatus.FAILURE
        assert failed.job_name == "full_pipeline_job"

        def failure_arrived() -> bool:
            return any(h["severity"] == "error" for h in _hooks(hooks)) and any(
                m["Subject"] == "[ERROR] full_pipeline_job failed" for m in _mails(mail)
            )

        wait_until(failure_arrived, ALERT_TIMEOUT_S, "the failure alert by e-mail and webhook")
        [hook] = [h for h in _hooks(hooks) if h["severity"] == "error"]
        assert hook["job"] == "full_pipeline_job"
        assert hook["step"] == "internal_need_state_sales"
        assert "TOTAL_SALES" in hook["message"]
        assert hook["run_url"] == f"{UI_URL}/runs/{failed.run_id}"
        [message] = [m for m in _mails(mail) if m["Subject"] == "[ERROR] full_pipeline_job failed"]
        body = message.get_content()
        assert "step: internal_need_state_sales" in body
        assert "TOTAL_SALES" in body
        assert f"run: {UI_URL}/runs/{failed.run_id}" in body
        assert message["To"] == "ops@example.com, planner@example.com"

        # A restarted daemon, the identical file copied again -> no new run after a few ticks.
        stop_group(daemon)
        daemon = _start_daemon(tmp_path, env)
        shutil.copy(bad, raw / "internal_sales.parquet")
        _settle(raw / "internal_sales.parquet")
        _wait_for_file_tick(home, since=time.time())  # a tick of the restarted daemon
        assert len(_runs(home)) == 4
    finally:
        stop_group(daemon)
