"""The pipeline's IO manager: every asset's data frame is a table in the DuckDB warehouse.

A DataFrame becomes the table ``"<group>"."<asset>"`` (one schema per asset group), written
atomically through :class:`~clustering.io.duckdb_store.DuckDBStore`, whose file lock lets
concurrent steps and runs queue instead of failing on DuckDB's single-writer lock. An asset whose
definition metadata names export formats (``clustering/export: "parquet,csv"``) is also written
to ``<exports_dir>/<asset>.<format>``, from the frame as stored. Loading an asset that was never
materialized fails with one sentence naming the job to run. A run tagged
``clustering/scenario=NAME`` (a what-if) reads and writes the scenario's own DuckDB file and
folder instead (:mod:`clustering.infra.scenarios`), leaving the current result untouched.

Every table carries its lineage: for each step it was built from, directly or not, the run that
step ran in. A step whose inputs disagree — two tables of one step from different runs (a run
stopped between writing them), or a table built from an older input than the one beside it —
stops with one sentence naming the job to run again, instead of combining them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
from pydantic import PrivateAttr

from clustering.core.errors import ClusteringError
from clustering.dagster.metadata import PREVIEW_ROWS, preview
from clustering.infra.scenarios import SCENARIO_TAG, result_paths
from clustering.io.duckdb_store import (
    DuckDBStore,
    TableByKey,
    TableNotFoundError,
    qualified_name,
    storable_frame,
)
from clustering.io.writers import write_frame

#: Definition metadata key naming an asset's export formats (parquet, csv).
EXPORT_KEY = "clustering/export"
EXPORT_FORMATS = ("parquet", "csv")
#: Input metadata key: load the upstream table lazily, one value of this column at a time.
LOAD_BY_KEY = "clustering/load_by"


class InconsistentInputsError(dg.Failure, ClusteringError):
    """A step's inputs come from runs that do not belong together."""

    def __init__(self, sentence: str) -> None:
        super().__init__(description=sentence, allow_retries=False)


class AssetNotMaterializedError(dg.Failure, ClusteringError):
    """An input asset has never been materialized.

    A :class:`dagster.Failure`, so Dagster shows the sentence itself as the step's error (no
    wrapping, no retries), and a :class:`ClusteringError`, so the CLI prints it as one sentence.
    """

    def __init__(self, sentence: str) -> None:
        super().__init__(description=sentence, allow_retries=False)


class ClusteringIOManager(dg.ConfigurableIOManager):
    """Stores data frames as DuckDB tables (schema = asset group) and exports the marked ones."""

    duckdb_path: str
    exports_dir: str
    producing_jobs: dict[str, str] = {}  # noqa: RUF012 - pydantic copies it
    lock_timeout_s: float = 600
    _scenario: str = PrivateAttr(default="")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Note the run's what-if scenario (tag ``clustering/scenario``), if any."""
        run = context.run
        self._scenario = (run.tags.get(SCENARIO_TAG, "") if run is not None else "").strip()

    @property
    def warehouse(self) -> Path:
        """The DuckDB file this run reads and writes (the scenario's own for a what-if)."""
        return result_paths(Path(self.duckdb_path), Path(self.exports_dir), self._scenario)[0]

    @property
    def exports(self) -> Path:
        """The folder exports go to (the scenario's own for a what-if)."""
        return result_paths(Path(self.duckdb_path), Path(self.exports_dir), self._scenario)[1]

    # Per consuming step (run id, step key): the lineage of the inputs loaded so far, and which
    # input brought each entry (for the sentence).
    _lineage: dict[tuple[str, str], dict[str, str]] = PrivateAttr(default_factory=dict)
    _via: dict[tuple[str, str], dict[str, str]] = PrivateAttr(default_factory=dict)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        """Write ``obj`` as the asset's table (and its exports); record where it went."""
        schema, name = _location(context)
        streamed = isinstance(obj, pa.RecordBatchReader)
        if not isinstance(obj, pd.DataFrame) and not streamed:
            raise TypeError(
                f"asset {name} returned {type(obj).__name__}; every asset of the pipeline "
                "returns a pandas DataFrame (or a stream of Arrow record batches)."
            )
        step = (context.run_id, context.step_key)
        lineage = {**self._lineage.get(step, {}), context.step_key: context.run_id}
        store = self._store()
        rows = store.write_table(schema, name, obj, tags={"lineage": lineage})
        stored = storable_frame(obj.schema.empty_table().to_pandas() if streamed else obj)
        metadata: dict[str, Any] = {
            "dagster/table_name": qualified_name(schema, name),
            "dagster/row_count": rows,
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(name=str(column), type=str(dtype))
                    for column, dtype in stored.dtypes.items()
                ]
            ),
            "duckdb_file": dg.MetadataValue.path(str(self.warehouse)),
        }
        if streamed:
            # What a frame's metadata shows, counted where the table now is.
            metadata.update(_stored_table_metadata(store, schema, name, rows))
            if _export_formats(context):
                raise TypeError(f"asset {name}: a streamed table cannot also be exported.")
            context.add_output_metadata(metadata)
            return
        for suffix in _export_formats(context):
            path = write_frame(stored, self.exports / f"{name}.{suffix}")
            metadata[f"export_{suffix}"] = dg.MetadataValue.path(str(path))
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | TableByKey:
        """Read the upstream asset's table back (lazily, key by key, when the input's metadata
        names a column under ``clustering/load_by``)."""
        upstream = context.upstream_output
        if upstream is None:
            raise ClusteringError(f"input {context.name} has no upstream asset to load.")
        schema, name = _location(upstream)
        by_key = (context.definition_metadata or {}).get(LOAD_BY_KEY)
        try:
            if by_key:
                # Read later, one key (category) at a time: the table may not fit in memory.
                store = self._store()
                tags = store.read_tags(schema, name)
                frame: pd.DataFrame | TableByKey = TableByKey(store, schema, name, str(by_key))
            else:
                frame, tags = self._store().read_with_tags(schema, name)
        except TableNotFoundError:
            job = self.producing_jobs.get(name)
            action = f"run {job} first" if job else "materialize it first"
            raise AssetNotMaterializedError(
                f"asset {name} has never been materialized (no table "
                f"{qualified_name(schema, name)} in {self.warehouse}); {action}."
            ) from None
        step_context = context.step_context
        self._check_lineage(
            (step_context.run_id, step_context.step.key), name, tags.get("lineage") or {}
        )
        return frame

    def _check_lineage(self, step: tuple[str, str], name: str, lineage: dict[str, str]) -> None:
        seen = self._lineage.setdefault(step, {})
        via = self._via.setdefault(step, {})
        for producer, run_id in lineage.items():
            if seen.get(producer, run_id) != run_id:
                other = via[producer]
                job = self.producing_jobs.get(name)
                same_job = job is not None and job == self.producing_jobs.get(other)
                again = (
                    f"run {job} again, then this job"
                    if same_job
                    else f"run full_pipeline_job (or every job from {producer} on) again"
                )
                raise InconsistentInputsError(
                    f"inputs {other} and {name} of step {step[1]} do not belong together: "
                    f"they were built from different runs of {producer} (run {seen[producer]} "
                    f"and run {run_id}; a run stopped half-way or an upstream job ran alone); "
                    f"{again}."
                )
            seen[producer] = run_id
            via.setdefault(producer, name)

    def _store(self) -> DuckDBStore:
        return DuckDBStore(self.warehouse, lock_timeout_s=self.lock_timeout_s)


def _stored_table_metadata(store: DuckDBStore, schema: str, name: str, rows: int) -> dict[str, Any]:
    """Rows, stores, categories and a preview of a stored table, as :func:`store_metadata`
    gives for a frame."""
    target = qualified_name(schema, name)
    columns = set(store.query(f"SELECT * FROM {target} LIMIT 0").columns)
    metadata: dict[str, Any] = {"rows": rows}
    for column, key in (("STORE_NBR", "stores"), ("CATEGORY", "categories")):
        if column in columns:
            counted = store.query(f'SELECT count(DISTINCT "{column}") AS N FROM {target}')
            metadata[key] = int(counted["N"].iloc[0])
    metadata["preview"] = preview(store.query(f"SELECT * FROM {target} LIMIT {PREVIEW_ROWS}"))
    return metadata


def _export_formats(context: dg.OutputContext) -> list[str]:
    """The formats the asset's definition metadata asks for, in a fixed order."""
    asked = str((context.definition_metadata or {}).get(EXPORT_KEY, ""))
    wanted = {part.strip().lower() for part in re.split(r"[,\s]+", asked) if part.strip()}
    return [suffix for suffix in EXPORT_FORMATS if suffix in wanted]


def _location(context: dg.OutputContext) -> tuple[str, str]:
    """``(group, asset name)`` of an output: the DuckDB schema and table.

    In dagster 1.13 ``OutputContext.asset_spec`` carries the resolved group (``"default"`` for
    assets without one), for a step's own output as well as for the upstream output context
    Dagster builds when loading an input, including assets outside the run's selection.
    """
    name = context.asset_key.path[-1]
    try:
        group = context.asset_spec.group_name
    except dg.DagsterInvariantViolationError:  # contexts built by hand carry no spec
        group = None
    return group or "public", name
