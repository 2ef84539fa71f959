"""pandas DataFrames in and out of DuckDB tables, atomically and safely across processes.

A DuckDB file accepts one writing process at a time, and a read-write connection held anywhere
also blocks read-only opens from other processes. dagster-duckdb copes by retrying, which gives
up after about 100 s when steps overlap. :class:`DuckDBStore` instead serialises every open of
the file (reads included) with an exclusive file lock on ``<file>.lock`` (``filelock``) and
uses the file only for one short operation at a time, so concurrent writers simply queue (the
process keeps a DuckDB instance per file and attaches the file to it for each operation).

Writes are atomic: the frame is loaded into a staging table, then one transaction drops the old
table and renames the staging table into its place. A failure at any point leaves the previous
table as it was, and staging tables left by a crashed process are removed by the next write.

Round trip (``read_table(write_table(frame))``) gives back an equal frame, with these documented
normalisations:

- categorical columns are stored as VARCHAR and come back as ``object`` columns of ``str``
  (categories converted with ``str``; missing values as ``None``);
- missing values in ``object`` columns come back as ``None`` (not NaN);
- a non-default index is stored as leading column(s) and restored as the index.

DuckDB compares names case-insensitively, even quoted ones: ``"merging"."Final"`` and
``"merging"."FINAL"`` are the same table, and writing one replaces the other.

Column labels, the index names, the name of the column index and each column's pandas dtype
(nullable ``Int64``/``boolean``/``string``, time zones, ``float32`` ...) are kept in a JSON
comment on the table, so tables stay plain SQL tables for anybody else reading the file.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from filelock import FileLock, Timeout

from clustering.core.errors import ClusteringError
from clustering.core.tables import COMPACT_TEXT

#: Prefix of staging tables; they live beside their target and never outlive a write.
STAGING_PREFIX = "__staging__"

#: Marks table comments written by this module (tables from elsewhere are read as they are).
_LAYOUT_FORMAT = "clustering.frame/1"

#: What DuckDB may hold in memory in an operation on the warehouse; a larger table being written
#: or read spills to ``<file>.tmp`` instead of growing the process (DuckDB's own default is 80 %
#: of the RAM).
MEMORY_LIMIT = "512MB"
#: The same while a table is written: the rows go to the file as DuckDB reads them (a frame
#: already in memory, or a stream of record batches such as the 100-million-row aggregation
#: of the input engine), so DuckDB's cache of written blocks need not double the step's memory.
WRITE_MEMORY_LIMIT = "256MB"

_POLL_START_S = 0.02
_POLL_MAX_S = 0.5


#: Attached warehouse files are named with this prefix inside the process's DuckDB instance.
_ALIAS_PREFIX = "__warehouse_"
#: Idle DuckDB instances kept beyond this number are closed (least recently used first).
_INSTANCES_KEPT = 4


@dataclass
class _Kept:
    instance: duckdb.DuckDBPyConnection
    users: int = 0


#: DuckDB instances of this process, one per warehouse file (most recently used last).
_KEPT: dict[Path, _Kept] = {}
_KEPT_LOCK = threading.Lock()
#: Instances inherited by a forked child: never used nor closed there (their threads are not).
_INHERITED: list[_Kept] = []


def _forget_after_fork() -> None:
    global _KEPT_LOCK
    _INHERITED.extend(_KEPT.values())
    _KEPT.clear()
    _KEPT_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _cursor_for(path: Path) -> duckdb.DuckDBPyConnection:
    """A new connection to this process's in-memory DuckDB instance for the file ``path``.

    Starting a DuckDB instance costs 30-40 ms (a run opens the warehouse ~70 times); attaching
    a file to a running one ~7 ms. The instance holds no file between operations: each one
    attaches the file and :func:`_release` detaches it, so the file is locked only while this
    process uses it. Spills go to ``<file>.tmp``, which stays until the instance closes.
    """
    key = path.resolve()
    with _KEPT_LOCK:
        kept = _KEPT.pop(key, None)
        if kept is None:
            kept = _Kept(
                duckdb.connect(
                    ":memory:",
                    config={"memory_limit": MEMORY_LIMIT, "temp_directory": f"{key}.tmp"},
                )
            )
        _KEPT[key] = kept
        kept.users += 1
        cursor = kept.instance.cursor()
        idle = [other for other, entry in _KEPT.items() if entry.users == 0]
        for other in idle[: max(0, len(_KEPT) - _INSTANCES_KEPT)]:
            _KEPT.pop(other).instance.close()
    return cursor


def _release(path: Path, cursor: duckdb.DuckDBPyConnection, alias: str) -> None:
    """Close ``cursor`` and detach the file it attached as ``alias``, which releases DuckDB's
    lock on it. Should the detach fail, the whole instance is closed: that releases it too."""
    with suppress(duckdb.Error):
        cursor.close()  # ends any transaction or result still open
    key = path.resolve()
    with _KEPT_LOCK:
        kept = _KEPT.get(key)
        if kept is None:
            return
        kept.users -= 1
        try:
            detacher = kept.instance.cursor()
            try:
                detacher.execute(f"DETACH DATABASE IF EXISTS {quote_identifier(alias)}")
            finally:
                detacher.close()
        except duckdb.Error:
            if kept.users == 0:
                del _KEPT[key]
                kept.instance.close()
            else:
                raise


class StoreLockTimeoutError(ClusteringError):
    """The DuckDB file stayed busy (locked by another step or process) for too long."""


class TableNotFoundError(ClusteringError, KeyError):
    """The requested table does not exist in the DuckDB file."""

    def __str__(self) -> str:
        # KeyError would otherwise wrap the sentence in quotes.
        return str(self.args[0]) if self.args else ""


class TableChangedError(ClusteringError):
    """A table read key by key changed while it was read (a key counted had no rows)."""


class UnsupportedFrameError(ClusteringError, ValueError):
    """The frame cannot be stored as a table (e.g. a column mixing numbers and text)."""


def quote_identifier(name: str) -> str:
    """``name`` as a double-quoted SQL identifier; any character is allowed (``"`` is doubled)."""
    return '"' + name.replace('"', '""') + '"'


def qualified_name(schema: str, table: str) -> str:
    """``"schema"."table"``, quoted so names like ``CANDY/SNACKS`` or ``BEER & WINE`` are safe."""
    return f"{quote_identifier(schema)}.{quote_identifier(table)}"


def sql_string(text: str) -> str:
    """A single-quoted SQL string literal (DDL such as COMMENT ON takes no parameters)."""
    return "'" + text.replace("'", "''") + "'"


def _is_default_index(index: pd.Index) -> bool:
    """True for the unnamed 0..n-1 RangeIndex that carries no information worth storing."""
    return (
        isinstance(index, pd.RangeIndex)
        and index.name is None
        and index.start == 0
        and index.step == 1
    )


def _json_label(label: object, what: str) -> object:
    """Check that a column/index label can be written to JSON and come back unchanged."""
    if isinstance(label, np.generic):
        label = label.item()  # numpy scalars (labels of pandas Index) as plain Python values
    if label is None or isinstance(label, str | int | float | bool):
        return label
    raise UnsupportedFrameError(
        f"cannot store {what} {label!r} of type {type(label).__name__}: "
        "labels must be text or numbers"
    )


def _storable_series(series: pd.Series) -> pd.Series:
    """Categoricals become object columns of ``str`` (stored as VARCHAR), missing kept missing."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = [str(category) for category in series.cat.categories]
        as_text = series.cat.rename_categories(categories).astype(object)
        # None, not NaN, for missing: that is what a VARCHAR NULL reads back as.
        return as_text.where(as_text.notna(), None)
    return series


def _flatten(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The frame as a flat table with unique column names, plus what is needed to restore it."""
    if isinstance(frame.columns, pd.MultiIndex):
        raise UnsupportedFrameError(
            "cannot store a frame with multi-level columns: flatten the column labels first"
        )
    parts: list[tuple[object, pd.Series]] = []
    index_names: list[object] = []
    default_index = _is_default_index(frame.index)
    if not default_index:  # stored as leading columns
        for level, name in enumerate(frame.index.names):
            index_names.append(_json_label(name, "index name"))
            values = frame.index.get_level_values(level)
            fallback = "index" if frame.index.nlevels == 1 else f"level_{level}"
            parts.append((name if name is not None else fallback, pd.Series(values)))
    for position in range(frame.shape[1]):
        label = _json_label(frame.columns[position], "column label")
        column = frame.iloc[:, position]
        parts.append((label, column if default_index else column.reset_index(drop=True)))

    # DuckDB compares column names case-insensitively and silently renames clashes; choose
    # unique names here so the stored table is predictable, and restore labels by position.
    used: set[str] = set()
    columns: dict[str, pd.Series] = {}
    layout_columns: list[dict[str, object]] = []
    for position, (label, series) in enumerate(parts):
        base = str(label)
        stored, counter = base, 0
        while stored.casefold() in used:
            counter += 1
            stored = f"{base}_{counter}"
        used.add(stored.casefold())
        storable = _storable_series(series)
        columns[stored] = storable
        is_index = position < len(index_names)
        layout_columns.append(
            {"label": None if is_index else label, "dtype": _dtype_name(storable.dtype)}
        )
    # copy=False: a second copy of a table of millions of rows only to write it.
    flat = pd.DataFrame(columns, index=pd.RangeIndex(len(frame)), copy=False)
    columns_name = frame.columns.name
    layout = {
        "format": _LAYOUT_FORMAT,
        "index_names": index_names,
        "columns_name": _json_label(columns_name, "column index name"),
        "columns": layout_columns,
    }
    return flat, layout


def _dtype_name(dtype: object) -> str:
    """The dtype as :func:`pandas.api.types.pandas_dtype` reads it back (``str`` of pyarrow
    strings says only "string", which would come back as Python strings)."""
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        return COMPACT_TEXT
    return str(dtype)


def _arrow_to_frame(
    table: pa.Table | pa.RecordBatchReader, layout: dict[str, Any] | None
) -> pd.DataFrame:
    """An Arrow read as pandas: columns the layout stores as compact text stay in Arrow buffers,
    the others convert as DuckDB's own ``df()`` would."""
    specs = (layout or {}).get("columns") or []
    compact = {
        str(table.schema.names[position])
        for position, spec in enumerate(specs)
        if isinstance(spec, dict) and spec.get("dtype") == COMPACT_TEXT
    }
    return arrow_to_pandas(table, compact if len(specs) == len(table.schema.names) else set())


#: Rows per Arrow batch when a query's result is converted to pandas.
ARROW_BATCH_ROWS = 1_000_000


def arrow_to_pandas(
    source: pa.Table | pa.RecordBatchReader, compact: Collection[str] | None = None
) -> pd.DataFrame:
    """``source`` as DuckDB's ``df()`` gives a result (integers and booleans with missing
    values as pandas' nullable types), except that text columns named in ``compact`` (all text
    columns when None) stay in Arrow buffers as ``string[pyarrow]``: no Python object per
    value, for tables of millions of rows.

    A stream of record batches (a query's result read with ``to_arrow_reader``) is collected
    column by column and each column's Arrow data is dropped as soon as it is converted: the
    result and its Arrow copy are never both whole in memory.
    """
    names = list(source.schema.names)
    columns: list[pa.ChunkedArray | None]
    if isinstance(source, pa.RecordBatchReader):
        pieces: list[list[pa.Array]] = [[] for _ in names]
        rows = 0
        for batch in source:
            rows += batch.num_rows
            for position in range(batch.num_columns):
                pieces[position].append(batch.column(position))
            del batch
        columns = [
            pa.chunked_array(chunks, type=source.schema.field(position).type)
            for position, chunks in enumerate(pieces)
        ]
        del pieces
    else:
        columns = list(source.columns)
        rows = source.num_rows
    data = {}
    for position, name in enumerate(names):
        column = columns[position]
        assert column is not None
        columns[position] = None  # once converted, this column's Arrow data can go
        kind = column.type
        if (pa.types.is_string(kind) or pa.types.is_large_string(kind)) and (
            compact is None or name in compact
        ):
            text = column.cast(pa.large_string()).combine_chunks()
            data[name] = pd.Series(pd.arrays.ArrowStringArray(text))
        elif column.null_count and (pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
            data[name] = pd.Series(column.to_pandas(types_mapper=_nullable_type))
        else:
            data[name] = pd.Series(column.to_pandas())
        del column
    # copy=False: the columns are new already; consolidating them would copy the table again.
    return pd.DataFrame(data, index=pd.RangeIndex(rows), copy=False)


_NULLABLE = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def _nullable_type(arrow_type: pa.DataType) -> object:
    return _NULLABLE.get(arrow_type)


def storable_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` exactly as :meth:`DuckDBStore.write_table` stores it (index as columns,
    categoricals as text). Exports written from this match the table column for column."""
    return _flatten(frame)[0]


def _to_arrow(flat: pd.DataFrame, target: str) -> pa.Table:
    """Convert before touching the file, so a frame that cannot be stored fails early."""
    try:
        table = pa.Table.from_pandas(flat, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise UnsupportedFrameError(f"cannot store the frame as table {target}: {exc}") from exc
    # An all-missing column has Arrow type null, which DuckDB keeps as an odd "NULL" column
    # type; VARCHAR is what any SQL reader expects.
    for position, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            table = table.set_column(position, field.name, pa.nulls(len(table), type=pa.string()))
    return table


def _restore_dtype(series: pd.Series, dtype_name: str) -> pd.Series:
    """Give a column read from DuckDB back the pandas dtype it was written with."""
    if str(series.dtype) == dtype_name:
        return series
    try:
        target = pd.api.types.pandas_dtype(dtype_name)
        if isinstance(target, pd.DatetimeTZDtype):
            # DuckDB hands TIMESTAMPTZ back as UTC (naive or aware depending on settings).
            if getattr(series.dtype, "tz", None) is None:
                series = series.dt.tz_localize("UTC")
            restored: pd.Series = series.dt.tz_convert(target.tz).astype(target)
        else:
            restored = series.astype(target)
        return restored
    except (TypeError, ValueError):
        # Best effort: a dtype this pandas cannot rebuild keeps the values as DuckDB gave them.
        return series


def _restore(read: pd.DataFrame, layout: dict[str, Any]) -> pd.DataFrame:
    """Rebuild the written frame from the flat table read back and its layout comment."""
    specs: list[dict[str, Any]] = layout["columns"]
    if len(specs) != read.shape[1]:
        return read  # the table was changed by someone else; return it as it is
    series = [
        _restore_dtype(read.iloc[:, position], str(spec["dtype"]))
        for position, spec in enumerate(specs)
    ]
    index_names: list[Any] = layout["index_names"]
    n_index = len(index_names)
    data = series[n_index:]
    frame = pd.DataFrame(dict(enumerate(data)), index=pd.RangeIndex(len(read)))
    frame.columns = pd.Index(
        [spec["label"] for spec in specs[n_index:]], name=layout["columns_name"]
    )
    if n_index == 1:
        # Index(series, name=None) would keep the stored column name: rename explicitly.
        frame.index = pd.Index(series[0]).rename(index_names[0])
    elif n_index > 1:
        frame.index = pd.MultiIndex.from_arrays(series[:n_index], names=index_names)
    return frame


class DuckDBStore:
    """Atomic, process-safe reads and writes of DataFrames as tables in one DuckDB file.

    Every operation attaches the file to a DuckDB instance this process keeps for it, and
    detaches it when done, while holding an exclusive lock on ``<path>.lock``; callers in other
    threads or processes wait up to ``lock_timeout_s``. Between operations the file is free.
    """

    def __init__(self, path: Path, lock_timeout_s: float = 600) -> None:
        self.path = Path(path)
        self.lock_timeout_s = float(lock_timeout_s)

    @property
    def lock_path(self) -> Path:
        """The lock file beside the DuckDB file."""
        return self.path.with_name(self.path.name + ".lock")

    # -- public API ------------------------------------------------------------------------

    def write_table(
        self,
        schema: str,
        table: str,
        frame: pd.DataFrame | pa.RecordBatchReader,
        tags: dict[str, Any] | None = None,
    ) -> int:
        """Replace ``"schema"."table"`` with ``frame`` atomically; returns the number of rows.

        ``frame`` may also be a stream of Arrow record batches (a table too large to hold in
        memory at once, e.g. an aggregation streamed out of the input engine): DuckDB reads it
        batch by batch. ``tags`` (JSON-compatible) are kept with the table, e.g. where its data
        came from; see :meth:`read_tags`. The schema is created when missing. On any failure
        the previous table (if any) is left exactly as it was and no staging table remains.
        """
        target = qualified_name(schema, table)
        arrow_table: pa.Table | pa.RecordBatchReader
        if isinstance(frame, pa.RecordBatchReader):
            # The layout of the frame the batches would make: read back with their dtypes.
            layout = _flatten(frame.schema.empty_table().to_pandas())[1]
            arrow_table = frame
        else:
            flat, layout = _flatten(frame)
            arrow_table = _to_arrow(flat, target)
        comment = json.dumps({**layout, "tags": tags or {}}, ensure_ascii=False)
        staging = f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        view = f"__frame_{uuid.uuid4().hex}"
        with self._connect(read_only=False) as con:
            # Holding the lock means no other writer is mid-write: any staging table still
            # here was left by a process that died, and can go.
            self._drop_orphan_staging_tables(con)
            con.execute(f"SET memory_limit = {sql_string(WRITE_MEMORY_LIMIT)}")
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
            try:
                con.register(view, arrow_table)
                try:
                    con.execute(
                        f"CREATE TABLE {qualified_name(schema, staging)} AS "
                        f"SELECT * FROM {quote_identifier(view)}"
                    )
                finally:
                    con.unregister(view)
                row = con.execute(f"SELECT count(*) FROM {qualified_name(schema, staging)}")
                rows = int(row.fetchone()[0])  # type: ignore[index]
                self._swap(con, schema, staging, table, comment)
            except BaseException:
                with suppress(duckdb.Error):
                    con.execute(f"DROP TABLE IF EXISTS {qualified_name(schema, staging)}")
                raise
        return rows

    def read_table(self, schema: str, table: str) -> pd.DataFrame:
        """The frame stored in ``"schema"."table"``; raises :class:`TableNotFoundError`."""
        return self.read_with_tags(schema, table)[0]

    def read_with_tags(self, schema: str, table: str) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The frame and the tags stored with it (empty for tables written without tags)."""
        target = qualified_name(schema, table)
        if self.path.exists():
            with self._connect(read_only=True) as con:
                found = self._table_comment(con, schema, table)
                if found is not None:
                    layout = _parse_layout(found[0])
                    read = _read(con, f"SELECT * FROM {target}", [], layout)
                    if layout is None:
                        return read, {}
                    tags = layout.get("tags")
                    return _restore(read, layout), tags if isinstance(tags, dict) else {}
        raise TableNotFoundError(f"no table {target} in {self.path}")

    def read_keys_arrow(
        self,
        schema: str,
        table: str,
        column: str,
        values: list[object],
        columns: list[str] | None = None,
    ) -> tuple[pa.Table, dict[str, Any] | None]:
        """The rows whose ``column`` is one of ``values``, as one Arrow table (``columns``, or
        all), with the table's stored layout (None when written by something else): several
        categories in one read, which :class:`TableByKey` splits."""
        target = qualified_name(schema, table)
        selected = ", ".join(quote_identifier(c) for c in columns) if columns else "*"
        marks = ", ".join("?" for _ in values)
        with self._connect(read_only=True) as con:
            found = self._table_comment(con, schema, table)
            if found is None:
                raise TableNotFoundError(f"no table {target} in {self.path}")
            result: pa.Table = con.sql(
                f"SELECT {selected} FROM {target} WHERE {quote_identifier(column)} IN ({marks})",
                params=list(values),
            ).to_arrow_table()
        return result, _parse_layout(found[0])

    def read_tags(self, schema: str, table: str) -> dict[str, Any]:
        """The tags stored with ``"schema"."table"`` (empty for tables written without tags)."""
        target = qualified_name(schema, table)
        if self.path.exists():
            with self._connect(read_only=True) as con:
                found = self._table_comment(con, schema, table)
                if found is not None:
                    layout = _parse_layout(found[0]) or {}
                    tags = layout.get("tags")
                    return tags if isinstance(tags, dict) else {}
        raise TableNotFoundError(f"no table {target} in {self.path}")

    def query(self, sql: str, parameters: list[object] | None = None) -> pd.DataFrame:
        """The result of a read-only query on the file (e.g. counts over a large table)."""
        with self._connect(read_only=True) as con:
            result: pd.DataFrame = con.execute(sql, parameters or []).df()
        return result

    def has_table(self, schema: str, table: str) -> bool:
        """Whether ``"schema"."table"`` exists (False when the file does not exist yet)."""
        if not self.path.exists():
            return False
        with self._connect(read_only=True) as con:
            return self._table_comment(con, schema, table) is not None

    def drop_table(self, schema: str, table: str) -> bool:
        """Remove ``"schema"."table"`` if it exists; returns whether it existed."""
        if not self.path.exists():
            return False
        with self._connect(read_only=False) as con:
            if self._table_comment(con, schema, table) is None:
                return False
            con.execute(f"DROP TABLE {qualified_name(schema, table)}")
            return True

    def list_tables(self) -> list[tuple[str, str, int]]:
        """``(schema, table, rows)`` for every table, sorted; staging tables are left out."""
        if not self.path.exists():
            return []
        with self._connect(read_only=True) as con:
            names = con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() "
                "WHERE database_name = current_database() "
                "ORDER BY schema_name, table_name"
            ).fetchall()
            listed: list[tuple[str, str, int]] = []
            for schema, table in names:
                if str(table).startswith(STAGING_PREFIX):
                    continue
                row = con.execute(
                    f"SELECT count(*) FROM {qualified_name(schema, table)}"
                ).fetchone()
                listed.append((str(schema), str(table), int(row[0]) if row else 0))
        return listed

    # -- internals -------------------------------------------------------------------------

    def _swap(
        self, con: duckdb.DuckDBPyConnection, schema: str, staging: str, table: str, comment: str
    ) -> None:
        """Drop the old table and rename the staging table into its place, in one transaction."""
        target = qualified_name(schema, table)
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"DROP TABLE IF EXISTS {target}")
            con.execute(
                f"ALTER TABLE {qualified_name(schema, staging)} RENAME TO {quote_identifier(table)}"
            )
            con.execute(f"COMMENT ON TABLE {target} IS {sql_string(comment)}")
            con.execute("COMMIT")
        except BaseException:
            with suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise

    @staticmethod
    def _table_comment(
        con: duckdb.DuckDBPyConnection, schema: str, table: str
    ) -> tuple[str | None] | None:
        """``(comment,)`` when the table exists, else None (one query answers both)."""
        row = con.execute(
            "SELECT comment FROM duckdb_tables() "
            # DuckDB matches names case-insensitively, even quoted: look them up the same way.
            "WHERE database_name = current_database() "
            "AND lower(schema_name) = lower(?) AND lower(table_name) = lower(?)",
            [schema, table],
        ).fetchall()  # every row: DuckDB 2 keeps a half-read result blocking the connection
        return (row[0][0],) if row else None

    @staticmethod
    def _drop_orphan_staging_tables(con: duckdb.DuckDBPyConnection) -> None:
        orphans = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() AND starts_with(table_name, ?)",
            [STAGING_PREFIX],
        ).fetchall()
        for schema, table in orphans:
            con.execute(f"DROP TABLE IF EXISTS {qualified_name(schema, table)}")

    @contextmanager
    def _connect(self, *, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection using the file, attached and detached while this process holds the
        file's lock."""
        deadline = time.monotonic() + self.lock_timeout_s
        with self._locked(deadline):
            con, alias = self._open(read_only, deadline)
            try:
                yield con
            finally:
                _release(self.path, con, alias)

    @contextmanager
    def _locked(self, deadline: float) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A new FileLock per acquisition: an flock on its own file description, which also
        # excludes other threads of this process, not only other processes.
        lock = FileLock(self.lock_path, timeout=max(deadline - time.monotonic(), 0.0))
        try:
            lock.acquire(poll_interval=_POLL_START_S)
        except Timeout:
            raise self._timeout_error("another step or process holds its lock") from None
        try:
            yield
        finally:
            lock.release()

    def _open(self, read_only: bool, deadline: float) -> tuple[duckdb.DuckDBPyConnection, str]:
        """Attach the file to this process's DuckDB instance for it, waiting out DuckDB's own
        lock held by a process that skips ours: a connection using it by default, and the name
        it is attached under."""
        delay = _POLL_START_S
        while True:
            con = _cursor_for(self.path)
            alias = f"{_ALIAS_PREFIX}{uuid.uuid4().hex}"
            try:
                con.execute(f"SET memory_limit = {sql_string(MEMORY_LIMIT)}")
                con.execute(
                    f"ATTACH {sql_string(str(self.path))} AS {quote_identifier(alias)}"
                    + (" (READ_ONLY)" if read_only else "")
                )
                con.execute(f"USE {quote_identifier(alias)}")
                return con, alias
            except duckdb.IOException as exc:
                _release(self.path, con, alias)
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise self._timeout_error(f"DuckDB reports: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, _POLL_MAX_S)
            except BaseException:
                _release(self.path, con, alias)
                raise

    def _timeout_error(self, reason: str) -> StoreLockTimeoutError:
        return StoreLockTimeoutError(
            f"gave up after {self.lock_timeout_s:g} s waiting for the DuckDB file {self.path} "
            f"({reason}); retry when the other run has finished or raise lock_timeout_s."
        )


class TableByKey(Mapping[str, pd.DataFrame]):
    """A stored table read one key at a time, e.g. category by category: a read-only mapping
    from each distinct value of ``column`` to its rows, read when asked for (never whole).

    Keys are read in batches of consecutive keys (in sorted order) of at most ``batch_rows``
    rows together, one connection per batch: a few hundred small categories cost a few reads,
    and memory stays bounded by the batch, not the table. Each key of a batch is handed out
    once and then forgotten; asking for it again reads it again.
    """

    def __init__(
        self,
        store: DuckDBStore,
        schema: str,
        table: str,
        column: str,
        batch_rows: int = 1_000_000,
    ) -> None:
        self.store, self.schema, self.table, self.column = store, schema, table, column
        self.batch_rows = max(int(batch_rows), 1)
        self._counts: dict[str, int] | None = None
        self._values: dict[str, object] = {}
        self._batch: dict[str, pa.Table] = {}
        self._batch_columns: tuple[str, ...] | None = None
        self._layout: dict[str, Any] | None = None

    def _all_counts(self) -> dict[str, int]:
        if self._counts is None:
            name = quote_identifier(self.column)
            found = self.store.query(
                f"SELECT {name} AS KEY, count(*) AS N "
                f"FROM {qualified_name(self.schema, self.table)} "
                f"WHERE {name} IS NOT NULL GROUP BY KEY ORDER BY KEY"
            )
            self._values = {str(k): k for k in found["KEY"]}
            self._counts = {str(k): int(n) for k, n in zip(found["KEY"], found["N"], strict=True)}
        return self._counts

    def _all_keys(self) -> list[str]:
        return list(self._all_counts())

    def _rows(self, key: str, columns: list[str] | None) -> pa.Table:
        """The Arrow rows of ``key`` (``columns``, or all), from the batch read with it."""
        counts = self._all_counts()
        if key not in counts:
            raise KeyError(key)
        wanted = tuple(columns) if columns else None
        if wanted != self._batch_columns or key not in self._batch:
            self._read_batch(key, columns)
        return self._batch.pop(key)

    def _read_batch(self, first: str, columns: list[str] | None) -> None:
        counts = self._all_counts()
        keys = list(counts)
        batch = [first]
        rows = counts[first]
        for key in keys[keys.index(first) + 1 :]:
            if rows + counts[key] > self.batch_rows:
                break
            batch.append(key)
            rows += counts[key]
        selected = None if columns is None else [*columns, self.column]
        self._batch = {}
        read, self._layout = self.store.read_keys_arrow(
            self.schema, self.table, self.column, [self._values[k] for k in batch], selected
        )
        key_values = read.column(self.column if columns is not None else _position(read, self))
        if columns is not None:
            read = read.select(list(columns))
        self._batch = {first: read} if len(batch) == 1 else _split_by_key(read, key_values)
        vanished = [key for key in batch if key not in self._batch or not self._batch[key]]
        if vanished:
            # Rewritten by another run since it was counted: its keys no longer agree.
            self._batch = {}
            raise TableChangedError(
                f"table {qualified_name(self.schema, self.table)} in {self.store.path} changed "
                f"while it was read: {self.column} {vanished[0]!r} had rows when counted and "
                "has none now; run the job again once the other run has finished."
            )
        self._batch_columns = None if columns is None else tuple(columns)

    def __getitem__(self, key: str) -> pd.DataFrame:
        rows = self._rows(key, None)
        frame = _arrow_to_frame(rows, self._layout)
        return frame if self._layout is None else _restore(frame, self._layout)

    def arrow(self, key: str, columns: list[str] | None = None) -> pa.Table:
        """``columns`` (or all) of the rows of ``key`` as an Arrow table: no Python objects per
        row, for callers that turn them into arrays anyway."""
        return self._rows(key, columns)

    def __iter__(self) -> Iterator[str]:
        return iter(self._all_keys())

    def __len__(self) -> int:
        return len(self._all_counts())

    def __contains__(self, key: object) -> bool:
        return key in self._all_counts()

    def __repr__(self) -> str:
        return f"TableByKey({qualified_name(self.schema, self.table)} by {self.column})"


def _split_by_key(read: pa.Table, keys: pa.ChunkedArray) -> dict[str, pa.Table]:
    """The rows of ``read`` per value of ``keys`` (its key column), by the value's text.

    One dictionary encoding of the keys instead of a comparison and a filter over the whole
    batch per key (the batch's cost grew with its keys squared: 0.4 s per 20 categories). A
    table written sorted by its key (as the share table is) reads back in long runs of one
    key, in whatever order DuckDB's parallel scan returns them: each key's runs are joined
    and copied once. Otherwise each key's rows are taken, in their order. Either way each key
    gets its own buffers, so the batch's memory goes as soon as it is split.
    """
    encoded = pc.dictionary_encode(keys.combine_chunks())
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    names = [str(value) for value in encoded.dictionary.to_pylist()]
    starts = np.flatnonzero(np.concatenate(([True], codes[1:] != codes[:-1])))
    if len(starts) <= _MAX_RUNS_PER_KEY * len(names):
        ends = np.append(starts[1:], len(codes))
        runs: dict[int, list[pa.Table]] = {}
        for first, end in zip(starts.tolist(), ends.tolist(), strict=True):
            runs.setdefault(int(codes[first]), []).append(read.slice(first, end - first))
        return {
            names[code]: pa.concat_tables(parts).combine_chunks() for code, parts in runs.items()
        }
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(codes, minlength=len(names)))))
    return {
        name: read.take(order[bounds[code] : bounds[code + 1]]) for code, name in enumerate(names)
    }


#: Beyond this many runs of one key per key on average, a read is split by taking rows.
_MAX_RUNS_PER_KEY = 64


def _position(read: pa.Table, table: TableByKey) -> int:
    """Where the key column is in a ``SELECT *`` read (DuckDB matches names case-blind)."""
    names = [name.lower() for name in read.column_names]
    return names.index(table.column.lower())


def _read(
    con: duckdb.DuckDBPyConnection,
    query: str,
    parameters: list[object],
    layout: dict[str, Any] | None,
) -> pd.DataFrame:
    """A query's rows as pandas; through Arrow when the layout keeps compact text columns."""
    specs = (layout or {}).get("columns") or []
    if any(isinstance(spec, dict) and spec.get("dtype") == COMPACT_TEXT for spec in specs):
        reader = con.sql(query, params=parameters).to_arrow_reader(ARROW_BATCH_ROWS)
        return _arrow_to_frame(reader, layout)
    read: pd.DataFrame = con.execute(query, parameters).df()
    return read


def _parse_layout(comment: str | None) -> dict[str, Any] | None:
    """The layout written by :func:`_flatten`, or None for tables written by anything else."""
    if not comment:
        return None
    try:
        layout = json.loads(comment)
    except ValueError:
        return None
    if not isinstance(layout, dict) or layout.get("format") != _LAYOUT_FORMAT:
        return None
    return layout


__all__ = [
    "COMPACT_TEXT",
    "STAGING_PREFIX",
    "DuckDBStore",
    "StoreLockTimeoutError",
    "TableByKey",
    "TableNotFoundError",
    "UnsupportedFrameError",
    "arrow_to_pandas",
    "qualified_name",
    "quote_identifier",
    "sql_string",
    "storable_frame",
]
