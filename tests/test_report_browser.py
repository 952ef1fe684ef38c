"""The suite report in a real browser (Debian's chromium + chromedriver, driven by selenium).

`.ci/run` installs chromium, runs the smoke suite and points `GAIN_BENCH_REPORT` at its report, so CI checks the
artefact it publishes; locally the test renders a tiny suite of its own, and skips when chromium is absent.
"""

import os
import shutil
from pathlib import Path

import pytest
from test_tables import fabricated_folder
from tiny import TINY_DATA, tiny_suite

from benchmark.analyse.report import write_report
from benchmark.execute import runner
from benchmark.execute.suites import load

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="browser test needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)",
    ),
]

TINY = tiny_suite("browser", ("gradcam", "gain", "gain_ext"))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    given = os.environ.get("GAIN_BENCH_REPORT")
    if given:
        return Path(given)
    folder = tmp_path_factory.mktemp("browser")
    (folder / "browser.toml").write_text(TINY)
    suite = load(folder / "browser.toml")
    out = folder / "out"
    data = folder / "data"
    runner.run_suite(suite, out, quiet=True, data_root=data, threads=1)
    return write_report(out, n_resamples=200)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_report_opens_offline_with_every_image_and_the_paper_table(report, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(report.resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == [], f"console errors: {errors}"

    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) >= 4, "budget curves, gallery, training curves and throughput"
    widths = browser.execute_script("return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
    assert all(complete and width > 0 for _, complete, width in widths), widths
    sources = browser.execute_script("return Array.from(document.images).map(i => i.src.slice(0, 22))")
    assert all(src.startswith("data:image/png;base64") for src in sources), "figures are embedded, no network"
    assert "training diagnostics per epoch" in [alt for alt, _, _ in widths], "the diagnostics figure is drawn"
    assert not browser.find_elements(By.CSS_SELECTOR, "link[rel=stylesheet], script[src]"), "no external resources"

    rows = browser.find_elements(By.CSS_SELECTOR, "#paper-table tbody tr")
    labels = [r.find_element(By.TAG_NAME, "td").text for r in rows]
    assert labels[:4] == [
        "in-distribution val accuracy",
        "boat without water (share called boat)",
        "water without boat (share called not boat)",
        "overall (mean of the two)",
    ]
    header = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#paper-table thead th")]
    assert header[1] == "Grad-CAM" and "GAIN" in header and any(h.startswith("GAIN_ext-") for h in header), header
    for row in rows:
        assert len(row.find_elements(By.TAG_NAME, "td")) == len(header)
    assert browser.find_elements(By.CSS_SELECTOR, "#paper-voc tbody tr"), "the paper's own numbers beside"
    assert browser.find_element(By.CSS_SELECTOR, ".verdict li").text

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 100, 16000))
    shot = tmp_path / "index.png"  # tests write only to temporary folders; .ci/run takes the artefact's own
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


# The budgets suite's nine configurations (the widest paper table a shipped suite draws), as a results folder written
# as the runner writes it, without training.
WIDE = f"""
name = "wide"
seeds = [0, 1]
budgets = [9, 23, 78, 200, 1464]
{TINY_DATA}[train]
epochs = 1
[methods.gradcam]
[methods.gain]
masked_bn = "batch"
[methods.gain_ext]
masked_bn = "batch"
[methods.gain_eval]
method = "gain"
masked_bn = "eval"
[methods.gain_ext_eval]
method = "gain_ext"
masked_bn = "eval"
budgets = [78]
[timing]
enabled = false
"""


@pytest.fixture(scope="module")
def wide_report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wide")
    (folder / "wide.toml").write_text(WIDE)
    out = folder / "out"
    fabricated_folder(folder / "wide.toml", out, lambda spec: 0.7)
    return write_report(out, n_resamples=50)


def test_the_widest_paper_table_fits_1280_px_without_scrolling(wide_report, browser):
    browser.set_window_size(1280, 1000)
    browser.get(wide_report.resolve().as_uri())
    table = "document.getElementById('paper-table')"
    columns = browser.execute_script(f"return {table}.querySelectorAll('thead th').length")
    assert columns == 10, "the metric and nine configurations"
    overflow = browser.execute_script(
        f"const t = {table}, box = t.parentElement; return [t.scrollWidth, box.clientWidth, box.scrollWidth]"
    )
    assert overflow[0] <= overflow[1] and overflow[2] <= overflow[1], f"the table scrolls at 1,280 px: {overflow}"
    page = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert page[0] <= page[1], "nor does the page"
    names = browser.execute_script(f"return Array.from({table}.querySelectorAll('thead th')).map(t => t.innerText)")
    assert "GAIN masked_bn=eval" in [n.replace("\n", " ") for n in names], "one name per configuration"
