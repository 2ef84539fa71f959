"""The run history: every run's results kept in the warehouse, keyed by run id, append-only.

The current tables (``"merging"."final_store_clusters"`` and the others) are replaced by each
run; the history keeps them all, in schema ``history`` of the same DuckDB file:

===================  ===============================================================
``runs``             one row per run: RUN_ID, RECORDED_AT (UTC), ENV, SCENARIO, JOB, STORES,
                     CATEGORIES, SCOPE (the categories of a limited what-if), PARAMS (JSON
                     of the parameters in force), QUALITY (JSON of the data-quality facts)
``final_store_clusters``  the final table of the run (after overrides)
``merging_summary``  per category what merging did
``k_curves``         TRACK (internal/external) + the models table (every k tried)
``profiles``         TRACK + the profiles table (cluster means, index, labels)
``overrides``        the overrides applied, mapped or flagged for review
``fitted_models``    TRACK (internal, external, final), CATEGORY, MODEL: JSON documents to
                     place new stores (see :mod:`clustering.core.placement`)
===================  ===============================================================

A run is recorded in one transaction (all tables or none); recording the same run id again
replaces its rows, so a retried step never duplicates a run. Rows are never updated otherwise.
Reads and writes share the warehouse's file lock (:class:`~clustering.io.duckdb_store.DuckDBStore`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from clustering.core.errors import ClusteringError
from clustering.io.duckdb_store import (
    ARROW_BATCH_ROWS,
    DuckDBStore,
    TableByKey,
    arrow_to_pandas,
    qualified_name,
    quote_identifier,
    sql_string,
)

SCHEMA = "history"
RUNS = "runs"
TABLES = (
    "final_store_clusters",
    "merging_summary",
    "k_curves",
    "profiles",
    "overrides",
    "fitted_models",
)
RUN_KEY = "RUN_ID"


class RunNotFoundError(ClusteringError):
    """No run or scenario answers to the name given."""


@dataclass(frozen=True)
class RunRecord:
    """What the history says about one run."""

    run_id: str
    recorded_at: str
    env: str
    scenario: str = ""
    job: str = ""
    stores: int = 0
    categories: int = 0
    scope: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        """The first 8 characters of the run id, as the UI shows it."""
        return self.run_id[:8]

    def describe(self) -> str:
        """``run 1a2b3c4d (2026-12-01 10:00 UTC)``, with the scenario when there is one."""
        when = self.recorded_at[:16].replace("T", " ")
        what = (
            f"scenario {self.scenario}, run {self.short_id}"
            if self.scenario
            else (f"run {self.short_id}")
        )
        return f"{what} ({when} UTC)"

    def as_row(self) -> dict[str, object]:
        """The row of the ``runs`` table."""
        return {
            RUN_KEY: self.run_id,
            "RECORDED_AT": self.recorded_at,
            "ENV": self.env,
            "SCENARIO": self.scenario,
            "JOB": self.job,
            "STORES": self.stores,
            "CATEGORIES": self.categories,
            "SCOPE": json.dumps(self.scope),
            "PARAMS": json.dumps(self.params, sort_keys=True),
            "QUALITY": json.dumps(self.quality, sort_keys=True, default=str),
        }

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> RunRecord:
        """The record of a ``runs`` row."""
        return cls(
            run_id=str(row[RUN_KEY]),
            recorded_at=str(row["RECORDED_AT"]),
            env=str(row["ENV"]),
            scenario=str(row["SCENARIO"] or ""),
            job=str(row["JOB"] or ""),
            stores=int(row["STORES"]),
            categories=int(row["CATEGORIES"]),
            scope=list(json.loads(row["SCOPE"] or "[]")),
            params=dict(json.loads(row["PARAMS"] or "{}")),
            quality=dict(json.loads(row["QUALITY"] or "{}")),
        )


def _arrow(frame: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    for position, column in enumerate(table.schema):
        # An all-missing column has Arrow type null; store it as text.
        if pa.types.is_null(column.type):
            table = table.set_column(position, column.name, pa.nulls(len(table), pa.string()))
    return table


#: History tables read with compact text (one row per store × category).
COMPACT_TABLES = frozenset({"final_store_clusters"})


class HistoryStore(DuckDBStore):
    """Append and read the run history of one warehouse file."""

    def record_run(
        self, record: RunRecord, tables: Mapping[str, pd.DataFrame | TableByKey]
    ) -> None:
        """Add ``record`` and its ``tables`` (names from :data:`TABLES`), replacing any rows of
        the same run id, in one transaction.

        A table may be given as a stored table of this same file (a :class:`TableByKey`): it is
        copied inside DuckDB, never read into Python (the final table of a large chain has
        millions of rows).
        """
        unknown = sorted(set(tables) - set(TABLES))
        if unknown:
            raise ValueError(f"not history tables: {', '.join(unknown)}")
        run = sql_string(record.run_id)
        sources: dict[str, tuple[str, pa.Table | None]] = {}
        sources[RUNS] = ("", _arrow(pd.DataFrame([record.as_row()])))
        for name, given in tables.items():
            if isinstance(given, TableByKey) and Path(given.store.path) == Path(self.path):
                stored = qualified_name(given.schema, given.table)
                sources[name] = (f"SELECT {run} AS {RUN_KEY}, * FROM {stored}", None)
                continue
            frame = (
                given.store.read_table(given.schema, given.table)
                if isinstance(given, TableByKey)
                else given
            )
            sources[name] = (
                "",
                _arrow(
                    frame.assign(**{RUN_KEY: record.run_id})[
                        [RUN_KEY, *[c for c in frame.columns if c != RUN_KEY]]
                    ]
                ),
            )
        with self._connect(read_only=False) as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(SCHEMA)}")
            con.execute("BEGIN TRANSACTION")
            try:
                for name, (query, arrow) in sources.items():
                    self._append(con, name, query, arrow, record.run_id)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    @staticmethod
    def _append(
        con: duckdb.DuckDBPyConnection,
        name: str,
        query: str,
        arrow: pa.Table | None,
        run_id: str,
    ) -> None:
        """Append the rows of ``query`` (or of ``arrow``, when given) to history table ``name``."""
        target = qualified_name(SCHEMA, name)
        view = f"__history_{uuid.uuid4().hex}"
        if arrow is not None:
            con.register(view, arrow)
            query = f"SELECT * FROM {quote_identifier(view)}"
        try:
            con.execute(f"CREATE TABLE IF NOT EXISTS {target} AS {query} LIMIT 0")
            existing = {
                str(row[0]).casefold()
                for row in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE database_name = "
                    "current_database() AND schema_name = ? AND table_name = ?",
                    [SCHEMA, name],
                ).fetchall()
            }
            # A newer version may record more columns: older rows get NULL there.
            types = dict(
                con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {query})").fetchall()
            )
            for column, kind in types.items():
                if str(column).casefold() not in existing:
                    con.execute(
                        f"ALTER TABLE {target} ADD COLUMN {quote_identifier(column)} {kind}"
                    )
            con.execute(f"DELETE FROM {target} WHERE {RUN_KEY} = ?", [run_id])
            con.execute(f"INSERT INTO {target} BY NAME {query}")
        finally:
            if arrow is not None:
                con.unregister(view)

    def _query(
        self, sql: str, parameters: list[object] | None = None, compact: bool = False
    ) -> pd.DataFrame:
        """Rows of ``sql``; with ``compact`` text columns stay in Arrow buffers (pandas
        ``string[pyarrow]``), for tables of millions of rows."""
        if not self.path.exists():
            return pd.DataFrame()
        with self._connect(read_only=True) as con:
            present = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = ? AND table_name = ?",
                [SCHEMA, RUNS],
            ).fetchall()
            if not present or not present[0][0]:
                return pd.DataFrame()
            if compact:
                relation = con.sql(sql, params=parameters or [])
                return arrow_to_pandas(relation.to_arrow_reader(ARROW_BATCH_ROWS))
            result: pd.DataFrame = con.execute(sql, parameters or []).df()
            return result

    def runs(self, scenario: str | None = None) -> list[RunRecord]:
        """Recorded runs, oldest first; only those of ``scenario`` when given ("" = not a
        scenario)."""
        frame = self._query(f"SELECT * FROM {qualified_name(SCHEMA, RUNS)} ORDER BY RECORDED_AT")
        records = [RunRecord.from_row(row) for row in frame.to_dict("records")]
        return [r for r in records if scenario is None or r.scenario == scenario]

    def run(self, run_id: str) -> RunRecord:
        """The record of ``run_id`` (a full id)."""
        for record in self.runs():
            if record.run_id == run_id:
                return record
        raise RunNotFoundError(f"run {run_id} is not in the history of {self.path}.")

    def table(self, name: str, run_id: str, columns: list[str] | None = None) -> pd.DataFrame:
        """The rows of history table ``name`` recorded by ``run_id`` (without RUN_ID); only
        ``columns`` when given."""
        if name not in TABLES:
            raise ValueError(f"not a history table: {name}")
        # Never RUN_ID itself: a 36-character id on each of millions of rows, dropped anyway.
        selected = (
            ", ".join(quote_identifier(c) for c in columns) if columns else f"* EXCLUDE ({RUN_KEY})"
        )
        try:
            frame = self._query(
                f"SELECT {selected} FROM {qualified_name(SCHEMA, name)} WHERE {RUN_KEY} = ?",
                [run_id],
                compact=name in COMPACT_TABLES,
            )
        except duckdb.CatalogException:
            return pd.DataFrame()
        return frame

    def earlier_members(
        self, pins: list[tuple[str, str]], before_run: str
    ) -> dict[tuple[str, str], set[int]]:
        """For each (category, cluster), the stores that cluster held in the most recent run
        other than ``before_run`` that had it (pins no run had are left out)."""
        found: dict[tuple[str, str], set[int]] = {}
        if not pins:
            return found
        final = qualified_name(SCHEMA, "final_store_clusters")
        runs = qualified_name(SCHEMA, RUNS)
        for category, cluster in pins:
            try:
                frame = self._query(
                    f"WITH hits AS (SELECT f.{RUN_KEY}, r.RECORDED_AT, f.STORE_NBR FROM {final} f "
                    f"JOIN {runs} r USING ({RUN_KEY}) WHERE f.CATEGORY = ? "
                    f"AND f.REBALANCED_CLUSTER = ? AND f.{RUN_KEY} <> ?) "
                    "SELECT STORE_NBR FROM hits WHERE RECORDED_AT = (SELECT max(RECORDED_AT) "
                    "FROM hits)",
                    [category, cluster, before_run],
                )
            except duckdb.CatalogException:
                return found
            if len(frame):
                found[(category, cluster)] = {int(s) for s in frame["STORE_NBR"]}
        return found
