"""Dagster resource that sets up the configured ``clustering`` logger for a run."""

from __future__ import annotations

import logging

import dagster as dg

from clustering.dagster.resources.settings import ClusteringSettings
from clustering.infra.logging import configure_logging


class LoggerResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The ``clustering`` logger with the environment's level and log file.

    Configured when a step that needs it starts, so every ``clustering.*`` module logs to the
    environment's file for the whole step, not only after the asset first asks for the logger.
    """

    settings: ClusteringSettings

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Apply the environment's logging settings before the step runs."""
        self.get_logger()

    def get_logger(self) -> logging.Logger:
        """The configured ``clustering`` logger (configuring it again is harmless)."""
        return configure_logging(self.settings.config)
