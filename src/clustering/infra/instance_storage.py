"""Which storage an environment's Dagster instance uses, and whether its settings can load.

``dagster.instance`` in the environment's configuration says where Dagster keeps run history,
event logs and sensor/schedule state when ``DAGSTER_HOME`` is not set: ``sqlite`` (files in the
project's ``dagster_home/``) or ``postgres`` (``dagster_home/<env>/dagster.yaml``, written from
the PostgreSQL template, credentials read from ``DAGSTER_PG_*`` variables). prod uses
PostgreSQL; staging when ``CLUSTERING_STAGING_INSTANCE=postgres``.

A ``dagster.yaml`` that reads a variable which is not set makes every Dagster command fail with
a long traceback; :func:`check_instance_variables` turns that into one sentence first.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml

from clustering.core.errors import ConfigError
from clustering.infra.config import load_config

if TYPE_CHECKING:
    import dagster as dg

InstanceKind = Literal["sqlite", "postgres"]

#: Variables the PostgreSQL template reads (host, port, user, password, database).
POSTGRES_VARIABLES = (
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_USERNAME",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_DB",
)

_POSTGRES_TEMPLATE_PARTS = ("dagster", "instance", "dagster-postgres.yaml.template")


def postgres_template_text() -> str:
    """The committed PostgreSQL ``dagster.yaml`` shipped inside the package."""
    template = resources.files("clustering").joinpath(*_POSTGRES_TEMPLATE_PARTS)
    return template.read_text(encoding="utf-8")


def instance_kind(env: str, project_root: Path) -> InstanceKind:
    """``sqlite`` or ``postgres``: the ``dagster.instance`` setting of ``env``."""
    return load_config(env, project_root=project_root).dagster.instance


def variables_read(config_text: str) -> list[str]:
    """Names of the environment variables a ``dagster.yaml`` reads (``{env: NAME}`` values)."""
    names: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if set(node) == {"env"} and isinstance(node["env"], str):
                names.append(node["env"])
                return
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    try:
        walk(yaml.safe_load(config_text))
    except yaml.YAMLError:
        return []  # Dagster reports a broken file itself, with the line
    return list(dict.fromkeys(names))


def check_instance_variables(home: Path) -> None:
    """Raise :class:`ConfigError` naming every variable ``home/dagster.yaml`` reads but that
    is unset or empty; nothing when there is no such file."""
    config = home / "dagster.yaml"
    if not config.is_file():
        return
    missing = [
        name
        for name in variables_read(config.read_text(encoding="utf-8"))
        if not os.environ.get(name, "").strip()
    ]
    if missing:
        listed = missing[0] if len(missing) == 1 else f"{', '.join(missing[:-1])} and {missing[-1]}"
        raise ConfigError(
            f"the Dagster instance in {home} reads {listed} from the environment, but "
            f"{'it is' if len(missing) == 1 else 'they are'} not set; set "
            f"{'it' if len(missing) == 1 else 'them'} (e.g. in .env) or point DAGSTER_HOME "
            "at another instance."
        )


def open_instance(home: Path) -> dg.DagsterInstance:
    """``DagsterInstance.get()`` for ``home``, or a :class:`ConfigError` in one sentence.

    Storage drivers fail in their own ways (dagster-postgres gives up after retries with
    "too many retries for DB connection"); the reason underneath, such as "connection refused"
    or "password authentication failed", is what the user needs, so it is added.
    """
    import dagster as dg

    try:
        return dg.DagsterInstance.get()
    except Exception as exc:
        raise ConfigError(
            f"the Dagster instance in {home} cannot be loaded: {_reasons(exc)}."
        ) from exc


def _reasons(exc: BaseException) -> str:
    """First lines of ``exc`` and of the exceptions that caused it, without repeats."""
    lines: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(lines) < 3:
        text = str(current).strip()
        line = text.splitlines()[0].rstrip(".") if text else type(current).__name__
        # SQLAlchemy prefixes the driver's message with its own class name in parentheses.
        line = line.split(") ", 1)[1] if line.startswith("(") and ") " in line else line
        if line and not any(line in seen for seen in lines):
            lines.append(line)
        current = current.__cause__
    return ": ".join(lines)
