"""Where the project's Dagster instance lives (``DAGSTER_HOME``).

Dagster keeps run history, event logs and schedule state in the folder named by the
``DAGSTER_HOME`` environment variable. It must be an absolute path to an existing folder; without
it every command gets a throwaway instance that is deleted afterwards, and runs vanish from the
UI. :func:`ensure_dagster_home` makes sure there is always a real one:

- a ``DAGSTER_HOME`` the user set wins: it is made absolute; an existing folder is used as it
  is (nothing is written into it), a missing one is created with the template below;
- otherwise the project's own ``dagster_home/`` is used, created on first use together with a
  ``dagster.yaml`` copied from the committed template (SQLite storage, telemetry off, a run queue
  limit and a concurrency pool limit for DuckDB writers).
"""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path

#: Environment variable Dagster reads to find its instance folder.
DAGSTER_HOME_VAR = "DAGSTER_HOME"

#: Name of the instance folder under the project root when ``DAGSTER_HOME`` is not set.
DEFAULT_HOME_DIRNAME = "dagster_home"

#: Concurrency pool for steps that write to the DuckDB file. The instance template limits every
#: pool without an explicit limit to one step at a time, so declaring ``pool=DUCKDB_WRITES_POOL``
#: on an asset is all it takes to serialize DuckDB writers across runs.
DUCKDB_WRITES_POOL = "duckdb_writes"

#: Instance settings file Dagster reads from ``DAGSTER_HOME``.
INSTANCE_CONFIG_NAME = "dagster.yaml"

_TEMPLATE_PARTS = ("dagster", "instance", "dagster.yaml.template")


def instance_template_text() -> str:
    """The committed ``dagster.yaml`` template shipped inside the package."""
    template = resources.files("clustering").joinpath(*_TEMPLATE_PARTS)
    return template.read_text(encoding="utf-8")


def ensure_dagster_home(project_root: Path | None = None) -> Path:
    """Return an absolute, existing ``DAGSTER_HOME`` and export it in ``os.environ``.

    If ``DAGSTER_HOME`` is set, that folder is used (made absolute). If it exists, nothing in it
    is written or replaced, even when it has no ``dagster.yaml``; if it does not, it is created
    with a ``dagster.yaml`` from the template. Otherwise the instance lives in
    ``<project_root>/dagster_home`` (``project_root`` defaults to the current working directory),
    and a ``dagster.yaml`` is written there from the template when it is missing.

    Either way ``os.environ["DAGSTER_HOME"]`` is set to the absolute path on return, so
    ``DagsterInstance.get()`` and any Dagster command started from this process use it.
    """
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
    else:
        root = (project_root if project_root is not None else Path.cwd()).absolute()
        home = root / DEFAULT_HOME_DIRNAME
        home.mkdir(parents=True, exist_ok=True)
        _write_config_if_missing(home / INSTANCE_CONFIG_NAME)
    os.environ[DAGSTER_HOME_VAR] = str(home)
    return home


def _write_config_if_missing(target: Path) -> None:
    """Copy the template to ``target`` unless a file is already there.

    The text goes to a temporary file first and is renamed into place, so a Dagster process
    starting at the same moment never reads a half-written ``dagster.yaml``.
    """
    if target.exists():
        return
    handle, temporary = tempfile.mkstemp(prefix=".dagster.yaml.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(instance_template_text())
        # Re-check right before the rename: a user's file must never be replaced. Two of our own
        # processes racing here both write the same template, so either rename is fine.
        if not target.exists():
            os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)
