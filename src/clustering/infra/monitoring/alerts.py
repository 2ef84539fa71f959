"""Send alerts (run failures, failed checks) to the channels the configuration lists.

Channels: ``log`` (the ``clustering`` logger), ``webhook`` (a JSON POST of the alert's fields),
``slack`` (an incoming webhook, ``{"text": ...}``) and ``email`` (SMTP, STARTTLS by default).
Secrets — webhook URLs, SMTP credentials — are read from the environment variables the
configuration names, at send time, and never written to a log or a result: those name the
channel type and the host only.

Alerting must never take a run down with it, so :meth:`AlertDispatcher.send` does not raise: a
channel that fails is logged and reported as failed in the returned results.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from typing import Literal
from urllib.parse import urlsplit

from clustering.infra.config import AlertChannel, AlertsConfig

logger = logging.getLogger(__name__)

Severity = Literal["warning", "error"]
_RANK: dict[str, int] = {"warning": 0, "error": 1}
DEFAULT_TIMEOUT_SECONDS = 10.0
"""How long one channel may take; a hung webhook must not hold a failure sensor for long."""


@dataclass(frozen=True)
class Alert:
    """Something a person should look at: what failed, where, and a link to the run."""

    severity: Severity
    title: str
    job: str
    step: str | None = None
    message: str = ""
    run_url: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in _RANK:
            raise ValueError(f"alert severity must be 'warning' or 'error', not {self.severity!r}")

    @property
    def subject(self) -> str:
        """Short first line: ``[ERROR] title``."""
        return f"[{self.severity.upper()}] {self.title}"

    def text(self) -> str:
        """The alert as a few plain-text lines (Slack message, e-mail body)."""
        lines = [self.subject, f"job: {self.job}"]
        if self.step:
            lines.append(f"step: {self.step}")
        if self.message:
            lines.append(self.message)
        if self.run_url:
            lines.append(f"run: {self.run_url}")
        return "\n".join(lines)


@dataclass(frozen=True)
class ChannelResult:
    """How sending one alert through one channel went.

    ``target`` is the channel's host (``"log"`` for the log channel), never a full URL, since
    webhook URLs carry their token; ``detail`` is ``"sent"`` or the one-line reason it failed.
    """

    channel: str
    target: str
    ok: bool
    detail: str


class _ChannelError(Exception):
    """A channel cannot send; the message is safe to log (no secret in it)."""


def run_url(ui_base_url: str, run_id: str) -> str | None:
    """Link to a run in the Dagster UI, or None when no UI address is configured."""
    return f"{ui_base_url.rstrip('/')}/runs/{run_id}" if ui_base_url else None


class AlertDispatcher:
    """Sends an :class:`Alert` to every channel of an :class:`AlertsConfig`.

    ``environ`` is where the ``*_env`` names of the channels are looked up (the process
    environment by default; a mapping in tests).
    """

    def __init__(
        self,
        config: AlertsConfig,
        environ: Mapping[str, str] = os.environ,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.config = config
        self.environ = environ
        self.timeout = timeout

    def wants(self, severity: Severity) -> bool:
        """Whether an alert of ``severity`` would be sent (enabled and at the threshold)."""
        return self.config.enabled and _RANK[severity] >= _RANK[self.config.min_severity]

    def run_url(self, run_id: str) -> str | None:
        """Link to ``run_id`` in the configured Dagster UI, or None."""
        return run_url(self.config.ui_base_url, run_id)

    def send(self, alert: Alert) -> list[ChannelResult]:
        """Send ``alert`` through each channel; one result per channel, ``[]`` when skipped.

        Never raises: a failing channel is logged (type and host only) and reported failed.
        """
        if not self.wants(alert.severity):
            return []
        return [self._send_one(channel, alert) for channel in self.config.channels]

    def _send_one(self, channel: AlertChannel, alert: Alert) -> ChannelResult:
        secrets: list[str] = []
        target = "?"
        try:
            secrets = self._secrets(channel)
            target = self._target(channel)
            self._senders()[channel.type](channel, alert)
        except Exception as exc:  # alerting must not fail the caller, whatever went wrong
            reason = _scrub(_reason(exc), secrets)
            logger.warning("alert channel %s (%s) failed: %s", channel.type, target, reason)
            return ChannelResult(channel.type, target, ok=False, detail=reason)
        if channel.type != "log":
            logger.info("alert '%s' sent via %s (%s)", alert.title, channel.type, target)
        return ChannelResult(channel.type, target, ok=True, detail="sent")

    def _senders(self) -> dict[str, Callable[[AlertChannel, Alert], None]]:
        return {
            "log": self._send_log,
            "webhook": self._send_webhook,
            "slack": self._send_slack,
            "email": self._send_email,
        }

    # --- channels ----------------------------------------------------------------------

    def _send_log(self, channel: AlertChannel, alert: Alert) -> None:
        level = logging.ERROR if alert.severity == "error" else logging.WARNING
        where = f"job {alert.job}" + (f", step {alert.step}" if alert.step else "")
        details = f": {alert.message}" if alert.message else ""
        link = f" ({alert.run_url})" if alert.run_url else ""
        logger.log(level, "ALERT %s — %s%s%s", alert.subject, where, details, link)

    def _send_webhook(self, channel: AlertChannel, alert: Alert) -> None:
        payload = asdict(alert) | {"text": alert.text()}
        self._post_json(self._secret(channel.url_env), payload)

    def _send_slack(self, channel: AlertChannel, alert: Alert) -> None:
        self._post_json(self._secret(channel.webhook_url_env), {"text": alert.text()})

    def _send_email(self, channel: AlertChannel, alert: Alert) -> None:
        assert channel.smtp_host is not None and channel.sender is not None
        message = EmailMessage()
        message["Subject"] = alert.subject
        message["From"] = channel.sender
        message["To"] = ", ".join(channel.recipients)
        message.set_content(alert.text())
        with smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=self.timeout) as smtp:
            if channel.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if channel.username_env and channel.password_env:
                smtp.login(self._secret(channel.username_env), self._secret(channel.password_env))
            smtp.send_message(message)

    # --- helpers -----------------------------------------------------------------------

    def _post_json(self, url: str, payload: Mapping[str, object]) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise _ChannelError("the configured URL is not an http(s) address")
        request = urllib.request.Request(
            url,
            data=json.dumps(payload).encode("utf-8"),
            headers={"Content-Type": "application/json", "User-Agent": "store-clustering"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            # str(HTTPError) is safe, but its .url (and some reprs) hold the secret URL.
            raise _ChannelError(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise _ChannelError(f"cannot reach the server: {exc.reason}") from None

    def _secret(self, name: str | None) -> str:
        value = self.environ.get(name, "") if name else ""
        if not value:
            raise _ChannelError(f"environment variable {name} is not set")
        return value

    def _secrets(self, channel: AlertChannel) -> list[str]:
        names = (
            channel.url_env,
            channel.webhook_url_env,
            channel.username_env,
            channel.password_env,
        )
        return [self.environ[name] for name in names if name and self.environ.get(name)]

    def _target(self, channel: AlertChannel) -> str:
        """Where the channel sends, safe to log: the host, never the URL (it holds a token)."""
        if channel.type == "log":
            return "log"
        if channel.type == "email":
            return f"{channel.smtp_host}:{channel.smtp_port}"
        name = channel.url_env if channel.type == "webhook" else channel.webhook_url_env
        url = self.environ.get(name, "") if name else ""
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        return host or "?"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret value replaced by ``***`` (longest first, so none leaks)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
