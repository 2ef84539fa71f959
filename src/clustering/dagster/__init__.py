"""Dagster layer: assets, jobs, schedules, sensors and resources.

``clustering.dagster.defs`` is the environment's :class:`dagster.Definitions` (built on first
access, so importing a submodule never loads the configuration):

    dagster job execute -m clustering.dagster -a defs -j full_pipeline_job
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "defs":
        from clustering.dagster.definitions import defs

        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
