"""Each run kind's report, and a comparison of all of them, opens in headless Chromium (Debian's, never a
downloaded one): no console errors, no network requests, every figure present and non-blank, no "None" in the
text, and the layer selector swaps images."""
from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kenprune.report import write_report

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
INSTALL = Path(__file__).resolve().parents[2] / "scripts" / "install-browser.sh"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Debian Chromium driven by Selenium, with browser and network (performance) logs on."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the 'test' extra")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        setup = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True)
        if setup.returncode != 0:
            pytest.skip(f"chromium not installed and {INSTALL.name} could not install it: {setup.stderr.strip()}")
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS + (f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """Where each page's full screenshot is saved: $KENPRUNE_SCREENSHOTS (to look at them), else a temp folder."""
    folder = os.environ.get("KENPRUNE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(folder)
    return tmp_path_factory.mktemp("screenshots")


def _non_blank(png: bytes) -> float:
    """Share of pixels that are not (near) white in a screenshot."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    return float((pixels < 235).mean())


FIGURES = {"prune": 1, "structured": 1, "ken": 4, "ken-apply": 3, "search": 2, "recover": 0, "finetune": 1,
           "eval": 0}  # figure blocks on each kind's page (KEN: per-tensor grid + matrix, neighbours, all layers)


@pytest.mark.parametrize("kind", list(FIGURES) + ["comparison"])
def test_report_in_headless_chromium(browser, run_dirs, tmp_path, screenshots, kind):
    dirs = list(run_dirs.values()) if kind == "comparison" else [run_dirs[kind]]
    out = write_report(dirs, out=tmp_path / "report.html")
    browser.get_log("performance")  # drop the start-up tab's internal chrome:// loads: only the report counts
    browser.get_log("browser")
    browser.get(out.resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.title.startswith("kenprune report")
    sections = browser.find_elements("css selector", "section h2")
    assert len(sections) == len(dirs) + (kind == "comparison")
    assert browser.find_elements("css selector", "table.kv caption")[0].text in ("Summary", "Runs")
    assert "None" not in browser.find_element("tag name", "body").text

    figures = browser.find_elements("css selector", "figure img")
    expected = sum(1 for _ in (tmp_path / "report-figures").glob("*.png"))
    selectors = browser.find_elements("css selector", "select[data-figure]")
    assert len(figures) == expected - sum(len(s.find_elements("css selector", "option")) - 1 for s in selectors)
    if kind != "comparison":
        assert len(figures) == FIGURES[kind]
    else:
        assert {"fig-comparison", "fig-comparison-search"} <= {f.get_attribute("id") for f in
                                                               browser.find_elements("css selector", "figure")}
    for img in figures:
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", img)
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 100
        assert _non_blank(img.screenshot_as_png) > 0.02, f"blank figure {img.get_attribute('id')}"

    if kind in ("ken", "ken-apply", "comparison"):
        assert selectors, "the KEN matrix views have one variant per layer"
    if selectors:
        select = selectors[0]
        img = browser.find_element("id", "img-" + select.get_attribute("data-figure"))
        before = img.get_attribute("src")
        browser.execute_script("arguments[0].value = '1'; arguments[0].dispatchEvent(new Event('change'))", select)
        assert img.get_attribute("src") != before and img.get_attribute("src").startswith("data:image/png;base64,")

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(height, 16000))
    browser.execute_script("window.scrollTo(0, 0)")
    shot = screenshots / f"{kind}.png"
    browser.save_screenshot(str(shot))
    browser.set_window_size(1280, 1000)
    assert shot.stat().st_size > 0 and _non_blank(shot.read_bytes()) > 0.02, f"blank page screenshot {shot}"
    if kind == "structured":
        warning = browser.find_element("css selector", "p.warn")
        assert warning.is_displayed() and "above its ideal" in warning.text

    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    requests = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    urls = [m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"
            and not m["params"].get("documentURL", "").startswith("chrome://")]  # the browser's own pages
    assert any(u.startswith("file:") for u in urls), "the performance log recorded no requests at all"
    assert [u for u in urls if not u.startswith(("data:", "file:"))] == []
