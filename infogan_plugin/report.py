"""InfoGAN's sections of ``ganrun report``, results first: the headline (eval.json's figures,
else the last ``L_I`` per code, each read against what its code can reach), one traversal per
code drawn large, the paper's Figure 1 per code (L_I over training against H(c), with a
baseline run overlaid) with a line on how to read it, and eval.json's confusion counts; and
what ``ganrun_run_summary`` says of a run (the title's words, the figures at the end of
training, the commands to run next)."""

from __future__ import annotations

import html
import shlex
from pathlib import Path
from typing import Any

from infogan_plugin.bounds import bound_text, shows_share
from registry.report import image_size, image_tag, line_chart, newest, read_described, series, upscale_for
from registry.runfiles import RunFileError, read_json, warn

DISENTANGLEMENT_LABELS = (("mig", "MIG"), ("factor_vae", "FactorVAE"), ("dci", "DCI"), ("sap", "SAP"))


def _codes(rows: list[dict]) -> list[str]:
    names = {key.split("/", 1)[1] for row in rows for key in row if key.startswith("L_I/")}
    return sorted(names, key=lambda name: (len(name), name))


def _newest(rows: list[dict], key: str) -> float | None:
    return next((v for _, v in reversed(series(rows, key))), None)


def information_lines(row: dict[str, Any]) -> list[str]:
    """``c1: L_I 2.270 nats of H 2.303 (98.6%)`` per code of one metrics line, in code order."""
    recorded = any(key.startswith("L_I_max/") for key in row)  # else a line older than the key
    texts = {
        code: bound_text(row[f"L_I/{code}"], row.get(f"H/{code}"), row.get(f"L_I_max/{code}"), recorded=recorded)
        for code in _codes([row])
    }
    return [f"{code}: {text}" for code, text in texts.items()]


def _chart_caption(code: str, h: float | None, ceiling: float | None, recorded: bool) -> str:
    """How to read the L_I chart of one code (``recorded``: whether the run logs ``L_I_max``)."""
    if shows_share(h, ceiling):
        return (
            f"L_I rises towards the dotted H = {h:.3f} as Q reads {code} back from G's images: at H every image "
            f"tells its value of {code} (the paper's Figure 1; dashed: the --baseline run, e.g. lambda 0)."
        )
    if ceiling is not None:
        return (
            f"{code} is continuous, so L_I bounds a differential entropy and can be negative: with Q's fixed-std "
            f"Gaussian even a perfect Q stays at the reachable max {ceiling:.3f}, below H = {h:.3f}; read L_I "
            f"against that line."
        )
    entropy = f" = {h:.3f}" if h is not None else ""
    if not recorded:
        return f"L_I of {code} in nats over training, against the dotted H{entropy} (the dashed line: --baseline)."
    return (
        f"L_I of {code} against the dotted H{entropy}: its Q loss states no reachable maximum (a learned std "
        f"can shrink), so L_I has no ceiling to read it against and may pass H."
    )


def sections(run_dir: Path, rows: list[dict], baseline_rows: list[dict] | None) -> list[tuple[str, str, str]]:
    run_dir = Path(run_dir)
    out = []
    evaluation = _eval_result(run_dir / "eval.json")
    headline = _eval_headline(evaluation, run_dir / "eval.json") if evaluation is not None else None
    if headline is None and rows:
        lines = information_lines(rows[-1])
        if lines:
            note = "training's last log line; <code>ganrun eval</code> measures them on 10,000 samples"
            headline = (f"L_I at step {rows[-1]['step']:,}", f"{_list(lines)}<p class='note'>From {note}.</p>")
    if headline is not None:
        out.append((*headline, "headline"))
    scale = upscale_for(image_size(read_described(run_dir, quiet=True))) if (run_dir / "traversals").is_dir() else 1
    grids = []
    for code in _codes(rows):
        grid = newest((run_dir / "traversals").glob(f"{code}-step-*.png")) or newest(
            (run_dir / "traversals").glob(f"{code}-d0-step-*.png")
        )
        if grid is not None:
            steps = int(grid.stem.split("step-")[-1].lstrip("0") or "0")
            grids.append(
                image_tag(
                    grid,
                    alt=f"{code} traversal ({steps} steps): rows fix z and the other codes, columns sweep {code}",
                    caption=f"{code} at step {steps:,}: each column one value of {code}, each row the same z "
                    f"and other codes",
                    scale=scale,
                )
            )
    if grids:
        out.append(("Latent traversals", "".join(grids), "pictures"))
    charts = []
    recorded = any(key.startswith("L_I_max/") for row in rows for key in row)
    for code in _codes(rows):
        lines = {f"L_I {code}": series(rows, f"L_I/{code}")}
        if baseline_rows:
            lines[f"baseline L_I {code}"] = series(baseline_rows, f"L_I/{code}")
        h, ceiling = _newest(rows, f"H/{code}"), _newest(rows, f"L_I_max/{code}")
        references = {f"H = {h:.3f}": h} if h is not None else {}
        if ceiling is not None and not shows_share(h, ceiling):  # the line L_I can reach, below H
            references[f"reachable max = {ceiling:.3f}"] = ceiling
        charts.append(
            line_chart(
                lines,
                title=f"{code}: L_I (nats) against H(c)",
                references=references or None,
                dashed=[k for k in lines if k.startswith("baseline")],
                caption=_chart_caption(code, h, ceiling, recorded),
            )
        )
    if charts:
        out.append(("Mutual information lower bound per code", "".join(charts), "charts"))
    scores = {label: series(rows, f"disent/{key}") for key, label in DISENTANGLEMENT_LABELS}
    if any(points for points in scores.values()):
        chart = line_chart(
            {k: v for k, v in scores.items() if v},
            title="Q's estimates against the ground-truth factors (--eval-every, reduced size)",
            caption="Disentanglement scores of Q's code estimates during training, on fewer samples than eval "
            "uses: higher is better, 1 is a code per factor.",
        )
        out.append(("Disentanglement during training", chart, "charts"))
    details = _eval_details(evaluation) if evaluation is not None else None
    if details is not None:
        out.append((*details, "more"))
    return out


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"


def run_summary(run_dir: Path, config: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """``ganrun_run_summary`` for an InfoGAN run: ``InfoGAN, categorical:10 + uniform:2``, its
    last ``L_I`` per code in words, and the plugin's commands on this run."""
    extra = config.get("extra") if isinstance(config.get("extra"), dict) else {}
    codes = extra.get("code")
    codes = [codes] if isinstance(codes, str) else codes if isinstance(codes, list) else []
    what = "InfoGAN" + (f", {' + '.join(str(c).replace(' ', '') for c in codes)}" if codes else "")
    lam = extra.get("info_lambda")
    if isinstance(lam, (int, float)) and not isinstance(lam, bool):
        what += f", lambda {lam:g}"
    run = shlex.quote(str(run_dir))
    commands = [
        (f"eval {run}", "L_I on 10,000 samples, the accuracy, scores where the data has factors: eval.json"),
        (f"traverse {run} --out {shlex.quote(str(Path(run_dir) / 'traversed'))}", "one traversal grid per code"),
        (
            f"generate {run} --n 64 --code c1=0 --out {shlex.quote(str(Path(run_dir) / 'generated'))}",
            "images for chosen code values",
        ),
        (f"explore {run}", "a control per code, in the browser"),
        (f"encode {run} --images DIR --out codes.csv", "read the codes of your own images through Q"),
    ]
    return {"what": what, "results": information_lines(metrics) if metrics else [], "commands": commands}


def _number(value: object, spec: str) -> str:
    """``value`` formatted with ``spec``, or ``n/a`` where eval wrote null (a non-finite result)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return "n/a"


def _eval_result(path: Path) -> dict | None:
    """eval.json, or ``None`` when there is none or it is damaged (named in one warning)."""
    try:
        result = read_json(path, required=False)
    except RunFileError as exc:
        warn(f"{exc.path}: {exc.reason}; the report has no evaluation section")
        return None
    if result is not None and not isinstance(result, dict):
        warn(f"{path}: not what eval writes (an entry is missing or of another type); the report leaves it out")
        return None
    return result


def _eval_headline(result: dict, path: Path) -> tuple[str, str] | None:
    """eval.json's figures: the accuracy of each categorical code, L_I per code against what it
    can reach, the disentanglement scores and what eval skipped; ``None`` (and a warning naming
    ``path``) when it is not what eval writes."""
    try:
        items = [
            f"{name}: unsupervised accuracy {_number(acc['accuracy'], '.2%')}"
            for name, acc in result.get("classification", {}).items()
        ]
        items += [
            f"{name}: {bound_text(info['L_I'], info['H'], info.get('L_I_max'), recorded='L_I_max' in info)}"
            for name, info in result.get("information", {}).items()
        ]
        scores = result.get("disentanglement") or {}
        shown = [
            f"{label} {_number(scores[key]['score'], '.3f')}"
            for key, label in DISENTANGLEMENT_LABELS
            if isinstance(scores.get(key), dict) and "score" in scores[key]
        ]
        if shown:
            items.append("disentanglement: " + ", ".join(shown))
        items += [f"{name}: skipped ({why})" for name, why in (result.get("skipped") or {}).items()]
        step = result.get("step")
        step = f"{step:,}" if isinstance(step, int) else html.escape(str(step))
    except (AttributeError, KeyError, TypeError, ValueError):
        warn(f"{path}: not what eval writes (an entry is missing or of another type); the report leaves it out")
        return None
    return (f"Evaluation at step {step}", _list(items) + "<p class='note'>From eval.json.</p>")


def _eval_details(result: dict) -> tuple[str, str] | None:
    """eval.json's confusion counts of each categorical code (its figures are the headline)."""
    try:
        tables = "".join(
            _confusion_table(name, acc) for name, acc in result.get("classification", {}).items() if "confusion" in acc
        )
    except (AttributeError, KeyError, TypeError, ValueError):
        return None  # named by the headline's warning
    return ("Evaluation: code values against labels", tables) if tables else None


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
