"""Shared fixtures for the tests of the ganrun host: CLI runners, tiny data sets, plugin modules.

Nothing here is autouse, so test files that do not ask for these fixtures are unaffected.

``ganrun`` (session scope) runs the command line in this process with click's CliRunner
(fast) or in a fresh interpreter (for what only a real process shows: exit codes of
signals, determinism across processes). ``make_plugin`` writes a plugin module into the
test's temporary folder and puts it on ``sys.path``. ``TINY_PLUGIN`` registers models
(``tiny``, and ``tinyconv`` with the layer types of the DCGAN pair) so small that runs cost
milliseconds per step and checkpoints a few hundred kilobytes; tests that are about the host
rather than the built-in networks use them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from registry.checkpoint import read_checkpoint
from registry.cli import build_cli

TINY_PLUGIN = "ganrun_test_tiny_model"

TINY_SOURCE = '''\
"""Test plugin: a model with a few thousand weights (BatchNorm included) for fast runs."""
from torch import nn

from registry import hookimpl
from registry.nets.models import Discriminator


def tiny(*, latent_dim, channels, image_size):
    pixels = channels * image_size * image_size
    G = nn.Sequential(
        nn.Linear(latent_dim, 32), nn.BatchNorm1d(32), nn.ReLU(),
        nn.Linear(32, pixels), nn.Tanh(), nn.Unflatten(1, (channels, image_size, image_size)),
    )
    D = Discriminator(nn.Sequential(nn.Flatten(), nn.Linear(pixels, 16), nn.LeakyReLU(0.2)), 16)
    # A zero head makes every logit 0 on the first step, so the first D loss is known exactly.
    nn.init.zeros_(D.head.weight)
    nn.init.zeros_(D.head.bias)
    return G, D


def tinyconv(*, latent_dim, channels, image_size):
    """The layer types of the DCGAN pair (convolutions both ways, BatchNorm) at a tiny width."""
    if image_size % 4:
        raise ValueError(f"model tinyconv needs a size divisible by 4, got {image_size}")
    s = image_size // 4
    G = nn.Sequential(
        nn.Linear(latent_dim, 8 * s * s), nn.BatchNorm1d(8 * s * s), nn.ReLU(),
        nn.Unflatten(1, (8, s, s)),
        nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.ConvTranspose2d(4, channels, 4, 2, 1), nn.Tanh(),
    )
    trunk = nn.Sequential(
        nn.Conv2d(channels, 4, 4, 2, 1), nn.LeakyReLU(0.1),
        nn.Conv2d(4, 8, 4, 2, 1), nn.BatchNorm2d(8), nn.LeakyReLU(0.1),
        nn.Flatten(),
    )
    return G, Discriminator(trunk, 8 * s * s)


@hookimpl
def ganrun_register_models(register):
    register("tiny", tiny)
    register("tinyconv", tinyconv)
'''

CLI_ENTRY = "from registry.cli import main; main()"


def straight_and_resumed(tmp_path: Path, train_args: list[str], host: Any, steps: int = 4) -> tuple[Any, Any]:
    """Train ``train_args`` (``--plugin ... train ...``, saving at ``steps // 2``) for ``steps``
    straight into ``tmp_path/a``, and for ``steps // 2`` then ``--resume`` to ``steps`` into
    ``tmp_path/b``; return both final checkpoints restored as trainers (for exact-resume tests)."""
    from registry.train import Trainer

    plugins = train_args[: train_args.index("train")]
    runner = CliRunner()
    for out, n in (("a", steps), ("b", steps // 2)):
        result = runner.invoke(build_cli(), [*train_args, "--out", str(tmp_path / out), "--steps", str(n)])
        assert result.exit_code == 0, _describe(result)
    resume = [*plugins, "train", "--resume", str(tmp_path / "b"), "--steps", str(steps), "--no-progress"]
    result = runner.invoke(build_cli(), resume)
    assert result.exit_code == 0, _describe(result)
    name = f"ckpt-{steps:09d}.safetensors"
    return tuple(Trainer.from_checkpoint(tmp_path / r / "checkpoints" / name, host, device="cpu") for r in "ab")


def assert_same_weights(a: Any, b: Any, names: tuple[str, ...] = ("G", "D", "Q")) -> None:
    """Every tensor of the named modules of two trainers is bit-for-bit equal."""
    for name in names:
        for (key, pa), pb in zip(a.modules[name].state_dict().items(), b.modules[name].state_dict().values()):
            assert torch.equal(pa, pb), f"{name}.{key}"


def _describe(result: Result) -> str:
    """Everything useful about a CliRunner result, for assertion messages."""
    text = f"exit code {result.exit_code}\n--- output ---\n{result.output}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        text += "\n--- exception ---\n" + "".join(traceback.format_exception(result.exception))
    return text


def _default_sigint() -> None:
    """Ctrl-C as a terminal delivers it. A test suite started as a background job of a
    non-interactive shell (``.ci/run &``) inherits SIGINT ignored, and so would every process it
    starts, so the tests that press Ctrl-C would wait forever."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Ganrun:
    """Ways to run the ``ganrun`` command line, and readers for what a run leaves behind."""

    def __init__(self, plugin_dir: Path):
        self.plugin_dir = plugin_dir

    # ------------------------------------------------------------------ running
    @staticmethod
    def argv(args: tuple[Any, ...], plugins: tuple[str, ...] | list[str]) -> list[str]:
        return [a for p in plugins for a in ("--plugin", p)] + [str(a) for a in args]

    def invoke(self, *args: Any, plugins: tuple[str, ...] | list[str] = ()) -> Result:
        """Run ``ganrun [--plugin P]... ARGS`` in this process."""
        return CliRunner().invoke(build_cli(), self.argv(args, plugins), prog_name="ganrun")

    def train(self, out: Path, *args: Any, plugins: tuple[str, ...] | list[str] = (), expect: int | None = 0) -> Result:
        """``ganrun train --out OUT --no-progress ARGS`` in this process; check the exit code."""
        result = self.invoke("train", "--out", out, "--no-progress", *args, plugins=plugins)
        if expect is not None:
            assert result.exit_code == expect, _describe(result)
        return result

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # as in this process, see ``ganrun``
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.plugin_dir), env.get("PYTHONPATH")]))
        env.pop("GANRUN_TRACE", None)
        return env

    def popen(
        self,
        *args: Any,
        plugins: tuple[str, ...] | list[str] = (),
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen:
        """Start ``ganrun ARGS`` in a new interpreter (the tiny-model plugin is importable), with
        ``env`` added to its environment."""
        return subprocess.Popen(
            [sys.executable, "-c", CLI_ENTRY, *self.argv(args, plugins)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.env(), **(env or {})},
            cwd=cwd,
            preexec_fn=_default_sigint,
        )

    def run(
        self, *args: Any, plugins: tuple[str, ...] | list[str] = (), cwd: Path | None = None, timeout: float = 240
    ) -> subprocess.CompletedProcess:
        proc = self.popen(*args, plugins=plugins, cwd=cwd)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    # ------------------------------------------------------------------ checking
    @staticmethod
    def describe(result: Result) -> str:
        return _describe(result)

    @staticmethod
    def error_line(result: Result) -> str:
        """The single ``Error:`` line of a refused command, after checking it was not a crash."""
        assert result.exception is None or isinstance(result.exception, SystemExit), _describe(result)
        assert "Traceback" not in result.output, result.output
        lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(lines) == 1, result.output
        return lines[0]

    @staticmethod
    def metrics(run_dir: Path) -> list[dict[str, Any]]:
        path = run_dir / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    @staticmethod
    def checkpoints(run_dir: Path) -> list[str]:
        return sorted(p.name for p in (run_dir / "checkpoints").glob("ckpt-*.safetensors"))

    @staticmethod
    def config(run_dir: Path) -> dict[str, Any]:
        return json.loads((run_dir / "config.json").read_text())

    @staticmethod
    def snapshot(folder: Path) -> dict[str, str]:
        """Relative path -> sha256 of every file below ``folder``."""
        return {
            p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    @staticmethod
    def assert_same_checkpoint(a: Path, b: Path) -> None:
        """Bit-identical training state: every tensor, the optimizer layout and the step."""
        ta, ma = read_checkpoint(a)
        tb, mb = read_checkpoint(b)
        assert sorted(ta) == sorted(tb)
        prefixes = {key.split(".")[0] for key in ta}
        assert {"model", "optim", "rng"} <= prefixes, sorted(prefixes)
        different = [k for k in sorted(ta) if ta[k].dtype != tb[k].dtype or not torch.equal(ta[k], tb[k])]
        assert not different, f"tensors differ between {a} and {b}: {different[:10]}"
        assert ma["step"] == mb["step"]
        for key in ("optim.G", "optim.D"):
            assert ma[key] == mb[key]

    # ------------------------------------------------------------------ data
    @staticmethod
    def write_idx(folder: Path, n: int, *, size: int = 28, seed: int = 0) -> Path:
        """MNIST-style IDX files (images and labels) with ``n`` random ``size`` x ``size`` images."""
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (folder / "train-images-idx3-ubyte").write_bytes(
            struct.pack(">HBBIII", 0, 0x08, 3, n, size, size) + images.tobytes()
        )
        (folder / "train-labels-idx1-ubyte").write_bytes(struct.pack(">HBBI", 0, 0x08, 1, n) + labels.tobytes())
        return folder


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder on sys.path (and on PYTHONPATH of subprocesses) holding the tiny-model plugin."""
    folder = tmp_path_factory.mktemp("ganrun-plugins")
    (folder / f"{TINY_PLUGIN}.py").write_text(TINY_SOURCE)
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop(TINY_PLUGIN, None)


@pytest.fixture(scope="session")
def ganrun(plugin_dir: Path) -> Iterator[Ganrun]:
    """Runs the CLI. Torch uses one thread here and in the processes it starts: the networks in
    these tests are so small that a second thread only adds waiting (a lot of it on a busy
    machine), and equal thread counts keep results comparable bit for bit across processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Ganrun(plugin_dir)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny(plugin_dir: Path) -> str:
    """Name of the plugin that registers model ``tiny`` (pass it with ``plugins=[tiny]``)."""
    return TINY_PLUGIN


@pytest.fixture
def make_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """Write plugin source as an importable module; return its (dotted) module name.

    ``make_plugin(source)`` picks a unique top-level name; ``make_plugin(source, "pkg.mod")``
    creates the package too. The modules leave ``sys.modules`` when the test ends.
    """
    folder = tmp_path / "plugin-modules"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    created: list[str] = []

    def make(source: str, name: str | None = None) -> str:
        name = name or f"ganrun_test_plugin_{uuid.uuid4().hex[:12]}"
        *packages, module = name.split(".")
        target = folder
        for package in packages:
            target = target / package
            target.mkdir(exist_ok=True)
            (target / "__init__.py").touch()
        (target / f"{module}.py").write_text(source)
        created.append(name)
        importlib.invalidate_caches()
        return name

    yield make
    tops = {name.split(".")[0] for name in created}
    for loaded in list(sys.modules):
        if loaded.split(".")[0] in tops:
            del sys.modules[loaded]


# Runs the use-a-run tests (load_run, generate, encode, export, explore) read; trained once per
# session. 200 steps of the tiny model are enough for Q to read the categorical code back
# (above 99% of generated images), about 3 seconds on one core.
TRAINED_CODES = ["--code", "categorical:3", "--code", "uniform:1", "--code", "gaussian:1"]


@pytest.fixture(scope="session")
def trained_infogan_run(ganrun: Ganrun, tiny: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny InfoGAN run (codes c1 categorical:3, c2 uniform:1, c3 gaussian:1) trained 200
    steps; read-only: tests that change it copy it first."""
    run = tmp_path_factory.mktemp("use-runs") / "infogan"
    ganrun.train(
        run,
        "--model",
        "tiny",
        "--steps",
        200,
        "--batch-size",
        32,
        "--log-every",
        100,
        "--sample-every",
        200,
        "--save-every",
        100,
        *TRAINED_CODES,
        plugins=["infogan", tiny],
    )
    return run


@pytest.fixture(scope="session")
def trained_plain_run(ganrun: Ganrun, tiny: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny plain-GAN run (no plugin but the tiny model), 4 steps; read-only."""
    run = tmp_path_factory.mktemp("use-runs") / "plain"
    ganrun.train(run, "--model", "tiny", "--steps", 4, "--batch-size", 16, plugins=[tiny])
    return run


# ------------------------------------------------------------------------------ headless Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# The browser tests drive Debian's chromium through its chromedriver (nothing is downloaded at
# test time); they skip, saying why, only where chromium is absent.
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them: "
    "apt-get install -y chromium chromium-driver)",
)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Callable[[int, int], Any]]:
    """``chromium(width, height)``: a headless Chromium window of that size, driven by Selenium
    through the system's chromedriver; every window started is closed when the test ends. Use
    with ``@needs_chromium``."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def start(width: int, height: int) -> Any:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / f'profile-{len(drivers)}'}",
            f"--window-size={width},{height}",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        drivers.append(driver)
        return driver

    try:
        yield start
    finally:
        for driver in drivers:
            driver.quit()
