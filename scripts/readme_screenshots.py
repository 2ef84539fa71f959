"""Capture the images of the README's "For category managers" section into docs/images/.

Run it from the project root after the walkthrough in that section (make run, an overrides
file, a second run with --config docs/examples/max_k3.yml, the what-if of
docs/examples/scenario.yml). It drives Debian's Chromium through Playwright, like the browser
tests, opens the reports from disk, and shows `compare` and `assign` as a terminal would (with
paths relative to the project root).

    python scripts/readme_screenshots.py
"""

from __future__ import annotations

import html
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path.cwd()
IMAGES = ROOT / "docs" / "images"
REPORT = ROOT / "outputs" / "dev" / "report" / "index.html"
SCENARIO = ROOT / "outputs" / "dev" / "scenarios" / "reference_rule" / "report" / "index.html"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TERMINAL = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body{margin:0;background:#1e2329}pre{margin:0;padding:16px 20px;color:#d8dee6;
font:13px/1.45 "DejaVu Sans Mono",monospace;white-space:pre-wrap;width:1160px}
b{color:#8fd18f;font-weight:normal}</style></head><body><pre>%s</pre></body></html>"""


def _terminal(page: Page, command: list[str], target: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clustering", *command],
        capture_output=True,
        text=True,
        check=True,
    )
    text = done.stdout.replace(f"{ROOT}/", "")
    shown = "<b>$ python -m clustering " + html.escape(" ".join(command)) + "</b>\n"
    page.set_content(TERMINAL % (shown + html.escape(text)))
    page.locator("pre").screenshot(path=str(target))


def _section(page: Page, selector: str, target: Path, height: int | None = None) -> None:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    # The box is relative to the viewport; a full-page clip wants page coordinates.
    scroll_x, scroll_y = page.evaluate("[window.scrollX, window.scrollY]")
    clip = {
        "x": box["x"] + scroll_x,
        "y": box["y"] + scroll_y,
        "width": box["width"],
        "height": min(box["height"], height or box["height"]),
    }
    page.screenshot(path=str(target), clip=clip, full_page=True)


def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1240, "height": 900})
        page.goto(REPORT.as_uri())
        page.screenshot(path=str(IMAGES / "report_overview.png"))
        _section(page, "section.category", IMAGES / "report_category.png", height=1010)
        page.locator("#store-search").fill("1529")
        _section(page, "#overrides", IMAGES / "report_overrides.png")
        _section(page, "#stores", IMAGES / "report_store_search.png")
        page.goto(SCENARIO.as_uri())
        # The scenario's banner and its comparison with the current result.
        page.evaluate(
            "document.querySelectorAll('main > section:not(#changes)')"
            ".forEach(s => s.style.display = 'none')"
        )
        _section(page, "main", IMAGES / "whatif_report.png", height=900)
        _terminal(page, ["compare"], IMAGES / "compare.png")
        _terminal(
            page,
            [
                "assign",
                "--stores",
                "docs/examples/new_stores.csv",
                "--sales",
                "docs/examples/new_store_sales.csv",
                "--out",
                "outputs/dev/new_stores_placed.csv",
            ],
            IMAGES / "assign.png",
        )
        browser.close()
    for image in sorted(IMAGES.glob("*.png")):
        print(f"{image.relative_to(ROOT)}  {image.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
