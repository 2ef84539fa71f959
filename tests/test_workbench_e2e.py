"""The category manager's workbench end to end, on the `small` sample in a temporary project:

- run A (`run full_pipeline_job`, recorded in the instance) and run B (`cluster` with
  internal_clustering.max_k 3) with the same overrides file;
- the report of a run opens in headless Chromium with every section, and the store search works;
- both runs are in the history; `compare` lists the stores that moved and writes the CSV files;
- the overrides are honoured in both runs (a vanished cluster mapped, an unknown one flagged);
- `assign` puts the training stores back in their own clusters, and a held-out store where a
  full re-run puts it;
- `whatif` on one category writes its scenario and leaves the current result untouched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from test_browser import CHROMIUM, CHROMIUM_FLAGS, _require_chromium

from clustering.cli.main import main
from clustering.cli.run import run_in_memory, run_job
from clustering.core.placement import PLACED_BOTH
from clustering.infra.config import AppConfig, load_config
from clustering.io.history import HistoryStore, RunRecord
from clustering.io.workbench import assign_stores, find_run

pytestmark = pytest.mark.slow

INPUTS = ("internal_sales.parquet", "need_state.csv", "external_sales.parquet")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "outputs" / "report"
# Cluster names of the `small` sample (seed 0) with the default parameters.
OVERRIDES = """STORE_NBR,CATEGORY,CLUSTER,REASON,APPROVED_BY
1270,ANTI-AGING SKIN CARE,I2,Flagship store: premium range,A. Buyer
1529,CANDY/SNACKS,I5,Near a school: kids' assortment,A. Buyer
1818,HEALTH & WELLNESS,I9,Typo in the cluster name,
"""


@dataclass
class Project:
    root: Path
    config: AppConfig
    runs: list[RunRecord]
    output: list[str]

    @property
    def history(self) -> HistoryStore:
        return HistoryStore(self.config.paths.duckdb_path)

    def final(self, run: RunRecord) -> pd.DataFrame:
        return self.history.table("final_store_clusters", run.run_id)


@pytest.fixture(scope="module")
def project(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("workbench")
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    for name in INPUTS:
        shutil.copy(small_data / name, raw / name)
    (root / "data" / "overrides.csv").write_text(OVERRIDES)
    (root / "home").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("CLUSTERING_")]:
            patch.delenv(name)
        patch.chdir(root)
        patch.setenv("DAGSTER_HOME", str(root / "home"))
        patch.setenv("CLUSTERING_WORKERS", "1")
        output: list[str] = []
        assert run_job("full_pipeline_job", "dev", out=output.append) == 0, "\n".join(output)
        params = {"params": {"internal_clustering": {"max_k": 3}}}
        assert run_in_memory("dev", params, out=output.append) == 0, "\n".join(output)
        config = load_config("dev", project_root=root)
        runs = HistoryStore(config.paths.duckdb_path).runs()
        yield Project(root, config, runs, output)


def test_run_prints_the_report_and_it_opens_offline_in_chromium(project: Project) -> None:
    report = project.root / "outputs" / "dev" / "report" / "index.html"
    assert any(
        line.strip() == f"Report: {report} (open it in a browser; works offline)"
        for line in project.output
    )
    text = report.read_text()
    assert "http://" not in text and "https://" not in text  # nothing to fetch: works offline
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    categories = sorted(project.final(project.runs[-1])["CATEGORY"].unique())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.route(
                "**/*",
                lambda route: (
                    route.abort()
                    if not route.request.url.startswith("file:")
                    else route.continue_()
                ),
            )
            page.goto(report.as_uri())
            for section, heading in [
                ("overview", "Overview"),
                ("quality", "Data quality"),
                ("warnings", "Warnings"),
                ("changes", "Changes since run"),
                ("external", "External clusters"),
                ("overrides", "Overrides (3)"),
                ("stores", "Find a store"),
            ]:
                expect(page.locator(f"#{section} h2")).to_contain_text(heading)
            for category in categories:
                section = page.locator("section.category", has_text=category).first
                expect(section.locator("svg.kcurve")).to_have_count(1)
                expect(section.locator("table.heat")).to_have_count(1)
                expect(section.locator("table.sizes")).to_have_count(1)
            expect(page.locator("#changes")).to_contain_text("internal_clustering.max_k: 10 → 3")
            expect(page.locator("#warnings")).to_contain_text("Override of store 1818")
            page.locator("#store-search").fill("1529")
            rows = page.locator("#store-result table tbody tr")
            expect(rows).to_have_count(len(categories))
            expect(page.locator("#store-result")).to_contain_text("overridden")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.locator("#store-search").fill("")
            page.screenshot(path=str(SCREENSHOTS / "report.png"))
            page.locator("#store-search").fill("1529")
            page.locator("#stores").screenshot(path=str(SCREENSHOTS / "store_search.png"))
        finally:
            browser.close()


def test_report_is_regenerated_for_any_run(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    first = project.runs[0]
    out = project.root / "first.html"
    assert main(["report", "--run", first.short_id, "--out", str(out)]) == 0
    assert f"Report of run {first.short_id}" in capsys.readouterr().out
    page = out.read_text()
    assert first.run_id in page and "No earlier run to compare with." in page


def test_history_keeps_every_run_and_the_current_table_stays(project: Project) -> None:
    assert len(project.runs) == 2
    first, second = project.runs
    assert second.params["internal_clustering"]["max_k"] == 3
    assert first.params["internal_clustering"]["max_k"] == 10
    current = pd.read_parquet(project.root / "outputs" / "dev" / "final_store_clusters.parquet")
    assert len(project.final(first)) == len(project.final(second)) == len(current)
    pd.testing.assert_frame_equal(
        project.final(second).sort_values(["CATEGORY", "STORE_NBR"]).reset_index(drop=True),
        current.sort_values(["CATEGORY", "STORE_NBR"]).reset_index(drop=True),
        check_dtype=False,
    )
    assert first.quality["sales_rows"] > 0 and "stores_without_external" in first.quality


def test_compare_lists_the_stores_that_moved(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare"]) == 0
    printed = capsys.readouterr().out
    first, second = project.runs
    assert f"A: run {first.short_id}" in printed and f"B: run {second.short_id}" in printed
    assert "Parameters changed: internal_clustering.max_k: 10 → 3" in printed
    assert "Stores that changed cluster (" in printed
    folder = project.root / "outputs" / "dev" / "compare" / f"{first.short_id}_vs_{second.short_id}"
    stores = pd.read_csv(folder / "stores.csv")
    summary = pd.read_csv(folder / "summary.csv")
    assert stores["MOVED"].sum() == summary["MOVED"].sum() > 0
    # Every moved store is printed under its category (up to 10 per category).
    for category, group in stores[stores["MOVED"]].groupby("CATEGORY"):
        line = next(line for line in printed.splitlines() if line.startswith(f"  {category}: "))
        assert str(group["STORE_NBR"].iloc[0]) in line


def test_overrides_are_honoured_in_both_runs(project: Project) -> None:
    first, second = project.runs
    for run in project.runs:
        final = project.final(run).set_index(["CATEGORY", "STORE_NBR"])
        audit = project.history.table("overrides", run.run_id).set_index("STORE_NBR")
        assert len(audit) == 3  # never dropped
        assert final.loc[("ANTI-AGING SKIN CARE", 1270), "OVERRIDDEN"]
        assert final.loc[("CANDY/SNACKS", 1529), "OVERRIDDEN"]
        assert final.loc[("CANDY/SNACKS", 1529), "OVERRIDE_REASON"].startswith("Near a school")
        assert audit.loc[1818, "STATUS"] == "review"
        review = final.loc[("HEALTH & WELLNESS", 1818)]
        assert not review["OVERRIDDEN"] and review["OVERRIDE_REASON"].startswith("REVIEW: ")
    assert (
        project.final(first)
        .set_index(["CATEGORY", "STORE_NBR"])
        .loc[("CANDY/SNACKS", 1529), "REBALANCED_CLUSTER"]
        == "I5"
    )
    # With at most 3 internal clusters, I5 is gone: the pin follows I5's stores of run A.
    audit = project.history.table("overrides", second.run_id).set_index("STORE_NBR")
    assert audit.loc[1529, "STATUS"] == "mapped"
    a = project.final(first)
    b = project.final(second).set_index(["CATEGORY", "STORE_NBR"])["REBALANCED_CLUSTER"]
    old = a[(a["CATEGORY"] == "CANDY/SNACKS") & (a["REBALANCED_CLUSTER"] == "I5")]["STORE_NBR"]
    where = b.loc[[("CANDY/SNACKS", s) for s in old]].value_counts()
    assert audit.loc[1529, "FINAL_CLUSTER"] == where.index[0]
    assert b.loc[("CANDY/SNACKS", 1529)] == where.index[0]


def test_assigning_the_training_stores_reproduces_their_clusters(project: Project) -> None:
    raw = project.root / "data" / "raw"
    first = project.runs[0]
    ref, placed = assign_stores(
        project.config, raw / "external_sales.parquet", raw / "internal_sales.parquet", first.run_id
    )
    assert ref.record.run_id == first.run_id
    final = project.final(first)
    final = final[~final["OVERRIDDEN"].astype(bool)]
    merged = final.merge(placed, on=["STORE_NBR", "CATEGORY"], suffixes=("", "_PLACED"))
    assert len(merged) == len(final)
    for column in ("INTERNAL_CLUSTER", "EXTERNAL_CLUSTER", "REBALANCED_CLUSTER"):
        differ = merged[merged[column].astype(str) != merged[f"{column}_PLACED"].astype(str)]
        assert differ.empty, f"{column} differs for {len(differ)} rows"


def test_a_held_out_store_is_placed_where_a_full_run_puts_it(project: Project) -> None:
    raw = project.root / "data" / "raw"
    sales = pd.read_parquet(raw / "internal_sales.parquet")
    external = pd.read_parquet(raw / "external_sales.parquet")
    # A store with external features, sales in every category, neither pinned nor moved by
    # merging: where it goes is decided by its own features.
    full = project.final(project.runs[0])  # the full run, same parameters, store included
    pinned = {1270, 1529, 1818}
    per_store = full.groupby("STORE_NBR").agg(
        categories=("CATEGORY", "nunique"),
        moved=("REASSIGNED", "any"),
        external=("EXTERNAL_CLUSTER", "count"),
    )
    ordinary = per_store[
        (per_store["categories"] == full["CATEGORY"].nunique())
        & ~per_store["moved"]
        & (per_store["external"] > 0)
    ].index.difference(list(pinned))
    store = int(ordinary[len(ordinary) // 2])
    held_raw = project.root / "heldout" / "raw"
    held_raw.mkdir(parents=True)
    sales[sales["STORE_NBR"] != store].to_parquet(held_raw / "internal_sales.parquet", index=False)
    external[external["STORE_NBR"] != store].to_parquet(
        held_raw / "external_sales.parquet", index=False
    )
    shutil.copy(raw / "need_state.csv", held_raw / "need_state.csv")
    out = project.root / "heldout" / "out"
    paths = {
        "raw_dir": str(held_raw),
        "exports_dir": str(out),
        "duckdb_path": str(out / "clustering_dev.duckdb"),
        "overrides": str(out / "none.csv"),
    }
    assert run_in_memory("dev", {"paths": paths}, out=lambda _line: None) == 0
    new_sales = project.root / "heldout" / "new_sales.parquet"
    new_external = project.root / "heldout" / "new_store.parquet"
    sales[sales["STORE_NBR"] == store].to_parquet(new_sales, index=False)
    external[external["STORE_NBR"] == store].to_parquet(new_external, index=False)
    config = load_config("dev", {"paths": paths}, project_root=project.root)
    _, placed = assign_stores(config, new_external, new_sales)
    assert (placed["PLACEMENT"] == PLACED_BOTH).all()

    trained = HistoryStore(config.paths.duckdb_path)
    without = trained.table("final_store_clusters", find_run(config).record.run_id)
    for row in placed.itertuples():
        category = row.CATEGORY
        in_full = full[full["CATEGORY"] == category].set_index("STORE_NBR")["REBALANCED_CLUSTER"]
        own = in_full[store]
        mates = set(in_full[in_full == own].index) - {store} - pinned
        others = without[without["CATEGORY"] == category].set_index("STORE_NBR")[
            "REBALANCED_CLUSTER"
        ]
        overlap = others.loc[sorted(mates & set(others.index))].value_counts()
        assert overlap.index[0] == row.REBALANCED_CLUSTER, category


def test_whatif_writes_a_scenario_and_leaves_the_current_result(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    current = project.root / "outputs" / "dev" / "final_store_clusters.parquet"
    before = hashlib.sha256(current.read_bytes()).hexdigest()
    runs_before = len(project.history.runs())
    args = ["whatif", "--name", "candy_k3", "--category", "CANDY/SNACKS"]
    assert main([*args, "--set", "internal_clustering.max_k=3"]) == 0
    printed = capsys.readouterr().out
    assert hashlib.sha256(current.read_bytes()).hexdigest() == before
    assert len(project.history.runs()) == runs_before
    folder = project.root / "outputs" / "dev" / "scenarios" / "candy_k3"
    scenario = pd.read_parquet(folder / "final_store_clusters.parquet")
    assert set(scenario["CATEGORY"]) == {"CANDY/SNACKS"}
    assert "What-if scenario <b>candy_k3</b>" in (folder / "report" / "index.html").read_text()
    assert "Scenario candy_k3 against the current result" in printed
    assert "  CANDY/SNACKS " in printed
    assert main(["compare", project.runs[0].short_id, "candy_k3"]) == 0
    assert "B: scenario candy_k3" in capsys.readouterr().out
