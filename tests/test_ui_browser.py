"""The browser UI in a real headless Chromium (Debian's chromium and chromium-driver), driven by selenium.

Set STROKEGRAPH_SCREENSHOT=1 to save the page at the end as docs/ui.png (the README's picture).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the browser UI needs the ui extra (pip install 'strokegraph[ui]')")
pytest.importorskip("selenium", reason="the browser tests drive Chromium with selenium (the test extra)")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from strokegraph.app import ui  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
        reason="no Chromium and chromedriver (apt-get install chromium chromium-driver)",
    ),
]
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "ui.png"
WAIT_S = 120  # a generous ceiling on a shared machine; the run itself takes a few seconds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _opened(browser, runs: Path) -> Iterator[WebDriverWait]:
    """The UI serving ``runs``, open in ``browser``; yields a wait for what the page does next."""
    app = ui.launch(runs, port=_free_port(), block=False, quiet=True)
    try:
        browser.get(app.local_url)
        yield WebDriverWait(browser, WAIT_S)
    finally:
        app.close()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1300"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def test_run_the_default_prompt_accept_each_review_and_see_the_verdict(browser, tmp_path):
    with _opened(browser, tmp_path / "runs") as wait:
        prompt = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#prompt textarea")))
        assert prompt.get_attribute("value") == ui.DEFAULT_PROMPT
        browser.find_element(By.CSS_SELECTOR, "#review input[type=checkbox]").click()
        browser.find_element(By.ID, "run").click()
        accepted = 0
        while True:
            # Gradio leaves a hidden panel's buttons out of the page: look for them, never expect them.
            wait.until(
                lambda d: (
                    any(b.is_displayed() for b in d.find_elements(By.ID, "accept"))
                    or "passed" in d.find_element(By.ID, "verdict").text
                )
            )
            if "passed" in browser.find_element(By.ID, "verdict").text:
                break
            status = browser.find_element(By.ID, "status").text
            assert "Waiting for your review" in status
            browser.find_element(By.ID, "accept").click()
            accepted += 1
            wait.until(lambda d, s=status: d.find_element(By.ID, "status").text != s)
            assert accepted < 20
        assert accepted >= 2  # the plan and at least one critique
        assert browser.find_element(By.ID, "verdict").text.strip().startswith("passed")
        final = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#final img")))
        assert browser.execute_script("return arguments[0].naturalWidth", final) > 0
        assert "Plan" in browser.find_element(By.ID, "log").text
        if os.environ.get("STROKEGRAPH_SCREENSHOT") == "1":
            browser.execute_script("window.scrollTo(0, 0)")
            browser.save_screenshot(str(SCREENSHOT))


def test_draw_a_violation_stop_then_open_the_run_from_the_gallery(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    with _opened(browser, tmp_path / "runs") as wait:
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#review input[type=checkbox]"))).click()
        browser.find_element(By.ID, "run").click()
        wait.until(ec.visibility_of_element_located((By.ID, "accept"))).click()  # the plan
        image = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#review-image img")))
        # Two clicks on the image: the corners of the new violation's box (offsets from its centre).
        ActionChains(browser).move_to_element_with_offset(image, -40, -40).click().perform()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#box-x0 input").get_attribute("value") not in ("", None))
        ActionChains(browser).move_to_element_with_offset(image, 30, 20).click().perform()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#box-x1 input").get_attribute("value") not in ("", None))
        x0, x1 = (
            float(browser.find_element(By.CSS_SELECTOR, f"#box-{n} input").get_attribute("value"))
            for n in "x0 x1".split()
        )
        assert 0 <= x0 < x1 <= 1
        browser.find_element(By.CSS_SELECTOR, "#violation-message textarea").send_keys("a stray bird")
        browser.find_element(By.ID, "add").click()
        wait.until(lambda d: "asked in review: a stray bird" in d.find_element(By.ID, "log").text)
        wait.until(ec.visibility_of_element_located((By.ID, "stop"))).click()
        wait.until(lambda d: "stopped in review" in d.find_element(By.ID, "verdict").text)

        browser.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Runs')]").click()
        thumb = wait.until(
            ec.element_to_be_clickable((By.CSS_SELECTOR, "#runs-gallery button[aria-label^='Thumbnail 1 ']"))
        )
        thumb.click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#run-a input").get_attribute("value"))
        browser.find_element(By.ID, "open").click()
        frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#run-page iframe")))
        assert frame.get_attribute("sandbox") == ""  # no script, no same origin
        browser.switch_to.frame(frame)
        assert ui.DEFAULT_PROMPT in browser.find_element(By.TAG_NAME, "body").text
        browser.switch_to.default_content()


def _pick(browser, wait, elem_id: str, value: str) -> None:
    """Type ``value`` into the dropdown ``elem_id`` (it takes a typed name) and leave the field."""
    field = browser.find_element(By.CSS_SELECTOR, f"#{elem_id} input")
    field.clear()
    field.send_keys(value, Keys.ENTER)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"#{elem_id} input").get_attribute("value") == value)


def _shown_pictures(browser, frame) -> list[int]:
    """The natural widths of the pictures a frame shows (0 for one the browser could not draw)."""
    browser.switch_to.frame(frame)
    try:
        return [int(img.get_property("naturalWidth")) for img in browser.find_elements(By.TAG_NAME, "img")]
    finally:
        browser.switch_to.default_content()


def test_compare_two_seeds_and_open_a_benchmark(browser, tmp_path):
    from strokegraph.app.cli import main

    runs = tmp_path / "runs"
    for seed in (1, 4):
        assert main(["generate", ui.DEFAULT_PROMPT, "--seed", str(seed), "--out", str(runs / f"seed-{seed}")]) == 0
    assert main(["bench", "geneval", "--limit", "1", "--out", str(runs / "bench-geneval"), "-q"]) == 0
    with _opened(browser, runs) as wait:
        wait.until(ec.element_to_be_clickable((By.XPATH, "//button[@role='tab' and contains(., 'Runs')]"))).click()
        _pick(browser, wait, "run-a", "seed-1")
        _pick(browser, wait, "run-b", "seed-4")
        browser.find_element(By.ID, "compare").click()
        frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#run-page iframe")))
        assert frame.get_attribute("sandbox") == ""
        widths = _shown_pictures(browser, frame)
        assert widths == [320] * 5  # two drafts each, one <refine> of seed 1: each drawn by the browser

        browser.find_element(By.XPATH, "//button[@role='tab' and contains(., 'Bench')]").click()
        _pick(browser, wait, "bench", "bench-geneval")
        browser.find_element(By.ID, "open-bench").click()
        frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#bench-page iframe")))
        assert frame.get_attribute("sandbox") == ""
        browser.switch_to.frame(frame)
        assert "single pass" in browser.find_element(By.TAG_NAME, "body").text.lower()
        assert browser.find_elements(By.TAG_NAME, "svg")
        browser.switch_to.default_content()
