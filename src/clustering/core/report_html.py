"""The category manager's report of one run: a single self-contained HTML page.

Everything is inline — styles, a few lines of JavaScript for the store search, and the charts
drawn as SVG and coloured HTML tables — so the file opens offline, from disk or an e-mail, with
no network access at all. Built from plain tables (:class:`ReportData`); nothing here reads
files or talks to Dagster.

Sections (each an element with a fixed ``id``, which the browser test checks): ``overview``,
``quality`` (data-quality facts), ``warnings``, ``changes`` (against the previous run, or, for a
what-if, against the current result), ``external`` (the external clusters), one ``cat-…``
section per category (k-curve with the chosen k, cluster sizes before and after merging, the
need-state index heatmap, labels, stores moved and overridden), ``overrides`` and ``stores``
(find a store's clusters).
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from clustering.core.comparison import Comparison
from clustering.core.tables import as_text

#: Rows listed per table before "… and N more" (the CSV exports have them all).
MAX_LISTED = 200


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, as recorded for one run."""

    title: str
    run_id: str
    recorded_at: str
    env: str
    scenario: str
    final: pd.DataFrame  # the final table (with OVERRIDDEN, OVERRIDE_REASON)
    merging_summary: pd.DataFrame
    k_curves: pd.DataFrame  # TRACK + models table
    profiles: pd.DataFrame  # TRACK + profiles table
    overrides: pd.DataFrame  # audit of the overrides
    quality: Mapping[str, Any] = field(default_factory=dict)
    scope: Sequence[str] = ()
    parameter_changes: Sequence[str] = ()
    changes: Comparison | None = None
    changes_against: str = ""


def slug(name: str) -> str:
    """An id-safe form of a category name: ``CANDY/SNACKS`` → ``candy-snacks``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "category"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _number(value: object, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{float(value):,.{digits}f}"
    return _e(value)


def _table(
    header: Sequence[str], rows: Iterable[Sequence[object]], css: str = "", limit: int = MAX_LISTED
) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    total = 0
    for row in rows:
        total += 1
        if total <= limit:
            body.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>")
    more = (
        f'<p class="more">… and {total - limit:,} more rows (see the CSV exports).</p>'
        if total > limit
        else ""
    )
    return (
        f'<table class="{css}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{more}"
    )


# -- charts -----------------------------------------------------------------------------------


def k_curve_svg(curve: pd.DataFrame, width: int = 380, height: int = 190) -> str:
    """Silhouette (solid, left scale) and BIC (dashed, scaled to the same height) against k;
    the chosen k is marked. Inadmissible k (a cluster below the minimum size) are hollow."""
    curve = curve[curve["k"] >= 2].sort_values("k")
    if curve.empty:
        return '<p class="muted">One cluster: no k-curve.</p>'
    left, right, top, bottom = 42, 12, 14, 30
    ks = [int(k) for k in curve["k"]]
    k_min, k_max = min(ks), max(ks)

    def x(k: float) -> float:
        span = max(k_max - k_min, 1)
        return left + (k - k_min) / span * (width - left - right)

    def y(value: float, low: float, high: float) -> float:
        span = high - low if high > low else 1.0
        return top + (1.0 - (value - low) / span) * (height - top - bottom)

    silhouette = [float(v) for v in curve["silhouette"]]
    bic = [float(v) for v in curve["bic"]]
    finite = [v for v in silhouette if math.isfinite(v)]
    s_low = min([0.0, *finite])
    s_high = 1.0
    parts = [
        f'<svg class="kcurve" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="k-curve">'
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        if tick < s_low:
            continue
        ty = y(tick, s_low, s_high)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{ty + 4:.1f}" class="tick" text-anchor="end">{tick:g}</text>'
        )
    for k in ks:
        parts.append(
            f'<text x="{x(k):.1f}" y="{height - 12}" class="tick" text-anchor="middle">{k}</text>'
        )
    parts.append(
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 1}" class="axis" '
        'text-anchor="middle">k (number of clusters)</text>'
    )
    chosen = curve[curve["chosen"].astype(bool)]
    if len(chosen):
        cx = x(int(chosen["k"].iloc[0]))
        # The label goes left of the line when the line is near the right edge.
        right_side = cx < width * 0.65
        label_x, anchor = (cx + 4, "start") if right_side else (cx - 4, "end")
        parts.append(
            f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{top}" y2="{height - bottom}" class="chosen"/>'
            f'<text x="{label_x:.1f}" y="{top + 10}" class="chosen-label" '
            f'text-anchor="{anchor}">chosen k = {int(chosen["k"].iloc[0])}</text>'
        )
    finite_bic = [v for v in bic if math.isfinite(v)]
    if len(finite_bic) >= 2:
        b_low, b_high = min(finite_bic), max(finite_bic)
        # Lower BIC is better: drawn upside down so that "higher on the chart" is better for both.
        points = [
            f"{x(k):.1f},{y(b_high - b + b_low, b_low, b_high):.1f}"
            for k, b in zip(ks, bic, strict=True)
            if math.isfinite(b)
        ]
        parts.append(f'<polyline points="{" ".join(points)}" class="bic"/>')
    points = [
        f"{x(k):.1f},{y(s, s_low, s_high):.1f}"
        for k, s in zip(ks, silhouette, strict=True)
        if math.isfinite(s)
    ]
    if points:
        parts.append(f'<polyline points="{" ".join(points)}" class="silhouette"/>')
    for k, s, ok in zip(ks, silhouette, curve["admissible"].astype(bool), strict=True):
        if math.isfinite(s):
            css = "dot" if ok else "dot hollow"
            parts.append(
                f'<circle cx="{x(k):.1f}" cy="{y(s, s_low, s_high):.1f}" r="3.2" class="{css}">'
                f"<title>k={k}: silhouette {s:.3f}{'' if ok else ' (a cluster too small)'}"
                "</title></circle>"
            )
    parts.append("</svg>")
    legend = (
        '<p class="legend"><span class="sw silhouette"></span> silhouette (higher = better '
        'separated) <span class="sw bic"></span> BIC, inverted (higher = better fit) '
        '<span class="sw hollow"></span> not allowed: a cluster below the minimum size</p>'
    )
    return "".join(parts) + legend


def _index_colour(index: float) -> str:
    """Blue below the average (100), orange above; the further, the stronger."""
    if not math.isfinite(index):
        return "#f3f3f3"
    strength = min(abs(math.log(max(index, 1.0) / 100.0)) / math.log(3.0), 1.0)
    if index >= 100:
        r, g, b = 255, round(255 - 125 * strength), round(255 - 215 * strength)
    else:
        r, g, b = round(255 - 200 * strength), round(255 - 110 * strength), 255
    return f"rgb({r},{g},{b})"


def heatmap(profile: pd.DataFrame, row_names: Mapping[int, str]) -> str:
    """Cluster × feature table of the index against the average (100), coloured."""
    if profile.empty:
        return '<p class="muted">No profile recorded.</p>'
    features = list(dict.fromkeys(profile["FEATURE"]))
    grid = profile.pivot_table(index="CLUSTER", columns="FEATURE", values="INDEX", aggfunc="first")
    head = "".join(f'<th class="rot"><span>{_e(f)}</span></th>' for f in features)
    rows = []
    for cluster in sorted(grid.index):
        cells = []
        for feature in features:
            cell = grid.at[cluster, feature] if feature in grid.columns else None
            value = float(cell) if isinstance(cell, int | float | np.number) else float("nan")
            text = "–" if not math.isfinite(value) else f"{value:.0f}"
            cells.append(
                f'<td style="background:{_index_colour(value)}" '
                f'title="{_e(feature)}: index {text}">{text}</td>'
            )
        name = row_names.get(int(cluster), str(cluster))
        rows.append(f'<tr><th class="rowname">{_e(name)}</th>{"".join(cells)}</tr>')
    return (
        '<div class="scroll"><table class="heat"><thead><tr><th></th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        '<p class="legend">Index: the cluster\'s mean against the average of all stores '
        "(100 = average; 150 = half as much again). "
        '<span class="sw" style="background:rgb(55,145,255)"></span> below '
        '<span class="sw" style="background:rgb(255,130,40)"></span> above</p>'
    )


def _details(summary: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{_e(summary)}</summary>{body}</details>"


def _bar(value: int, largest: int, css: str = "") -> str:
    width = 0 if largest <= 0 else max(1.0, 100.0 * value / largest)
    return f'<span class="bar {css}" style="width:{width:.1f}%"></span> {value:,}'


# -- sections ---------------------------------------------------------------------------------


def _labels(profiles: pd.DataFrame, track: str, category: str) -> dict[int, tuple[int, str]]:
    rows = profiles[(profiles["TRACK"] == track) & (profiles["CATEGORY"] == category)]
    first = rows.drop_duplicates("CLUSTER")
    return {
        int(c): (int(n), str(label))
        for c, n, label in zip(first["CLUSTER"], first["STORES"], first["LABEL"], strict=True)
    }


def _chosen(k_curves: pd.DataFrame, track: str) -> pd.DataFrame:
    rows = k_curves[(k_curves["TRACK"] == track) & k_curves["chosen"].astype(bool)]
    return rows.set_index("CATEGORY")


def report_warnings(data: ReportData) -> list[str]:
    """What a category manager should know before using the clusters."""
    notes: list[str] = []
    for track in ("internal", "external"):
        chosen = _chosen(data.k_curves, track)
        for category, row in chosen.iterrows():
            name = "the external features" if track == "external" else str(category)
            if row.get("FALLBACK"):
                notes.append(f"{name}: {row['FALLBACK']}.")
            several = int(row["k"]) > 1
            stability, floor = float(row["stability"]), float(row.get("STABILITY_FLOOR", np.nan))
            if several and stability < floor:
                notes.append(
                    f"{name}: stability {stability:.2f} is below {floor:.2f}; the clusters "
                    "change when the stores are resampled."
                )
            silhouette = float(row["silhouette"])
            floor = float(row.get("SILHOUETTE_FLOOR", np.nan))
            if several and silhouette < floor:
                notes.append(
                    f"{name}: silhouette {silhouette:.2f} is below {floor:.2f}; the clusters "
                    "overlap."
                )
    for _, row in data.merging_summary.iterrows():
        if str(row.get("NOTE") or ""):
            notes.append(f"{row['CATEGORY']}: {row['NOTE']}.")
    missing_ext = int(data.final.drop_duplicates("STORE_NBR")["EXTERNAL_CLUSTER"].isna().sum())
    if missing_ext:
        notes.append(
            f"{missing_ext} stores have no external features: their final cluster comes from "
            "their need-state mix alone."
        )
    unmatched = data.quality.get("unmatched_sales_pct")
    if isinstance(unmatched, int | float) and unmatched > 0:
        notes.append(
            f"{unmatched:.2f} % of sales are of SKUs missing from the need-state map and were "
            "left out of the shares."
        )
    if len(data.overrides):
        review = data.overrides[data.overrides["STATUS"] == "review"]
        for store, category, note in zip(
            review["STORE_NBR"], review["CATEGORY"], review["NOTE"], strict=True
        ):
            notes.append(f"Override of store {store} in {category} needs review: {note}")
    return notes


def _overview(data: ReportData) -> str:
    final = data.final
    chosen = _chosen(data.k_curves, "internal")
    summary = data.merging_summary.set_index("CATEGORY") if len(data.merging_summary) else None
    overridden = final.groupby("CATEGORY")["OVERRIDDEN"].sum() if "OVERRIDDEN" in final else None
    stores = final["CATEGORY"].value_counts()
    rows = []
    for category in sorted(stores.index):
        model = chosen.loc[category] if category in chosen.index else None
        merged = (
            summary.loc[category] if summary is not None and category in summary.index else None
        )
        rows.append(
            [
                f'<a href="#cat-{slug(category)}">{_e(category)}</a>',
                _number(int(stores[category])),
                _number(int(model["k"])) if model is not None else "–",
                _number(float(model["stability"])) if model is not None else "–",
                _number(float(model["silhouette"])) if model is not None else "–",
                _number(int(merged["FINAL_CLUSTERS"])) if merged is not None else "–",
                _number(int(merged["SMALLEST_FINAL_CLUSTER"])) if merged is not None else "–",
                _number(int(merged["REASSIGNED_STORES"])) if merged is not None else "–",
                _number(int(overridden[category])) if overridden is not None else "0",
            ]
        )
    external = _chosen(data.k_curves, "external")
    ext_line = ""
    if len(external):
        row = external.iloc[0]
        ext_line = (
            f"<p>External clusters: k = {int(row['k'])}, stability "
            f"{_number(float(row['stability']))}, silhouette {_number(float(row['silhouette']))}"
            ' (<a href="#external">profiles</a>).</p>'
        )
    cards = [
        ("categories", final["CATEGORY"].nunique()),
        ("stores", final["STORE_NBR"].nunique()),
        ("store × category rows", len(final)),
        ("final clusters", final.groupby("CATEGORY")["REBALANCED_CLUSTER"].nunique().sum()),
        ("stores moved by merging", int(final["REASSIGNED"].sum())),
        ("overridden", int(final["OVERRIDDEN"].sum()) if "OVERRIDDEN" in final else 0),
    ]
    card_html = "".join(
        f'<div class="card"><b>{_number(int(v))}</b><span>{_e(k)}</span></div>' for k, v in cards
    )
    table = _table(
        [
            "category",
            "stores",
            "internal k",
            "stability",
            "silhouette",
            "final clusters",
            "smallest",
            "moved",
            "overridden",
        ],
        rows,
        "numbers",
    )
    return (
        f'<section id="overview"><h2>Overview</h2><div class="cards">{card_html}</div>'
        f"{ext_line}{table}"
        '<p class="muted">Stability: agreement (adjusted Rand index) of the clusters found on '
        "resamples of the stores; 1 = always the same. Silhouette: how well stores sit in their "
        "own cluster (above 0.5 is clear). Moved: stores merging put into another part of their "
        "internal cluster because their own part was too small.</p></section>"
    )


QUALITY_LABELS = {
    "sales_rows": "sales rows read",
    "unmatched_skus": "SKUs missing from the need-state map",
    "unmatched_sales_pct": "% of sales of those SKUs (left out)",
    "stores_without_matched_sales": "store × category pairs without mapped sales (not clustered)",
    "external_stores": "stores with external features",
    "external_features": "external features used",
    "dropped_external_columns": "external columns not used (text or identifiers)",
    "stores_without_external": "stores without external features",
    "duplicate_external_rows": "duplicate external rows dropped",
}


def _quality(data: ReportData) -> str:
    rows = []
    for key, label in QUALITY_LABELS.items():
        if key not in data.quality:
            continue
        value = data.quality[key]
        if isinstance(value, dict):
            shown = ", ".join(f"{_e(k)} ({_e(v)})" for k, v in value.items()) or "none"
        elif isinstance(value, float):
            shown = _number(value, 2)
        else:
            shown = _number(value)
        rows.append([_e(label), shown])
    body = _table(["fact", "value"], rows) if rows else '<p class="muted">Not recorded.</p>'
    return f'<section id="quality"><h2>Data quality</h2>{body}</section>'


def _warnings(data: ReportData) -> str:
    notes = report_warnings(data)
    body = (
        "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"
        if notes
        else '<p class="ok">Nothing to flag: every category clustered as configured.</p>'
    )
    return f'<section id="warnings"><h2>Warnings ({len(notes)})</h2>{body}</section>'


#: Moved stores listed in the report's changes section (the compare command lists all).
MOVED_STORES_LISTED = 1000


def _changes(data: ReportData) -> str:
    if data.changes is None:
        return (
            '<section id="changes"><h2>Changes</h2><p class="muted">'
            "No earlier run to compare with.</p></section>"
        )
    summary = data.changes.summary
    rows = [
        [
            f'<a href="#cat-{slug(str(r["CATEGORY"]))}">{_e(r["CATEGORY"])}</a>',
            _number(float(r["ARI"])),
            f"{int(r['MOVED']):,} of {int(r['STORES']):,}",
            f"{int(r['CLUSTERS_A'])} → {int(r['CLUSTERS_B'])}",
        ]
        for _, r in summary.iterrows()
    ]
    params = (
        "<p>Parameters changed: " + "; ".join(_e(c) for c in data.parameter_changes) + ".</p>"
        if data.parameter_changes
        else "<p>Same parameters.</p>"
    )
    moved = data.changes.moved
    listed = moved.head(MOVED_STORES_LISTED)
    moved_rows = [
        [_e(c), _e(s), _e(a), _e(b)]
        for c, s, a, b in zip(
            listed["CATEGORY"],
            listed["STORE_NBR"],
            listed["CLUSTER_A"],
            listed["CLUSTER_B"],
            strict=True,
        )
    ]
    more = (
        f'<p class="muted">The first {len(listed):,} of {len(moved):,} are listed; '
        "<code>python -m clustering compare</code> writes them all to stores.csv.</p>"
        if len(moved) > len(listed)
        else ""
    )
    moved_table = (
        "<details><summary>Stores that changed cluster "
        f"({len(moved):,})</summary>"
        + _table(["category", "store", "was in", "now in"], moved_rows)
        + more
        + "</details>"
        if len(moved)
        else "<p>No store changed cluster.</p>"
    )
    return (
        f'<section id="changes"><h2>Changes since {_e(data.changes_against)}</h2>{params}'
        + _table(["category", "agreement (ARI)", "stores moved", "clusters"], rows, "numbers")
        + '<p class="muted">Clusters are matched by the stores they share, whatever their '
        "names; a store moved when it is not in the counterpart of its earlier cluster.</p>"
        + moved_table
        + "</section>"
    )


def _external(data: ReportData) -> str:
    curve = data.k_curves[data.k_curves["TRACK"] == "external"]
    profile = data.profiles[data.profiles["TRACK"] == "external"]
    labels = (
        {
            c: v
            for c, v in _labels(data.profiles, "external", str(profile["CATEGORY"].iloc[0])).items()
        }
        if len(profile)
        else {}
    )
    names = {c: f"E{c} ({n:,} stores)" for c, (n, _) in labels.items()}
    label_rows = [[f"E{c}", _number(n), _e(label)] for c, (n, label) in sorted(labels.items())]
    return (
        '<section id="external"><h2>External clusters</h2>'
        "<p>Who lives around the stores, competition and traffic; one clustering for every "
        "category.</p>"
        f'<div class="row"><div>{k_curve_svg(curve)}</div><div>'
        + _table(["cluster", "stores", "label"], label_rows)
        + "</div></div>"
        + heatmap(profile, names)
        + "</section>"
    )


def _final_labels(
    final_label: str, internal: dict[int, tuple[int, str]], external: dict[int, tuple[int, str]]
) -> str:
    match = re.fullmatch(r"I(\d+)(?:-(.*))?", final_label)
    if not match:
        return "all stores of the category"
    parts = [internal.get(int(match.group(1)), (0, ""))[1]]
    if match.group(2):
        ext = [
            external.get(int(e[1:]), (0, ""))[1]
            for e in match.group(2).split("+")
            if e[1:].isdigit()
        ]
        if ext:
            parts.append(" | ".join(f"external: {t}" for t in ext))
    return "; ".join(p for p in parts if p)


def _category(
    data: ReportData,
    category: str,
    external_labels: dict[int, tuple[int, str]],
    parts: _Parts,
) -> str:
    final = parts.final.get(category, data.final.iloc[:0])
    curve = parts.curves.get(category, data.k_curves.iloc[:0])
    profile = parts.profiles.get(category, data.profiles.iloc[:0])
    internal_labels = _labels(data.profiles, "internal", category)
    chosen = curve[curve["chosen"].astype(bool)]
    facts = ""
    if len(chosen):
        row = chosen.iloc[0]
        facts = (
            f"<p>{len(final):,} stores; chosen k = {int(row['k'])} "
            f"({_e(row.get('SELECTION', ''))}), "
            f"stability {_number(float(row['stability']))}, silhouette "
            f"{_number(float(row['silhouette']))}.</p>"
        )
        if row.get("FALLBACK"):
            facts += f'<p class="warn">{_e(row["FALLBACK"])}.</p>'

    # Sizes before (internal clusters) and after merging (final clusters inside each).
    internal_sizes = final["INTERNAL_CLUSTER"].value_counts()
    final_sizes = final["REBALANCED_CLUSTER"].value_counts()
    largest = int(internal_sizes.max()) if len(internal_sizes) else 0
    size_rows = []
    # Only the two columns: filtering the whole frame per cluster was half the report's time.
    internal, rebalanced = final["INTERNAL_CLUSTER"], final["REBALANCED_CLUSTER"]
    for cluster in sorted(internal_sizes.index):
        size_rows.append(
            [f"<b>I{int(cluster)}</b>", _bar(int(internal_sizes[cluster]), largest), "", ""]
        )
        members = rebalanced[internal == cluster].value_counts()
        for label in sorted(members.index):
            size_rows.append(
                [
                    "",
                    "",
                    _e(label),
                    _bar(int(final_sizes[label]), largest, "final"),
                ]
            )
    sizes = _table(
        ["internal cluster", "stores before merging", "final cluster", "stores after merging"],
        size_rows,
        "sizes",
        limit=10_000,
    )

    names = {c: f"I{c} ({n:,} stores)" for c, (n, _) in internal_labels.items()}
    label_rows = [
        [
            _e(label),
            _number(int(final_sizes[label])),
            _e(_final_labels(str(label), internal_labels, external_labels)),
        ]
        for label in sorted(final_sizes.index)
    ]
    moved = final[final["REASSIGNED"].astype(bool)]
    moved_rows = [
        [_e(store), _e(demand), _e(final_cluster), _number(distance)]
        for store, demand, final_cluster, distance in zip(
            moved["STORE_NBR"].tolist(),
            moved["DEMAND_CLUSTER"].tolist(),
            moved["REBALANCED_CLUSTER"].tolist(),
            moved["DISTANCE"].tolist(),
            strict=True,
        )
    ]
    overridden = (
        final[final["OVERRIDDEN"].astype(bool)] if "OVERRIDDEN" in final else final.iloc[:0]
    )
    override_rows = [
        [_e(r["STORE_NBR"]), _e(r["REBALANCED_CLUSTER"]), _e(r["OVERRIDE_REASON"])]
        for _, r in overridden.iterrows()
    ]
    moved_html = (
        _details(
            f"{len(moved_rows)} stores",
            _table(["store", "own pair", "final cluster", "distance"], moved_rows),
            open_=len(moved_rows) <= 10,
        )
        if moved_rows
        else '<p class="muted">No store was moved.</p>'
    )
    override_html = (
        _table(["store", "pinned to", "reason"], override_rows)
        if override_rows
        else '<p class="muted">No override in this category.</p>'
    )
    return (
        f'<section class="category" id="cat-{slug(category)}"><h2>{_e(category)}</h2>{facts}'
        f'<div class="row"><div><h3>k-curve</h3>{k_curve_svg(curve)}</div>'
        f"<div><h3>Final clusters</h3>"
        + _table(["final cluster", "stores", "what sets it apart"], label_rows)
        + "</div></div>"
        + "<h3>Need-state profile of the internal clusters</h3>"
        + heatmap(profile, names)
        + f"<h3>Cluster sizes before and after merging</h3>{sizes}"
        + f'<div class="row"><div><h3>Stores moved by merging ({len(moved_rows)})</h3>'
        + f"{moved_html}</div>"
        + f"<div><h3>Stores overridden ({len(override_rows)})</h3>{override_html}</div></div>"
        + "</section>"
    )


def _overrides(data: ReportData) -> str:
    audit = data.overrides
    if audit.empty:
        body = (
            '<p class="muted">No overrides. Pin a store to a final cluster in the overrides file '
            "(STORE_NBR, CATEGORY, CLUSTER, REASON); every run honours it.</p>"
        )
    else:
        rows = [
            [
                _e(r["STORE_NBR"]),
                _e(r["CATEGORY"]),
                _e(r["PINNED_CLUSTER"]),
                _e(r["MODEL_CLUSTER"] if pd.notna(r["MODEL_CLUSTER"]) else "–"),
                _e(r["FINAL_CLUSTER"] if pd.notna(r["FINAL_CLUSTER"]) else "–"),
                f'<span class="status {_e(r["STATUS"])}">{_e(r["STATUS"])}</span>',
                _e(r["REASON"]),
                _e(r.get("APPROVED_BY") or ""),
                _e(r["NOTE"]),
            ]
            for _, r in audit.iterrows()
        ]
        body = _table(
            [
                "store",
                "category",
                "pinned",
                "model's cluster",
                "final",
                "status",
                "reason",
                "approved by",
                "note",
            ],
            rows,
        )
    return f'<section id="overrides"><h2>Overrides ({len(audit)})</h2>{body}</section>'


def _store_data(data: ReportData) -> str:
    """Compact JSON for the store search: per category the stores and their clusters.

    Written category by category: with millions of store × category rows, the Python lists of
    every category at once would cost more than the whole rest of the report.
    """
    final = data.final
    parts = []
    for category, positions in sorted(final.groupby("CATEGORY").indices.items()):
        rows = final.iloc[positions].sort_values("STORE_NBR")
        codes, uniques = pd.factorize(as_text(rows["REBALANCED_CLUSTER"]), sort=True)
        flags = rows["REASSIGNED"].astype(bool).astype(int) + 2 * (
            rows["OVERRIDDEN"].astype(bool).astype(int) if "OVERRIDDEN" in rows else 0
        )
        external: list[object] = (
            pd.to_numeric(rows["EXTERNAL_CLUSTER"]).astype("Int64").astype(object).tolist()
        )
        parts.append(
            json.dumps(
                {
                    "name": str(category),
                    "labels": [str(u) for u in uniques],
                    "stores": rows["STORE_NBR"].astype("int64").tolist(),
                    "final": codes.tolist(),
                    "internal": rows["INTERNAL_CLUSTER"].astype("int64").tolist(),
                    "external": [None if v is pd.NA else int(cast(int, v)) for v in external],
                    "flags": flags.astype("int64").tolist(),
                },
                separators=(",", ":"),
            )
        )
    text = '{"categories":[' + ",".join(parts) + "]}"
    return text.replace("</", "<\\/")


SEARCH_SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById('store-data').textContent);
  var input = document.getElementById('store-search');
  var out = document.getElementById('store-result');
  function find(list, value) {
    var lo = 0, hi = list.length - 1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (list[mid] === value) return mid;
      if (list[mid] < value) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
  }
  function text(value) {
    var s = document.createElement('span'); s.textContent = value; return s.innerHTML;
  }
  function show() {
    var store = parseInt(input.value, 10);
    if (isNaN(store)) { out.innerHTML = '<p class="muted">Type a store number.</p>'; return; }
    var rows = [];
    data.categories.forEach(function (c) {
      var i = find(c.stores, store);
      if (i < 0) return;
      var f = c.flags[i];
      rows.push('<tr><td>' + text(c.name) + '</td><td><b>' + text(c.labels[c.final[i]]) +
        '</b></td><td>I' + c.internal[i] + '</td><td>' +
        (c.external[i] === null ? 'none' : 'E' + c.external[i]) + '</td><td>' +
        ((f & 1) ? 'moved by merging' : '') + ((f & 2) ? ' overridden' : '') + '</td></tr>');
    });
    out.innerHTML = rows.length
      ? '<table class="found"><thead><tr><th>category</th><th>final cluster</th>' +
        '<th>internal</th><th>external</th><th>note</th></tr></thead><tbody>' +
        rows.join('') + '</tbody></table>'
      : '<p class="warn">Store ' + store + ' is not in this run.</p>';
  }
  input.addEventListener('input', show);
  show();
})();
"""

STYLE = """
body {
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
  margin:0;
  color:#1d2630;
  background:#f6f7f9;
}
header {background:#17324d; color:#fff; padding:14px 24px}
header h1 {margin:0; font-size:21px}
header p {margin:4px 0 0; opacity:.85}
nav {
  background:#fff;
  border-bottom:1px solid #dde2e8;
  padding:8px 24px;
  position:sticky;
  top:0;
  z-index:2;
}
nav a {margin-right:14px; color:#17324d; text-decoration:none; font-weight:600}
main {padding:8px 24px 40px}
section {
  background:#fff;
  border:1px solid #dde2e8;
  border-radius:8px;
  padding:12px 18px;
  margin:16px 0;
}
h2 {margin:4px 0 10px; font-size:18px; color:#17324d}
h3 {font-size:14px; margin:14px 0 6px}
table {border-collapse:collapse; margin:6px 0}
th,td {padding:3px 8px; border-bottom:1px solid #eceff3; text-align:left; vertical-align:top}
th {background:#f1f4f7; font-weight:600}
table.numbers td {text-align:right}
table.numbers td:first-child {text-align:left}
.cards {display:flex; flex-wrap:wrap; gap:10px; margin-bottom:8px}
.card {background:#eef3f8; border-radius:6px; padding:8px 14px; min-width:110px}
.card b {display:block; font-size:20px; color:#17324d}
.card span {font-size:12px; color:#4b5a69}
.row {display:flex; flex-wrap:wrap; gap:28px}
.row>div {flex:1 1 360px; min-width:0}
.muted {color:#6b7785}
.warn {color:#a94400}
.ok {color:#1d7a3a}
.scroll {overflow-x:auto}
table.heat td {text-align:center; min-width:38px; font-variant-numeric:tabular-nums}
th.rot {height:120px; white-space:nowrap; vertical-align:bottom; padding:0 2px}
th.rot span {
  writing-mode:vertical-rl;
  transform:rotate(180deg);
  font-weight:500;
  font-size:12px;
}
th.rowname {white-space:nowrap}
.bar {
  display:inline-block;
  height:10px;
  background:#4f7fb0;
  vertical-align:middle;
  max-width:200px;
}
.bar.final {background:#e08a2e}
table.sizes td:nth-child(2),table.sizes td:nth-child(4) {width:240px}
svg.kcurve .grid {stroke:#e4e8ed}
svg.kcurve .tick {font-size:10px; fill:#6b7785}
svg.kcurve .axis {font-size:11px; fill:#4b5a69}
svg.kcurve .silhouette {fill:none; stroke:#17324d; stroke-width:2}
svg.kcurve .bic {fill:none; stroke:#e08a2e; stroke-width:1.6; stroke-dasharray:5 3}
svg.kcurve .dot {fill:#17324d}
svg.kcurve .dot.hollow {fill:#fff; stroke:#17324d}
svg.kcurve .chosen {stroke:#1d7a3a; stroke-width:2}
svg.kcurve .chosen-label {font-size:11px; fill:#1d7a3a; font-weight:600}
.legend {font-size:12px; color:#4b5a69}
.sw {
  display:inline-block;
  width:16px;
  height:4px;
  vertical-align:middle;
  margin:0 3px 0 8px;
  background:#17324d;
}
.sw.bic {background:#e08a2e}
.sw.hollow {width:8px; height:8px; border-radius:50%; background:#fff; border:1px solid #17324d}
.status {padding:1px 6px; border-radius:4px; background:#e6f2e9}
.status.review {background:#fde3d0}
.status.mapped {background:#fff1c9}
input#store-search {
  font-size:16px;
  padding:6px 10px;
  width:220px;
  border:1px solid #b9c3cd;
  border-radius:6px;
}
.banner {background:#fff1c9; border:1px solid #e9c46a; padding:8px 14px; border-radius:6px}
.more {font-size:12px; color:#6b7785}
details summary {cursor:pointer; font-weight:600; margin:8px 0}
"""


class _Rows(Mapping[str, pd.DataFrame]):
    """A table's rows per category, each taken from the table when asked for: one category's
    copy at a time instead of a second copy of a table of millions of rows."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self._positions: dict[str, np.ndarray] = (
            {}
            if frame.empty or "CATEGORY" not in frame
            else {str(c): np.asarray(rows) for c, rows in frame.groupby("CATEGORY").indices.items()}
        )

    def __getitem__(self, category: str) -> pd.DataFrame:
        return self._frame.iloc[self._positions[category]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)


@dataclass(frozen=True)
class _Parts:
    """The final table, internal k-curves and internal profiles by category (a filter per
    category over a million-row final table cost seconds at 100 categories)."""

    final: Mapping[str, pd.DataFrame]
    curves: Mapping[str, pd.DataFrame]
    profiles: Mapping[str, pd.DataFrame]

    @classmethod
    def of(cls, data: ReportData) -> _Parts:
        def internal(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[frame["TRACK"] == "internal"] if "TRACK" in frame else frame.iloc[:0]

        return cls(
            _Rows(data.final), _Rows(internal(data.k_curves)), _Rows(internal(data.profiles))
        )


def render_report(data: ReportData) -> str:
    """The whole report as one HTML document."""
    categories = sorted(data.final["CATEGORY"].unique())
    parts = _Parts.of(data)
    ext_profile = data.profiles[data.profiles["TRACK"] == "external"]
    external_labels = (
        _labels(data.profiles, "external", str(ext_profile["CATEGORY"].iloc[0]))
        if len(ext_profile)
        else {}
    )
    when = data.recorded_at[:19].replace("T", " ")
    subtitle = f"run {_e(data.run_id)} · {_e(when)} UTC · environment {_e(data.env)}"
    banner = ""
    if data.scenario:
        scope = f" limited to {', '.join(data.scope)}" if data.scope else ""
        banner = (
            f'<p class="banner">What-if scenario <b>{_e(data.scenario)}</b>{_e(scope)}: the '
            "current result is untouched. "
            + (
                f"Changed: {_e('; '.join(data.parameter_changes))}."
                if data.parameter_changes
                else ""
            )
            + "</p>"
        )
    nav = (
        '<a href="#overview">Overview</a><a href="#quality">Data quality</a>'
        '<a href="#warnings">Warnings</a><a href="#changes">Changes</a>'
        '<a href="#external">External clusters</a><a href="#categories">Categories</a>'
        '<a href="#overrides">Overrides</a><a href="#stores">Find a store</a>'
    )
    category_links = " · ".join(f'<a href="#cat-{slug(c)}">{_e(c)}</a>' for c in categories)
    sections = [
        _overview(data),
        _quality(data),
        _warnings(data),
        _changes(data),
        _external(data),
        f'<section id="categories"><h2>Categories</h2><p>{category_links}</p></section>',
        *(_category(data, c, external_labels, parts) for c in categories),
        _overrides(data),
        '<section id="stores"><h2>Find a store</h2>'
        '<label>Store number <input id="store-search" type="search" inputmode="numeric" '
        'placeholder="e.g. 1270" autocomplete="off"></label><div id="store-result"></div>'
        "</section>",
    ]
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_e(data.title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{STYLE}</style></head><body>"
        f"<header><h1>{_e(data.title)}</h1><p>{subtitle}</p></header><nav>{nav}</nav><main>"
        + banner
        + "".join(sections)
        + f'</main><script type="application/json" id="store-data">{_store_data(data)}</script>'
        f"<script>{SEARCH_SCRIPT}</script></body></html>\n"
    )
