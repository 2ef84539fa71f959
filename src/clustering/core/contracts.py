"""Data contracts of the inputs, checked on Ibis tables where the data lives.

Each ``validate_*`` function checks one input (columns present, values readable as their type,
keys filled, sales not negative, not empty) and returns the table with the contract columns cast
to their types. The checks cost one aggregate query; only when it finds a problem does a second,
limited query fetch the first offending rows for the error message. Every failure is one
:class:`~clustering.core.errors.InputContractError` sentence naming the source, the column, what
was expected, how many rows break it and the first of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import ibis
import ibis.expr.datatypes as dt

from clustering.core.errors import InputContractError

Kind = Literal["int", "str", "float"]

INTERNAL_SALES_LABEL = "internal sales"
NEED_STATES_LABEL = "need-state map"
EXTERNAL_LABEL = "external features"

_TARGET_TYPES: dict[Kind, dt.DataType] = {"int": dt.int64, "str": dt.string, "float": dt.float64}
_EXPECTED: dict[Kind, str] = {"int": "an integer", "str": "text", "float": "a number"}
_MAX_SHOWN_ROWS = 3


@dataclass(frozen=True)
class ContractColumn:
    """One column of a contract: its name, type and the value rules it must follow."""

    name: str
    kind: Kind
    required_value: bool = True
    non_negative: bool = False

    @property
    def expected(self) -> str:
        """What the column must hold, as a reader would say it ("a number ≥ 0")."""
        return _EXPECTED[self.kind] + (" ≥ 0" if self.non_negative else "")


@dataclass(frozen=True)
class Contract:
    """The columns an input must have and the columns that identify a row in error messages."""

    label: str
    columns: tuple[ContractColumn, ...]
    row_context: tuple[str, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        """Names of the contract columns, in contract order."""
        return tuple(column.name for column in self.columns)


INTERNAL_SALES = Contract(
    INTERNAL_SALES_LABEL,
    (
        ContractColumn("SKU_NBR", "int"),
        ContractColumn("STORE_NBR", "int"),
        ContractColumn("CAT_DSC", "str"),
        ContractColumn("TOTAL_SALES", "float", non_negative=True),
    ),
    row_context=("SKU_NBR", "STORE_NBR"),
)
NEED_STATES = Contract(
    NEED_STATES_LABEL,
    (
        ContractColumn("PRODUCT_ID", "int"),
        ContractColumn("CATEGORY", "str"),
        ContractColumn("NEED_STATE", "str"),
        ContractColumn("CDT", "str", required_value=False),
    ),
    row_context=("PRODUCT_ID",),
)
EXTERNAL = Contract(EXTERNAL_LABEL, (ContractColumn("STORE_NBR", "int"),), ("STORE_NBR",))


def validate_internal_sales(table: ibis.Table, source: str) -> ibis.Table:
    """Check the internal sales contract; return SKU_NBR, STORE_NBR, CAT_DSC, TOTAL_SALES typed.

    Extra columns are dropped. Raises :class:`InputContractError` naming ``source``.
    """
    checked = _check(table, source, INTERNAL_SALES)
    return _cast_contract_columns(checked, INTERNAL_SALES)


def validate_need_states(table: ibis.Table, source: str) -> ibis.Table:
    """Check the need-state map contract; return its distinct PRODUCT_ID, CATEGORY, NEED_STATE, CDT.

    Optional columns (attributes, planogram, ...) are accepted and dropped.
    """
    checked = _check(table, source, NEED_STATES)
    return _cast_contract_columns(checked, NEED_STATES).distinct()


def validate_external(table: ibis.Table, source: str) -> ibis.Table:
    """Check an external feature source; return it with STORE_NBR as int64, other columns as-is."""
    checked = _check(table, source, EXTERNAL)
    return checked.mutate(STORE_NBR=checked.STORE_NBR.cast(dt.int64))


def _cast_contract_columns(table: ibis.Table, contract: Contract) -> ibis.Table:
    return table.select(
        **{c.name: table[c.name].cast(_TARGET_TYPES[c.kind]) for c in contract.columns}
    )


def _check(table: ibis.Table, source: str, contract: Contract) -> ibis.Table:
    """Run every check of ``contract``; return the table with contract columns named exactly."""
    prefix = f"{contract.label} '{source}'"
    table = _match_column_case(table, contract)
    _check_columns_present(table, prefix, contract)
    _check_column_types(table, prefix, contract)

    # One aggregate query counts the rows and the offenders of every rule at once.
    problems = _problems(table, contract)
    metrics: dict[str, Any] = {"n_rows": table.count()}
    for i, problem in enumerate(problems):
        metrics[f"problem_{i}"] = problem.predicate.ifelse(1, 0).sum()
    counts = table.aggregate(**metrics).to_pyarrow().to_pylist()[0]

    if not counts["n_rows"]:
        raise InputContractError(f"{prefix} is empty (no rows).")
    for i, problem in enumerate(problems):
        offending = int(counts[f"problem_{i}"] or 0)
        if offending:
            shown = _first_rows(table, problem.predicate, contract, problem.column)
            raise InputContractError(
                f"{prefix}: column {problem.column.name} {problem.describe(offending)}, "
                f"first: {shown}."
            )
    return table


def _match_column_case(table: ibis.Table, contract: Contract) -> ibis.Table:
    """Rename ``sku_nbr`` to ``SKU_NBR`` when the exact name is absent and the match is unique.

    Warehouse exports sometimes lower-case names; accepting them is friendlier than failing.
    """
    present = set(table.columns)
    renames: dict[str, str] = {}
    for name in contract.column_names:
        if name in present:
            continue
        candidates = [c for c in table.columns if c.strip().upper() == name]
        if len(candidates) == 1:
            renames[name] = candidates[0]
    return table.rename(renames) if renames else table


def _check_columns_present(table: ibis.Table, prefix: str, contract: Contract) -> None:
    missing = [c for c in contract.columns if c.name not in table.columns]
    if not missing:
        return
    noun = "column" if len(missing) == 1 else "columns"
    listed = ", ".join(f"{c.name} (expected {c.expected})" for c in missing)
    found = ", ".join(table.columns) if table.columns else "none"
    raise InputContractError(f"{prefix}: missing {noun} {listed}; found columns {found}.")


def _check_column_types(table: ibis.Table, prefix: str, contract: Contract) -> None:
    """Reject column types that no value-level cast can fix (a date where a number belongs)."""
    for column in contract.columns:
        dtype = table[column.name].type()
        readable = column.kind == "str" or _is_number_or_text(dtype)
        if not readable:
            raise InputContractError(
                f"{prefix}: column {column.name} must be {column.expected}; "
                f"it has type {dtype} instead."
            )


def _is_number_or_text(dtype: dt.DataType) -> bool:
    return bool(
        dtype.is_integer() or dtype.is_floating() or dtype.is_decimal() or dtype.is_string()
    )


Rule = Literal["unreadable", "not finite", "missing value", "negative"]


@dataclass(frozen=True)
class _Problem:
    """A value rule of one column and the predicate selecting the rows that break it."""

    column: ContractColumn
    rule: Rule
    predicate: ibis.Value

    def describe(self, n: int) -> str:
        """The rule and the number of rows breaking it, e.g. "must be ≥ 0; 2 rows are negative"."""
        rows = f"{n:,} row" if n == 1 else f"{n:,} rows"
        if self.rule == "unreadable":
            return f"must be {self.column.expected}; {rows} cannot be read as one"
        if self.rule == "not finite":
            verb = "is" if n == 1 else "are"
            return f"must be a finite number; {rows} {verb} NaN or infinite"
        if self.rule == "missing value":
            return f"must have a value in every row; {rows} {'has' if n == 1 else 'have'} none"
        return f"must be ≥ 0; {rows} {'is' if n == 1 else 'are'} negative"


def _problems(table: ibis.Table, contract: Contract) -> list[_Problem]:
    """Every value rule of the contract with its row predicate, in reporting order."""
    problems: list[_Problem] = []
    for column in contract.columns:
        value = table[column.name]
        unreadable = _unreadable(value, column.kind)
        if unreadable is not None:
            floating = value.type().is_floating() and column.kind == "float"
            rule: Rule = "not finite" if floating else "unreadable"
            problems.append(_Problem(column, rule, unreadable))
        if column.required_value:
            problems.append(_Problem(column, "missing value", value.isnull()))
        if column.non_negative:
            problems.append(_Problem(column, "negative", value.try_cast(dt.float64) < 0))
    return problems


def _unreadable(value: ibis.Value, kind: Kind) -> ibis.Value | None:
    """Predicate for values present in the input that cannot be read as ``kind``, or None.

    NaN and infinity are not numbers a sales total or an id can take (and a NaN would poison
    every sum downstream). Backends round or truncate when casting 1.5 or '1.5' to an integer,
    so an integer must also survive the round trip through float64 unchanged.
    """
    dtype = value.type()
    if kind == "str" or dtype.is_integer() or dtype.is_decimal():
        return None
    as_float = value.try_cast(dt.float64)
    not_finite = as_float.isnull() | as_float.isnan() | as_float.isinf()
    if kind == "float":
        return value.notnull() & not_finite
    as_int = value.try_cast(dt.int64)
    return value.notnull() & (not_finite | as_int.isnull() | (as_float != as_int.cast(dt.float64)))


def _first_rows(
    table: ibis.Table, predicate: ibis.Value, contract: Contract, column: ContractColumn
) -> str:
    """The first offending rows as ``(COL=value, ...)`` groups, identifying columns first."""
    names = [*dict.fromkeys([*contract.row_context, column.name])]
    # Filtering on the predicate itself can skip NaN rows: DuckDB prunes Parquet row groups by
    # their statistics, which leave NaN out. A computed flag is never pushed down.
    flagged = table.mutate(__OFFENDS=predicate.ifelse(1, 0))
    offending = flagged.filter(flagged.__OFFENDS == 1)
    rows = offending.select(*names).limit(_MAX_SHOWN_ROWS).to_pyarrow().to_pylist()
    return ", ".join(
        "(" + ", ".join(f"{name}={_show(row[name])}" for name in names) + ")" for row in rows
    )


def _show(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return repr(value)
    return str(value)
