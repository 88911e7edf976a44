"""``ganrun report RUN``: the one-page HTML report of a run."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from registry.cli.options import OutputPath, option
from registry.cli.session import Session
from registry.plugins import Host, PluginError
from registry.run_plugins import loadable, require_run_plugins


@click.command("report")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@option(
    "--baseline",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Another run whose curves are overlaid (dashed), e.g. a --lambda 0 run.",
)
@option(
    "--out",
    type=OutputPath("file"),
    default=None,
    show_default="RUN/report.html",
    help="Where to write the page.",
)
@option(
    "--plots",
    type=click.Choice(["auto", "png", "svg"]),
    default="auto",
    show_default=True,
    help="How curves are drawn: png renders them with matplotlib, embeds them in the page and "
    "also writes them to RUN/plots/ (needs pip install 'ganrun[plot]'); svg draws inline "
    "SVG without any plotting library; auto is png when matplotlib is installed, else svg.",
)
@click.pass_context
def report_command(ctx: click.Context, run: Path, baseline: Path | None, out: Path | None, plots: str) -> None:
    """Write a one-page HTML report of a run, results first: under a title that says what the
    run is, the headline figures (for InfoGAN: eval.json's accuracy, L_I per code and
    disentanglement scores, else the last L_I per code), the newest pictures drawn large
    (traversals, samples), the curves with a line on how to read each, the commands to use the
    run, and the configuration and every metric folded at the end. The page is a single
    self-contained file.

    The plugins are those given with --plugin or, without any, those the run was trained with."""
    import contextlib

    from registry import report

    if not (run / "metrics.jsonl").exists() and not (run / "config.json").exists():
        raise click.BadParameter(
            f"{run} is not a ganrun run folder (no metrics.jsonl or config.json)", param_hint="RUN"
        )
    if plots != "svg":
        available = report.matplotlib_available()
        if plots == "png" and not available:
            raise click.BadParameter(
                f"PNG plots need matplotlib, which is not installed: {report.PLOT_EXTRA_HINT}", param_hint="--plots"
            )
        plots = "png" if available else "svg"
    from registry.report.summary import ganrun_prefix, run_summary
    from registry.run_plugins import recorded_plugins

    host = _report_host(ctx.obj, run)
    rows = report.read_metrics(run)
    baseline_rows = report.read_metrics(baseline) if baseline is not None else None
    described = report.read_described(run)
    config = (described or {}).get("config") or {}
    summary = run_summary(host, run, config, rows[-1] if rows else {})
    charts = report.png_charts(run / "plots") if plots == "png" else contextlib.nullcontext()
    with charts:
        sections: list = report.core_sections(run, rows, baseline_rows, described)
        for extra in host.run("ganrun_report_sections", run_dir=run, metrics=rows, baseline_metrics=baseline_rows):
            sections.extend(extra or [])
    if (run / "checkpoints").is_dir():  # what to do with the run, with the flags its plugins need
        prefix = ganrun_prefix(recorded_plugins(run, warn=None) or host.plugins)
        commands = [(f"{prefix} {args}", purpose) for args, purpose in summary.commands]
        commands.append(
            (f"ganrun export {shlex.quote(str(run))} --format torchscript --out G.pt", "G alone, for serving")
        )
        sections.append(("Use this run", report.use_commands(commands), "more"))
    title = report.title_for(run, described, rows, summary.whats)
    path = report.write_report(out or run / "report.html", report.render(title, sections))
    click.echo(str(path))


def _report_host(session: Session, run: Path) -> Host:
    """The plugins named with --plugin; without any, those recorded in the run's config.json,
    so that ``ganrun report RUN`` has the sections of the plugins that trained RUN."""
    from registry.run_plugins import recorded_plugins

    recorded = recorded_plugins(run, warn=None)  # a damaged config.json is named by its section
    if session.plugin_names or not recorded:
        return session.host()
    try:
        require_run_plugins(run, loadable(recorded), "report", recorded=recorded)
        return Host.create(list(recorded))
    except PluginError as exc:
        click.echo(f"warning: {exc}. Until then the report has the core sections only.", err=True)
        return session.host()
