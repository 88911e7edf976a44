"""``ganrun report`` shows results first: a title that says what the run is, the headline figures,
the pictures drawn large and sharp, the charts each with a line on how to read it, and the
configuration folded at the end without duplicate rows. Read from the page's HTML, and in
headless Chromium at 1200 x 800, where the headline and a traversal are on the first screen."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from conftest import needs_chromium
from registry.report import PLACES, place_sections, render, title_for, upscale_for


class Outline(HTMLParser):
    """The page's outline in document order: ``(kind, text, attributes)`` for the title, every
    section (by its class), ``<details>`` summary, ``<img>`` and chart caption."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[tuple[str, str, dict]] = []
        self._text: list[str] | None = None
        self._kind = ""
        self._attrs: dict = {}

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "section":
            self.items.append(("section", attrs.get("class", ""), attrs))
        elif tag == "details":
            self.items.append(("details", "", attrs))
        elif tag == "img":
            self.items.append(("img", attrs.get("alt", ""), attrs))
        elif tag in ("h1", "h2", "summary", "figcaption"):
            self._text, self._kind, self._attrs = [], tag, attrs

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._text is not None and tag == self._kind:
            self.items.append((tag, "".join(self._text), self._attrs))
            self._text = None


def outline(page: str) -> list[tuple[str, str, dict]]:
    parser = Outline()
    parser.feed(page)
    return parser.items


@pytest.fixture(scope="module")
def reported(ganrun, trained_infogan_run: Path, tiny: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny InfoGAN run (categorical:3, uniform:1, gaussian:1 on 28-px digits),
    copied, evaluated and reported."""
    run = tmp_path_factory.mktemp("report-page") / "digits-tiny"
    shutil.copytree(trained_infogan_run, run)
    result = ganrun.invoke("eval", run, "--samples", 200, plugins=["infogan", tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    result = ganrun.invoke("report", run, "--plots", "svg", plugins=["infogan", tiny])
    assert result.exit_code == 0, ganrun.describe(result)
    return run


def test_title_says_what_the_run_is(reported: Path) -> None:
    page = (reported / "report.html").read_text()
    [(_, title, _)] = [item for item in outline(page) if item[0] == "h1"]
    assert title == "digits-tiny: InfoGAN, categorical:3 + uniform:1 + gaussian:1 on digits, 200 steps"
    assert f"<title>{title}</title>" in page and "ganrun run" not in page


def test_results_come_first_and_the_configuration_last(reported: Path) -> None:
    items = outline((reported / "report.html").read_text())
    kinds = [(kind, text) for kind, text, _ in items if kind in ("section", "details")]
    places = [text if kind == "section" else "details" for kind, text in kinds]
    order = [PLACES.index(place) for place in places]
    assert order == sorted(order), places  # headline, pictures, samples, charts, more, details
    assert places[0] == "headline" and places[-1] == "details"
    for first, then in (("headline", "pictures"), ("pictures", "charts"), ("charts", "details")):
        assert places.index(first) < places.index(then), places
    summaries = [text for kind, text, _ in items if kind == "summary"]
    assert summaries[-1] == "Configuration" and summaries[0].startswith("Every metric at step 200")

    # the headline holds eval.json's figures: the accuracy and L_I read against what each code can reach
    page = (reported / "report.html").read_text()
    headline = page[: page.index('<section class="pictures">')]
    info = json.loads((reported / "eval.json").read_text())
    accuracy = info["classification"]["c1"]["accuracy"]
    assert f"c1: unsupervised accuracy {accuracy:.2%}" in headline
    assert f"c1: L_I {info['information']['c1']['L_I']:.3f} nats of H 1.099" in headline
    assert "c2: L_I" in headline and "(reachable max -0.226; H 0.693)" in headline

    # every chart says how to read it, the continuous code's why its bound is negative
    captions = [text for kind, text, attrs in items if kind == "figcaption"]
    charts = page.count('<figure class="chart"')
    assert charts == 4 and page.count("<svg") == 4  # losses, L_I of c1, c2, c3
    assert any("L_I rises towards the dotted H = 1.099" in text for text in captions)
    assert any(
        "c2 is continuous, so L_I bounds a differential entropy and can be negative" in text for text in captions
    )


def test_pictures_are_drawn_four_times_as_large_and_pixelated(reported: Path) -> None:
    items = outline((reported / "report.html").read_text())
    images = [(alt, attrs) for kind, alt, attrs in items if kind == "img"]
    traversals = [(alt, attrs) for alt, attrs in images if "traversal" in alt]
    assert [alt.split()[0] for alt, _ in traversals] == ["c1", "c2", "c3"]  # one per code
    assert any(alt.startswith("fixed-latent samples") for alt, _ in images)
    for alt, attrs in images:
        data = base64.b64decode(attrs["src"].split("base64,", 1)[1])
        with Image.open(io.BytesIO(data)) as picture:
            natural = picture.size[0]
        style = dict(part.split(":", 1) for part in attrs["style"].split(";"))
        assert style["image-rendering"] == "pixelated", alt
        assert style["width"] == f"{4 * natural}px" and style["max-width"] == "100%", (alt, style)
    assert upscale_for(28) == 4 and upscale_for(64) == 2 and upscale_for(128) == 1 and upscale_for(None) == 1


def test_the_configuration_has_one_row_per_setting(reported: Path) -> None:
    page = (reported / "report.html").read_text()
    configuration = page[page.index("<summary>Configuration</summary>") :]
    keys = re.findall(r"<tr><th>([^<]+)</th>", configuration)
    assert len(keys) == len(set(keys)) and "model" in keys and not any("resolved" in key for key in keys)
    assert "<tr><th>model</th><td>&quot;tiny&quot;</td></tr>" in configuration  # set: shown once, as set
    assert "<tr><th>image_shape</th><td>[1, 28, 28]</td></tr>" in configuration


def test_sections_are_placed_in_page_order_and_pairs_go_under_more(capsys: pytest.CaptureFixture) -> None:
    sections = [
        ("Configuration", "<table></table>", "details"),
        ("A plugin's pair", "<p>pair</p>"),
        ("Charts", "<svg></svg>", "charts"),
        ("Headline", "<p>1</p>", "headline"),
        ("Empty", "", "pictures"),
        ("Odd", "<p>odd</p>", "sideways"),
    ]
    placed = place_sections(sections)
    assert [(title, place) for title, _, place in placed] == [
        ("Headline", "headline"),
        ("Charts", "charts"),
        ("A plugin's pair", "more"),
        ("Odd", "more"),
        ("Configuration", "details"),
    ]
    assert "unknown place 'sideways'" in capsys.readouterr().err
    page = render("t", sections)
    assert page.index("<h2>Headline</h2>") < page.index("<h2>Charts</h2>") < page.index("<summary>Configuration")
    assert '<details class="details"><summary>Configuration</summary><table></table></details>' in page


def test_a_title_for_a_run_that_stopped_early_and_for_a_plain_gan(tmp_path: Path) -> None:
    described = {"config": {"dataset": "shapes", "steps": 4000}}
    assert title_for(tmp_path / "s0", described, [{"step": 2000}], ["InfoGAN, uniform:5"]) == (
        "s0: InfoGAN, uniform:5 on shapes, 2,000 of 4,000 steps"
    )
    assert title_for(tmp_path / "p", described, [{"step": 4000}], []) == "p: GAN on shapes, 4,000 steps"
    assert title_for(tmp_path / "x", None, [], []) == "x: GAN"


# ------------------------------------------------------------------------------ in a browser

FIRST_SCREEN = """
const box = (el) => { const r = el.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, left: r.left,
    right: r.right, height: r.height}; };
const headline = [...document.querySelectorAll('section.headline')];
const traversal = document.querySelector('section.pictures img');
return {headline: headline.map(box), traversal: traversal ? box(traversal) : null,
        natural: traversal ? traversal.naturalWidth : 0, loaded: traversal ? traversal.complete : false,
        width: window.innerWidth, height: window.innerHeight, scrollY: window.scrollY,
        overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth};
"""


@needs_chromium
def test_first_screen_at_1200_px_shows_the_headline_and_a_traversal(reported: Path, chromium, tmp_path: Path) -> None:
    driver = chromium(1200, 800)
    driver.set_window_size(1200, 800)
    driver.get((reported / "report.html").as_uri())
    seen = driver.execute_script(FIRST_SCREEN)
    driver.save_screenshot(str(tmp_path / "report.png"))
    assert seen["width"] <= 1200 and seen["scrollY"] == 0 and seen["overflow"] <= 0, seen  # no sideways scroll
    assert seen["headline"], seen
    for box in seen["headline"]:  # every headline block is whole on the first screen
        assert 0 <= box["top"] and box["bottom"] <= seen["height"], seen
    traversal = seen["traversal"]
    assert traversal is not None and seen["loaded"], seen
    assert traversal["top"] < seen["height"] - 150, seen  # a good part of it shows without scrolling
    assert traversal["right"] <= seen["width"], seen
    assert traversal["height"] >= 4 * 30, seen  # drawn large: 4x, more than a row of 28-px digits
