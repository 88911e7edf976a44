"""``ganrun report --plots``: charts rendered by matplotlib as PNG files (written to
RUN/plots/ and embedded in the page), inline SVG, and the choice between them."""

from __future__ import annotations

import base64
import io
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("matplotlib")  # the ``plot`` extra, part of the ``test`` extra

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

from registry.report import page as report  # noqa: E402

if TYPE_CHECKING:
    from conftest import Ganrun

COMMON = [
    "--model",
    "tiny",
    "--steps",
    4,
    "--log-every",
    1,
    "--sample-every",
    4,
    "--batch-size",
    16,
    "--code",
    "categorical:3",
    "--code",
    "uniform:1",
]
CHARTS = {"d-and-g-losses.png", "c1-l-i-nats-against-h-c.png", "c2-l-i-nats-against-h-c.png"}


@pytest.fixture(scope="module")
def runs(ganrun: Ganrun, tiny: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny InfoGAN run and its lambda-0 baseline (read-only: tests copy the run)."""
    folder = tmp_path_factory.mktemp("report-runs")
    ganrun.train(folder / "run", *COMMON, plugins=["infogan", tiny])
    ganrun.train(folder / "baseline", *COMMON, "--lambda", 0, plugins=["infogan", tiny])
    return folder / "run", folder / "baseline"


@pytest.fixture
def run(runs: tuple[Path, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(runs[0], tmp_path / "run"))


def _embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_png_report_writes_the_charts_and_embeds_them(
    ganrun: Ganrun, run: Path, runs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = {}
    draw = report.chart_figure

    def recording(lines, *, title, **kwargs):
        figures[title] = fig = draw(lines, title=title, **kwargs)
        return fig

    monkeypatch.setattr(report, "chart_figure", recording)
    pyplot_before = "matplotlib.pyplot" in sys.modules

    result = ganrun.invoke("report", run, "--baseline", runs[1], "--plots", "png", plugins=["infogan"])
    assert result.exit_code == 0, ganrun.describe(result)
    assert result.output == f"{run / 'report.html'}\n"  # the echo is the page, as with SVG
    page = (run / "report.html").read_text()

    files = {p.name: p for p in (run / "plots").iterdir()}
    assert set(files) == CHARTS
    embedded = _embedded_pngs(page)
    for path in files.values():
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (840, 440)  # 420 x 220 CSS px, at 2x
            image.load()
        assert path.read_bytes() in embedded  # the page holds the very file: one self-contained page
    assert len(embedded) == 3 + 1 + 2  # charts, the sample grid, a traversal per code
    assert "<svg" not in page and "file:" not in page and 'src="runs' not in page
    assert 'alt="c1: L_I (nats) against H(c)"' in page
    if not pyplot_before:
        assert "matplotlib.pyplot" not in sys.modules  # only Figure and the Agg canvas

    # The paper's Figure 1 as drawn: L_I solid, the baseline dashed, H(c) a labelled line.
    figure1 = figures["c1: L_I (nats) against H(c)"]
    ax = figure1.axes[0]
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert styles == {"L_I c1": "-", "baseline L_I c1": "--"}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["L_I c1", "baseline L_I c1"]
    [reference] = [line for line in ax.get_lines() if line.get_label().startswith("_")]
    assert list(reference.get_ydata()) == pytest.approx([1.0986] * 2, abs=1e-3)
    assert [t.get_text() for t in ax.texts] == ["H = 1.099"]
    assert ax.get_xlabel() == "step" and ax.get_title() == "c1: L_I (nats) against H(c)"
    steps = [row["step"] for row in ganrun.metrics(run)]
    assert list(ax.get_lines()[0].get_xdata()) == steps == [1, 2, 3, 4]
    losses = figures["D and G losses"].axes[0]
    assert {line.get_label(): line.get_linestyle() for line in losses.get_lines()} == {
        "d/adv": "-",
        "g/adv": "-",
        "baseline d/adv": "--",
        "baseline g/adv": "--",
    }


def test_svg_report_draws_inline_svg_and_writes_no_png(ganrun: Ganrun, run: Path, runs: tuple[Path, Path]) -> None:
    result = ganrun.invoke("report", run, "--baseline", runs[1], "--plots", "svg", plugins=["infogan"])
    assert result.exit_code == 0, ganrun.describe(result)
    page = (run / "report.html").read_text()
    assert page.count("<svg") == 3 and 'stroke-dasharray="5,3"' in page  # dashed baselines
    assert len(_embedded_pngs(page)) == 3  # pictures only
    assert not (run / "plots").exists()


def test_auto_is_png_with_matplotlib_and_svg_without(
    ganrun: Ganrun, run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = ganrun.invoke("report", run, plugins=["infogan"])
    assert result.exit_code == 0, ganrun.describe(result)
    page = (run / "report.html").read_text()
    assert "<svg" not in page and {p.name for p in (run / "plots").iterdir()} == CHARTS

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    result = ganrun.invoke("report", run, "--out", run / "fallback.html", plugins=["infogan"])
    assert result.exit_code == 0, ganrun.describe(result)
    assert (run / "fallback.html").read_text().count("<svg") == 3


def test_png_without_matplotlib_names_the_option_and_the_extra(
    ganrun: Ganrun, run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = ganrun.invoke("report", run, "--plots", "png", plugins=["infogan"])
    assert result.exit_code == 2
    line = ganrun.error_line(result)
    assert "--plots" in line and "pip install 'ganrun[plot]'" in line
    assert not (run / "report.html").exists() and not (run / "plots").exists()
    with pytest.raises(ImportError, match=re.escape("pip install 'ganrun[plot]'")):
        with report.png_charts(run / "plots"):
            pass


def test_png_charts_name_files_by_title_and_end_with_the_context(tmp_path: Path) -> None:
    lines = {"a": [(0, 1.0), (10, 2.0)]}
    with report.png_charts(tmp_path / "plots") as written:
        first = report.line_chart(lines, title="Loss: D/G")
        second = report.line_chart(lines, title="Loss: D/G")
        assert report.line_chart({"a": []}, title="empty") == ""
    assert [p.name for p in written] == ["loss-d-g.png", "loss-d-g-2.png"]
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"loss-d-g.png", "loss-d-g-2.png"}
    for tag, path in zip((first, second), written):
        assert tag.startswith("<figure><img") and "image-rendering" not in tag
        [data] = _embedded_pngs(tag)
        assert data == path.read_bytes()
        Image.open(io.BytesIO(data)).verify()
    assert report.line_chart(lines, title="Loss: D/G").startswith("<svg")  # the context has ended


EXTREME = [1.7976931348623157e308, -1.7976931348623157e308, 1e300, -1e-300, 5e-324, 0.0, 1e15, 3.0]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.one_of(st.sampled_from(EXTREME), st.floats(allow_nan=False, allow_infinity=False)), min_size=1, max_size=6
    ),
    st.floats(allow_nan=False, allow_infinity=False),
)
def test_any_finite_values_draw_in_both_formats(tmp_path_factory, ys, reference) -> None:
    lines = {"loss": [(step * 50, y) for step, y in enumerate(ys)]}
    svg = report.line_chart(lines, title="d/adv", references={"H": reference})
    assert svg.startswith("<svg") and not re.search(r"nan|inf", svg.lower().replace("info", ""))
    clipped = any(abs(y) > report.CHART_LIMIT for y in [*ys, reference])
    assert ("drawn at it" in svg) == clipped
    with report.png_charts(tmp_path_factory.mktemp("png")) as written:
        tag = report.line_chart(lines, title="d/adv", references={"H": reference})
    assert tag.startswith("<") and len(written) == 1
    assert Image.open(written[0]).size[0] > 0
