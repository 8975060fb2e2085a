"""The page in a real headless browser (Debian's Chromium driven by Selenium): a generated video uploaded
through its file input, the top 5 read back from the page and compared with `video-swin classify`, the
timeline and explanation areas showing the service's answers, and a screenshot.

`VIDEO_SWIN_UPDATE_SCREENSHOT=1` writes the screenshot to docs/images/serve_page.png (the README's)."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.deploy.serve.conftest import assert_same_answer

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "images" / "serve_page.png"


def _ensure_chromium():
    """Debian's chromium and chromium-driver, installed with apt-get when missing (as root); otherwise the
    test is skipped, saying why."""
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("needs Debian's chromium and chromium-driver: apt-get is not available here as root")
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode != 0:
            pytest.skip(f"could not install chromium with apt-get: {done.stderr.strip().splitlines()[-1:]}")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("apt-get installed chromium but not at /usr/bin/chromium and /usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser():
    _ensure_chromium()
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra: pip install 'video_swin[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1500",
                     "--autoplay-policy=no-user-gesture-required", "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def test_the_page_classifies_an_uploaded_video(browser, server, clips, offline, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 120)
    browser.get(server.url + "/")
    wait.until(lambda d: "synthetic_motion" in d.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "file").send_keys(str(clips["good"]["page.mp4"]))
    bars = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#bars .bar") or False)

    shown = [{"label": b.find_element(By.CLASS_NAME, "label").text,
              "probability": float(b.get_attribute("data-probability"))} for b in bars]
    texts = [b.find_element(By.CLASS_NAME, "value").text for b in bars]
    expected = offline["page.mp4"]["top_k"][:5]
    assert_same_answer({"top_k": shown, "timings": {}}, {"top_k": expected, "timings": {}})
    assert texts == [f"{100 * r['probability']:.1f} %" for r in expected]  # what a person reads
    assert browser.find_element(By.ID, "file-name").text == "page.mp4"
    assert browser.find_element(By.ID, "error").is_displayed() is False

    # The timeline is drawn under the video: one block per segment of the service's answer.
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline-plot svg") or False)
    assert browser.find_element(By.ID, "timeline-message").text == ""
    # The video plays (a frame is decoded and time moves on).
    wait.until(lambda d: d.execute_script("const v = document.getElementById('player'); return v.readyState >= 2 && v.currentTime > 0"))

    # The explanation on request: the heat-map video plays on the page.
    browser.find_element(By.ID, "explain-button").click()
    wait.until(lambda d: d.execute_script(
        "const v = document.getElementById('explain-video'); return !v.hidden && v.readyState >= 2"))
    assert browser.find_element(By.ID, "explain-message").text == ""

    shot = tmp_path / "serve_page.png"
    assert browser.save_screenshot(str(shot))
    if os.environ.get("VIDEO_SWIN_UPDATE_SCREENSHOT"):
        from video_swin import files

        with files.atomic_path(SCREENSHOT) as out:
            shutil.copyfile(shot, out)

    # A file that is not a video: the service's one line, as the page shows errors.
    browser.find_element(By.ID, "file").send_keys(str(clips["bad"]["text.mp4"]))
    error = wait.until(lambda d: d.find_element(By.ID, "error").text or False)
    assert error.startswith("422: not a readable video file (unknown format, corrupt or truncated): text.mp4 ")
    assert "\n" not in error and not browser.find_elements(By.CSS_SELECTOR, "#bars .bar")

    # Dropping a video on the page classifies it too (the dropped file built in the page from the good one).
    browser.find_element(By.ID, "file").send_keys(str(clips["good"]["page.mp4"]))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#bars .bar") or False)
    browser.execute_script("""
        const file = new File([document.getElementById('file').files[0]], 'dropped.mp4', {type: 'video/mp4'});
        const data = new DataTransfer();
        data.items.add(file);
        document.getElementById('bars').replaceChildren();
        document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
    """)
    wait.until(lambda d: d.find_element(By.ID, "file-name").text == "dropped.mp4")
    bars = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#bars .bar") or False)
    assert [b.get_attribute("data-label") for b in bars] == [r["label"] for r in expected]
    assert not browser.find_element(By.ID, "error").is_displayed()


def test_the_timeline_plot_draws_activitynet_segments(browser, server):
    """The plot the page draws from the timeline's ActivityNet results (fed here directly: the endpoint is
    another module's): one bar per segment, one row per label, an axis in seconds."""
    from selenium.webdriver.common.by import By

    browser.get(server.url + "/")
    segments = [{"label": "moving_left", "score": 0.9, "segment": [0.0, 2.5]},
                {"label": "growing", "score": 0.6, "segment": [2.5, 4.0]},
                {"label": "moving_left", "score": 0.8, "segment": [5.0, 8.0]}]
    browser.execute_script("document.getElementById('timeline').hidden = false; renderTimeline(arguments[0])",
                           {"version": "1.3", "results": {"v": segments}})
    rects = browser.find_elements(By.CSS_SELECTOR, "#timeline-plot svg rect.seg")
    assert len(rects) == 3
    xs = [float(r.get_attribute("x")) for r in rects]
    widths = [float(r.get_attribute("width")) for r in rects]
    # x grows with time and widths are in proportion to the durations (2.5 s, 1.5 s, 3 s)
    assert xs[0] < xs[1] < xs[2]
    np.testing.assert_allclose(np.array(widths) / widths[0], [1, 1.5 / 2.5, 3 / 2.5], rtol=1e-6)
    labels = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#timeline-plot svg text")]
    assert labels[:2] == ["moving_left", "growing"] and "8 s" in labels
    if os.environ.get("VIDEO_SWIN_TIMELINE_SHOT"):
        browser.find_element(By.ID, "timeline").screenshot(os.environ["VIDEO_SWIN_TIMELINE_SHOT"])
