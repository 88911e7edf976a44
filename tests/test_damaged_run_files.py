"""Damaged run files (issue 18): ``report`` on a run whose ``metrics.jsonl`` or ``config.json``
is truncated, of the wrong shape or type, not UTF-8, absurdly nested or a folder writes its page
with a warning naming the file (and line), never a traceback. Damage is generated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from conftest import Ganrun

GOOD_LINE = b'{"step": 4, "d/adv": 1.0, "g/adv": 0.5}'
DAMAGED_LINES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"[1, 2]",
            b'"text"',
            b"null",
            b'{"step": "4"}',
            b'{"step": true}',
            b"{}",
            b"\xff\xfe",
            b"[" * 50000 + b"]" * 50000,
            b'{"step": 4.5}',
        ]
    ),
    st.builds(
        lambda v: json.dumps(v).encode(),
        st.recursive(st.none() | st.integers() | st.text(max_size=5), lambda x: st.lists(x, max_size=3), max_leaves=5),
    ),
)


def _report(ganrun: Ganrun, run: Path):
    result = ganrun.invoke("report", run, "--plots", "svg")
    assert result.exit_code == 0, ganrun.describe(result)
    assert "Traceback" not in result.output
    assert (run / "report.html").exists()
    return result


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damaged=st.lists(DAMAGED_LINES, min_size=1, max_size=3), where=st.integers(0, 2))
def test_report_skips_damaged_metric_lines_with_a_warning(
    ganrun: Ganrun, trained_plain_run: Path, tmp_path: Path, damaged: list[bytes], where: int
) -> None:
    run = tmp_path / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(trained_plain_run, run)
    lines = [GOOD_LINE, GOOD_LINE.replace(b"4", b"5")]
    lines[where:where] = [d.replace(b"\n", b" ").replace(b"\r", b" ") for d in damaged]
    (run / "metrics.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    result = _report(ganrun, run)
    valid = [line for line in lines if _is_row(line)]
    if len(valid) < len(lines):
        assert f"{run / 'metrics.jsonl'}: skipped" in result.stderr, result.stderr


def _is_row(line: bytes) -> bool:
    try:
        row = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    return isinstance(row, dict) and type(row.get("step")) is int


def test_report_survives_a_damaged_config_and_a_metrics_folder(
    ganrun: Ganrun, trained_plain_run: Path, tmp_path: Path
) -> None:
    for i, damage in enumerate([b"{trunc", b"[1, 2]", b"\xff\xfe", b'{"config": 5}', b"[" * 50000]):
        run = tmp_path / f"run{i}"
        shutil.copytree(trained_plain_run, run)
        (run / "config.json").write_bytes(damage)
        result = _report(ganrun, run)
        assert f"{run / 'config.json'}: damaged" in result.stderr, result.stderr
    run = tmp_path / "folder"
    shutil.copytree(trained_plain_run, run)
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").mkdir()
    result = _report(ganrun, run)
    assert "metrics.jsonl: cannot be read" in result.stderr
