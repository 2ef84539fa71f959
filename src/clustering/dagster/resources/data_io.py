"""Dagster resource that opens the pipeline's inputs (:mod:`clustering.io.inputs`)."""

from __future__ import annotations

import dagster as dg

from clustering.dagster.resources.settings import ClusteringSettings
from clustering.io.inputs import PipelineInputs, open_inputs


class InputReaderResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Opens the validated sales, need-state map and external sources of the environment.

    Files, folders and globs go through DuckDB; tables named in ``inputs`` come from the SQL
    engine at ``inputs.backend_url``, where the sales aggregation then runs.
    """

    settings: ClusteringSettings

    def open(self) -> PipelineInputs:
        """The configured inputs, opened and checked against their contracts."""
        return open_inputs(self.settings.config)
