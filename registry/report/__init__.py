"""What a run shows: sample grids as PNG files (``images``) and the one-page HTML report
(``page``) that plugins add sections to."""

from registry.report.page import (
    PLOT_EXTRA_HINT,
    chart_figure,
    core_sections,
    heat_map,
    image_tag,
    line_chart,
    matplotlib_available,
    newest,
    png_charts,
    recorded_plugins,
    render,
    series,
    slug,
    write_report,
)
from registry.runfiles import read_metrics

__all__ = [
    "PLOT_EXTRA_HINT",
    "chart_figure",
    "core_sections",
    "heat_map",
    "image_tag",
    "line_chart",
    "matplotlib_available",
    "newest",
    "png_charts",
    "read_metrics",
    "recorded_plugins",
    "render",
    "series",
    "slug",
    "write_report",
]
