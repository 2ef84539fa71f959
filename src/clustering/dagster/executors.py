"""The executor runs launched by Dagster use, from ``dagster.executor`` in the configuration.

- ``in_process``: every step in the run's own process (least start-up; small data, debugging);
- ``multiprocess``: a process per step, up to ``max_concurrent_steps`` at once, so the internal
  and external tracks run side by side on one machine;
- ``dask``: each step is a task on a dask cluster (dagster-dask), either a local cluster of
  ``dask.local_workers`` processes started for the run, or the running scheduler at
  ``dask.scheduler_address`` whose workers may sit on other machines.

``python -m clustering run`` always executes in process; this choice applies to runs launched by
the UI, schedules, sensors and ``dagster job execute``.
"""

from __future__ import annotations

import logging
from typing import Any

import dagster as dg

from clustering.infra.config import DagsterConfig


def build_executor(settings: DagsterConfig) -> dg.ExecutorDefinition:
    """The configured executor, with its limits applied."""
    if settings.executor == "in_process":
        return dg.in_process_executor
    if settings.executor == "dask":
        return _dask_executor(settings)
    return dg.multiprocess_executor.configured({"max_concurrent": settings.max_concurrent_steps})


def _dask_executor(settings: DagsterConfig) -> dg.ExecutorDefinition:
    # Imported only when chosen: dask and distributed add about a second to every import of
    # the definitions.
    import dask
    from dagster_dask import dask_executor

    # Dask starts worker processes as daemons by default, and a daemonic process may not start
    # children; the per-category process pool inside a step needs to. This applies to the local
    # cluster started by this process; a remote cluster's workers need the same setting
    # (DASK_DISTRIBUTED__WORKER__DAEMON=False) or CLUSTERING_WORKERS=1.
    dask.config.set({"distributed.worker.daemon": False})
    # Dask cannot size Dagster's event lists and warns about it for every finished step.
    logging.getLogger("distributed.sizeof").setLevel(logging.ERROR)
    address = settings.dask.scheduler_address
    cluster: dict[str, Any]
    if address:
        cluster = {"existing": {"address": address}}
    else:
        # One thread per worker: a step's numeric work already uses processes per category.
        cluster = {"local": {"n_workers": settings.dask.local_workers, "threads_per_worker": 1}}
    executor: dg.ExecutorDefinition = dask_executor.configured({"cluster": cluster})
    return executor
