"""Dagster resource that loads the environment's configuration (:mod:`clustering.infra.config`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from clustering.infra.config import AppConfig, load_config


class ClusteringConfigResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The environment (``dev``, ``staging``, ``prod``) and project root to load config for.

    ``project_root`` empty means the working directory; relative paths in the YAML files and
    the ``.env`` files are taken from there. Errors are :class:`ConfigError` sentences.
    """

    env: str = "dev"
    project_root: str = ""

    # One instance lives for one run: loading once per (job, overrides) keeps every asset of
    # the run on the same configuration even if the environment changes mid-run.
    _loaded: dict[str, AppConfig] = PrivateAttr(default_factory=dict)

    def root(self) -> Path:
        """The project root configuration paths are resolved against."""
        return Path(self.project_root) if self.project_root else Path.cwd()

    def load(
        self, job: str | None = None, overrides: Mapping[str, object] | None = None
    ) -> AppConfig:
        """The validated configuration of :attr:`env`, plus ``job``'s file and ``overrides``."""
        key = json.dumps([job, overrides or {}], sort_keys=True, default=str)
        if key not in self._loaded:
            self._loaded[key] = load_config(self.env, job, overrides, project_root=self.root())
        return self._loaded[key]
