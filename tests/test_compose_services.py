"""docker-compose.yml, Dockerfile and the dev container, proven without a container runtime.

No container runtime is available here, so the compose file is read the way ``docker compose``
reads it (``.env`` interpolation, merged service settings) and each Dagster service's exact
command runs as a process on this machine:

* the container file system is emulated in a temporary folder: every mount's source is placed
  at its target (named volumes are folders), absolute paths in the environment point there;
* compose service names resolve to 127.0.0.1 ("postgres" is the session's real PostgreSQL
  server), 0.0.0.0 binds become 127.0.0.1, and container ports become free local ports;
* each service is waited for with its own health check command.

Then a run is launched through the webserver's GraphQL API with Dagster's own Python client,
queued, started by the daemon, executed by the user-code server against PostgreSQL inputs, and
seen to succeed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient
from postgres_server import PostgresServer, load_sample_inputs

from clustering.infra.instance_storage import postgres_template_text
from clustering.infra.ui_server import stop_group
from clustering.io.duckdb_store import DuckDBStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DAGSTER_SERVICES = ("user_code", "webserver", "daemon")
JOB = "internal_preprocessing_job"
HEALTHY_TIMEOUT_S = 180
#: The variables naming the port each service listens on (the daemon listens on none).
SERVED_PORTS = {
    "user_code": ("DAGSTER_CODE_SERVER_PORT",),
    "webserver": ("DAGSTER_WEBSERVER_PORT",),
}
RUN_TIMEOUT_S = 240
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Compose's variable substitution: ``${X}``, ``${X:-default}``, ``${X:?error}``, ``$$``."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.groups()
        value = variables.get(name)
        unset = value is None or (value == "" and operator is not None and ":" in operator)
        if operator and operator.endswith("?") and unset:
            raise ValueError(f"required variable {name} is missing a value: {argument}")
        if operator and operator.endswith("-") and unset:
            return argument
        return value or ""

    return _VARIABLE.sub(substitute, text)


def read_compose(variables: Mapping[str, str]) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        interpolate(COMPOSE_FILE.read_text(encoding="utf-8"), variables)
    )
    return loaded


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class ContainerHost:
    """The compose project's containers, emulated as processes sharing one temporary folder."""

    def __init__(self, folder: Path, compose: dict[str, Any], postgres_port: int) -> None:
        self.root = folder / "container"
        self.volumes = folder / "volumes"
        self.compose = compose
        self.services: dict[str, Any] = compose["services"]
        self.ports = {"5432": str(postgres_port)}  # the postgres service is the real server

    def path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def mount(self, service: str) -> None:
        """Place every volume of ``service`` at its target."""
        for entry in self.services[service].get("volumes", []):
            source, target = entry.split(":")[:2]
            destination = self.path(target)
            destination.parent.mkdir(parents=True, exist_ok=True)
            if destination.exists() or destination.is_symlink():
                continue  # shared with a service mounted before
            if source.startswith((".", "/")):
                host = (ROOT / source).resolve() if source.startswith(".") else Path(source)
                if host.is_file():
                    shutil.copy(host, destination)
                else:
                    destination.symlink_to(host, target_is_directory=True)
            else:
                named = self.volumes / source
                named.mkdir(parents=True, exist_ok=True)
                destination.symlink_to(named, target_is_directory=True)

    def environment(self, service: str, env_file: Mapping[str, str]) -> dict[str, str]:
        """What the service's process sees: env_file, then its environment, made local."""
        settings = self.services[service]
        declared = {str(k): str(v) for k, v in (settings.get("environment") or {}).items()}
        merged = {**env_file, **declared}
        for key, value in merged.items():
            if value in self.services:
                merged[key] = "127.0.0.1"  # compose DNS: service name -> its address
            elif value == "0.0.0.0":
                merged[key] = "127.0.0.1"  # loopback only on a shared machine
            elif key.endswith("_PORT"):
                merged[key] = self.ports.setdefault(value, str(_free_port()))
            elif value.startswith("/"):
                merged[key] = str(self.path(value))
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERING_", "DAGSTER_"))
        }
        # The image puts the virtual environment first on PATH.
        base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**base, **merged}

    def start(self, service: str, env_file: Mapping[str, str], logs: Path) -> _Service:
        settings = self.services[service]
        self.mount(service)
        cwd = self.path(settings["working_dir"])
        cwd.mkdir(parents=True, exist_ok=True)
        env = self.environment(service, env_file)
        log = logs / f"{service}.log"
        with log.open("wb") as stream:
            process = subprocess.Popen(
                settings["command"],
                cwd=cwd,
                env=env,
                stdout=stream,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return _Service(service, process, env, cwd, settings["healthcheck"]["test"], log)


class _Service:
    def __init__(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        env: dict[str, str],
        cwd: Path,
        healthcheck: list[str],
        log: Path,
    ) -> None:
        self.name, self.process, self.env, self.cwd, self.log = name, process, env, cwd, log
        kind, *rest = healthcheck
        self.check = ["sh", "-c", rest[0]] if kind == "CMD-SHELL" else rest

    def healthy(self) -> bool:
        done = subprocess.run(
            self.check, cwd=self.cwd, env=self.env, capture_output=True, timeout=60
        )
        return done.returncode == 0

    def listening(self) -> bool:
        """Whether the port the service serves on accepts connections (True if it has none)."""
        ports = [v for k, v in self.env.items() if k in SERVED_PORTS.get(self.name, ())]
        if not ports:
            return True
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex(("127.0.0.1", int(ports[0]))) == 0

    def wait_healthy(self, timeout: float = HEALTHY_TIMEOUT_S) -> None:
        """Poll the service's own health check; a cheap port probe first, because each check
        is a Python process importing Dagster, which would slow the service it waits for."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.tail()}")
            if self.listening() and self.healthy():
                return
            time.sleep(2)
        raise AssertionError(f"{self.name} not healthy after {timeout:.0f} s: {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-3000:]


@contextmanager
def _running(services: list[_Service]) -> Iterator[None]:
    with ExitStack() as stack:
        for service in services:
            stack.callback(stop_group, service.process)
        yield


# dagster-graphql 1.13.27 calls gql with arguments gql has deprecated; harmless.
@pytest.mark.filterwarnings("ignore:Using variable_values and operation_name:DeprecationWarning")
def test_compose_services_run_a_job_against_postgres(
    postgres: PostgresServer, small_data: Path, tmp_path: Path
) -> None:
    inputs_db = postgres.create_database("compose_inputs")
    load_sample_inputs(postgres, inputs_db, small_data)
    instance_db = postgres.create_database("compose_instance")
    # The .env of the deployment: secrets and prod settings, never committed.
    env_file = {
        "DAGSTER_PG_USERNAME": postgres.user,
        "DAGSTER_PG_PASSWORD": postgres.password,
        "DAGSTER_PG_DB": instance_db,
        "CLUSTERING_PROD_INPUT_URL": postgres.url(inputs_db),
        "CLUSTERING_PROD_SMTP_HOST": "127.0.0.1",
        "CLUSTERING_PROD_ALERT_RECIPIENTS": "ops@example.com",
        "CLUSTERING_WORKERS": "1",
    }
    raw = tmp_path / "raw"  # prod reads its inputs from PostgreSQL; no raw files
    raw.mkdir()
    compose = read_compose({**env_file, "CLUSTERING_RAW_DATA": str(raw)})
    host = ContainerHost(tmp_path, compose, postgres.port)
    logs = tmp_path / "logs"
    logs.mkdir()

    user_code = host.start("user_code", env_file, logs)
    with _running([user_code]):
        user_code.wait_healthy()
        webserver = host.start("webserver", env_file, logs)
        daemon = host.start("daemon", env_file, logs)
        with _running([webserver, daemon]):
            webserver.wait_healthy()
            port = int(webserver.env["DAGSTER_WEBSERVER_PORT"])
            client = DagsterGraphQLClient("127.0.0.1", port_number=port)
            run_id = client.submit_job_execution(JOB, tags={"clustering/trigger": "compose-test"})
            daemon.wait_healthy()  # while the run is queued and executing
            deadline = time.monotonic() + RUN_TIMEOUT_S
            status = client.get_run_status(run_id)
            while status not in FINISHED and time.monotonic() < deadline:
                time.sleep(2)
                status = client.get_run_status(run_id)
            assert status == dg.DagsterRunStatus.SUCCESS, (
                f"{status}\n{user_code.tail()}\n{daemon.tail()}"
            )

    # Recorded in PostgreSQL, executed where the outputs volume is mounted.
    home = host.path(compose["services"]["webserver"]["environment"]["DAGSTER_HOME"])
    assert (home / "dagster.yaml").read_text(encoding="utf-8") == postgres_template_text()
    with _instance_env(user_code.env), dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.tags["clustering/trigger"] == "compose-test"
    warehouse = Path(user_code.env["CLUSTERING_PROD_OUTPUT_DIR"]) / "clustering_prod.duckdb"
    assert DuckDBStore(warehouse).has_table("preprocessing", "internal_need_state_sales")


@contextmanager
def _instance_env(env: Mapping[str, str]) -> Iterator[None]:
    """The DAGSTER_PG_* variables of a service in this process, for reading its instance."""
    names = [k for k in env if k.startswith("DAGSTER_PG_")]
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({k: env[k] for k in names})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _dockerfile_stages() -> dict[str, str]:
    """Each ``FROM … AS name`` stage of the Dockerfile: its text, by name (in file order)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    parts = re.split(r"^FROM \S+ AS (\w+)\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_compose_publishes_only_the_proxy_on_loopback_and_reads_secrets_from_env() -> None:
    required = {"DAGSTER_PG_PASSWORD": "from-the-env-file"}
    services = read_compose(required)["services"]
    assert set(services) == {"postgres", *DAGSTER_SERVICES, "proxy"}
    assert all("healthcheck" in settings for settings in services.values())
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert published == {"proxy": ["127.0.0.1:3000:8080"]}
    exposed = read_compose({**required, "CLUSTERING_UI_BIND": "0.0.0.0"})["services"]["proxy"]
    assert exposed["ports"] == ["0.0.0.0:3000:8080"]

    # Secrets: only in .env (ignored by git); the database password has no default.
    with pytest.raises(ValueError, match=r"set DAGSTER_PG_PASSWORD in \.env"):
        read_compose({})
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "from-the-env-file"
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in ignored
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    # Every key naming a secret takes its value from a variable, never a literal.
    assert not re.search(r"(?im)^\s*\w*(password|secret|token)\w*:\s*(?!\$\{)\S", text)

    # One dagster.yaml (the package's PostgreSQL template) and one workspace.yaml for the three
    # Dagster services, all built from the Dockerfile's runtime stage.
    template = "./src/clustering/dagster/instance/dagster-postgres.yaml.template"
    for name in DAGSTER_SERVICES:
        settings = services[name]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in settings["volumes"]}
        assert mounts["/opt/dagster/home/dagster.yaml"] == template
        assert mounts["/app/deploy/workspace.yaml"] == "./deploy/workspace.yaml"
        assert settings["env_file"] == [".env"]
        assert settings["build"] == {"context": ".", "target": "runtime"}
        assert settings["environment"]["DAGSTER_HOME"] == "/opt/dagster/home"
    assert (ROOT / template).read_text(encoding="utf-8") == postgres_template_text()


def test_compose_image_is_non_root_without_build_tools_and_matches_the_dev_container() -> None:
    stages = _dockerfile_stages()
    assert list(stages)[-1] == "runtime"  # the default target of `docker build`
    runtime = stages["runtime"]
    assert re.search(r"^USER clustering$", runtime, flags=re.M)
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    for tool in ("apt-get", "pip ", "gcc", "build-essential"):
        assert tool not in runtime
    assert "install --constraint requirements.lock ." in stages["build"]
    cmd = re.search(r"^CMD (\[.*\])$", runtime, flags=re.M)
    assert cmd is not None
    services = read_compose({"DAGSTER_PG_PASSWORD": "x"})["services"]
    assert json.loads(cmd.group(1)) == services["user_code"]["command"]

    devcontainer = json.loads(
        (ROOT / ".devcontainer" / "devcontainer.json").read_text(encoding="utf-8")
    )
    build = devcontainer["build"]
    assert (ROOT / ".devcontainer" / build["dockerfile"]).resolve() == ROOT / "Dockerfile"
    assert build["target"] in stages
    assert f"useradd --create-home --shell /bin/bash {devcontainer['remoteUser']}" in stages["dev"]
    assert devcontainer["postCreateCommand"] == "make setup"
