"""Data-quality findings: the facts a run computes about its inputs, held against thresholds.

Each finding is a sentence a category manager's analyst can act on, with its level: a
``warning`` is shown on the console, as an asset-check warning and in the alerts; a ``failure``
stops the run before anything is built from the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clustering.core.external_preprocessing import CoverageSummary
from clustering.core.internal_preprocessing import MatchSummary
from clustering.core.params import QualityParams

Level = Literal["warning", "failure"]


@dataclass(frozen=True)
class Finding:
    """One data-quality fact above a threshold."""

    level: Level
    sentence: str


def _level(value: float, warn: float, fail: float | None) -> Level | None:
    if fail is not None and value > fail:
        return "failure"
    if value > warn:
        return "warning"
    return None


def _limit(level: Level, warn: float, fail: float | None) -> str:
    limit = fail if level == "failure" else warn
    return f"{'stop' if level == 'failure' else 'warning'} above {limit:g}%"


def internal_findings(summary: MatchSummary, params: QualityParams) -> list[Finding]:
    """Sales missing from the need-state map, map/sales category disagreements, and store ×
    category pairs left without shares."""
    findings: list[Finding] = []
    pct = summary.unmatched_sales_pct
    level = _level(pct, params.unmapped_sales_warn, params.unmapped_sales_fail)
    if level:
        findings.append(
            Finding(
                level,
                f"{pct:.1f}% of the sales ({summary.unmatched_skus:,} of {summary.skus:,} SKUs) "
                "belong to SKUs missing from the need-state map "
                f"({_limit(level, params.unmapped_sales_warn, params.unmapped_sales_fail)}); "
                "complete the map or check that it belongs to these sales.",
            )
        )
    pct = summary.category_mismatch_pct
    level = _level(pct, params.category_mismatch_warn, params.category_mismatch_fail)
    if level:
        first = summary.category_mismatches[0] if summary.category_mismatches else None
        example = f", e.g. SKU {first[0]}: sales {first[1]!r}, map {first[2]!r}" if first else ""
        limits = _limit(level, params.category_mismatch_warn, params.category_mismatch_fail)
        findings.append(
            Finding(
                level,
                f"{summary.category_mismatch_skus:,} mapped SKUs ({pct:.1f}%) are sold in "
                f"another category than the need-state map gives them{example} ({limits}).",
            )
        )
    pct = summary.stores_without_matched_sales_pct
    if pct > params.stores_without_sales_warn:
        findings.append(
            Finding(
                "warning",
                f"{summary.stores_without_matched_sales_count:,} store × category pairs "
                f"({pct:.1f}%) have sales but none on mapped SKUs and get no cluster in that "
                f"category (warning above {params.stores_without_sales_warn:g}%).",
            )
        )
    return findings


def coverage_findings(coverage: CoverageSummary, params: QualityParams) -> list[Finding]:
    """Stores with mapped sales but no external features."""
    pct = coverage.without_pct
    level = _level(pct, params.stores_without_external_warn, params.stores_without_external_fail)
    if not level:
        return []
    limits = _limit(level, params.stores_without_external_warn, params.stores_without_external_fail)
    missing = coverage.stores_without_features
    first = ", ".join(str(s) for s in missing[:5]) + (", ..." if len(missing) > 5 else "")
    return [
        Finding(
            level,
            f"{len(missing):,} of {coverage.stores_total:,} stores with mapped sales ({pct:.1f}%) "
            f"have no external features (first: {first}); they get no external cluster "
            f"({limits}).",
        )
    ]


def failures(findings: list[Finding]) -> list[str]:
    """The sentences of the findings that stop the run."""
    return [f.sentence for f in findings if f.level == "failure"]
