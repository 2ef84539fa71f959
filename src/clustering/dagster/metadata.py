"""Small pieces of run metadata shared by the assets and the IO manager."""

from __future__ import annotations

import dagster as dg
import pandas as pd

PREVIEW_ROWS = 5


def preview(frame: pd.DataFrame, rows: int = PREVIEW_ROWS) -> dg.MetadataValue:
    """The first rows of ``frame`` as a Markdown table for the UI."""
    head = frame.head(rows)
    columns = [str(c) for c in head.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in head.iterrows():
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))
