"""Real alert receivers on 127.0.0.1 for tests: an HTTP server and an SMTP server (aiosmtpd).

Used by the alert channel tests and by the daemon end-to-end test, which points the pipeline's
alert configuration at them and waits for what a failing run sends.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every half second; fail the test naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class HookServer:
    """An HTTP server on loopback recording every POST (path, content type, JSON body)."""

    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200

    def url(self, path: str = "/hooks/test") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def serve_hooks() -> Iterator[HookServer]:
    state = HookServer(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(
                {
                    "path": self.path,
                    "content_type": self.headers["Content-Type"],
                    "body": json.loads(body),
                }
            )
            self.send_response(state.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    # A short poll interval so shutdown() returns quickly at teardown.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class MailServer:
    """An SMTP server on loopback recording each message and login attempt."""

    port: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)


@contextmanager
def serve_mail(username: str, password: str) -> Iterator[MailServer]:
    """SMTP with AUTH accepting only ``username``/``password`` (no TLS on loopback)."""
    # aiosmtpd is the SMTP server for tests since Python dropped smtpd.
    controller_module = pytest.importorskip("aiosmtpd.controller")
    smtp_module = pytest.importorskip("aiosmtpd.smtp")
    state = MailServer(port=closed_port())

    class Handler:
        async def handle_DATA(  # noqa: N802 (the hook name aiosmtpd calls)
            self, server: Any, session: Any, envelope: Any
        ) -> str:
            state.messages.append(
                {
                    "from": envelope.mail_from,
                    "to": list(envelope.rcpt_tos),
                    "data": envelope.content.decode("utf-8"),
                }
            )
            return "250 OK"

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        given = (data.login.decode(), data.password.decode())
        state.logins.append(given)
        # handled=False makes the server answer 535 itself; handled=True would leave it silent.
        return smtp_module.AuthResult(success=given == (username, password), handled=False)

    controller = controller_module.Controller(
        Handler(),
        hostname="127.0.0.1",
        port=state.port,
        authenticator=authenticate,
        auth_require_tls=False,  # no certificate on loopback; STARTTLS is the default elsewhere
    )
    controller.start()
    try:
        yield state
    finally:
        controller.stop()
