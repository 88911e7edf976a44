"""A one-page static HTML report of a run folder: configuration, final metrics, curves
(inline SVG, so no plotting library is needed) and the newest pictures (embedded as data
URIs, so the page is one file that can be mailed or archived). Plugins add sections through
``ganrun_report_sections``."""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")
Series = Sequence[tuple[float, float]]


def read_metrics(run_dir: Path) -> list[dict]:
    """The run's ``metrics.jsonl`` lines (a line cut short by a crash is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def series(rows: Iterable[dict], key: str) -> list[tuple[float, float]]:
    return [(row["step"], row[key]) for row in rows if isinstance(row.get(key), (int, float))
            and math.isfinite(row[key])]


def line_chart(lines: dict[str, Series], *, title: str, references: dict[str, float] | None = None,
               dashed: Iterable[str] = (), width: int = 420, height: int = 220) -> str:
    """An SVG line chart; ``references`` draws labelled horizontal lines (e.g. H(c))."""
    references = references or {}
    dashed = set(dashed)
    points = [p for pts in lines.values() for p in pts]
    if not points:
        return ""
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
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img"><title>{html.escape(title)}</title>',
             f'<text x="{width / 2}" y="14" text-anchor="middle" font-size="12">{html.escape(title)}</text>',
             f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - pad_r}" y2="{height - pad_b}" stroke="#444"/>',
             f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{height - pad_b}" stroke="#444"/>']
    for value in (y0, (y0 + y1) / 2, y1):
        parts.append(f'<text x="{pad_l - 4}" y="{sy(value) + 4:.1f}" text-anchor="end" font-size="10">{value:.3g}</text>')
    for value in (x0, x1):
        parts.append(f'<text x="{sx(value):.1f}" y="{height - 10}" text-anchor="middle" font-size="10">{value:.0f}</text>')
    for i, (label, value) in enumerate(references.items()):
        y = sy(value)
        parts.append(f'<line x1="{pad_l}" y1="{y:.1f}" x2="{width - pad_r}" y2="{y:.1f}" stroke="#999" '
                     f'stroke-dasharray="2,3"/><text x="{width - pad_r - 2}" y="{y - 3:.1f}" text-anchor="end" '
                     f'font-size="10" fill="#666">{html.escape(label)}</text>')
    for i, (label, pts) in enumerate(lines.items()):
        if not pts:
            continue
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        dash = ' stroke-dasharray="5,3"' if label in dashed else ""
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dash} points="{path}"/>')
        parts.append(f'<text x="{pad_l + 6 + 110 * (i % 3)}" y="{pad_t + 12 + 12 * (i // 3)}" font-size="10" '
                     f'fill="{colour}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def image_tag(path: Path, *, alt: str, max_width: int = 420) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" '
            f'style="max-width:{max_width}px;image-rendering:pixelated"><figcaption>{html.escape(alt)}'
            f'</figcaption></figure>')


def newest(paths: Iterable[Path]) -> Path | None:
    found = sorted(paths)
    return found[-1] if found else None


def core_sections(run_dir: Path, rows: list[dict], baseline_rows: list[dict] | None) -> list[tuple[str, str]]:
    """Configuration, final metrics, the adversarial losses and the newest sample grid."""
    sections = []
    config_path = run_dir / "config.json"
    if config_path.exists():
        described = json.loads(config_path.read_text())
        config = described.get("config", {})
        cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v))}</td></tr>"
                        for k, v in sorted({**config, **config.get("extra", {})}.items()) if k != "extra")
        resolved = {k: described[k] for k in ("model", "generator_input", "image_shape", "plugins", "versions")
                    if k in described}
        cells += "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(json.dumps(v))}</td></tr>"
                         for k, v in resolved.items())
        sections.append(("Configuration", f"<table>{cells}</table>"))
    if rows:
        last = rows[-1]
        cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{v:.4g}</td></tr>" for k, v in sorted(last.items())
                        if isinstance(v, (int, float)))
        sections.append((f"Metrics at step {last['step']}", f"<table>{cells}</table>"))
        lines = {key: series(rows, key) for key in ("d/adv", "g/adv")}
        if baseline_rows:
            lines.update({f"baseline {key}": series(baseline_rows, key) for key in ("d/adv", "g/adv")})
        sections.append(("Adversarial losses", line_chart(lines, title="D and G losses",
                                                           dashed=[k for k in lines if k.startswith("baseline")])))
    sample = newest((run_dir / "samples").glob("step-*.png"))
    if sample is not None:
        sections.append(("Samples", image_tag(sample, alt=f"fixed-latent samples, {sample.stem}")))
    return sections


def render(title: str, sections: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<section><h2>{html.escape(name)}</h2>{content}</section>" for name, content in sections if content)
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ddd;padding:2px 8px;text-align:left}"
            "section{margin-bottom:1.5em}figure{display:inline-block;margin:0 1em 1em 0}"
            "figcaption{font-size:12px;color:#555}svg{margin:0 1em 1em 0}"
            f"</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def write_report(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
