"""Small charts for run metadata: the k-curve evidence and the cluster sizes.

Pure functions from tables to SVG text, plus a helper that embeds an image in Markdown so the
Dagster UI shows it inline. Written directly as SVG: drawing them with matplotlib cost a
second to import and a second or more per chart on every run (measured at 10,000 stores ×
20 categories), for pictures of a few dozen lines and bars.
"""

from __future__ import annotations

import base64
from html import escape

import pandas as pd

MAX_CATEGORIES_SHOWN = 30
#: Colours of the lines and bar segments, repeated when there are more series.
PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
_FONT = 'font-family="sans-serif"'


def _colour(position: int) -> str:
    return PALETTE[position % len(PALETTE)]


def _text(x: float, y: float, text: str, size: int = 11, anchor: str = "start") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" {_FONT}>'
        f"{escape(text)}</text>"
    )


def _svg(width: int, height: int, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="white"/>'
        + "".join(body)
        + "</svg>"
    )


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    step = (high - low) / (count - 1)
    return [low + i * step for i in range(count)]


def k_curve_svg(models: pd.DataFrame, metric: str = "silhouette") -> str:
    """``metric`` against k, one line per category, the chosen k marked with a dot.

    ``models`` is a model table (CATEGORY, k, metric columns, chosen). With many categories only
    the first :data:`MAX_CATEGORIES_SHOWN` (by name) are drawn, which the title says.
    """
    categories = sorted(str(c) for c in models["CATEGORY"].unique())
    shown = categories[:MAX_CATEGORIES_SHOWN]
    rows = models[models["CATEGORY"].astype(str).isin(shown) & (models["k"] >= 2)]
    values = pd.to_numeric(rows[metric], errors="coerce")
    width, height = 640, 340
    left, right, top, bottom = 56, 16 + (150 if len(shown) <= 8 else 0), 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    k_low, k_high = (int(rows["k"].min()), int(rows["k"].max())) if len(rows) else (2, 3)
    v_low = float(values.min()) if values.notna().any() else 0.0
    v_high = float(values.max()) if values.notna().any() else 1.0
    if v_high - v_low < 1e-9:
        v_low, v_high = v_low - 0.5, v_high + 0.5
    k_span = max(k_high - k_low, 1)

    def x(k: float) -> float:
        return left + (k - k_low) / k_span * plot_w

    def y(v: float) -> float:
        return top + (v_high - v) / (v_high - v_low) * plot_h

    title = f"{metric.replace('_', ' ')} by k (dot = chosen k)"
    if len(categories) > len(shown):
        title += f", first {len(shown)} of {len(categories)} categories"
    body = [_text(width / 2, 18, title, 13, "middle")]
    for tick in _ticks(v_low, v_high):
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            'stroke="#e4e8ed"/>'
        )
        body.append(_text(left - 6, y(tick) + 4, f"{tick:.2f}", 10, "end"))
    for k in range(k_low, k_high + 1):
        body.append(_text(x(k), top + plot_h + 16, str(k), 10, "middle"))
    body.append(_text(left + plot_w / 2, height - 8, "k", 11, "middle"))
    body.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#9aa5b1"/>'
    )
    for position, category in enumerate(shown):
        curve = rows[rows["CATEGORY"].astype(str) == category].sort_values("k")
        points = [
            (x(float(k)), y(float(v)))
            for k, v in zip(curve["k"], pd.to_numeric(curve[metric], errors="coerce"), strict=True)
            if pd.notna(v)
        ]
        colour = _colour(position)
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.2" '
                'stroke-opacity="0.85"/>'
            )
        for k, v in zip(
            curve.loc[curve["chosen"].astype(bool), "k"],
            pd.to_numeric(curve.loc[curve["chosen"].astype(bool), metric], errors="coerce"),
            strict=True,
        ):
            if pd.notna(v):
                body.append(
                    f'<circle cx="{x(float(k)):.1f}" cy="{y(float(v)):.1f}" r="3.5" '
                    f'fill="{colour}"/>'
                )
        if len(shown) <= 8:
            ly = top + 12 + position * 16
            body.append(
                f'<line x1="{width - 160}" x2="{width - 144}" y1="{ly - 4}" y2="{ly - 4}" '
                f'stroke="{colour}" stroke-width="2"/>'
            )
            body.append(_text(width - 140, ly, category[:22], 10))
    return _svg(width, height, body)


def cluster_sizes_svg(assignments: pd.DataFrame, cluster_column: str = "CLUSTER") -> str:
    """Stacked bars: stores per cluster in each category (first categories by name)."""
    shown = sorted(str(c) for c in assignments["CATEGORY"].unique())[:MAX_CATEGORIES_SHOWN]
    rows = assignments.loc[assignments["CATEGORY"].isin(shown), ["CATEGORY", cluster_column]]
    counts = rows.groupby(["CATEGORY", cluster_column]).size().rename("STORES").reset_index()
    counts["CATEGORY"] = counts["CATEGORY"].astype(str)
    counts[cluster_column] = counts[cluster_column].astype(str)
    clusters = sorted(counts[cluster_column].unique())
    colour_of = {cluster: _colour(i) for i, cluster in enumerate(clusters)}
    totals = counts.groupby("CATEGORY")["STORES"].sum()
    largest = int(totals.max()) if len(totals) else 1
    bar_h, label_w, width = 18, 170, 640
    legend = len(clusters) <= 12
    height = 40 + len(shown) * (bar_h + 6) + (24 if legend else 0) + 20
    plot_w = width - label_w - 56  # room for the total after each bar
    body = [_text(width / 2, 18, "stores per cluster", 13, "middle")]
    for row, category in enumerate(shown):
        top = 32 + row * (bar_h + 6)
        body.append(_text(label_w - 6, top + bar_h - 5, category[:26], 10, "end"))
        offset = 0.0
        part = counts[counts["CATEGORY"] == category]
        for cluster, stores in zip(part[cluster_column], part["STORES"], strict=True):
            w = int(stores) / largest * plot_w
            body.append(
                f'<rect x="{label_w + offset:.1f}" y="{top}" width="{w:.1f}" height="{bar_h}" '
                f'fill="{colour_of[cluster]}"><title>{escape(category)} · {escape(cluster)}: '
                f"{int(stores)} stores</title></rect>"
            )
            offset += w
        body.append(_text(label_w + offset + 4, top + bar_h - 5, f"{int(totals[category])}", 10))
    if legend:
        ly = 32 + len(shown) * (bar_h + 6) + 14
        lx = float(label_w)
        for cluster in clusters:
            body.append(
                f'<rect x="{lx:.1f}" y="{ly - 9}" width="10" height="10" '
                f'fill="{colour_of[cluster]}"/>'
            )
            body.append(_text(lx + 14, ly, cluster, 10))
            lx += 24 + 7 * len(cluster)
    return _svg(width, height, body)


def markdown_image(svg: str, alt: str) -> str:
    """Markdown that shows ``svg`` inline (a data URL)."""
    encoded = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f"![{alt}](data:image/svg+xml;base64,{encoded})"
