"""InfoGAN's sections of ``ganrun report``: the paper's Figure 1 per code (L_I against
H(c) over training, with a baseline run overlaid), traversal grids and eval.json."""

from __future__ import annotations

import html
from pathlib import Path

from registry.report import image_tag, line_chart, newest, series
from registry.runfiles import RunFileError, read_json, warn


DISENTANGLEMENT_LABELS = (("mig", "MIG"), ("factor_vae", "FactorVAE"), ("dci", "DCI"), ("sap", "SAP"))


def _codes(rows: list[dict]) -> list[str]:
    names = {key.split("/", 1)[1] for row in rows for key in row if key.startswith("L_I/")}
    return sorted(names, key=lambda name: (len(name), name))


def sections(run_dir: Path, rows: list[dict], baseline_rows: list[dict] | None) -> list[tuple[str, str]]:
    run_dir = Path(run_dir)
    out = []
    charts = []
    for code in _codes(rows):
        lines = {f"L_I {code}": series(rows, f"L_I/{code}")}
        if baseline_rows:
            lines[f"baseline L_I {code}"] = series(baseline_rows, f"L_I/{code}")
        h = next((v for _, v in reversed(series(rows, f"H/{code}"))), None)
        charts.append(
            line_chart(
                lines,
                title=f"{code}: L_I (nats) against H(c)",
                references={f"H = {h:.3f}": h} if h is not None else None,
                dashed=[k for k in lines if k.startswith("baseline")],
            )
        )
    if charts:
        out.append(("Mutual information lower bound per code", "".join(charts)))
    scores = {label: series(rows, f"disent/{key}") for key, label in DISENTANGLEMENT_LABELS}
    if any(points for points in scores.values()):
        out.append(
            (
                "Disentanglement during training",
                line_chart(
                    {k: v for k, v in scores.items() if v},
                    title="Q's estimates against the ground-truth factors (--eval-every, reduced size)",
                ),
            )
        )
    grids = []
    for code in _codes(rows):
        grid = newest((run_dir / "traversals").glob(f"{code}-step-*.png")) or newest(
            (run_dir / "traversals").glob(f"{code}-d0-step-*.png")
        )
        if grid is not None:
            grids.append(
                image_tag(
                    grid,
                    alt=f"{code} traversal ({grid.stem.split('step-')[-1].lstrip('0') or '0'} steps): "
                    f"rows fix z and the other codes, columns sweep {code}",
                )
            )
    if grids:
        out.append(("Latent traversals", "".join(grids)))
    evaluation = _eval_section(run_dir / "eval.json")
    if evaluation is not None:
        out.append(evaluation)
    if (run_dir / "checkpoints").is_dir():
        out.append(("Use this run", _use_commands(run_dir)))
    return out


def _number(value: object, spec: str) -> str:
    """``value`` formatted with ``spec``, or ``n/a`` where eval wrote null (a non-finite result)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return "n/a"


def _bound(info: dict) -> str:
    """eval's line for one code (``L_I ... nats of H ... (share)``, or L_I and H alone where
    H <= 0 and L_I/H means nothing); ``n/a`` for a value eval wrote as null."""
    from infogan_plugin.evaluate import bound_text

    return bound_text(info["L_I"], info["H"], info.get("ratio"))


def _eval_section(path: Path) -> tuple[str, str] | None:
    """The section of ``eval.json``; a damaged file is named in one warning and left out."""
    try:
        result = read_json(path, required=False)
        if result is None:
            return None
        cells = "".join(
            f"<tr><th>{html.escape(name)}</th><td>{html.escape(_bound(info))}</td></tr>"
            for name, info in result.get("information", {}).items()
        )
        cells += "".join(
            f"<tr><th>{html.escape(name)}</th><td>unsupervised accuracy {_number(acc['accuracy'], '.2%')}</td></tr>"
            for name, acc in result.get("classification", {}).items()
        )
        tables = "".join(
            _confusion_table(name, acc) for name, acc in result.get("classification", {}).items() if "confusion" in acc
        )
        for name, metric in (result.get("disentanglement") or {}).items():
            if isinstance(metric, dict) and "score" in metric:
                cells += f"<tr><th>{html.escape(name)}</th><td>{_number(metric['score'], '.3f')}</td></tr>"
        for name, why in (result.get("skipped") or {}).items():  # figures eval could not compute without the data
            cells += f"<tr><th>{html.escape(name)}</th><td>skipped: {html.escape(str(why))}</td></tr>"
        step = html.escape(str(result.get("step")))
    except RunFileError as exc:
        warn(f"{exc.path}: {exc.reason}; the report has no evaluation section")
        return None
    except (AttributeError, KeyError, TypeError, ValueError):
        warn(f"{path}: not what eval writes (an entry is missing or of another type); the report leaves it out")
        return None
    return (f"Evaluation at step {step}", f"<table>{cells}</table>{tables}")


def _use_commands(run_dir: Path) -> str:
    """The explorer and the other use-a-run commands, spelled out for this run folder."""
    import shlex

    run = shlex.quote(str(run_dir))
    lines = [
        f"ganrun --plugin infogan explore {run}        # a control per code, in the browser",
        f"ganrun --plugin infogan generate {run} --n 64 --code c1=0 --out {shlex.quote(str(run_dir / 'generated'))}",
        f"ganrun --plugin infogan encode {run} --images DIR --out codes.csv",
        f"ganrun export {run} --format torchscript --out G.pt",
    ]
    return f"<pre>{html.escape(chr(10).join(lines))}</pre>"


def _confusion_table(name: str, acc: dict) -> str:
    """Rows: code values (with the label each was matched to); columns: true labels; the matched
    cells in bold. Two rows sharing two labels is a merged pair of classes."""
    labels, mapping = acc["labels"], acc["mapping"]
    head = "".join(f"<th>{c}</th>" for c in labels)
    rows = []
    for value, counts in enumerate(acc["confusion"]):
        matched = mapping.get(str(value))
        cells = "".join(f"<td><b>{n}</b></td>" if c == matched else f"<td>{n}</td>" for c, n in zip(labels, counts))
        rows.append(f"<tr><th>{value} &rarr; {'-' if matched is None else matched}</th>{cells}</tr>")
    return (
        f"<p>{html.escape(name)}: samples of each label (columns) that Q assigns to each code value (rows, "
        f"with the label it was matched to)</p><table><tr><th>value &rarr; label</th>{head}</tr>{''.join(rows)}</table>"
    )
