"""The latent explorer for real: its HTTP server on a free port, and its page in headless Chromium."""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

import infogan_plugin
from conftest import needs_chromium
from infogan_plugin.explore import Explorer, make_server


@pytest.fixture(scope="module")
def server(trained_infogan_run: Path):
    run = infogan_plugin.load_run(trained_infogan_run)
    httpd = make_server(Explorer(run), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def test_page_lists_a_control_per_code(server):
    status, kind, body = _get(server + "/")
    assert status == 200 and kind.startswith("text/html")
    page = body.decode()
    config = json.loads(page.split("const CONFIG = ", 1)[1].split(";\n", 1)[0])
    controls = {c["name"]: c for c in config["controls"]}
    assert controls["c1"]["kind"] == "buttons" and controls["c1"]["values"] == [0, 1, 2]
    assert controls["c2"]["kind"] == "slider" and (controls["c2"]["min"], controls["c2"]["max"]) == (-2.0, 2.0)
    assert (controls["c3"]["min"], controls["c3"]["max"]) == (-2.0, 2.0)  # the traversal range


def test_image_endpoint_draws_the_chosen_codes(server, trained_infogan_run):
    status, kind, body = _get(server + "/image.png?c1=2&c2=0.5&seed=7&n=4")
    assert status == 200 and kind == "image/png"
    grid = Image.open(io.BytesIO(body))
    assert grid.size == (2 * 30 + 2, 2 * 30 + 2)
    run = infogan_plugin.load_run(trained_infogan_run)
    assert body == run.grid_png(run.generate(4, codes={"c1": 2, "c2": 0.5}, seed=7), nrow=2)
    assert _get(server + "/image.png")[0] == 200  # every code from its prior
    assert _get(server + "/image.png?c1=0&seed=7&n=4")[2] != body


@pytest.mark.parametrize(
    "query, reason",
    [
        ("c1=3", "code 'c1' (categorical): value 3 is not allowed: expected an integer in 0..2"),
        ("c2=2.5", "value 2.5 is not allowed: expected a number in [-2, 2]"),
        ("c2=nan", "c2='nan' is not a number"),
        ("c2=inf", "c2='inf' is not a number"),
        ("c2=1e999", "c2='1e999' is not a finite number"),
        ("c2=", "c2='' is not a number"),
        ("seed=99999999999999999999999", "seed='99999999999999999999999' is not allowed"),
        ("seed=-1", "seed='-1' is not allowed"),
        ("n=65", "n='65' is not allowed: expected an integer in 1..64"),
        ("n=0", "n='0' is not allowed"),
        ("c9=1", "unknown parameter 'c9'; allowed: c1, c2, c3, seed, n"),
        ("c1=1&c1=2", "parameter 'c1' given twice"),
        ("c1", "malformed query"),
        ("x" * 3000, "query longer than 2048 characters"),
    ],
)
def test_bad_parameters_are_400_with_a_reason(server, query, reason):
    status, kind, body = _get(server + "/image.png?" + query)
    assert status == 400 and kind.startswith("text/plain")
    assert reason in body.decode() and "Traceback" not in body.decode()


@pytest.mark.parametrize("path", ["/favicon.ico", "/image.jpg", "/../etc/passwd", "/?c1=1", "/index.html"])
def test_everything_else_is_404(server, path):
    assert _get(server + path)[0] == 404


@pytest.mark.parametrize(
    "host, status",
    [
        ("evil.example", 403),
        ("evil.example:80", 403),
        ("127.0.0.1.evil.example", 403),
        ("", 403),
        ("localhost", 200),
        ("LOCALHOST:9", 200),
        ("127.0.0.1:1", 200),
        ("[::1]:8765", 200),
    ],
)
def test_a_loopback_server_answers_loopback_host_names_only(server, host, status):
    """DNS rebinding: a page on another name that resolves to 127.0.0.1 must get nothing."""
    request = urllib.request.Request(server + "/", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            got = response.status
    except urllib.error.HTTPError as err:
        got = err.code
    assert got == status


def test_many_quick_requests_all_answer(server):
    urls = [f"{server}/image.png?c2={(i % 40) / 10 - 2:.1f}&seed={i}" for i in range(60)]
    with ThreadPoolExecutor(8) as pool:
        statuses = [status for status, _, _ in pool.map(_get, urls)]
    assert statuses == [200] * 60
    assert _get(server + "/")[0] == 200  # and it still serves the page


def test_explore_command_prints_the_url_and_stops_on_ctrl_c(ganrun, trained_infogan_run):
    import signal

    proc = ganrun.popen("explore", trained_infogan_run, "--port", 0, plugins=["infogan"])
    try:
        line = proc.stdout.readline()
        assert "at http://127.0.0.1:" in line, line + proc.stderr.read()
        url = line.split(" at ", 1)[1].split()[0]
        assert _get(url)[0] == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)  # seconds on an idle machine; generous for a loaded one
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "stopped" in err and "Traceback" not in err


# ------------------------------------------------------------------------------ in a browser


@needs_chromium
def test_page_in_chromium_updates_the_grid_as_a_slider_moves(server, tmp_path, chromium):
    """Headless Chromium, driven by Selenium through the system's chromedriver (nothing is
    downloaded): load the page, move c2's slider and pick c1's class, and see the image change."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium(1100, 800)
    driver.get(server + "/")
    wait = WebDriverWait(driver, 30)
    image = driver.find_element(By.ID, "grid")

    def shown() -> str:
        return image.get_attribute("data-query") or ""

    def loaded(_driver) -> bool:
        return driver.execute_script("const i = arguments[0]; return i.complete && i.naturalWidth > 0;", image)

    wait.until(lambda _: "c2=0" in shown())
    wait.until(loaded)
    first, first_pixels = shown(), image.screenshot_as_png
    slider = driver.find_element(By.ID, "code-c2")
    for _ in range(20):  # 20 quick steps to the right
        slider.send_keys(Keys.ARROW_RIGHT)
    wait.until(lambda _: "c2=0.8" in shown())  # only the newest position is kept
    wait.until(loaded)
    assert shown() != first and image.screenshot_as_png != first_pixels
    driver.find_element(By.ID, "code-c1-2").click()
    wait.until(lambda _: "c1=2" in shown())
    driver.find_element(By.ID, "reseed").click()
    wait.until(lambda _: "seed=0&" not in shown())
    assert driver.find_element(By.ID, "status").text == ""
    driver.save_screenshot(str(tmp_path / "explorer.png"))
    if os.environ.get("GANRUN_SCREENSHOT"):  # to look at the page yourself
        shutil.copy(tmp_path / "explorer.png", os.environ["GANRUN_SCREENSHOT"])
