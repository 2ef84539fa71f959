"""How well each k-selection rule recovers planted store types (``make quality``).

Generates the difficulty ladder (``clustering.sample.generator.LADDER``: from clearly separated
to overlapping need-state profiles; 2-8 types of unequal size per category, stores leaning
towards a second type, a few noise stores that follow no type) for retailers of several sizes,
and clusters every category's need-state shares with:

- ``today``: the rule the project shipped before (silhouette on standardised shares, no
  trimming), the baseline every figure is compared with;
- each selectable rule in the current feature space (square-root shares, sparse stores left out
  of the fit);
- ``oracle``: the same clustering given the planted k (``oracle_std``: the same on standardised
  shares, which shows what the square-root feature space alone buys).

For each rung it prints, per rule, the adjusted Rand index against the planted types (mean and
minimum; noise stores are left out, they have no type), how often the planted k was chosen, and
the seconds per category, then the issue's targets for the default rule. A second table compares
the seconds per category on 10,000-store categories with today's rule (ratios, measured in this
run). Nothing here asserts anything; ``tests/test_quality.py`` holds the thresholds.

    python benchmarks/quality.py [--categories 3] [--sizes 200 600 2000 10000] [--rules ...]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from clustering.core.clustering import choose_k
from clustering.core.features import engineer_features
from clustering.core.params import ClusteringParams, FeatureParams, PipelineParams
from clustering.sample.generator import (
    LADDER,
    NOISE_TYPE,
    category_shares,
    plan_sample_data,
    resolve_preset,
)

RULES = ("silhouette", "bic", "gap", "stability", "prediction_strength", "bic_silhouette")
DEFAULT_RULE = ClusteringParams().selection


@dataclass(frozen=True)
class Task:
    rung: str
    stores: int
    seed: int
    category: int
    rules: tuple[str, ...]


def tasks(sizes: list[int], categories: int, rules: tuple[str, ...]) -> Iterator[Task]:
    for rung in LADDER:
        for size in sizes:
            for category in range(categories):
                yield Task(rung, size, 1000 + size, category, rules)


def evaluate(task: Task) -> dict[str, object]:
    """Every rule on one generated category: ARI, chosen k and seconds."""
    preset = resolve_preset("small", stores=task.stores, categories=task.category + 1)
    plan = plan_sample_data(preset, seed=task.seed, difficulty=task.rung)
    category = plan.categories[task.category]
    shares = category_shares(plan, category)
    truth = category.store_type
    typed = truth != NOISE_TYPE
    planted = len(category.profiles)
    row: dict[str, object] = {
        "rung": task.rung,
        "stores": task.stores,
        "planted_k": planted,
        "need_states": len(category.need_states),
    }

    def score(name: str, features: FeatureParams, params: ClusteringParams) -> None:
        started = time.perf_counter()
        matrix = engineer_features(shares, features).matrix
        result = choose_k(matrix, params)
        row[f"{name}_s"] = time.perf_counter() - started
        row[f"{name}_k"] = result.k
        labels = result.labels.to_numpy()
        row[name] = adjusted_rand_score(truth[typed], labels[typed])

    internal = PipelineParams().internal_features
    score("today", FeatureParams(), ClusteringParams(selection="silhouette", trim_share=0.0))
    for rule in task.rules:
        score(rule, internal, ClusteringParams(selection=rule))  # type: ignore[arg-type]
    told = ClusteringParams(min_k=max(planted, 2), max_k=max(planted, 2))
    score("oracle", internal, told)
    # The same, told k, on standardised shares: what the square-root space itself buys.
    score("oracle_std", FeatureParams(), told)
    return row


def summarise(frame: pd.DataFrame, rules: tuple[str, ...]) -> pd.DataFrame:
    columns = ["today", *rules, "oracle", "oracle_std"]
    lines = []
    groups = [*frame.groupby("rung", sort=False), ("ALL", frame)]
    for rung, group in groups:
        line: dict[str, object] = {"rung": rung, "categories": len(group)}
        for name in columns:
            hit = (group[f"{name}_k"] == group["planted_k"]).mean()
            line[name] = (
                f"{group[name].mean():.3f} / {group[name].min():.2f} / {hit:.0%} / "
                f"{group[f'{name}_s'].mean():.2f}s"
            )
        lines.append(line)
    return pd.DataFrame(lines).set_index("rung")


def targets(frame: pd.DataFrame, rule: str) -> list[str]:
    """The issue's targets for ``rule``, each with the figure measured and PASS/MISS."""
    out = []
    for rung, group in frame.groupby("rung", sort=False):
        mean, oracle = group[rule].mean(), group["oracle"].mean()
        ok = mean >= oracle - 0.02
        out.append(f"{rung}: ARI {mean:.3f} vs oracle {oracle:.3f} (within 0.02: {_ok(ok)})")
        if oracle >= 0.97:
            out.append(
                f"{rung}: oracle >= 0.97, rule reaches {mean:.3f} (>= 0.95: {_ok(mean >= 0.95)})"
            )
        if rung == "separated":
            today = group["silhouette"].mean()
            out.append(f"{rung}: {mean:.3f} vs silhouette {today:.3f} ({_ok(mean >= today)})")
    hit = (frame[f"{rule}_k"] == frame["planted_k"]).mean()
    out.append(
        f"planted k chosen in {hit:.0%} of {len(frame)} categories (>= 90%: {_ok(hit >= 0.9)})"
    )
    big = frame[frame["stores"] == frame["stores"].max()]
    seconds, today = big[f"{rule}_s"].mean(), big["today_s"].mean()
    out.append(
        f"seconds per category at {int(big['stores'].max()):,} stores: {seconds:.2f} vs today "
        f"{today:.2f} ({seconds / today:.2f}x; <= 2x: {_ok(seconds / today <= 2.0)})"
    )
    return out


def _ok(flag: bool) -> str:
    return "PASS" if flag else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description="k-selection rules on the difficulty ladder.")
    parser.add_argument("--categories", type=int, default=3, help="categories per retailer size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 600, 2000, 10000])
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--csv", help="also write every category's figures to this CSV file")
    args = parser.parse_args()
    rules = tuple(args.rules)
    jobs = list(tasks(args.sizes, args.categories, rules))
    print(
        f"{len(jobs)} generated categories: rungs {', '.join(LADDER)}; retailers of "
        f"{', '.join(f'{s:,}' for s in args.sizes)} stores; default rule {DEFAULT_RULE}",
        flush=True,
    )
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = list(pool.map(evaluate, jobs))
    frame = pd.DataFrame(rows)
    if args.csv:
        frame.to_csv(args.csv, index=False)
    print("\nARI mean / min / planted k chosen / seconds per category")
    print(
        "(today = silhouette on standardised shares; oracle = the same clustering given k; "
        "oracle_std = told k, standardised shares)\n"
    )
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(summarise(frame, rules).to_string())
    if DEFAULT_RULE in rules:
        print(f"\nTargets for the default rule ({DEFAULT_RULE}):")
        for line in targets(frame, DEFAULT_RULE):
            print("  " + line)
    gain = frame[DEFAULT_RULE].mean() - frame["today"].mean() if DEFAULT_RULE in rules else np.nan
    print(f"\nDefault vs today: ARI {gain:+.3f} on average; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
