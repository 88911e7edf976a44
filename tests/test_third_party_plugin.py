"""The example third-party plugin ``examples/ganrun_vonmises``: its math in-process, and the
whole life cycle of an installed plugin (pip install, discovery, training, pip uninstall).

The install goes into a throwaway virtual environment layered on the test environment (its
``site-packages`` are added through a ``.pth`` file), so pip really installs and uninstalls
the distribution and entry points, while the shared environment never sees the plugin.
``PIP_NO_INDEX=1`` and ``--no-build-isolation`` keep pip off the network.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import shlex
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from infogan_plugin import CodeSlot, LatentSpec
from infogan_plugin.codes import DEFAULT_TRAVERSAL_STEPS
from registry.plugins import Registries, get_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
PKG_DIR = ROOT / "examples" / "ganrun_vonmises"
DIST = "ganrun-vonmises"
CLI = ["-c", "from registry.cli import main; main()"]


@pytest.fixture(scope="module")
def vm():
    """The plugin package imported from its source folder (no install needed)."""
    sys.path.insert(0, str(PKG_DIR))
    try:
        import ganrun_vonmises

        yield ganrun_vonmises
    finally:
        sys.path.remove(str(PKG_DIR))


# ------------------------------------------------------------------------------------------
# In-process: the code types and Q losses
# ------------------------------------------------------------------------------------------


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registered_through_hooks_only(vm):
    pm = get_plugin_manager()
    pm.register(vm, name="vonmises")
    regs = Registries.collect(pm)
    assert regs.latent_codes.by_plugin()["vonmises"] == ["bernoulli", "vonmises"]
    assert regs.q_losses.by_plugin()["vonmises"] == ["bernoulli_bce", "vonmises_nll"]
    assert regs.latent_codes.get("vonmises") is vm.VonMises
    assert regs.q_losses.get("bernoulli_bce") is vm.BernoulliBCE
    for code_type in (vm.VonMises, vm.Bernoulli):  # default Q loss is one the plugin registers
        assert code_type.default_q_loss in regs.q_losses


def test_the_example_states_its_contract_members_and_point_estimates_are_angles(vm):
    from infogan_plugin import CodeSlot

    assert "augment_invariant" in vars(vm.VonMises) and vm.VonMises().augment_invariant is False
    assert vm.Bernoulli().augment_invariant is True  # the default a discrete code gets
    slot = CodeSlot("c1", vm.VonMises(), vm.VonMisesNLL(), 0.1)
    q_out = torch.tensor([[0.0, 2.0, 1.0]])  # direction (0, 2): the angle pi/2; log kappa 1
    assert slot.q_loss.point_estimate(q_out)[0].tolist() == pytest.approx([math.pi / 2])
    bits = CodeSlot("c2", vm.Bernoulli(), vm.BernoulliBCE(), 1.0)
    assert bits.q_loss.point_estimate(torch.tensor([[-3.0], [2.0]])).tolist() == [[0.0], [1.0]]


def test_von_mises_entropy_closed_form(vm):
    assert vm.VonMises().entropy() == pytest.approx(math.log(2 * math.pi), abs=1e-12)
    assert vm.VonMises(dim=3).entropy() == pytest.approx(3 * math.log(2 * math.pi), abs=1e-12)
    for kappa in (0.3, 2.5, 40.0):
        # -integral p log p over the circle, from torch's own density
        theta = torch.linspace(-math.pi, math.pi, 200_001, dtype=torch.float64)
        dist = torch.distributions.VonMises(
            torch.tensor(0.7, dtype=torch.float64), torch.tensor(kappa, dtype=torch.float64)
        )
        logp = dist.log_prob(theta)
        numeric = -torch.trapezoid(logp.exp() * logp, theta).item()
        assert vm.VonMises(kappa=kappa, mu=0.7, dim=2).entropy() == pytest.approx(2 * numeric, rel=1e-6)
    assert vm.VonMises(kappa=0.3).entropy() < math.log(2 * math.pi)  # concentration lowers H


def test_von_mises_nll_matches_torch_log_prob(vm):
    loss = vm.VonMisesNLL()
    code = vm.VonMises(dim=2)
    b = 64
    q_out = torch.randn(b, loss.num_outputs(code), generator=_gen(1)) * 2.0
    q_out[:, 4:] = torch.linspace(-4.0, 5.5, b * 2).view(b, 2)  # log-kappa, up to kappa ~ 245
    value = code.sample(b, generator=_gen(2), device="cpu")
    nll = loss.nll(q_out, value)
    assert nll.shape == (b,) and nll.dtype == torch.float32

    x, y, log_kappa = q_out.double().view(b, 3, 2).unbind(1)
    theta = torch.atan2(value.double().view(b, 2, 2)[..., 1], value.double().view(b, 2, 2)[..., 0])
    dist = torch.distributions.VonMises(torch.atan2(y, x), log_kappa.exp())
    expected = -dist.log_prob(theta).sum(dim=1)
    torch.testing.assert_close(nll.double(), expected, atol=2e-4, rtol=1e-5)

    # beyond the clamp the loss stays finite, and Q's direction needs no normalisation
    extreme = q_out.clone()
    extreme[:, 4:] = 50.0
    assert torch.isfinite(loss.nll(extreme, value)).all()
    torch.testing.assert_close(loss.nll(q_out * torch.tensor([3.0] * 4 + [1.0] * 2), value), nll)
    # gradients reach every Q output
    q = q_out.clone().requires_grad_(True)
    loss.nll(q, value).sum().backward()
    assert torch.isfinite(q.grad).all() and (q.grad.abs().sum(dim=0) > 0).all()


def test_von_mises_q_predict_stats_and_mismatch(vm):
    loss = vm.VonMisesNLL()
    mu = torch.tensor([0.5, -2.0, 3.0])
    q_out = torch.stack([mu.cos() * 4, mu.sin() * 4, torch.full_like(mu, 1.0)], dim=1)  # (3, 3)
    predicted = loss.predict(q_out)
    torch.testing.assert_close(predicted, torch.stack([mu.cos(), mu.sin()], dim=1))
    assert loss.stats(q_out)["q_kappa"].item() == pytest.approx(math.e, rel=1e-6)
    # Q that points at the true angle with high concentration beats a uniform Q (NLL ln 2pi)
    sharp = torch.stack([mu.cos(), mu.sin(), torch.full_like(mu, 4.0)], dim=1)
    assert (loss.nll(sharp, predicted) < math.log(2 * math.pi)).all()
    with pytest.raises(ValueError, match="vonmises_nll"):
        loss.num_outputs(vm.Bernoulli())
    with pytest.raises(ValueError, match="min_log_kappa"):
        vm.VonMisesNLL(min_log_kappa=1.0, max_log_kappa=1.0)


@pytest.mark.parametrize("kappa", [0.0, 3.0])
def test_von_mises_sampling(vm, kappa):
    code = vm.VonMises(dim=2, kappa=kappa, mu=1.0)
    first = code.sample(4000, generator=_gen(7), device="cpu")
    torch.manual_seed(123)  # the global RNG must not matter
    again = code.sample(4000, generator=_gen(7), device="cpu")
    torch.manual_seed(456)
    other = code.sample(4000, generator=_gen(8), device="cpu")
    assert first.shape == (4000, code.input_width) == (4000, 4) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)
    pairs = first.view(4000, 2, 2)
    torch.testing.assert_close(pairs.square().sum(-1), torch.ones(4000, 2))  # points on the circle
    theta = torch.atan2(pairs[..., 1], pairs[..., 0]).double()
    # mean resultant length E[cos(theta - mu)] = I1(kappa) / I0(kappa); 0 for the uniform angle
    k = torch.tensor(kappa, dtype=torch.float64)
    expected = (torch.special.i1e(k) / torch.special.i0e(k)).item()
    assert torch.cos(theta - 1.0).mean().item() == pytest.approx(expected, abs=0.03)
    assert torch.sin(theta - 1.0).mean().item() == pytest.approx(0.0, abs=0.03)


def test_von_mises_traversal_and_spec_layout(vm):
    code = vm.VonMises(dim=2)
    values = code.traversal_values()
    assert values.shape == (DEFAULT_TRAVERSAL_STEPS, code.input_width // code.dim) == (5, 2)
    angles = torch.atan2(values[:, 1], values[:, 0])
    torch.testing.assert_close(angles[0].abs(), torch.tensor(math.pi))  # starts at -pi (== pi)
    torch.testing.assert_close(torch.diff(angles[1:]), torch.full((3,), 2 * math.pi / 5))
    assert code.traversal_values(steps=8).shape == (8, 2)

    spec = LatentSpec(
        noise_dim=3,
        slots=[CodeSlot("c1", code, vm.VonMisesNLL(), 0.1), CodeSlot("c2", vm.Bernoulli(), vm.BernoulliBCE(), 1.0)],
    )
    assert spec.input_dim == 3 + 4 + 1 and spec.q_dim == 6 + 1
    grid = spec.traversal_inputs(0, n_rows=2, generator=_gen(0), device="cpu", dim_index=1).view(2, 5, 8)
    torch.testing.assert_close(grid[0, :, 5:7], values)  # dimension 1 of the angle code: columns 5, 6
    assert torch.equal(grid[:, :, :5], grid[:, :1, :5].expand(2, 5, 5))  # the rest stays fixed
    assert torch.equal(grid[:, :, 7:], grid[:, :1, 7:].expand(2, 5, 1))


def test_bernoulli_code_and_bce(vm):
    for p in (0.5, 0.2):
        expected = torch.distributions.Bernoulli(probs=torch.tensor(p, dtype=torch.float64)).entropy().item()
        assert vm.Bernoulli(p=p, dim=3).entropy() == pytest.approx(3 * expected, rel=1e-12)
    code = vm.Bernoulli(dim=2, p=0.2)
    draws = code.sample(20_000, generator=_gen(3), device="cpu")
    assert draws.shape == (20_000, 2) and set(draws.unique().tolist()) == {0.0, 1.0}
    assert draws.mean().item() == pytest.approx(0.2, abs=0.01)
    assert torch.equal(draws, code.sample(20_000, generator=_gen(3), device="cpu"))
    assert torch.equal(code.traversal_values(), torch.tensor([[0.0], [1.0]]))

    loss = vm.BernoulliBCE()
    assert loss.num_outputs(code) == 2
    logits = torch.randn(32, 2, generator=_gen(4)) * 3
    target = draws[:32]
    expected = -torch.distributions.Bernoulli(logits=logits).log_prob(target).sum(dim=1)
    torch.testing.assert_close(loss.nll(logits, target), expected)
    assert torch.equal(loss.predict(logits), (logits > 0).float())
    with pytest.raises(ValueError, match="bernoulli_bce"):
        loss.num_outputs(vm.VonMises())
    with pytest.raises(ValueError, match="p must be in"):
        vm.Bernoulli(p=1.0)
    with pytest.raises(ValueError, match="kappa"):
        vm.VonMises(kappa=-1.0)


def test_from_spec_defaults(vm):
    three = vm.Bernoulli.from_spec(3, {"p": "0.25"})
    assert three == [vm.Bernoulli(p=0.25)] * 3 and all(c.dim == 1 for c in three)
    assert vm.VonMises.from_spec(None, {"kappa": "2"}) == [vm.VonMises(kappa=2.0)]
    with pytest.raises(ValueError, match="no option 'k'"):
        vm.VonMises.from_spec(1, {"k": "2"})


# ------------------------------------------------------------------------------------------
# Installed for real: pip install, ganrun plugins, training, pip uninstall
# ------------------------------------------------------------------------------------------


class PluginEnv:
    """A virtual environment on top of the test environment, with or without the plugin."""

    def __init__(self, root: Path):
        self.root = root
        self.env = {
            **os.environ,
            "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "OMP_NUM_THREADS": "1",
            "GANRUN_TRACE": "",
        }
        self.installed = False
        self.src = root / "src"
        shutil.copytree(PKG_DIR, self.src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
        self.python = str(root / "venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
        purelib = self.run(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
        parents = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if Path(p).is_dir()]
        (Path(purelib) / "_test_environment.pth").write_text(
            "import site; " + "; ".join(f"site.addsitedir({p!r})" for p in parents) + "\n"
        )

    def run(self, args: list[str], *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.python, *args], capture_output=True, text=True, cwd=self.root, env=env or self.env, timeout=300
        )

    def install(self) -> None:
        """Offline with the environment's own setuptools; if that cannot build (setuptools older
        than 70.1 without the ``wheel`` package), with build isolation, which needs the index."""
        args = ["-m", "pip", "install", "--no-deps", str(self.src)]
        offline = self.run([*args, "--no-build-isolation"])
        if offline.returncode != 0:
            online = {key: value for key, value in self.env.items() if key != "PIP_NO_INDEX"}
            isolated = self.run(args, env=online)
            assert isolated.returncode == 0, (
                f"pip install failed offline:\n{offline.stdout}\n{offline.stderr}\n"
                f"and with build isolation:\n{isolated.stdout}\n{isolated.stderr}"
            )
        self.installed = True

    def uninstall(self) -> subprocess.CompletedProcess:
        done = self.run(["-m", "pip", "uninstall", "-y", DIST])
        self.installed = False
        return done

    def ensure_installed(self) -> None:
        if not self.installed:
            self.install()

    def ganrun(self, *args: str) -> subprocess.CompletedProcess:
        return self.run([*CLI, *args])


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    env = PluginEnv(tmp_path_factory.mktemp("plugin-env"))
    env.install()
    yield env
    env.uninstall()


def _plugins_json(env: PluginEnv) -> dict[str, dict]:
    done = env.ganrun("plugins", "--json")
    assert done.returncode == 0, done.stderr
    return {row["name"]: row for row in json.loads(done.stdout)}


def test_installed_plugin_is_listed(plugin_env):
    plugin_env.ensure_installed()
    row = _plugins_json(plugin_env)["vonmises"]
    assert row["error"] is None
    assert row["distribution"] == DIST and row["version"] == "0.1.0"
    assert row["hooks"] == ["ganrun_register_latent_codes", "ganrun_register_q_losses"]
    assert row["registers"] == {
        "latent_codes": ["bernoulli", "vonmises"],
        "q_losses": ["bernoulli_bce", "vonmises_nll"],
    }


def test_installed_plugin_trains_with_its_codes(plugin_env):
    plugin_env.ensure_installed()
    run = plugin_env.root / "run"
    done = plugin_env.ganrun(
        "--plugin",
        "infogan",
        "--plugin",
        "vonmises",
        "train",
        "--steps",
        "3",
        "--batch-size",
        "16",
        "--no-progress",
        "--out",
        str(run),
        "--log-every",
        "1",
        "--code",
        "categorical:3",
        "--code",
        "vonmises:1",
        "--code",
        "bernoulli:1",
    )
    assert done.returncode == 0, done.stderr
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    last = metrics[-1]
    for key in ("L_I/c1", "L_I/c2", "L_I/c3", "q_kappa/c2"):
        assert math.isfinite(last[key]), key
    assert last["H/c2"] == pytest.approx(math.log(2 * math.pi))
    assert last["H/c3"] == pytest.approx(math.log(2))
    config = json.loads((run / "config.json").read_text())
    # infogan is ganrun's own: the version of the ganrun distribution installed
    assert config["plugins"] == {"infogan": importlib.metadata.version("ganrun"), "vonmises": "0.1.0"}

    from PIL import Image

    # 10 rows; columns: 3 classes, 5 angles around the circle, the 2 values of a bit
    for name, columns in (("c1", 3), ("c2", 5), ("c3", 2)):
        png = run / "traversals" / f"{name}-step-000000003.png"
        assert Image.open(png).size == (columns * 30 + 2, 10 * 30 + 2), name


def test_the_guides_install_block_runs(plugin_env):
    """docs/plugins.md's block as a reader runs it: pip install, ganrun plugins, the train command
    (3 steps at batch 16 added), in the scratch environment (``tests/test_guide_blocks.py``)."""
    docs = (ROOT / "docs" / "plugins.md").read_text()
    block = docs[docs.index("```bash\npip install ./examples/ganrun_vonmises") :].split("```")[1]
    commands = [line.split("#")[0].strip() for line in block.splitlines()[1:] if line.strip()]
    assert commands[0] == "pip install ./examples/ganrun_vonmises" and len(commands) == 3, commands
    if plugin_env.installed:
        plugin_env.uninstall()
    plugin_env.install()  # pip install of a copy of ./examples/ganrun_vonmises, offline
    listed = plugin_env.ganrun(*shlex.split(commands[1])[1:])
    assert listed.returncode == 0 and "vonmises" in listed.stdout, listed.stderr
    train = shlex.split(commands[2])[1:]
    run = plugin_env.root / "guide-run"
    done = plugin_env.ganrun(*train, "--steps", "3", "--batch-size", "16", "--no-progress", "--out", str(run))
    assert done.returncode == 0, done.stderr
    assert "L_I/c2" in (run / "metrics.jsonl").read_text()


def test_uninstalled_plugin_fails_with_one_line(plugin_env):
    plugin_env.ensure_installed()
    done = plugin_env.uninstall()
    assert done.returncode == 0, done.stderr
    assert "vonmises" not in _plugins_json(plugin_env)
    failed = plugin_env.ganrun("--plugin", "vonmises", "train")
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "'vonmises'" in lines[0] and "Traceback" not in failed.stderr, failed.stderr
    assert not (plugin_env.root / "runs").exists()


def test_uninstalled_plugin_error_survives_train_options(plugin_env):
    if plugin_env.installed:
        plugin_env.uninstall()
    failed = plugin_env.ganrun("--plugin", "vonmises", "train", "--steps", "3")
    assert failed.returncode == 1 and "'vonmises'" in failed.stderr, failed.stderr
