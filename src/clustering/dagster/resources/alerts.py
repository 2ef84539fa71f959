"""Dagster resource giving sensors and hooks the environment's alert dispatcher."""

from __future__ import annotations

import dagster as dg

from clustering.dagster.resources.config import ClusteringConfigResource
from clustering.infra.monitoring.alerts import AlertDispatcher


class AlertsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Builds an :class:`AlertDispatcher` from the environment's ``alerts`` configuration."""

    config: ClusteringConfigResource

    def dispatcher(self) -> AlertDispatcher:
        """A dispatcher for the configured channels; secrets are read when an alert is sent."""
        return AlertDispatcher(self.config.load().alerts)
