"""Internal preprocessing: sales × need-state map → per-category store × need-state shares.

The heavy part (aggregating tens of millions of sales rows) is written once as Ibis expressions
and runs where the data lives: DuckDB by default, Spark or a SQL warehouse unchanged. Only
portable operations are used (group-by aggregates, joins, windows, casts, conditionals). The
result, one row per category × store × need state, is small; :func:`share_matrix` turns one
category's rows of it, as stored, into a wide pandas matrix (:func:`share_matrices` every
category of an executed table).

Inputs are the validated tables of :mod:`clustering.core.contracts` (internal sales with
SKU_NBR, STORE_NBR, CAT_DSC, TOTAL_SALES; the map with PRODUCT_ID, NEED_STATE, ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from clustering.core.errors import InputContractError
from clustering.core.tables import numbered_stores

MAX_LISTED_STORES = 1000
"""At most this many (category, store) pairs without matched sales are listed in the summary."""


def _need_states_per_sku(need_states: ibis.Table) -> ibis.Table:
    """Distinct (PRODUCT_ID, NEED_STATE) pairs with N_STATES, the SKU's number of need states."""
    pairs = need_states.select("PRODUCT_ID", "NEED_STATE").distinct()
    return pairs.mutate(N_STATES=pairs.NEED_STATE.count().over(group_by=pairs.PRODUCT_ID))


def _numbered(values: ibis.Table, column: str, code: str) -> ibis.Table:
    """The distinct values of ``column``, numbered 0, 1, ... in sorted order as ``code``."""
    distinct = values.select(column).distinct()
    return distinct.mutate(**{code: ibis.row_number().over(order_by=distinct[column])})


def _code_table(column: str, code: str, names: list[str]) -> ibis.Table:
    """``names``, sorted by Python (code-point order: the byte order of UTF-8 text, in which
    DuckDB and Spark sort it), numbered 0, 1, ... as ``code``."""
    return ibis.memtable(
        pa.table(
            {column: pa.array(names, pa.string()), code: pa.array(range(len(names)), pa.int64())}
        )
    )


def _coded_sales(
    sales: ibis.Table, need_states: ibis.Table, categories: ibis.Table, states: ibis.Table
) -> ibis.Table:
    """:func:`need_state_sales` with the category and need state as their codes in
    ``categories`` (CAT_DSC, CATEGORY_CODE) and ``states`` (NEED_STATE, NEED_STATE_CODE).

    Grouping 108 M sales rows into 40 M groups keyed by two texts needed DuckDB's 1 GB and ran
    out of memory within 768 MB; keyed by integers it runs within 512 MB (and within 256 MB,
    spilling), and the sort after it, on integers, takes half the time.
    """
    per_sku = _need_states_per_sku(need_states)
    mapped = per_sku.join(states, "NEED_STATE").select("PRODUCT_ID", "NEED_STATE_CODE", "N_STATES")
    coded = sales.join(categories, "CAT_DSC")
    joined = coded.join(mapped, coded.SKU_NBR == mapped.PRODUCT_ID)
    return joined.group_by("CATEGORY_CODE", "STORE_NBR", "NEED_STATE_CODE").aggregate(
        SALES=(joined.TOTAL_SALES.cast(dt.float64) / joined.N_STATES).sum().cast(dt.float64)
    )


def _coded_shares(long: ibis.Table) -> ibis.Table:
    """SHARE (%) of each row of :func:`_coded_sales` in its store's category sales."""
    # Store totals by a second (small) aggregation joined back, not a window over the long
    # table: DuckDB sorts the whole table for the window, 1.9 s more at 21.6 M sales rows.
    keys = ["CATEGORY_CODE", "STORE_NBR"]
    totals = long.group_by(*keys).aggregate(STORE_TOTAL=long.SALES.sum())
    totals = totals.filter(totals.STORE_TOTAL > 0)
    with_total = long.join(totals, keys)
    return with_total.select(
        *keys,
        "NEED_STATE_CODE",
        "SALES",
        SHARE=(with_total.SALES * 100.0 / with_total.STORE_TOTAL).cast(dt.float64),
    )


def _lazy_codes(sales: ibis.Table, need_states: ibis.Table) -> tuple[ibis.Table, ibis.Table]:
    return (
        _numbered(sales, "CAT_DSC", "CATEGORY_CODE"),
        _numbered(need_states, "NEED_STATE", "NEED_STATE_CODE"),
    )


def _named(coded: ibis.Table, categories: ibis.Table, states: ibis.Table) -> ibis.Table:
    """``coded`` with CATEGORY and NEED_STATE in place of their codes."""
    with_names = coded.join(categories, "CATEGORY_CODE").join(states, "NEED_STATE_CODE")
    rest = [c for c in coded.columns if c not in ("CATEGORY_CODE", "STORE_NBR", "NEED_STATE_CODE")]
    return with_names.select(with_names.CAT_DSC.name("CATEGORY"), "STORE_NBR", "NEED_STATE", *rest)


def need_state_sales(sales: ibis.Table, need_states: ibis.Table) -> ibis.Table:
    """Sales per CATEGORY × STORE_NBR × NEED_STATE (float64 SALES), for SKUs in the map.

    Each sales row joins the (small) map directly and one aggregation sums it: sales are
    usually one row per store and SKU already, so summing per store and SKU first shrank
    nothing and cost a second pass (measured 2.9x slower at 21.6 M rows). A SKU mapped to n
    distinct need states gives 1/n of its sales to each, so the matched total is conserved.
    Unmatched SKUs are left out here and counted by :func:`match_summary`, as are rows without
    a category or need state (the input contracts reject them). The aggregation is keyed by
    integer codes of the category and need state, named at the end.
    """
    categories, states = _lazy_codes(sales, need_states)
    return _named(_coded_sales(sales, need_states, categories, states), categories, states)


def share_table(sales: ibis.Table, need_states: ibis.Table) -> ibis.Table:
    """Long share table: CATEGORY, STORE_NBR, NEED_STATE, SALES and SHARE.

    SHARE is the need state's percentage of the store's matched sales in the category, so it
    sums to 100 per CATEGORY × STORE_NBR. Stores whose matched category sales total 0 (or that
    have none) have no defined shares and are left out; :func:`match_summary` lists them.
    :func:`stream_shares` gives the same rows, sorted, without holding them, and
    :func:`shares_frame` executed (both faster than executing this expression).
    """
    categories, states = _lazy_codes(sales, need_states)
    long = _coded_sales(sales, need_states, categories, states)
    return _named(_coded_shares(long), categories, states)


class MatchSummary(BaseModel):
    """How well the sales matched the need-state map: what was left out, and where."""

    model_config = ConfigDict(frozen=True)

    sales_rows: int
    skus: int
    stores: int
    categories: int
    total_sales: float
    unmatched_skus: int
    unmatched_sales_rows: int
    unmatched_sales: float
    unmatched_sales_pct: float
    multi_need_state_skus: int
    stores_without_matched_sales: list[tuple[str, int]]
    stores_without_matched_sales_count: int
    store_category_pairs: int = 0
    category_mismatch_skus: int = 0
    category_mismatches: list[tuple[int, str, str]] = []

    @property
    def unmatched_skus_pct(self) -> float:
        """Share (%) of the sold SKUs missing from the need-state map."""
        return 100.0 * self.unmatched_skus / self.skus if self.skus else 0.0

    @property
    def category_mismatch_pct(self) -> float:
        """Share (%) of the mapped SKUs whose map CATEGORY is not the sales' CAT_DSC."""
        mapped = self.skus - self.unmatched_skus
        return 100.0 * self.category_mismatch_skus / mapped if mapped else 0.0

    @property
    def stores_without_matched_sales_pct(self) -> float:
        """Share (%) of the store × category pairs with sales that get no shares."""
        pairs = self.store_category_pairs
        return 100.0 * self.stores_without_matched_sales_count / pairs if pairs else 0.0

    def describe(self) -> str:
        """A few human lines for logs and the command line."""
        lines = [
            f"Sales: {_count(self.sales_rows, 'row')}, {_count(self.skus, 'SKU')}, "
            f"{_count(self.stores, 'store')}, {_count(self.categories, 'category', 'categories')}, "
            f"total {self.total_sales:,.2f}.",
            f"Unmatched: {_count(self.unmatched_skus, 'SKU')} not in the need-state map "
            f"({_count(self.unmatched_sales_rows, 'row')}, {self.unmatched_sales:,.2f} sales = "
            f"{self.unmatched_sales_pct:.2f}% of the total) left out of the shares.",
        ]
        if self.multi_need_state_skus:
            lines.append(
                f"{_count(self.multi_need_state_skus, 'SKU')} with sales in several need states: "
                "sales split evenly between them."
            )
        if self.category_mismatch_skus:
            shown_skus = "; ".join(
                f"SKU {sku}: sales say {sold!r}, the map {mapped!r}"
                for sku, sold, mapped in self.category_mismatches[:3]
            )
            lines.append(
                f"{_count(self.category_mismatch_skus, 'mapped SKU')} "
                f"({self.category_mismatch_pct:.1f}%) sold in another category than the "
                f"need-state map gives it ({shown_skus})."
            )
        if self.stores_without_matched_sales_count:
            shown = self.stores_without_matched_sales[:5]
            listed = ", ".join(f"store {store} in {category}" for category, store in shown)
            more = self.stores_without_matched_sales_count - len(shown)
            lines.append(
                f"{_count(self.stores_without_matched_sales_count, 'store × category pair')} "
                f"without matched sales get no shares: {listed}"
                + (f" and {more:,} more." if more > 0 else ".")
            )
        return "\n".join(lines)


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"


def match_summary(sales: ibis.Table, need_states: ibis.Table) -> MatchSummary:
    """Count matched and unmatched sales, split SKUs and stores left without shares.

    Two passes over the sales on their backend: one sums per SKU and sales category (a few
    thousand rows, brought back and examined here), one per category and store joined to the
    map (counted there, one row back); a third lists the first :data:`MAX_LISTED_STORES`
    pairs without matched sales, only when there are any. Five passes took 3.1 s at 21.6 M
    rows, these 1.8 s.
    """
    pairs = need_states.select("PRODUCT_ID", "NEED_STATE").distinct()
    mapped = pairs.group_by("PRODUCT_ID").aggregate(N_STATES=pairs.count())

    # Sums per SKU and category joined to the map afterwards, instead of distinct counts with
    # filters over every sales row: mixing the two made DuckDB peak at ~1.2 GB at 20M rows.
    sold = ibis.memtable(
        sales.group_by("SKU_NBR", "CAT_DSC")
        .aggregate(ROWS=sales.count(), SKU_SALES=sales.TOTAL_SALES.cast(dt.float64).sum())
        .to_pyarrow()
    )
    per_sku = sold.group_by("SKU_NBR").aggregate(
        ROWS=sold.ROWS.sum(), SKU_SALES=sold.SKU_SALES.sum()
    )
    skus = per_sku.left_join(mapped, per_sku.SKU_NBR == mapped.PRODUCT_ID)
    sku_unmatched = skus.N_STATES.isnull()
    totals: dict[str, Any] = (
        skus.aggregate(
            sales_rows=skus.ROWS.sum(),
            skus=skus.count(),
            total_sales=skus.SKU_SALES.sum(),
            unmatched_skus=sku_unmatched.ifelse(1, 0).sum(),
            unmatched_sales_rows=skus.ROWS.sum(where=sku_unmatched),
            unmatched_sales=skus.SKU_SALES.sum(where=sku_unmatched),
            multi_need_state_skus=(skus.N_STATES > 1).ifelse(1, 0).sum(),
        )
        .to_pyarrow()
        .to_pylist()[0]
    )

    joined = sales.left_join(mapped, sales.SKU_NBR == mapped.PRODUCT_ID)
    unmatched = joined.N_STATES.isnull()
    amount = joined.TOTAL_SALES.cast(dt.float64)
    # A pair with no matched row has a NULL matched total; one whose matched rows sum to 0 has 0.
    per_store = joined.group_by(CATEGORY=joined.CAT_DSC, STORE_NBR=joined.STORE_NBR).aggregate(
        MATCHED=amount.sum(where=~unmatched)
    )
    lacking = per_store.MATCHED.isnull() | (per_store.MATCHED <= 0)
    extent: dict[str, Any] = (
        per_store.aggregate(
            pairs=per_store.count(),
            stores=per_store.STORE_NBR.nunique(),
            categories=per_store.CATEGORY.nunique(),
            without=lacking.ifelse(1, 0).sum(),
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    without = int(extent["without"] or 0)
    listed = []
    if without:
        listed = (
            per_store.filter(lacking)
            .select("CATEGORY", "STORE_NBR")
            .order_by(["CATEGORY", "STORE_NBR"])
            .limit(MAX_LISTED_STORES)
            .to_pyarrow()
            .to_pylist()
        )

    total = float(totals["total_sales"] or 0.0)
    unmatched_sales = float(totals["unmatched_sales"] or 0.0)
    mismatch_count, mismatches = _category_mismatches(sold, need_states)
    return MatchSummary(
        sales_rows=int(totals["sales_rows"] or 0),
        skus=int(totals["skus"] or 0),
        stores=int(extent["stores"] or 0),
        categories=int(extent["categories"] or 0),
        total_sales=total,
        unmatched_skus=int(totals["unmatched_skus"] or 0),
        unmatched_sales_rows=int(totals["unmatched_sales_rows"] or 0),
        unmatched_sales=unmatched_sales,
        unmatched_sales_pct=100.0 * unmatched_sales / total if total > 0 else 0.0,
        multi_need_state_skus=int(totals["multi_need_state_skus"] or 0),
        stores_without_matched_sales=[(str(r["CATEGORY"]), int(r["STORE_NBR"])) for r in listed],
        stores_without_matched_sales_count=without,
        store_category_pairs=int(extent["pairs"] or 0),
        category_mismatch_skus=mismatch_count,
        category_mismatches=mismatches,
    )


def _category_mismatches(
    sales: ibis.Table, need_states: ibis.Table
) -> tuple[int, list[tuple[int, str, str]]]:
    """Mapped SKUs sold under a CAT_DSC the map does not give them (names compared without
    case and surrounding spaces): how many, and the first few (SKU, sales, map). ``sales``
    needs SKU_NBR and CAT_DSC only (the per-SKU sums of :func:`match_summary` do)."""
    sold = sales.select("SKU_NBR", "CAT_DSC").distinct()
    mapped = need_states.select("PRODUCT_ID", "CATEGORY").distinct()
    agree = mapped.group_by("PRODUCT_ID").aggregate(
        CATEGORIES=mapped.CATEGORY.strip().upper().collect()
    )
    joined = sold.join(agree, sold.SKU_NBR == agree.PRODUCT_ID)
    wrong = joined.filter(~joined.CATEGORIES.contains(joined.CAT_DSC.strip().upper()))
    first = mapped.group_by("PRODUCT_ID").aggregate(CATEGORY=mapped.CATEGORY.min())
    examples = (
        wrong.join(first, wrong.SKU_NBR == first.PRODUCT_ID)
        .select("SKU_NBR", "CAT_DSC", "CATEGORY")
        .order_by("SKU_NBR")
        .limit(3)
        .to_pyarrow()
        .to_pylist()
    )
    count = wrong.SKU_NBR.nunique().to_pyarrow().as_py() if examples else 0
    return int(count or 0), [
        (int(r["SKU_NBR"]), str(r["CAT_DSC"]), str(r["CATEGORY"])) for r in examples
    ]


def no_matching_keys_error(
    sales: ibis.Table, need_states: ibis.Table, source: str
) -> InputContractError:
    """The sentence for a need-state map whose PRODUCT_IDs match no SKU_NBR of the sales."""
    sales_ids = sales.select("SKU_NBR").distinct().order_by("SKU_NBR").limit(3)
    map_ids = need_states.select("PRODUCT_ID").distinct().order_by("PRODUCT_ID").limit(3)
    shown_sales = ", ".join(str(r["SKU_NBR"]) for r in sales_ids.to_pyarrow().to_pylist())
    shown_map = ", ".join(str(r["PRODUCT_ID"]) for r in map_ids.to_pyarrow().to_pylist())
    n_map = need_states.PRODUCT_ID.nunique().to_pyarrow().as_py()
    return InputContractError(
        f"need-state map '{source}': none of its {int(n_map or 0):,} PRODUCT_IDs matches a "
        f"SKU_NBR of the sales (the map's ids look like {shown_map}; the sales' like "
        f"{shown_sales}); check that the map belongs to these sales."
    )


def shares_frame(sales: ibis.Table, need_states: ibis.Table) -> pd.DataFrame:
    """The rows of :func:`share_table` in pandas, with CATEGORY and NEED_STATE as categoricals,
    read through :func:`stream_shares`: the engine aggregates and sorts codes and the names are
    added here (21.6 M sales rows: 6 s, where executing the named :func:`share_table`
    expression took 9-10 s), and each name is a Python string once, not once per row.
    :func:`share_matrices` accepts this or the executed expression."""
    arrow = stream_shares(sales, need_states).read_all()
    for name in ("CATEGORY", "NEED_STATE"):
        index = arrow.schema.get_field_index(name)
        arrow = arrow.set_column(index, name, pc.dictionary_encode(arrow.column(name)))
    frame: pd.DataFrame = arrow.to_pandas()
    return frame


SHARE_BATCH_ROWS = 500_000
"""Rows per Arrow batch when shares are streamed out of the engine (about 20 MB each)."""


SHARE_SCHEMA = pa.schema(
    [
        ("CATEGORY", pa.string()),
        ("STORE_NBR", pa.int64()),
        ("NEED_STATE", pa.string()),
        ("SALES", pa.float64()),
        ("SHARE", pa.float64()),
    ]
)
"""The columns of :func:`share_table` as :func:`stream_shares` gives them."""


def stream_shares(sales: ibis.Table, need_states: ibis.Table) -> pa.RecordBatchReader:
    """The rows of :func:`share_table` as a stream of Arrow batches sorted by category and
    store, for writing to the warehouse without holding the table in memory.

    At 50,000 stores × 100 categories the long table has ~40 M rows: executed into pandas
    it took 14 GB. Sorted by CATEGORY, each category's rows are contiguous in the stored
    table, so reading one category back skips the others. A store's need states follow in no
    particular order (:func:`share_matrix` sorts them).

    The engine aggregates and sorts integer codes of the category and need state (numbered in
    the order of their names, so sorting codes sorts names); each batch gets its names here,
    as it streams. At 107.8 M sales rows this halved the query's time and DuckDB's memory
    (text keys and text carried through the sort: 67 s within 1 GB; codes: 31 s within 512 MB).
    The names come from their own queries just before: on a live engine table, a category
    whose first sales arrive between the two is left out of this run.
    """
    # The names first (two small queries), so the big one neither lists them again nor
    # carries text through its aggregation and sort.
    category_names = _sorted_names(sales, "CAT_DSC")
    state_names = _sorted_names(need_states, "NEED_STATE")
    categories = _code_table("CAT_DSC", "CATEGORY_CODE", category_names)
    states = _code_table("NEED_STATE", "NEED_STATE_CODE", state_names)
    coded = _coded_shares(_coded_sales(sales, need_states, categories, states))
    ordered = coded.order_by("CATEGORY_CODE", "STORE_NBR")
    backend = ordered.get_backend()
    if backend.name == "duckdb":
        # Ibis 12's DuckDB batches call a method DuckDB 2.0 renamed; ask DuckDB directly. An
        # empty execution first makes Ibis register the expression's in-memory tables (the
        # need-state map, the codes) with the connection.
        ordered.limit(0).to_pyarrow()
        relation = backend.con.sql(ibis.to_sql(ordered, dialect="duckdb"))
        reader: pa.RecordBatchReader = relation.to_arrow_reader(batch_size=SHARE_BATCH_ROWS)
    else:
        reader = ordered.to_pyarrow_batches(chunk_size=SHARE_BATCH_ROWS)
    return _with_names(
        reader, pa.array(category_names, pa.string()), pa.array(state_names, pa.string())
    )


def _sorted_names(table: ibis.Table, column: str) -> list[str]:
    found = table.select(column).distinct().to_pyarrow().column(column).to_pylist()
    return sorted(str(name) for name in found if name is not None)


def _with_names(
    coded: pa.RecordBatchReader, categories: pa.Array, states: pa.Array
) -> pa.RecordBatchReader:
    """The coded batches with the category and need state named (:data:`SHARE_SCHEMA`)."""

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in coded:
            yield pa.RecordBatch.from_arrays(
                [
                    categories.take(batch.column("CATEGORY_CODE")),
                    batch.column("STORE_NBR").cast(pa.int64()),
                    states.take(batch.column("NEED_STATE_CODE")),
                    batch.column("SALES").cast(pa.float64()),
                    batch.column("SHARE").cast(pa.float64()),
                ],
                schema=SHARE_SCHEMA,
            )

    return pa.RecordBatchReader.from_batches(SHARE_SCHEMA, batches())


def share_matrices(shares: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One wide share matrix per category from the executed :func:`share_table`.

    Each matrix has index STORE_NBR (int64, sorted), one column per NEED_STATE of the category
    (sorted), values SHARE in percent (float64), 0.0 where a store has no sales in a need state.
    Built with a numpy scatter over integer codes: DataFrame pivots per category were measured
    20-40x slower at 10k stores × 100 categories. :func:`share_matrix` builds the same matrix
    from one category's rows as read from the warehouse.
    """
    if shares.empty:
        return {}
    category_codes, categories = _sorted_codes(shares["CATEGORY"])
    state_codes, states = _sorted_codes(shares["NEED_STATE"])
    stores = shares["STORE_NBR"].to_numpy(dtype=np.int64)
    values = shares["SHARE"].to_numpy(dtype=np.float64)

    # Group rows by category once, then slice per category. A stable sort of 16-bit codes is a
    # radix sort in numpy: ~12x faster than on 64-bit codes at 9M rows.
    narrow = np.int16 if len(categories) <= np.iinfo(np.int16).max else np.int64
    order = np.argsort(category_codes.astype(narrow), kind="stable")
    counts = np.bincount(category_codes, minlength=len(categories))
    bounds = np.concatenate(([0], np.cumsum(counts)))

    matrices: dict[str, pd.DataFrame] = {}
    for code, category in enumerate(categories):
        if not counts[code]:
            continue
        rows = order[bounds[code] : bounds[code + 1]]
        # Codes follow the sorted names, so sorted unique codes give sorted need-state columns.
        store_ids, store_index = np.unique(stores[rows], return_inverse=True)
        state_ids, state_index = np.unique(state_codes[rows], return_inverse=True)
        matrix = np.zeros((len(store_ids), len(state_ids)), dtype=np.float64)
        matrix[store_index, state_index] = values[rows]
        matrices[category] = pd.DataFrame(
            matrix,
            index=pd.Index(store_ids, dtype=np.int64, name="STORE_NBR"),
            columns=pd.Index(states[state_ids].tolist(), dtype=object, name="NEED_STATE"),
        )
    return matrices


SHARE_MATRIX_COLUMNS = ("STORE_NBR", "NEED_STATE", "SHARE")
"""The columns of the stored share table that :func:`share_matrix` reads."""


def share_matrix(rows: pa.Table) -> pd.DataFrame:
    """One category's share matrix, as :func:`share_matrices` gives it, from that category's
    rows of the stored share table (:data:`SHARE_MATRIX_COLUMNS`, Arrow).

    The stored table is sorted by category and store (:func:`stream_shares`), so the stores come
    in order and are numbered by where they change (any order still works, by sorting); need
    states are coded by Arrow, never turned into a Python string per row. 2.5x faster than
    going through pandas at 10,000 stores, where it ran once per category in the step's own
    process.
    """
    store_ids, store_index = numbered_stores(rows.column("STORE_NBR"))
    states = rows.column("NEED_STATE")
    if pa.types.is_dictionary(states.type):
        # Already coded, maybe with names no row uses (which must not become columns) and a
        # dictionary per chunk: decoded first.
        states = states.cast(states.type.value_type)
    if states.null_count:
        raise ValueError("share table column NEED_STATE has missing values")
    encoded = pc.dictionary_encode(states.combine_chunks())
    rank, names = _rank_by_name(np.array(encoded.dictionary.to_pylist(), dtype=object))
    matrix = np.zeros((len(store_ids), len(names)), dtype=np.float64)
    codes = rank[encoded.indices.to_numpy(zero_copy_only=False)]
    matrix[store_index, codes] = rows.column("SHARE").to_numpy(zero_copy_only=False)
    return pd.DataFrame(
        matrix,
        index=pd.Index(store_ids, dtype=np.int64, name="STORE_NBR"),
        columns=pd.Index(names.tolist(), dtype=object, name="NEED_STATE"),
    )


def _sorted_codes(column: pd.Series) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.object_]]:
    """Integer codes of a text column whose order follows the sorted names, and the names.

    Categoricals (from :func:`shares_frame`) reuse their codes instead of hashing millions of
    strings again; their category order is arbitrary, so codes are re-ranked by name.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        names = np.array([str(c) for c in column.cat.categories], dtype=object)
        codes = column.cat.codes.to_numpy()
    else:
        codes, uniques = pd.factorize(column)
        names = np.array([str(u) for u in uniques], dtype=object)
    if (codes < 0).any():
        raise ValueError(f"share table column {column.name} has missing values")
    rank, ordered = _rank_by_name(names)
    return rank[codes], ordered


def _rank_by_name(
    names: npt.NDArray[np.object_],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.object_]]:
    """Each name's position in sorted order, and the names sorted: codes into ``names`` map
    through the first to codes into the second."""
    by_name = np.argsort(names, kind="stable")
    rank = np.empty(len(names), dtype=np.intp)
    rank[by_name] = np.arange(len(names))
    return rank, names[by_name]
