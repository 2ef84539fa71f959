"""Where the project's Dagster instance lives (``DAGSTER_HOME``).

Dagster keeps run history, event logs and schedule state in the folder named by the
``DAGSTER_HOME`` environment variable. It must be an absolute path to an existing folder; without
it every command gets a throwaway instance that is deleted afterwards, and runs vanish from the
UI. :func:`ensure_dagster_home` makes sure there is always a real one:

- a ``DAGSTER_HOME`` the user set wins: it is made absolute; an existing folder is used as it
  is (nothing is written into it), a missing one is created with the template below;
- otherwise the project's own ``dagster_home/`` is used, created on first use together with a
  ``dagster.yaml`` copied from the committed template (SQLite storage, telemetry off, a run queue
  limit);
- except for an environment whose ``dagster.instance`` is ``postgres`` (prod; staging on
  request): its instance is ``dagster_home/<env>/``, whose ``dagster.yaml`` comes from the
  PostgreSQL template (see :mod:`clustering.infra.instance_storage`).
"""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path

from clustering.infra.config import apply_env_files
from clustering.infra.instance_storage import (
    check_instance_variables,
    instance_kind,
    postgres_template_text,
)

#: Environment variable Dagster reads to find its instance folder.
DAGSTER_HOME_VAR = "DAGSTER_HOME"

#: Name of the instance folder under the project root when ``DAGSTER_HOME`` is not set.
DEFAULT_HOME_DIRNAME = "dagster_home"

#: Instance settings file Dagster reads from ``DAGSTER_HOME``.
INSTANCE_CONFIG_NAME = "dagster.yaml"

_TEMPLATE_PARTS = ("dagster", "instance", "dagster.yaml.template")


def instance_template_text() -> str:
    """The committed ``dagster.yaml`` template shipped inside the package."""
    template = resources.files("clustering").joinpath(*_TEMPLATE_PARTS)
    return template.read_text(encoding="utf-8")


def ensure_dagster_home(project_root: Path | None = None, env: str | None = None) -> Path:
    """Return an absolute, existing ``DAGSTER_HOME`` and export it in ``os.environ``.

    If ``DAGSTER_HOME`` is set, that folder is used (made absolute). If it exists, nothing in it
    is written or replaced, even when it has no ``dagster.yaml``; if it does not, it is created
    with a ``dagster.yaml`` from the template. Otherwise the instance lives in
    ``<project_root>/dagster_home`` (``project_root`` defaults to the current working directory),
    and a ``dagster.yaml`` is written there from the template when it is missing; but when
    ``env``'s configuration says ``dagster.instance: postgres``, the instance is
    ``<project_root>/dagster_home/<env>`` with the PostgreSQL template.

    With ``env`` given, its ``.env`` files apply to ``os.environ`` first, so Dagster processes
    started from here see the instance's credentials. A ``dagster.yaml`` reading environment
    variables that are not set raises :class:`~clustering.core.errors.ConfigError` naming them.

    Either way ``os.environ["DAGSTER_HOME"]`` is set to the absolute path on return, so
    ``DagsterInstance.get()`` and any Dagster command started from this process use it.
    """
    root = (project_root if project_root is not None else Path.cwd()).absolute()
    if env:
        apply_env_files(root, env)
    configured = os.environ.get(DAGSTER_HOME_VAR, "").strip()
    if configured:
        home = Path(configured).expanduser().absolute()
        try:
            home.mkdir(parents=True)
        except FileExistsError:
            pass  # the user's folder: used as it is
        else:
            # A folder we just created holds nothing of the user's, so it gets the template:
            # otherwise Dagster would print its first-run banner and turn telemetry on there.
            _write_config_if_missing(home / INSTANCE_CONFIG_NAME)
    elif env and instance_kind(env, root) == "postgres":
        home = root / DEFAULT_HOME_DIRNAME / env
        home.mkdir(parents=True, exist_ok=True)
        _write_config_if_missing(home / INSTANCE_CONFIG_NAME, postgres_template_text())
    else:
        home = root / DEFAULT_HOME_DIRNAME
        home.mkdir(parents=True, exist_ok=True)
        _write_config_if_missing(home / INSTANCE_CONFIG_NAME)
    check_instance_variables(home)
    os.environ[DAGSTER_HOME_VAR] = str(home)
    return home


def _write_config_if_missing(target: Path, text: str | None = None) -> None:
    """Write ``text`` (default: the SQLite template) to ``target`` unless a file is there.

    The text goes to a temporary file first and is renamed into place, so a Dagster process
    starting at the same moment never reads a half-written ``dagster.yaml``.
    """
    if target.exists():
        return
    handle, temporary = tempfile.mkstemp(prefix=".dagster.yaml.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(instance_template_text() if text is None else text)
        # Re-check right before the rename: a user's file must never be replaced. Two of our own
        # processes racing here both write the same template, so either rename is fine.
        if not target.exists():
            os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)
