"""A one-page static HTML report of a run folder: configuration, final metrics, curves
and the newest pictures (embedded as data URIs, so the page is one file that can be mailed
or archived). Plugins add sections through ``ganrun_report_sections``.

Curves are inline SVG, which needs no plotting library. Inside ``png_charts(folder)`` the
same ``line_chart`` calls render with matplotlib instead (the optional extra ``plot``):
each chart is written to ``folder`` as a PNG and embedded in the page as well."""

from __future__ import annotations

import base64
import contextvars
import html
import io
import json
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

from registry.checkpoint.atomic import atomic_write
from registry.runfiles import RunFileError, read_json
from registry.runfiles import warn as _warn

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")
Series = Sequence[tuple[float, float]]


def series(rows: Iterable[dict], key: str) -> list[tuple[float, float]]:
    return [
        (row["step"], row[key]) for row in rows if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])
    ]


PLOT_EXTRA_HINT = "pip install 'ganrun[plot]'"


@dataclass
class _PngCharts:
    folder: Path
    written: list[Path] = field(default_factory=list)


_PNG_CHARTS: contextvars.ContextVar[_PngCharts | None] = contextvars.ContextVar("ganrun_png_charts", default=None)


def matplotlib_available() -> bool:
    """Whether ``png_charts`` can be used (matplotlib and its Agg canvas import)."""
    try:
        import matplotlib  # noqa: F401  (checked first: a blocked parent must count as missing)
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def png_charts(folder: Path) -> Iterator[list[Path]]:
    """Render every ``line_chart`` in this context with matplotlib: each chart is written to
    ``folder/<slug of its title>.png`` and embedded in the page as a PNG data URI.

    Yields the list of PNG files written so far. Raises ``ImportError`` (naming the ``plot``
    extra) when matplotlib is missing. matplotlib's global state (pyplot, the backend) is
    never touched.
    """
    if not matplotlib_available():
        raise ImportError(f"PNG charts need matplotlib: {PLOT_EXTRA_HINT}")
    state = _PngCharts(Path(folder))
    token = _PNG_CHARTS.set(state)
    try:
        yield state.written
    finally:
        _PNG_CHARTS.reset(token)


def slug(text: str) -> str:
    """A file-name stem for a chart title: lowercase letters, digits and single dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "chart"


def chart_figure(
    lines: dict[str, Series],
    *,
    title: str,
    references: dict[str, float] | None = None,
    dashed: Iterable[str] = (),
    width: int = 420,
    height: int = 220,
) -> "Figure":
    """The matplotlib figure of a ``line_chart`` (the same lines, labels, dashes and references),
    on its own Agg canvas; ``width`` and ``height`` are its size in CSS pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    lines, references, title = clip_for_drawing(lines, references or {}, title)
    dashed = set(dashed)
    fig = Figure(figsize=(width / 100, height / 100), dpi=100, constrained_layout=True)  # any matplotlib >= 3.5
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = 0
    for i, (label, pts) in enumerate(lines.items()):
        if not pts:
            continue
        drawn += 1
        xs, ys = zip(*pts)
        ax.plot(
            xs,
            ys,
            color=PALETTE[i % len(PALETTE)],
            linewidth=1.2,
            label=label,
            linestyle="--" if label in dashed else "-",
            marker="o" if len(pts) == 1 else None,
            markersize=3,
        )
    for value in references.values():
        ax.axhline(value, color="#999999", linewidth=0.9, linestyle=":")
    low, high = ax.get_ylim()
    for label, value in references.items():  # the label goes on the side of its line with more room
        above = value < (low + high) / 2
        ax.annotate(
            label,
            xy=(1.0, value),
            xycoords=("axes fraction", "data"),
            xytext=(-3, 2 if above else -2),
            textcoords="offset points",
            ha="right",
            va="bottom" if above else "top",
            fontsize=6.5,
            color="#666666",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=8.5)
    ax.set_xlabel("step", fontsize=7)
    ax.tick_params(labelsize=6.5)
    ax.grid(True, color="#eeeeee", linewidth=0.6)
    ax.legend(fontsize=6.5, frameon=False, ncol=min(3, max(1, drawn)))
    return fig


def _png_chart(
    state: _PngCharts,
    lines: dict[str, Series],
    *,
    title: str,
    references: dict[str, float] | None,
    dashed: Iterable[str],
    width: int,
    height: int,
) -> str:
    fig = chart_figure(lines, title=title, references=references, dashed=dashed, width=width, height=height)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=200, metadata={"Software": None})  # 2x for sharp text
    taken = {p.name for p in state.written}
    stem = slug(title)
    name, n = f"{stem}.png", 2
    while name in taken:
        name, n = f"{stem}-{n}.png", n + 1
    state.folder.mkdir(parents=True, exist_ok=True)
    path = state.folder / name
    atomic_write(path, buffer.getvalue())
    state.written.append(path)
    return image_tag(path, alt=title, max_width=width, pixelated=False, caption=False)


# Finite values beyond this are drawn at it: matplotlib's tick arithmetic and the SVG's scale
# overflow on spans near 1e308, and a chart squashed by such a value shows nothing anyway.
CHART_LIMIT = 1e15


def clip_for_drawing(
    lines: dict[str, Series], references: dict[str, float], title: str
) -> tuple[dict[str, Series], dict[str, float], str]:
    """``lines`` and ``references`` with every value limited to +-``CHART_LIMIT`` (non-finite
    points dropped), and ``title`` saying so when anything was clipped."""
    clipped = False

    def clip(value: float) -> float:
        nonlocal clipped
        if abs(value) > CHART_LIMIT:
            clipped = True
            return math.copysign(CHART_LIMIT, value)
        return value

    finite = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731
    lines = {k: [(x, clip(y)) for x, y in pts if finite(x) and finite(y)] for k, pts in lines.items()}
    references = {k: clip(v) for k, v in references.items() if finite(v)}
    if clipped:
        title = f"{title} (values beyond \u00b1{CHART_LIMIT:.0e} drawn at it)"
    return lines, references, title


def line_chart(
    lines: dict[str, Series],
    *,
    title: str,
    references: dict[str, float] | None = None,
    dashed: Iterable[str] = (),
    width: int = 420,
    height: int = 220,
    caption: str | None = None,
) -> str:
    """A line chart against the step: each of ``lines`` labelled, those named in ``dashed``
    (e.g. a baseline run) dashed, and ``references`` drawn as labelled horizontal lines
    (e.g. H(c)). Inline SVG, or an embedded PNG inside ``png_charts``; ``""`` when there
    is nothing to draw. Any finite value can be drawn: beyond +-``CHART_LIMIT`` it is
    drawn at the limit and the title says so. ``caption``, one line on how to read the chart,
    goes under it (the chart and its caption are one ``<figure class="chart">``)."""
    chart = _chart(lines, title=title, references=references, dashed=dashed, width=width, height=height)
    if not chart or caption is None:
        return chart
    return (
        f'<figure class="chart" style="max-width:{width}px">{chart}'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _chart(
    lines: dict[str, Series],
    *,
    title: str,
    references: dict[str, float] | None,
    dashed: Iterable[str],
    width: int,
    height: int,
) -> str:
    lines, references, title = clip_for_drawing(lines, references or {}, title)
    dashed = set(dashed)
    points = [p for pts in lines.values() for p in pts]
    if not points:
        return ""
    state = _PNG_CHARTS.get()
    if state is not None:
        return _png_chart(state, lines, title=title, references=references, dashed=dashed, width=width, height=height)
    xs = [x for x, _ in points]
    ys = [y for _, y in points] + list(references.values())
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    pad_l, pad_r, pad_t, pad_b = 48, 20, 22, 28
    sx = lambda x: pad_l + (x - x0) / (x1 - x0) * (width - pad_l - pad_r)
    sy = lambda y: height - pad_b - (y - y0) / (y1 - y0) * (height - pad_t - pad_b)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img"><title>{html.escape(title)}</title>',
        f'<text x="{width / 2}" y="14" text-anchor="middle" font-size="12">{html.escape(title)}</text>',
        f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - pad_r}" y2="{height - pad_b}" stroke="#444"/>',
        f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{height - pad_b}" stroke="#444"/>',
    ]
    for value in (y0, (y0 + y1) / 2, y1):
        parts.append(
            f'<text x="{pad_l - 4}" y="{sy(value) + 4:.1f}" text-anchor="end" font-size="10">{value:.3g}</text>'
        )
    for value in (x0, x1):
        parts.append(
            f'<text x="{sx(value):.1f}" y="{height - 10}" text-anchor="middle" font-size="10">{value:.0f}</text>'
        )
    for i, (label, value) in enumerate(references.items()):
        y = sy(value)
        parts.append(
            f'<line x1="{pad_l}" y1="{y:.1f}" x2="{width - pad_r}" y2="{y:.1f}" stroke="#999" '
            f'stroke-dasharray="2,3"/><text x="{width - pad_r - 2}" y="{y - 3:.1f}" text-anchor="end" '
            f'font-size="10" fill="#666">{html.escape(label)}</text>'
        )
    for i, (label, pts) in enumerate(lines.items()):
        if not pts:
            continue
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        dash = ' stroke-dasharray="5,3"' if label in dashed else ""
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{path}"/>')
        parts.append(
            f'<text x="{pad_l + 6 + 110 * (i % 3)}" y="{pad_t + 12 + 12 * (i // 3)}" font-size="10" '
            f'fill="{colour}">{html.escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


# A generated image is drawn at least this many CSS pixels wide: 4x for 28-px digits, 2x for
# 64-px images, so a sample is seen, not a thumbnail.
MIN_TILE_CSS_PX = 112


def upscale_for(tile: int | None) -> int:
    """The whole-number factor that draws an image of ``tile`` pixels at least
    ``MIN_TILE_CSS_PX`` CSS pixels wide (4 for 28 px, 2 for 64 px, 1 from 112 px); 1 when the
    size is unknown."""
    if not isinstance(tile, int) or isinstance(tile, bool) or tile < 1:
        return 1
    return max(1, math.ceil(MIN_TILE_CSS_PX / tile))


def image_tag(
    path: Path,
    *,
    alt: str,
    max_width: int = 420,
    pixelated: bool = True,
    caption: bool | str = True,
    scale: int | None = None,
) -> str:
    """A PNG file embedded as a data URI. ``scale`` draws it that many times its own size
    (narrowed to the page where the page is narrower), with nearest-neighbour upscaling
    (``image-rendering: pixelated``) so generated pictures stay sharp; without it the picture
    is at most ``max_width`` pixels wide (``pixelated`` still applies). ``caption``: ``True``
    repeats ``alt`` under the picture, a string says something else there, ``False`` nothing."""
    data = Path(path).read_bytes()
    if scale is not None:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            width = image.size[0] * scale
        style = f"width:{width}px;max-width:100%;height:auto;image-rendering:pixelated"
    else:
        style = f"max-width:{max_width}px" + (";image-rendering:pixelated" if pixelated else "")
    text = alt if caption is True else caption or ""
    under = f"<figcaption>{html.escape(text)}</figcaption>" if text else ""
    encoded = base64.b64encode(data).decode()
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}" style="{style}">{under}</figure>'
    )


def newest(paths: Iterable[Path]) -> Path | None:
    found = sorted(paths)
    return found[-1] if found else None


def recorded_plugins(run_dir: Path) -> list[str]:
    """The plugins a run was trained with, as its ``config.json`` records them (none when the
    file is missing or damaged: ``core_sections`` warns about that)."""
    from registry.run_plugins import recorded_plugins as recorded

    return list(recorded(run_dir, warn=None))


# Where a section goes on the page, in page order: the figures that say how the run went, the
# pictures a plugin is about (traversals), the host's sample grid, the charts, anything else,
# and last, folded, what one looks up (configuration, every metric).
PLACES = ("headline", "pictures", "samples", "charts", "more", "details")


def place_sections(sections: Iterable[Sequence[str]]) -> list[tuple[str, str, str]]:
    """``(title, html, place)`` for every section with content, in page order (stable within a
    place). A section is ``(title, html)``, placed under ``"more"``, or ``(title, html, place)``
    with a place of ``PLACES``; an unknown place is named in a warning and taken as ``"more"``."""
    placed = []
    for section in sections:
        title, content, *rest = section
        place = rest[0] if rest else "more"
        if place not in PLACES:
            _warn(
                f"report section {title!r}: unknown place {place!r} (places: {', '.join(PLACES)}); shown under 'more'"
            )
            place = "more"
        if content:
            placed.append((str(title), content, place))
    return sorted(placed, key=lambda section: PLACES.index(section[2]))


def read_described(run_dir: Path, *, quiet: bool = False) -> dict | None:
    """The run's ``config.json`` (configuration, resolved model, plugins, versions), or ``None``
    when it is missing or damaged (named in one warning unless ``quiet``)."""
    config_path = Path(run_dir) / "config.json"
    try:
        described = read_json(config_path, required=False)
        if described is None:
            return None
        if not isinstance(described, dict):
            raise RunFileError(config_path, "not an object")
        config = described.get("config", {})
        if not isinstance(config, dict) or not isinstance(config.get("extra", {}), dict):
            raise RunFileError(config_path, "'config' is not an object")
    except RunFileError as exc:
        if not quiet:
            _warn(f"{config_path}: damaged ({exc.reason}); the report has no configuration")
        return None
    return described


def image_size(described: dict | None) -> int | None:
    """The width in pixels of one generated image, as ``config.json`` records it."""
    shape = (described or {}).get("image_shape")
    if isinstance(shape, list) and shape and isinstance(shape[-1], int) and not isinstance(shape[-1], bool):
        return shape[-1]
    return None


def title_for(run_dir: Path, described: dict | None, rows: list[dict], whats: Sequence[str]) -> str:
    """``digits-0312: InfoGAN, categorical:10 + uniform:2 on digits, 4,000 steps``: the run's
    name and what it is (the plugins' words, ``whats``; ``GAN`` without any), its dataset and
    how far it trained (``2,000 of 4,000 steps`` for a run that stopped early)."""
    config = (described or {}).get("config") or {}
    what = "; ".join(w for w in whats if w) or "GAN"
    dataset = config.get("dataset")
    text = f"{Path(run_dir).name}: {what}" + (f" on {dataset}" if isinstance(dataset, str) else "")
    planned = config.get("steps") if isinstance(config.get("steps"), int) else None
    done = rows[-1]["step"] if rows else None
    if done is not None and planned is not None and done < planned:
        return f"{text}, {done:,} of {planned:,} steps"
    steps = done if done is not None else planned
    return f"{text}, {steps:,} steps" if steps is not None else text


def _configuration(described: dict) -> str:
    """One row per setting: the options as given (plugins' too), with what the run resolved from
    them in the same row (``model: dcgan28 (chosen for the data; not set)``), then what the run
    recorded besides (G's input width, image shape, plugins, versions)."""
    config = described.get("config", {})
    options = {k: v for k, v in {**config, **config.get("extra", {})}.items() if k != "extra"}
    resolved = {
        k: described[k]
        for k in ("model", "generator_input", "image_shape", "plugins", "versions", "world_size")
        if k in described
    }

    def row(key: str, text: str) -> str:
        return f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(text)}</td></tr>"

    cells = []
    for key, value in sorted(options.items()):
        if key in resolved and resolved[key] != value:
            note = "chosen for the data; not set" if value is None else f"resolved from {json.dumps(value)}"
            cells.append(row(key, f"{json.dumps(resolved[key])} ({note})"))
        else:
            cells.append(row(key, json.dumps(value)))
    cells += [row(key, json.dumps(value)) for key, value in resolved.items() if key not in options]
    return f"<table>{''.join(cells)}</table>"


def core_sections(
    run_dir: Path, rows: list[dict], baseline_rows: list[dict] | None, described: dict | None = None
) -> list[tuple[str, str, str]]:
    """The host's sections as ``(title, html, place)``: how far training went (headline), the
    newest sample grid (upscaled), the adversarial losses (a chart with how to read it), and,
    folded at the end, every metric of the last log line and the configuration. ``described``
    is the run's ``config.json`` (``read_described``), read here when not given."""
    run_dir = Path(run_dir)
    if described is None:
        described = read_described(run_dir)
    sections = []
    if rows:
        last = rows[-1]
        facts = [f"step {last['step']:,}"]
        planned = ((described or {}).get("config") or {}).get("steps")
        if isinstance(planned, int) and planned != last["step"]:
            facts[0] += f" of {planned:,}"
        for key, label in (("d/adv", "D loss"), ("g/adv", "G loss")):
            if isinstance(last.get(key), (int, float)):
                facts.append(f"{label} {last[key]:.3g}")
        sections.append(("Training", f"<p>{html.escape(' · '.join(facts))} at the last log line</p>", "headline"))
        lines = {key: series(rows, key) for key in ("d/adv", "g/adv")}
        if baseline_rows:
            lines.update({f"baseline {key}": series(baseline_rows, key) for key in ("d/adv", "g/adv")})
        chart = line_chart(
            lines,
            title="D and G losses",
            dashed=[k for k in lines if k.startswith("baseline")],
            caption="The adversarial losses per step (dashed: the --baseline run). Both stay bounded and noisy in a "
            "healthy run; D's loss falling towards 0 while G's climbs means D is winning and G learns little.",
        )
        sections.append(("Adversarial losses", chart, "charts"))
    sample = newest((run_dir / "samples").glob("step-*.png"))
    if sample is not None:
        step = sample.stem.split("step-")[-1].lstrip("0") or "0"
        picture = image_tag(
            sample,
            alt=f"fixed-latent samples, {sample.stem}",
            caption=f"Samples at step {int(step):,}: the same latent inputs at every sample step",
            scale=upscale_for(image_size(described)),
        )
        sections.append(("Samples", picture, "samples"))
    if rows:
        last = rows[-1]
        cells = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{v:.4g}</td></tr>"
            for k, v in sorted(last.items())
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        )
        sections.append((f"Every metric at step {last['step']:,}", f"<table>{cells}</table>", "details"))
    if described is not None:
        sections.append(("Configuration", _configuration(described), "details"))
    return sections


def use_commands(commands: Sequence[tuple[str, str]]) -> str:
    """Commands to run on this run, each with what it does, as one ``<pre>`` block."""
    if not commands:
        return ""
    width = max(len(command) for command, _ in commands)
    return "<pre>" + html.escape("\n".join(f"{c.ljust(width)}  # {what}" for c, what in commands)) + "</pre>"


def render(title: str, sections: Iterable[Sequence[str]]) -> str:
    """The page: ``title``, then the sections in page order (``place_sections``): the headline
    figures, the pictures, the charts, the rest, and the ``details`` sections folded
    (``<details>``) at the end."""
    body = []
    for name, content, place in place_sections(sections):
        if place == "details":
            body.append(f'<details class="details"><summary>{html.escape(name)}</summary>{content}</details>')
        else:
            body.append(f'<section class="{place}"><h2>{html.escape(name)}</h2>{content}</section>')
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:1240px;margin:1em auto;padding:0 12px;color:#222}"
        "h1{font-size:22px;margin:0 0 .4em}h2{font-size:16px;margin:.2em 0 .4em}"
        "table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ddd;padding:2px 8px;text-align:left}"
        "section{margin-bottom:1.2em}section.headline{margin-bottom:.6em}"
        "section.headline p,section.headline ul{margin:.2em 0;font-size:15px}"
        "section.headline ul{padding-left:1.2em}"
        "figure{display:inline-block;margin:0 1em 1em 0;max-width:100%;vertical-align:top}"
        "figure img{display:block}"
        "figcaption{font-size:12px;color:#555;max-width:100%}svg{max-width:100%;height:auto}"
        "details{margin:.6em 0}summary{cursor:pointer;font-weight:bold}pre{overflow-x:auto;font-size:13px}"
        f"</style></head><body><h1>{html.escape(title)}</h1>{''.join(body)}</body></html>"
    )


def write_report(path: Path, text: str) -> Path:
    return atomic_write(path, text)


def heat_map(
    matrix: Sequence[Sequence[float | None]],
    labels: Sequence[str],
    *,
    title: str,
    rows: str = "",
    columns: str = "",
    low: float = 0.0,
    high: float = 1.0,
    mark: int | None = None,
) -> str:
    """A square matrix as an HTML table whose cells are coloured by value: white at ``low``, deep
    blue at ``high`` (values outside are clamped), a grey dash for a missing (``None`` or NaN)
    entry. ``labels`` name the rows and columns, ``rows`` and ``columns`` say what they are
    (``"encoder of seed"``); ``mark`` (an index) puts its row and column labels in bold. Plain
    HTML and CSS, so the page stays one file that needs no network."""

    def cell(value: float | None) -> str:
        if value is None or not math.isfinite(value):
            return '<td style="background:#eee;color:#888;text-align:center">&ndash;</td>'
        t = 0.0 if high == low else min(1.0, max(0.0, (value - low) / (high - low)))
        r, g, b = (round(255 + (end - 255) * t) for end in (8, 69, 148))  # white -> #084594
        ink = "#fff" if t > 0.55 else "#222"
        return f'<td style="background:rgb({r},{g},{b});color:{ink};text-align:right">{value:.3f}</td>'

    def name(i: int) -> str:
        text = html.escape(str(labels[i]))
        return f"<b>{text}</b>" if i == mark else text

    head = f"<th>{html.escape(rows)}{' &darr; / ' if rows and columns else ''}{html.escape(columns)}"
    head += f"{' &rarr;' if columns else ''}</th>" + "".join(f"<th>{name(j)}</th>" for j in range(len(labels)))
    body = "".join(f"<tr><th>{name(i)}</th>{''.join(cell(v) for v in row)}</tr>" for i, row in enumerate(matrix))
    caption = f'<caption style="text-align:left;font-weight:bold;padding:4px 0">{html.escape(title)}</caption>'
    return f'<table class="heat-map">{caption}<tr>{head}</tr>{body}</table>'
