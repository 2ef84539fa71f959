"""Dagster resource giving sensors and hooks the environment's alert dispatcher."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from clustering.dagster.resources.settings import ClusteringSettings
from clustering.infra.config import env_file_values
from clustering.infra.monitoring.alerts import AlertDispatcher


class AlertsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Builds an :class:`AlertDispatcher` from the environment's ``alerts`` configuration."""

    settings: ClusteringSettings

    def dispatcher(self) -> AlertDispatcher:
        """A dispatcher for the configured channels. Secrets are looked up by name in the
        process environment, then in the project's ``.env.<env>`` and ``.env`` files."""
        root = Path(self.settings.project_root) if self.settings.project_root else Path.cwd()
        environ = {**env_file_values(root, self.settings.env), **os.environ}
        return AlertDispatcher(self.settings.config.alerts, environ=environ)
