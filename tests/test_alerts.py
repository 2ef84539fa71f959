"""Alert channels against real servers on 127.0.0.1: what arrives, what fails, what is logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from alert_servers import HookServer, MailServer, closed_port, serve_hooks, serve_mail

from clustering.infra.config import AlertChannel, AlertsConfig
from clustering.infra.monitoring.alerts import Alert, AlertDispatcher, ChannelResult

TOKEN = "T0KEN-s3cr3t-9f8e7d"
PASSWORD = "pa55-w0rd-never-logged"
ALERT = Alert(
    severity="error",
    title="internal_clustering_job failed",
    job="internal_clustering_job",
    step="internal_models",
    message="InputContractError: internal sales: column TOTAL_SALES must be ≥ 0.",
    run_url="http://127.0.0.1:3000/runs/abc123",
)


@pytest.fixture
def hook_server() -> Iterator[HookServer]:
    with serve_hooks() as server:
        yield server


def alerts_config(*channels: AlertChannel, min_severity: str = "warning") -> AlertsConfig:
    return AlertsConfig.model_validate(
        {
            "enabled": True,
            "channels": [c.model_dump(exclude_unset=True) for c in channels],
            "min_severity": min_severity,
            "ui_base_url": "http://127.0.0.1:3000",
        }
    )


def webhook(name: str = "TEST_WEBHOOK_URL") -> AlertChannel:
    return AlertChannel(type="webhook", url_env=name)


def slack(name: str = "TEST_SLACK_URL") -> AlertChannel:
    return AlertChannel(type="slack", webhook_url_env=name)


def email(port: int, *, credentials: bool = True, starttls: bool = False) -> AlertChannel:
    fields: dict[str, Any] = {
        "type": "email",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_starttls": starttls,
        "sender": "clustering@example.com",
        "recipients": "ops@example.com, planner@example.com",
    }
    if credentials:
        fields |= {"username_env": "TEST_SMTP_USER", "password_env": "TEST_SMTP_PASSWORD"}
    return AlertChannel.model_validate(fields)


SMTP_ENV = {"TEST_SMTP_USER": "alerts-bot", "TEST_SMTP_PASSWORD": PASSWORD}


def test_log_channel_writes_one_line_with_the_alert(caplog: pytest.LogCaptureFixture) -> None:
    dispatcher = AlertDispatcher(alerts_config(AlertChannel(type="log")), environ={})
    with caplog.at_level(logging.DEBUG, logger="clustering"):
        results = dispatcher.send(ALERT)

    assert results == [ChannelResult("log", "log", ok=True, detail="sent")]
    [record] = [r for r in caplog.records if "ALERT" in r.getMessage()]
    assert record.levelno == logging.ERROR
    line = record.getMessage()
    for part in (ALERT.title, ALERT.job, ALERT.step, ALERT.message, ALERT.run_url):
        assert part is not None and part in line
    assert "\n" not in line


def test_warning_alert_is_logged_as_warning(caplog: pytest.LogCaptureFixture) -> None:
    dispatcher = AlertDispatcher(alerts_config(AlertChannel(type="log")), environ={})
    warning = Alert(severity="warning", title="silhouette below floor", job="merging_job")
    with caplog.at_level(logging.DEBUG, logger="clustering"):
        dispatcher.send(warning)
    [record] = [r for r in caplog.records if "ALERT" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "step" not in record.getMessage()  # no step given: none invented


def test_webhook_posts_the_alert_as_json(hook_server: HookServer) -> None:
    dispatcher = AlertDispatcher(
        alerts_config(webhook()), environ={"TEST_WEBHOOK_URL": hook_server.url(f"/hooks/{TOKEN}")}
    )
    results = dispatcher.send(ALERT)

    assert results == [ChannelResult("webhook", "127.0.0.1", ok=True, detail="sent")]
    [request] = hook_server.requests
    assert request["path"] == f"/hooks/{TOKEN}"
    assert request["content_type"] == "application/json"
    body = request["body"]
    assert {k: body[k] for k in ("severity", "title", "job", "step", "message", "run_url")} == {
        "severity": "error",
        "title": ALERT.title,
        "job": ALERT.job,
        "step": ALERT.step,
        "message": ALERT.message,
        "run_url": ALERT.run_url,
    }
    assert body["text"] == ALERT.text()


def test_slack_posts_text(hook_server: HookServer) -> None:
    dispatcher = AlertDispatcher(
        alerts_config(slack()), environ={"TEST_SLACK_URL": hook_server.url("/services/T/B/x")}
    )
    [result] = dispatcher.send(ALERT)

    assert result.ok
    [request] = hook_server.requests
    assert request["body"] == {"text": ALERT.text()}
    text = request["body"]["text"]
    assert text.startswith("[ERROR] internal_clustering_job failed")
    assert "step: internal_models" in text and "run: http://127.0.0.1:3000/runs/abc123" in text


def test_every_channel_gets_the_alert_and_one_failure_does_not_stop_the_others(
    hook_server: HookServer,
) -> None:
    dispatcher = AlertDispatcher(
        alerts_config(AlertChannel(type="log"), webhook("DOWN_URL"), slack()),
        environ={
            "DOWN_URL": f"http://127.0.0.1:{closed_port()}/hook",
            "TEST_SLACK_URL": hook_server.url(f"/hooks/{TOKEN}"),
        },
        timeout=5,
    )
    results = dispatcher.send(ALERT)

    assert [(r.channel, r.ok) for r in results] == [
        ("log", True),
        ("webhook", False),
        ("slack", True),
    ]
    assert results[1].detail.startswith("cannot reach the server")
    assert len(hook_server.requests) == 1


def test_server_error_is_reported_not_raised(hook_server: HookServer) -> None:
    hook_server.status = 500
    dispatcher = AlertDispatcher(
        alerts_config(webhook()), environ={"TEST_WEBHOOK_URL": hook_server.url(f"/hooks/{TOKEN}")}
    )
    [result] = dispatcher.send(ALERT)
    assert not result.ok
    assert result.detail == "HTTP 500 Internal Server Error"


def test_email_to_a_server_that_is_down_is_reported_failed() -> None:
    dispatcher = AlertDispatcher(alerts_config(email(closed_port())), environ=SMTP_ENV, timeout=5)
    [result] = dispatcher.send(ALERT)
    assert result.channel == "email" and not result.ok
    assert result.target.startswith("127.0.0.1:")


def test_unset_secret_variable_is_named_in_the_failure() -> None:
    dispatcher = AlertDispatcher(alerts_config(slack("NOT_SET_ANYWHERE")), environ={})
    [result] = dispatcher.send(ALERT)
    assert not result.ok
    assert result.detail == "environment variable NOT_SET_ANYWHERE is not set"


def test_non_http_url_is_refused() -> None:
    dispatcher = AlertDispatcher(
        alerts_config(webhook()), environ={"TEST_WEBHOOK_URL": "file:///etc/passwd"}
    )
    [result] = dispatcher.send(ALERT)
    assert not result.ok and "http" in result.detail


def test_alerts_below_the_threshold_are_not_sent(hook_server: HookServer) -> None:
    dispatcher = AlertDispatcher(
        alerts_config(webhook(), min_severity="error"),
        environ={"TEST_WEBHOOK_URL": hook_server.url(f"/hooks/{TOKEN}")},
    )
    warning = Alert(severity="warning", title="slow step", job="merging_job")

    assert dispatcher.send(warning) == []
    assert hook_server.requests == []
    assert [r.ok for r in dispatcher.send(ALERT)] == [True]
    assert len(hook_server.requests) == 1


def test_disabled_alerts_send_nothing() -> None:
    config = alerts_config(AlertChannel(type="log")).model_copy(update={"enabled": False})
    assert AlertDispatcher(config, environ={}).send(ALERT) == []


def test_unknown_severity_is_rejected() -> None:
    with pytest.raises(ValueError, match="severity"):
        Alert(severity="fatal", title="x", job="y")  # type: ignore[arg-type]


def test_run_url_follows_the_ui_address() -> None:
    dispatcher = AlertDispatcher(alerts_config(AlertChannel(type="log")), environ={})
    assert dispatcher.run_url("abc") == "http://127.0.0.1:3000/runs/abc"
    no_ui = dispatcher.config.model_copy(update={"ui_base_url": ""})
    assert AlertDispatcher(no_ui, environ={}).run_url("abc") is None


def test_secrets_never_reach_the_log(
    hook_server: HookServer, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {
        "TEST_WEBHOOK_URL": hook_server.url(f"/hooks/{TOKEN}"),
        "TEST_SLACK_URL": f"http://127.0.0.1:{closed_port()}/hooks/{TOKEN}",
        **SMTP_ENV,
    }
    config = alerts_config(
        AlertChannel(type="log"), webhook(), slack(), email(closed_port()), min_severity="warning"
    )
    dispatcher = AlertDispatcher(config, environ=environ, timeout=5)
    with caplog.at_level(logging.DEBUG):
        results = dispatcher.send(ALERT)
        hook_server.status = 403
        results += dispatcher.send(ALERT)

    assert [r.ok for r in results] == [True, True, False, False, True, False, False, False]
    logged = caplog.text + "".join(str(r) for r in results)
    assert "failed" in caplog.text  # the failures were logged ...
    assert TOKEN not in logged  # ... without the webhook tokens
    assert PASSWORD not in logged


# --- e-mail through a real SMTP server -----------------------------------------------------


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    with serve_mail("alerts-bot", PASSWORD) as server:
        yield server


def test_email_is_delivered_with_login(
    mail_server: MailServer, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher = AlertDispatcher(alerts_config(email(mail_server.port)), environ=SMTP_ENV)
    with caplog.at_level(logging.DEBUG):
        [result] = dispatcher.send(ALERT)

    assert result == ChannelResult("email", f"127.0.0.1:{mail_server.port}", True, "sent")
    assert mail_server.logins == [("alerts-bot", PASSWORD)]
    [message] = mail_server.messages
    assert message["from"] == "clustering@example.com"
    assert message["to"] == ["ops@example.com", "planner@example.com"]
    assert "Subject: [ERROR] internal_clustering_job failed" in message["data"]
    assert "step: internal_models" in message["data"]
    assert PASSWORD not in caplog.text


def test_email_with_wrong_password_is_reported_failed(mail_server: MailServer) -> None:
    environ = SMTP_ENV | {"TEST_SMTP_PASSWORD": "wrong-" + PASSWORD}
    dispatcher = AlertDispatcher(alerts_config(email(mail_server.port)), environ=environ)
    [result] = dispatcher.send(ALERT)
    assert not result.ok
    assert PASSWORD not in result.detail
    assert mail_server.messages == []


def test_email_starttls_refused_by_server_is_reported(mail_server: MailServer) -> None:
    # The test server offers no STARTTLS: a channel that requires it must not send in clear.
    channel = email(mail_server.port, starttls=True)
    [result] = AlertDispatcher(alerts_config(channel), environ=SMTP_ENV).send(ALERT)
    assert not result.ok
    assert "STARTTLS" in result.detail
    assert mail_server.messages == [] and mail_server.logins == []
