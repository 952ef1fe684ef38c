#!/usr/bin/env python3
"""Screenshots of a suite's report in headless chromium: its first screen and chosen sections at given widths.

    python scripts/report_screenshots.py reports/quick/index.html --out reports/quick/shots
    python scripts/report_screenshots.py reports/smoke/index.html --full-page reports/smoke/index.png   # CI's artefact
    python scripts/report_screenshots.py reports/quick/index.html --docs   # docs/report.png, the README's screenshot

Needs chromium and chromedriver (Debian: `apt-get install chromium chromium-driver`) and selenium (the `test`
extra). Writes `<section>-<width>.png` (`first` for the top of the page) for every width and section, or with
`--full-page FILE` one screenshot of the whole page at 1,280 px, or with `--docs` the first screen at 1,280 px as
`docs/report.png`, recording beside it (`docs/report.png.json`) the commit, the report it shows and the digest of the
code that draws that screen, so that `gain-bench docs --check` can say when the screenshot has gone stale.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

SECTIONS = ("verdict", "significance-section", "throughput-section")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a report's index.html")
    parser.add_argument("--out", type=Path, help="folder for the screenshots (default: beside the report, shots/)")
    parser.add_argument("--widths", default="1400,900", help="comma-separated window widths in px")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated element ids")
    parser.add_argument("--full-page", type=Path, help="one screenshot of the whole page at 1,280 px to this file")
    parser.add_argument("--docs", action="store_true", help="the first screen at 1,280 px as docs/report.png, recorded")
    return parser.parse_args(argv)


def browser(width: int, height: int) -> Any:
    """A headless chromium driven by selenium (imported here: an optional dependency, the `test` extra)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    flags = ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--window-size={width},{height}")
    for flag in flags:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from selenium.webdriver.common.by import By

    url = args.report.resolve().as_uri()
    if args.full_page:
        driver = browser(1280, 1000)
        try:
            driver.get(url)
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1280, min(int(height) + 100, 16000))
            driver.save_screenshot(str(args.full_page))
        finally:
            driver.quit()
        print(f"wrote {args.full_page}")
        return 0
    if args.docs:
        return write_docs_screenshot(args.report, url)
    out = args.out or args.report.parent / "shots"
    out.mkdir(parents=True, exist_ok=True)
    for width in (int(w) for w in args.widths.split(",") if w.strip()):
        driver = browser(width, 1000)
        try:
            driver.get(url)
            driver.save_screenshot(str(out / f"first-{width}.png"))
            for section in filter(None, args.sections.split(",")):
                driver.execute_script("arguments[0].scrollIntoView()", driver.find_element(By.ID, section))
                driver.save_screenshot(str(out / f"{section}-{width}.png"))
        finally:
            driver.quit()
    print(f"wrote {out}")
    return 0


def write_docs_screenshot(report: Path, url: str) -> int:
    """`docs/report.png` (the first screen at 1,280 px) and its record: what `benchmark.docs.screenshot_problems`
    checks."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from benchmark.core.provenance import git_commit
    from benchmark.docs import SCREENSHOT, SCREENSHOT_RECORD, first_screen_digest

    commit = git_commit()  # before the screenshot changes a tracked file
    driver = browser(1280, 800)
    try:
        driver.get(url)
        driver.save_screenshot(str(root / SCREENSHOT))
    finally:
        driver.quit()
    suite = json.loads((report.parent / "suite.json").read_text()).get("raw", {}).get("name", "?")
    record = {"commit": commit, "first_screen_code": first_screen_digest(root), "suite": suite,
              "width": 1280, "command": f"python scripts/report_screenshots.py {report} --docs"}  # fmt: skip
    (root / SCREENSHOT_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {SCREENSHOT} and {SCREENSHOT_RECORD} (commit {record['commit']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
