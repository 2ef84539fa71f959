"""Dagster resource that opens the pipeline's inputs (:mod:`clustering.io.inputs`)."""

from __future__ import annotations

import dagster as dg

from clustering.infra.config import AppConfig
from clustering.io.inputs import PipelineInputs, open_inputs


class InputReaderResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Opens the validated sales, need-state map and external sources of a run.

    Files, folders and globs go through DuckDB; tables named in ``inputs`` come from the SQL
    engine at ``inputs.backend_url``, where the sales aggregation then runs. It has no fields:
    an asset passes the configuration it loaded for its job (job file and run overrides
    included), so the reader can never read another environment's inputs than the asset uses.
    """

    def open(self, app_config: AppConfig) -> PipelineInputs:
        """The inputs ``app_config`` points at, opened and checked against their contracts."""
        return open_inputs(app_config)
