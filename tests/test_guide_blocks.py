"""Every code block of ``docs/plugins.md`` runs (issue 19): the plugin author's guide is only as
good as its examples, so each fenced block is claimed by exactly one runner below and executed
as a reader would (shell commands in a real process from a scratch folder, Python in a fresh
namespace). A new block that no runner claims fails ``test_every_block_of_the_guide_has_a_runner``.

Step counts are lowered where a command trains (``--steps 2000`` of the embedding example runs
3 steps); nothing else in a block is changed. The ``pip install ./examples/ganrun_vonmises`` block
needs a scratch virtual environment, so it runs in ``test_third_party_plugin.py``
(``test_the_guides_install_block_runs``), which this file checks exists.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "plugins.md"
CLI = [sys.executable, "-c", "from registry.cli import main; main()"]
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>\w*)\n(?P<body>.*?)^(?P=indent)```$", re.M | re.S)


def blocks() -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block, indentation removed, in order."""
    found = []
    for match in FENCE.finditer(DOCS.read_text()):
        indent = len(match["indent"])
        found.append((match["lang"], "".join(line[indent:] for line in match["body"].splitlines(True))))
    return found


def _worked_example() -> str:
    text = DOCS.read_text()
    after = text[text.index("<!-- worked-example -->") :]
    return re.search(r"```python\n(.*?)\n```", after, re.S).group(1)


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    env.pop("GANRUN_TRACE", None)
    return env


def _shell(command: str, cwd: Path, env: dict[str, str], extra: list[str] = ()) -> subprocess.CompletedProcess:
    """One command line of a block: ``VAR=value`` prefixes become environment, ``ganrun`` this
    interpreter's CLI, ``python`` this interpreter."""
    words = shlex.split(command)
    env = dict(env)
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = os.pathsep.join(filter(None, [str(cwd / value), env.get(key)])) if key == "PYTHONPATH" else value
    head = {"ganrun": CLI, "python": [sys.executable]}[words[0]]
    done = subprocess.run([*head, *words[1:], *extra], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


# ---------------------------------------------------------------------------------- runners


def run_entry_point_toml(code: str, tmp_path: Path) -> None:
    """The entry-point declaration is valid TOML and the one the example distribution uses."""
    declared = tomllib.loads(code)["project"]["entry-points"]["ganrun"]
    shipped = tomllib.loads((ROOT / "examples" / "ganrun_vonmises" / "pyproject.toml").read_text())
    assert declared == shipped["project"]["entry-points"]["ganrun"]


def run_worked_example(code: str, tmp_path: Path) -> None:
    """Executed and checked in depth by ``test_docs.py::test_worked_example_registers_and_samples``;
    here it must at least be the block that the other runners save as a plugin module."""
    assert code.strip() == _worked_example().strip()
    compile(code, "worked-example", "exec")


def run_laplace_command(code: str, tmp_path: Path) -> None:
    """The worked example saved as ``laplace_code.py`` on PYTHONPATH trains with the command shown."""
    (tmp_path / "laplace_code.py").write_text(_worked_example())
    env = _env(PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    [command] = code.strip().splitlines()
    _shell(command, tmp_path, env, ["--steps", "2", "--batch-size", "8", "--no-progress", "--out", "run"])
    assert (tmp_path / "run" / "checkpoints").is_dir()
    assert "L_I/c2" in (tmp_path / "run" / "metrics.jsonl").read_text()  # the first laplace code


def run_install_block(code: str, tmp_path: Path) -> None:
    """Run in a scratch virtual environment by ``test_third_party_plugin.py``."""
    source = (ROOT / "tests" / "test_third_party_plugin.py").read_text()
    assert "def test_the_guides_install_block_runs(" in source
    assert code.splitlines()[0] == "pip install ./examples/ganrun_vonmises"


def run_pytest_fixture_block(code: str, tmp_path: Path) -> None:
    """The test template passes against the worked example saved as ``my_plugin``: every test
    in it (the code, and its Q loss bound to it as a code slot binds it)."""
    (tmp_path / "my_plugin.py").write_text(_worked_example())
    (tmp_path / "test_guide_template.py").write_text(code)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_guide_template.py"],
        cwd=tmp_path,
        env=_env(PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))),
        capture_output=True,
        text=True,
        timeout=300,
    )
    tests = code.count("\ndef test_")
    assert tests >= 2 and "bind(" in code, "the template tests a code type and its bound Q loss"
    assert done.returncode == 0 and f"{tests} passed" in done.stdout, done.stdout + done.stderr


def run_module_path_command(code: str, tmp_path: Path) -> None:
    """``PYTHONPATH=src ... --plugin my_package.my_plugin`` with the worked example as that module."""
    package = tmp_path / "src" / "my_package"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "my_plugin.py").write_text(_worked_example())
    [command] = code.strip().splitlines()
    _shell(command, tmp_path, _env())
    assert (tmp_path / "runs" / "try" / "checkpoints").is_dir()


def run_embedding_command(code: str, tmp_path: Path) -> None:
    [command] = code.strip().splitlines()
    command = command.replace("examples/", f"{ROOT}/examples/").replace("--steps 2000", "--steps 3")
    _shell(command, tmp_path, _env())
    out = tmp_path / "runs" / "embedded"
    assert (out / "checkpoint.safetensors").is_file() and (out / "traversal-digit.png").is_file()


RUNNERS = [  # (what the block starts with, runner)
    ("[project.entry-points.ganrun]", run_entry_point_toml),
    ("import math\n", run_worked_example),
    ("ganrun --plugin infogan --plugin laplace_code train", run_laplace_command),
    ("pip install ./examples/ganrun_vonmises", run_install_block),
    ("import pytest\n", run_pytest_fixture_block),
    ("PYTHONPATH=src ganrun", run_module_path_command),
    ("python examples/embed_in_your_gan.py", run_embedding_command),
]


def _runner(code: str):
    claimed = [runner for start, runner in RUNNERS if code.startswith(start)]
    return claimed[0] if len(claimed) == 1 else None


def test_every_block_of_the_guide_has_a_runner() -> None:
    found = blocks()
    assert len(found) >= 7, "the guide's blocks were not found"
    unclaimed = [code.splitlines()[0] for _, code in found if _runner(code) is None]
    assert not unclaimed, f"docs/plugins.md blocks with no runner in {Path(__file__).name}: {unclaimed}"


@pytest.mark.parametrize("index", range(len(blocks())), ids=[code.splitlines()[0][:40] for _, code in blocks()])
def test_the_guides_block_runs(index: int, tmp_path: Path) -> None:
    _, code = blocks()[index]
    runner = _runner(code)
    assert runner is not None
    runner(code, tmp_path)
