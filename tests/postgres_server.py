"""A real, throwaway PostgreSQL server on 127.0.0.1 for the PostgreSQL-backed tests.

Started from Debian's ``postgresql`` binaries (``make postgres`` installs them; ``make test``
depends on it): ``initdb`` into a fresh temporary folder, ``pg_ctl start`` on a free loopback
port with a Unix socket inside that folder, password authentication over TCP (so the tests
prove credentials really travel through the environment), durability switched off because the
data is thrown away. One server serves the whole test session; each test takes a database of
its own with :meth:`PostgresServer.create_database`.

``initdb`` refuses to run as root, so as root the server runs as Debian's ``postgres`` user.
Without the binaries the tests are skipped on a developer machine and fail under ``CI``: CI
must run them.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psycopg
import pytest

SUPERUSER = "clustering_test"
START_TIMEOUT_S = 60


def find_bin_dir() -> Path | None:
    """Folder holding ``initdb``/``pg_ctl``: the newest /usr/lib/postgresql/<v>/bin, else PATH."""

    def version(folder: Path) -> int:
        number = folder.parent.name
        return int(number) if number.isdigit() else 0

    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for folder in debian:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where it listens and the superuser's (generated) credentials."""

    host: str
    port: int
    user: str
    password: str

    def url(self, database: str, scheme: str = "postgres") -> str:
        """Connection URL for ``database`` (``postgres://`` is what Ibis takes)."""
        return f"{scheme}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit psycopg connection to ``database``."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            autocommit=True,
        )

    def create_database(self, name: str) -> str:
        """A new, empty database called ``name`` (dropped first if a previous test left it)."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"not a plain database name: {name!r}")
        with self.connect() as con:
            con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            con.execute(f"CREATE DATABASE {name}")
        return name

    def instance_env(self, database: str) -> dict[str, str]:
        """The ``DAGSTER_PG_*`` variables the PostgreSQL ``dagster.yaml`` reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": database,
        }


def _as_server_user() -> dict[str, object]:
    """Popen arguments that run a command as the account owning the cluster."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


@contextmanager
def running_server(bin_dir: Path) -> Iterator[PostgresServer]:
    """Initialise and start a server from ``bin_dir``; stop it and delete its files afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="clustering-pg-"))
    data, log = folder / "data", folder / "server.log"
    password = secrets.token_urlsafe(16)  # generated per session: nothing secret is committed
    password_file = folder / "password"
    password_file.write_text(password + "\n", encoding="utf-8")
    _own(folder)
    _own(password_file)
    run_as = _as_server_user()
    try:
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "--pgdata",
                str(data),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(password_file),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            **run_as,
        )
        port = _start(bin_dir, data, folder, log, run_as)
        yield PostgresServer("127.0.0.1", port, SUPERUSER, password)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                **run_as,
            )
        shutil.rmtree(folder, ignore_errors=True)


def _start(
    bin_dir: Path, data: Path, socket_dir: Path, log: Path, run_as: dict[str, object]
) -> int:
    """Start the server on a free port (a second port if another process took the first)."""
    for _ in range(2):
        port = _free_port()
        options = (
            f"-p {port} -h 127.0.0.1 -k {socket_dir} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        started = subprocess.run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                options,
                "-t",
                str(START_TIMEOUT_S),
                "-w",
                "start",
            ],
            capture_output=True,
            text=True,
            **run_as,
        )
        if started.returncode == 0:
            return port
    server_log = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    raise RuntimeError(f"PostgreSQL did not start: {started.stderr.strip()}\n{server_log}")


def require_bin_dir() -> Path:
    """The server binaries, or skip (developer machine) / fail (``CI`` set) naming the fix."""
    found = find_bin_dir()
    if found is not None:
        return found
    reason = (
        "PostgreSQL server binaries are missing (Debian's postgresql package; `make postgres` "
        "or `make test` installs it as root)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the PostgreSQL tests, not skip them.")
    pytest.skip(reason)


_PG_TYPES = {"i": "BIGINT", "u": "BIGINT", "f": "DOUBLE PRECISION", "b": "BOOLEAN"}


def load_table(server: PostgresServer, database: str, name: str, frame: pd.DataFrame) -> None:
    """Create table ``name`` in ``database`` with ``frame``'s columns and rows (COPY)."""
    columns = ", ".join(f'"{c}" {_PG_TYPES.get(frame[c].dtype.kind, "TEXT")}' for c in frame)
    rows = frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None)
    with server.connect(database) as con, con.cursor() as cursor:
        cursor.execute(f'DROP TABLE IF EXISTS "{name}"')
        cursor.execute(f'CREATE TABLE "{name}" ({columns})')
        with cursor.copy(f'COPY "{name}" FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)


def load_sample_inputs(server: PostgresServer, database: str, raw_dir: Path) -> None:
    """The three sample inputs of ``raw_dir`` as the tables prod.yml reads: internal_sales,
    need_states and external_store_features."""
    load_table(
        server, database, "internal_sales", pd.read_parquet(raw_dir / "internal_sales.parquet")
    )
    load_table(server, database, "need_states", pd.read_csv(raw_dir / "need_state.csv"))
    external = pd.read_parquet(raw_dir / "external_sales.parquet")
    load_table(server, database, "external_store_features", external)
