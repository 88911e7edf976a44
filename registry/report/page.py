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
) -> str:
    """A line chart against the step: each of ``lines`` labelled, those named in ``dashed``
    (e.g. a baseline run) dashed, and ``references`` drawn as labelled horizontal lines
    (e.g. H(c)). Inline SVG, or an embedded PNG inside ``png_charts``; ``""`` when there
    is nothing to draw. Any finite value can be drawn: beyond +-``CHART_LIMIT`` it is
    drawn at the limit and the title says so."""
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


def image_tag(path: Path, *, alt: str, max_width: int = 420, pixelated: bool = True, caption: bool = True) -> str:
    """A PNG file embedded as a data URI; ``pixelated`` keeps small sample grids sharp when
    scaled up, ``caption`` repeats ``alt`` under the picture."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    style = f"max-width:{max_width}px" + (";image-rendering:pixelated" if pixelated else "")
    under = f"<figcaption>{html.escape(alt)}</figcaption>" if caption else ""
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="{style}">{under}</figure>'


def newest(paths: Iterable[Path]) -> Path | None:
    found = sorted(paths)
    return found[-1] if found else None


def recorded_plugins(run_dir: Path) -> list[str]:
    """The plugins a run was trained with, as its ``config.json`` records them (none when the
    file is missing or damaged: ``core_sections`` warns about that)."""
    from registry.run_plugins import recorded_plugins as recorded

    return list(recorded(run_dir, warn=None))


def core_sections(run_dir: Path, rows: list[dict], baseline_rows: list[dict] | None) -> list[tuple[str, str]]:
    """Configuration, final metrics, the adversarial losses and the newest sample grid."""
    sections = []
    config_path = run_dir / "config.json"
    described = config = None
    try:
        described = read_json(config_path, required=False)
        config = (described or {}).get("config", {})
        if not isinstance(config, dict) or not isinstance(config.get("extra", {}), dict):
            raise RunFileError(config_path, "'config' is not an object")
    except RunFileError as exc:
        _warn(f"{config_path}: damaged ({exc.reason}); the report has no configuration")
        described = None
    if described is not None:
        cells = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v))}</td></tr>"
            for k, v in sorted({**config, **config.get("extra", {})}.items())
            if k != "extra"
        )
        resolved = {
            k: described[k]
            for k in ("model", "generator_input", "image_shape", "plugins", "versions")
            if k in described
        }
        # what the run resolved (e.g. model: null -> "dcgan28") is labelled apart from the option
        cells += "".join(
            f"<tr><th>{html.escape(k if k not in config else f'{k} (resolved)')}</th>"
            f"<td>{html.escape(json.dumps(v))}</td></tr>"
            for k, v in resolved.items()
        )
        sections.append(("Configuration", f"<table>{cells}</table>"))
    if rows:
        last = rows[-1]
        cells = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{v:.4g}</td></tr>"
            for k, v in sorted(last.items())
            if isinstance(v, (int, float))
        )
        sections.append((f"Metrics at step {last['step']}", f"<table>{cells}</table>"))
        lines = {key: series(rows, key) for key in ("d/adv", "g/adv")}
        if baseline_rows:
            lines.update({f"baseline {key}": series(baseline_rows, key) for key in ("d/adv", "g/adv")})
        sections.append(
            (
                "Adversarial losses",
                line_chart(lines, title="D and G losses", dashed=[k for k in lines if k.startswith("baseline")]),
            )
        )
    sample = newest((run_dir / "samples").glob("step-*.png"))
    if sample is not None:
        sections.append(("Samples", image_tag(sample, alt=f"fixed-latent samples, {sample.stem}")))
    return sections


def render(title: str, sections: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<section><h2>{html.escape(name)}</h2>{content}</section>" for name, content in sections if content)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ddd;padding:2px 8px;text-align:left}"
        "section{margin-bottom:1.5em}figure{display:inline-block;margin:0 1em 1em 0}"
        "figcaption{font-size:12px;color:#555}svg{margin:0 1em 1em 0}"
        f"</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
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
