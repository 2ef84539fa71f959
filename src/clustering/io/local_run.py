"""Run the whole pipeline in this process: read inputs, run ``core``, write the results.

Used by ``python -m clustering cluster``, tests and benchmarks; the Dagster jobs run the same
stages as assets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clustering.core.engine import Progress
from clustering.core.params import PipelineParams
from clustering.core.pipeline import PipelineResult, run_pipeline
from clustering.core.reports import cluster_summaries, k_curves, run_summary
from clustering.io.readers import (
    connect,
    read_external_sources,
    read_internal_sales,
    read_need_states,
)
from clustering.io.writers import write_final_table, write_frame, write_json


@dataclass(frozen=True)
class LocalRunOutcome:
    """The pipeline result and the files written."""

    result: PipelineResult
    files: list[Path]

    def describe(self) -> str:
        """Human summary: categories, chosen k, stores assigned, where the files are."""
        result = self.result
        lines = [f"{'category':<32} {'stores':>7} {'k':>3} {'silhouette':>10}  note"]
        for name, clustered in result.internal.items():
            silhouette = clustered.result.metrics["silhouette"]
            lines.append(
                f"{name:<32} {len(clustered.labels):>7} {clustered.result.k:>3} "
                f"{silhouette:>10.3f}  {clustered.result.fallback or ''}"
            )
        if result.external is not None:
            lines.append(
                f"{'(external features)':<32} {len(result.external.labels):>7} "
                f"{result.external.result.k:>3} "
                f"{result.external.result.metrics['silhouette']:>10.3f}"
            )
        final = result.final
        reassigned = int(final["REASSIGNED"].sum()) if len(final) else 0
        lines.append("")
        lines.append(
            f"{final['STORE_NBR'].nunique() if len(final) else 0:,} stores assigned in "
            f"{len(result.internal)} categories ({len(final):,} store × category rows; "
            f"{reassigned:,} moved out of small demand clusters)."
        )
        lines.append("Results:")
        lines.extend(f"  {path}" for path in self.files)
        return "\n".join(lines)


def run_local(
    sales: str | Path,
    need_states: str | Path,
    external: Sequence[str | Path],
    out_dir: Path,
    params: PipelineParams,
    progress: Progress | None = None,
) -> LocalRunOutcome:
    """Read, cluster and write. Inputs are validated before anything is written."""
    con = connect()
    sales_table = read_internal_sales(con, sales)
    need_state_table = read_need_states(con, need_states)
    sources = read_external_sources(con, list(external))
    result = run_pipeline(sales_table, need_state_table, sources, params, progress=progress)
    files = write_final_table(result.final, out_dir)
    files.append(
        write_frame(
            cluster_summaries(result.internal, result.external), out_dir / "cluster_profiles.csv"
        )
    )
    files.append(write_frame(k_curves(result.internal, result.external), out_dir / "k_curves.csv"))
    files.append(write_json(run_summary(result), out_dir / "run_summary.json"))
    return LocalRunOutcome(result=result, files=files)
