"""Small PNG charts for run metadata: the k-curve evidence and the cluster sizes.

Pure functions from tables to PNG bytes (matplotlib's Agg backend, no display needed), plus a
helper that embeds a PNG in Markdown so the Dagster UI shows it inline.
"""

from __future__ import annotations

import base64
import io
from types import ModuleType
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_CATEGORIES_SHOWN = 30


def _pyplot() -> ModuleType:
    """matplotlib's pyplot on the Agg backend (no display needed).

    Imported on first use, not with this module: it costs about a second, and every Dagster
    step process and UI reload imports the pipeline's definitions.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure: Figure) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def k_curve_png(models: pd.DataFrame, metric: str = "silhouette") -> bytes:
    """``metric`` against k, one line per category, the chosen k marked with a dot.

    ``models`` is a model table (CATEGORY, k, metric columns, chosen). With many categories only
    the first :data:`MAX_CATEGORIES_SHOWN` (by name) are drawn, which the title says.
    """
    plt = _pyplot()
    categories = sorted(models["CATEGORY"].unique())
    shown = categories[:MAX_CATEGORIES_SHOWN]
    figure, axes = plt.subplots(figsize=(7, 4))
    for category in shown:
        curve = models[(models["CATEGORY"] == category) & (models["k"] >= 2)].sort_values("k")
        (line,) = axes.plot(curve["k"], curve[metric], marker="", linewidth=1, alpha=0.8)
        chosen = curve[curve["chosen"]]
        axes.plot(chosen["k"], chosen[metric], "o", color=line.get_color())
    title = f"{metric.replace('_', ' ')} by k (dot = chosen k)"
    if len(categories) > len(shown):
        title += f", first {len(shown)} of {len(categories)} categories"
    axes.set_title(title)
    axes.set_xlabel("k")
    axes.set_ylabel(metric.replace("_", " "))
    axes.grid(alpha=0.3)
    if len(shown) <= 8:
        axes.legend(shown, fontsize=7, loc="best")
    return _png(figure)


def cluster_sizes_png(assignments: pd.DataFrame, cluster_column: str = "CLUSTER") -> bytes:
    """Stacked bars: stores per cluster in each category (first categories by name)."""
    plt = _pyplot()
    # The categories shown first: with a hundred categories, every other category's cluster
    # labels would become (empty) bar series and cost seconds to draw.
    shown = sorted(assignments["CATEGORY"].unique())[:MAX_CATEGORIES_SHOWN]
    rows = assignments[assignments["CATEGORY"].isin(shown)]
    counts = rows.groupby(["CATEGORY", cluster_column]).size().unstack(fill_value=0)
    counts = counts.sort_index()
    figure, axes = plt.subplots(figsize=(7, max(2.5, 0.3 * len(counts) + 1)))
    counts.plot.barh(stacked=True, ax=axes, legend=len(counts.columns) <= 12, width=0.8)
    axes.set_xlabel("stores")
    axes.set_ylabel("")
    axes.set_title("stores per cluster")
    axes.invert_yaxis()
    if len(counts.columns) <= 12:
        axes.legend(title=cluster_column.lower(), fontsize=7, loc="lower right")
    return _png(figure)


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown that shows ``png`` inline (a data URL)."""
    encoded = base64.b64encode(png).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"
