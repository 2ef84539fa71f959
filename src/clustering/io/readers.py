"""Open the pipeline's inputs as Ibis tables, so the heavy work runs where the data lives.

An input spec is a parquet or CSV file, a directory of them, a glob, ``table:NAME`` (also
``duckdb:NAME``) for a table that already exists in the connection, or a *name* without a
suffix: ``data/raw/internal_sales`` finds ``internal_sales.parquet``, ``.pq``, ``.csv``,
``.csv.gz`` or a folder ``internal_sales/`` (exactly one of them). Nothing is loaded into
Python here: the readers return lazy tables, validated against their contracts.

Files of one input may come from several vendors: a UTF-8 byte-order mark and spaces around
column names are removed, and columns are matched without regard to case.
"""

from __future__ import annotations

import glob
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal

import ibis
import pandas as pd

from clustering.core.contracts import (
    EXTERNAL,
    INTERNAL_SALES,
    NEED_STATES,
    validate_external,
    validate_internal_sales,
    validate_need_states,
)
from clustering.core.errors import InputContractError

FileFormat = Literal["parquet", "csv"]

_TABLE_PREFIXES = ("table:", "duckdb:")
_SUFFIXES: dict[str, FileFormat] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".csv.gz": "csv",
}
DATA_SUFFIXES = tuple(_SUFFIXES)
_GLOB_CHARACTERS = set("*?[")


def connect(backend_url: str | None = None, memory_limit: str = "") -> ibis.BaseBackend:
    """An in-memory DuckDB connection by default, else the backend ``backend_url`` names.

    Any URL :func:`ibis.connect` understands works, e.g. ``duckdb://outputs/x.duckdb``.
    ``memory_limit`` (e.g. ``"1GB"``) caps DuckDB's memory; larger aggregations spill to its
    temporary directory instead of growing the process (DuckDB's default is 80 % of the RAM).
    """
    if backend_url is None:
        if memory_limit:
            return ibis.duckdb.connect(memory_limit=memory_limit)
        return ibis.duckdb.connect()
    return ibis.connect(backend_url)


def read_table(
    con: ibis.BaseBackend,
    spec: str | Path,
    label: str,
    *,
    text_columns: Collection[str] = (),
    detect_types_on_all_rows: bool = False,
) -> ibis.Table:
    """Open ``spec`` (file, directory, glob or ``table:NAME``) as a lazy Ibis table.

    ``text_columns`` are read from CSV as text whatever their content, so a stray value deep in
    a large file ("abc" in an id column) reaches the contract check, which names it, instead of
    failing the read with a conversion error. ``detect_types_on_all_rows`` makes CSV type
    detection look at every row instead of a sample (for small files). Problems the user can
    fix (nothing matches, unknown extension, unreadable file) raise :class:`InputContractError`.
    """
    text = str(spec)
    for prefix in _TABLE_PREFIXES:
        if text.startswith(prefix):
            return _existing_table(con, text[len(prefix) :], label)
    text = resolve_spec(text, label)

    files = _matching_files(text, label)
    file_format = _file_format(files, text, label)
    try:
        if file_format == "parquet":
            table = con.read_parquet(files)
        else:
            table = _read_csv(con, files, text_columns, detect_types_on_all_rows)
    except Exception as exc:  # the backends raise many types; the user needs one sentence
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputContractError(f"{label} '{text}' cannot be read: {reason}") from exc
    return _clean_column_names(table, f"{label} '{text}'")


def clean_name(name: str) -> str:
    """A column name without a byte-order mark and surrounding spaces."""
    return name.replace("\ufeff", "").strip()


def _clean_column_names(table: ibis.Table, where: str) -> ibis.Table:
    renames: dict[str, str] = {}
    seen: dict[str, str] = {}
    for column in table.columns:
        clean = clean_name(column)
        key = clean.upper()
        if key in seen:
            raise InputContractError(
                f"{where}: columns '{seen[key]}' and '{column}' are the same name once spaces "
                "and case are ignored; rename one of them."
            )
        seen[key] = column
        if clean != column:
            renames[clean] = column
    return table.rename(renames) if renames else table


def read_internal_sales(con: ibis.BaseBackend, spec: str | Path) -> ibis.Table:
    """Open and validate the internal sales (SKU_NBR, STORE_NBR, CAT_DSC, TOTAL_SALES)."""
    source = _source_name(spec, INTERNAL_SALES.label)
    table = read_table(con, source, INTERNAL_SALES.label, text_columns=INTERNAL_SALES.column_names)
    return validate_internal_sales(table, source)


def read_need_states(con: ibis.BaseBackend, spec: str | Path) -> ibis.Table:
    """Open and validate the need-state map (PRODUCT_ID, CATEGORY, NEED_STATE, CDT)."""
    source = _source_name(spec, NEED_STATES.label)
    table = read_table(con, source, NEED_STATES.label, text_columns=NEED_STATES.column_names)
    return validate_need_states(table, source)


def _source_name(spec: str | Path, label: str) -> str:
    """The file or folder a spec names (so messages name what the user has), or the table."""
    text = str(spec)
    if any(text.startswith(prefix) for prefix in _TABLE_PREFIXES):
        return text
    return resolve_spec(text, label)


def read_external_sources(
    con: ibis.BaseBackend, specs: Sequence[str | Path]
) -> list[tuple[str, pd.DataFrame]]:
    """Open, validate and load every external feature source as (source name, pandas frame).

    Each file is a source: a folder or glob of external files is several sources (vendors)
    joined on STORE_NBR later. External data is one row per store, so it is small enough to
    load; CSV types are detected on every row so that a column with text anywhere is read as
    text (and later dropped or encoded), never half-read as numbers.
    """
    sources: list[tuple[str, pd.DataFrame]] = []
    for spec in specs:
        for source in _external_files(str(spec)):
            table = read_table(
                con,
                source,
                EXTERNAL.label,
                text_columns=EXTERNAL.column_names,
                detect_types_on_all_rows=True,
            )
            validated = validate_external(table, source)
            sources.append((source, validated.execute()))
    return sources


def _external_files(spec: str) -> list[str]:
    """The files of one external location, each a source of its own."""
    if any(spec.startswith(prefix) for prefix in _TABLE_PREFIXES):
        return [spec]
    resolved = resolve_spec(spec, EXTERNAL.label)
    if Path(resolved).is_dir():
        files = sorted(
            str(p)
            for p in Path(resolved).iterdir()
            if p.is_file() and p.name.lower().endswith(DATA_SUFFIXES) and not p.name.startswith(".")
        )
        if not files:
            raise InputContractError(
                f"{EXTERNAL.label}: no parquet or CSV file in directory '{resolved}'."
            )
        return files
    return _matching_files(resolved, EXTERNAL.label)


def _existing_table(con: ibis.BaseBackend, name: str, label: str) -> ibis.Table:
    database, _, table_name = name.rpartition(".")
    try:
        if database:
            return con.table(table_name, database=database)
        return con.table(table_name)
    except Exception as exc:  # backends differ in the error they raise for a missing table
        raise InputContractError(f"{label}: no table named '{name}' in the database.") from exc


def named_locations(spec: str | Path) -> list[Path]:
    """Where a spec without a data suffix may be: ``NAME.parquet`` … ``NAME.csv.gz`` and the
    folder ``NAME/``; empty for a spec that is a glob or has a data suffix."""
    text = str(spec)
    if _GLOB_CHARACTERS & set(text) or text.lower().endswith(DATA_SUFFIXES):
        return []
    path = Path(text)
    return [path.with_name(path.name + suffix) for suffix in DATA_SUFFIXES] + [path]


def resolve_spec(spec: str | Path, label: str) -> str:
    """``spec`` itself, or the one file or folder its name points at (see the module text)."""
    text = str(spec)
    path = Path(text)
    candidates = named_locations(text)
    if not candidates or path.is_file():
        return text
    found = [c for c in candidates if c.is_file() or (c == path and c.is_dir())]
    if len(found) > 1:
        names = " and ".join(f"'{f}'" for f in found)
        raise InputContractError(f"{label}: both {names} exist; keep one of them.")
    if not found:
        raise InputContractError(
            f"{label}: no file matches '{text}' (looked for {path.name}.parquet, "
            f"{path.name}.csv and a folder {path.name}/)."
        )
    return str(found[0])


def _matching_files(spec: str, label: str) -> list[str]:
    """Files a spec names: itself, a directory's parquet (else CSV) files, or a glob's matches."""
    spec = resolve_spec(spec, label)
    if _GLOB_CHARACTERS & set(spec):
        files = sorted(p for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not files:
            raise InputContractError(f"{label}: no file matches '{spec}'.")
        return files
    path = Path(spec)
    if path.is_dir():
        for pattern in ("*.parquet", "*.pq", "*.csv", "*.csv.gz"):
            files = sorted(str(p) for p in path.glob(pattern) if p.is_file())
            if files:
                return files
        raise InputContractError(f"{label}: no parquet or CSV file in directory '{spec}'.")
    if not path.is_file():
        raise InputContractError(f"{label}: no file matches '{spec}'.")
    return [spec]


def _file_format(files: Sequence[str], spec: str, label: str) -> FileFormat:
    formats: set[FileFormat] = set()
    for file in files:
        name = file.lower()
        found = next((fmt for suffix, fmt in _SUFFIXES.items() if name.endswith(suffix)), None)
        if found is None:
            raise InputContractError(
                f"{label}: '{file}' is neither a parquet nor a CSV file "
                "(expected .parquet, .pq, .csv or .csv.gz)."
            )
        formats.add(found)
    if len(formats) > 1:
        raise InputContractError(
            f"{label}: '{spec}' matches both parquet and CSV files; point it at one kind."
        )
    return formats.pop()


def _read_csv(
    con: ibis.BaseBackend,
    files: list[str],
    text_columns: Collection[str],
    detect_types_on_all_rows: bool,
) -> ibis.Table:
    if con.name != "duckdb":
        # Other backends get no DuckDB reader options; their own type inference applies.
        return con.read_csv(files)
    options: dict[str, Any] = {"sample_size": -1} if detect_types_on_all_rows else {}
    sniffed = con.read_csv(files, **options)
    # Match names case-insensitively, as the contracts do; DuckDB refuses types for absent ones.
    wanted = {name.upper() for name in text_columns}
    as_text = {c: "VARCHAR" for c in sniffed.columns if clean_name(c).upper() in wanted}
    if not as_text:
        return sniffed
    return con.read_csv(files, types=as_text, **options)
