"""Open the pipeline's three inputs where the configuration says they live.

Without ``inputs.backend_url`` every input is a file, folder or glob read through an in-memory
DuckDB connection. With it, each input whose table is named in ``inputs`` is read from that
SQL engine (any URL :func:`ibis.connect` understands) and the others stay files read through
DuckDB.

The raw-sales aggregation runs on the engine holding the sales (pushdown), so the sales are
never moved. Ibis cannot join tables of two backends, so when the need-state map lives
elsewhere than the sales, its validated rows are copied into a *temporary* table of the sales
engine: the map is small (one row per SKU × need state), temporary tables vanish with the
connection and need no write rights on the warehouse's schemas. An engine that cannot hold a
temporary table ends in a :class:`ConfigError` asking for both inputs from the same place.
External features are one row per store and are loaded into pandas wherever they come from.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal
from urllib.parse import urlsplit

import ibis
import pandas as pd
from ibis.common.exceptions import TableNotFound

from clustering.core.contracts import (
    EXTERNAL_LABEL,
    INTERNAL_SALES_LABEL,
    NEED_STATES_LABEL,
    validate_external,
    validate_internal_sales,
    validate_need_states,
)
from clustering.core.errors import ConfigError, InputContractError
from clustering.infra.config import AppConfig, redact_url
from clustering.io.readers import (
    connect,
    read_external_sources,
    read_internal_sales,
    read_need_states,
    resolve_spec,
)

FILES_BACKEND = "duckdb (files)"
"""What :attr:`PipelineInputs.backend` says when the sales are files read through DuckDB."""

Placement = Literal["files", "engine"]


@dataclass(frozen=True)
class PipelineInputs:
    """The inputs of one run, ready for ``core``.

    ``sales`` and ``need_states`` are lazy Ibis tables on the same backend, so the aggregation
    in :func:`clustering.core.internal_preprocessing.share_table` runs there; ``backend`` names
    that backend (``"duckdb (files)"`` or the engine URL with its password masked).

    Each input is opened and checked against its contract on first access (then kept): the
    sales check is a full scan, which an asset that needs only the external sources must not
    pay. Errors therefore surface on that first access; :meth:`describe` opens nothing.
    """

    backend: str
    sales_source: str
    need_states_source: str
    external_source_names: tuple[str, ...]
    need_states_copied: bool
    _opener: _Opener = field(repr=False, compare=False)

    @cached_property
    def sales(self) -> ibis.Table:
        """Validated internal sales: SKU_NBR, STORE_NBR, CAT_DSC, TOTAL_SALES."""
        return self._opener.sales()

    @cached_property
    def need_states(self) -> ibis.Table:
        """Validated need-state map (PRODUCT_ID, CATEGORY, NEED_STATE, CDT), beside the sales."""
        return self._opener.need_states()

    @cached_property
    def external_sources(self) -> list[tuple[str, pd.DataFrame]]:
        """Validated external feature sources as (source name, frame), loaded into pandas."""
        return self._opener.external_sources()

    def describe(self) -> str:
        """One line saying where each input comes from and where the aggregation runs."""
        copied = " (copied into the sales engine)" if self.need_states_copied else ""
        n = len(self.external_source_names)
        return (
            f"internal sales from {self.sales_source}; need states from "
            f"{self.need_states_source}{copied}; {n} external source{'' if n == 1 else 's'}; "
            f"aggregation runs on {self.backend}"
        )


class _Connections:
    """The DuckDB connection for files and the engine connection, each opened on first use."""

    def __init__(self, backend_url: str | None, memory_limit: str = "") -> None:
        self.backend_url = backend_url
        self.memory_limit = memory_limit
        self.shown_url = redact_url(backend_url) if backend_url else ""
        self._files: ibis.BaseBackend | None = None
        self._engine: ibis.BaseBackend | None = None

    def files(self) -> ibis.BaseBackend:
        if self._files is None:
            self._files = connect(memory_limit=self.memory_limit)
        return self._files

    def engine(self) -> ibis.BaseBackend:
        if self._engine is None:
            assert self.backend_url is not None
            try:
                self._engine = ibis.connect(self.backend_url)
            except Exception as exc:  # drivers raise many types; the user needs one sentence
                raise ConfigError(
                    f"inputs.backend_url: cannot connect to {self.shown_url}: {self.reason(exc)}."
                ) from None
        return self._engine

    def get(self, placement: Placement) -> ibis.BaseBackend:
        return self.engine() if placement == "engine" else self.files()

    def engine_table(self, name: str, label: str) -> ibis.Table:
        """Table ``name`` (``schema.table`` allowed) of the engine, or one clear sentence."""
        con = self.engine()
        database, _, table_name = name.rpartition(".")
        try:
            if database:
                return con.table(table_name, database=database)
            return con.table(table_name)
        except TableNotFound:
            raise InputContractError(f"{label}: no table '{name}' at {self.shown_url}.") from None
        except Exception as exc:  # some drivers report a missing table (or schema) otherwise
            raise InputContractError(
                f"{label}: cannot open table '{name}' at {self.shown_url}: {self.reason(exc)}."
            ) from None

    def reason(self, exc: BaseException) -> str:
        """First line of ``exc``, with the URL's password masked should a driver echo it."""
        text = str(exc).strip()
        reason = text.splitlines()[0].rstrip(".") if text else type(exc).__name__
        if self.backend_url:
            reason = reason.replace(self.backend_url, self.shown_url)
            password = _password(self.backend_url)
            if password:
                reason = reason.replace(password, "***")
        return reason


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:  # malformed port and the like: nothing to mask that we can find
        return None


def open_inputs(config: AppConfig) -> PipelineInputs:
    """The sales, need-state map and external sources ``config`` points at.

    Connects to ``inputs.backend_url`` now when any input is read from it (a bad URL or an
    unreachable engine is a :class:`ConfigError` here); each input is opened and validated on
    first access, raising :class:`InputContractError` for a missing file or table or a broken
    contract, and :class:`ConfigError` when the need-state map cannot join the sales' engine.
    """
    opener = _Opener(config)
    if opener.uses_engine:
        opener.cons.engine()
    return PipelineInputs(
        backend=opener.cons.shown_url if opener.sales_at == "engine" else FILES_BACKEND,
        sales_source=opener.sales_source,
        need_states_source=opener.need_states_source,
        external_source_names=opener.external_names,
        need_states_copied=opener.need_states_at != opener.sales_at,
        _opener=opener,
    )


class _Opener:
    """Decides where each input comes from (at once) and opens it (when asked)."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        inputs = config.inputs
        self.cons = _Connections(inputs.backend_url, inputs.duckdb_memory_limit)
        engine = inputs.backend_url is not None
        self.sales_table = inputs.internal_sales_table if engine else None
        self.need_states_table = inputs.need_states_table if engine else None
        self.external_tables = list(inputs.external_tables) if engine else []

        # Where the sales live decides where the aggregation runs.
        self.sales_at: Placement = "engine" if self.sales_table else "files"
        self.need_states_at: Placement = "engine" if self.need_states_table else "files"
        self.sales_source = self._where(self.sales_table, config.paths.internal_sales)
        self.need_states_source = self._where(self.need_states_table, config.paths.need_states)
        self.external_names = tuple(self.external_tables or config.paths.external)
        self.uses_engine = bool(self.sales_table or self.need_states_table or self.external_tables)

    def _where(self, table: str | None, files: str) -> str:
        if table:
            return f"table {table} at {self.cons.shown_url}"
        try:
            return resolve_spec(files, "input")  # the file the user has, not the name it has
        except InputContractError:
            return files

    def sales(self) -> ibis.Table:
        if self.sales_table:
            raw = self.cons.engine_table(self.sales_table, INTERNAL_SALES_LABEL)
            return validate_internal_sales(raw, self.sales_source)
        return read_internal_sales(self.cons.files(), self.config.paths.internal_sales)

    def need_states(self) -> ibis.Table:
        if self.need_states_table:
            raw = self.cons.engine_table(self.need_states_table, NEED_STATES_LABEL)
            table = validate_need_states(raw, self.need_states_source)
        else:
            table = read_need_states(self.cons.files(), self.config.paths.need_states)
        if self.need_states_at == self.sales_at:
            return table
        return self._copy_to_sales_backend(table)

    def external_sources(self) -> list[tuple[str, pd.DataFrame]]:
        if not self.external_tables:
            return read_external_sources(self.cons.files(), self.config.paths.external)
        sources: list[tuple[str, pd.DataFrame]] = []
        for name in self.external_tables:
            raw = self.cons.engine_table(name, EXTERNAL_LABEL)
            validated = validate_external(raw, self._where(name, ""))
            sources.append((name, validated.execute()))
        return sources

    def _copy_to_sales_backend(self, need_states: ibis.Table) -> ibis.Table:
        """The validated need-state map as a temporary table beside the sales."""
        # Executing first runs the map's query on its own backend; the explicit schema keeps
        # the contract types even for a column that is entirely NULL (CDT may be).
        rows = need_states.to_pyarrow()
        # A fresh name: overwriting a temporary table fails on DuckDB 2.0 with Ibis 12, and
        # two opens on one connection must not collide.
        name = f"clustering_need_states_{uuid.uuid4().hex[:12]}"
        target = self.cons.get(self.sales_at)
        try:
            return target.create_table(
                name, ibis.memtable(rows, schema=need_states.schema()), temp=True
            )
        except Exception as exc:  # each backend signals "no temp tables" differently
            raise ConfigError(
                "inputs: internal sales and the need-state map must come from the same place "
                f"(the engine holding {self.sales_source} cannot take a temporary copy of the "
                f"map: {self.cons.reason(exc)}); set both inputs.internal_sales_table and "
                "inputs.need_states_table, or neither."
            ) from None
