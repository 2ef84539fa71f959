"""The environment's validated configuration as a Dagster resource, loaded once per process."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import dagster as dg

from clustering.infra.config import AppConfig, load_config


@functools.lru_cache(maxsize=16)
def _load(env: str, project_root: str, overrides: str, _variables: object) -> AppConfig:
    root = Path(project_root) if project_root else Path.cwd()
    return load_config(env, json.loads(overrides) if overrides else None, project_root=root)


def _relevant_variables() -> tuple[tuple[str, str], ...]:
    """The variables the configuration may read: a changed one means a fresh load."""
    prefixes = ("CLUSTERING_", "DAGSTER_")
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(prefixes)))


class ClusteringSettings(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The environment (``dev``, ``staging``, ``prod``), the project root its relative paths
    and ``.env`` files are taken from (empty: the working directory), and optional overrides
    (JSON of a nested mapping, as the ``cluster`` command passes its options).

    :attr:`config` is validated once per process and shared by every asset and resource of a
    run; a change for one run goes in its run config. Errors are one-sentence
    :class:`~clustering.core.errors.ConfigError`.
    """

    env: str = "dev"
    project_root: str = ""
    overrides: str = ""

    @property
    def config(self) -> AppConfig:
        """The validated configuration of :attr:`env`."""
        return _load(self.env, self.project_root, self.overrides, _relevant_variables())
