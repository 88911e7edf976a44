"""The networks of a run, built from its configuration and the active plugins: the generator
input's sampler, G and D from the model registry, the plugins' modules, and the Adam
optimizers over their groups.

The trainer builds them for training; ``registry.run.load_run`` builds the same modules for
inference from a checkpoint's recorded configuration and image shape, without a dataset, so
both go through these functions and can never build different networks.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from registry.checkpoint.codec import OptimizerSettings
from registry.config import TrainConfig
from registry.nets.spectral import apply_spectral_norm
from registry.plugins import Host
from registry.train.noise import NoiseSampler
from registry.train.rng import seed_for, step_seed

__all__ = [
    "Networks",
    "build_networks",
    "build_plugin_modules",
    "make_optimizers",
    "make_sampler",
    "model_name_for",
    "optimizer_settings",
]


@dataclass
class Networks:
    """What ``build_networks`` returns: ``modules`` maps ``G``, ``D`` and each plugin module's name
    to the module; ``groups`` maps each optimizer (``G``, ``D``) to the module names it trains."""

    sampler: Any
    model_name: str
    modules: dict[str, nn.Module]
    groups: dict[str, list[str]]


def make_sampler(config: TrainConfig, host: Host) -> Any:
    """The generator input's sampler: the first plugin's ``ganrun_latent_sampler``, else noise."""
    return host.run("ganrun_latent_sampler", config=config, registries=host.registries) or NoiseSampler(
        config.noise_dim, config.noise
    )


def model_name_for(config: TrainConfig, image_size: int) -> str:
    """``--model``, else the DCGAN pair for the image size (28 pixels: MNIST's, else 64's)."""
    return config.model or ("dcgan28" if image_size == 28 else "dcgan64")


def build_networks(
    config: TrainConfig, host: Host, sampler: Any, *, channels: int, image_size: int, device: torch.device
) -> Networks:
    """G and D of the configured model for ``channels`` x ``image_size`` images, the plugins'
    modules (``ganrun_build_modules``), spectral norm on the D group if configured, all on
    ``device``. Initialised from the run seed, so every rank (and every rebuild) starts alike;
    the caller keeps torch's global RNG if it must (this seeds it)."""
    model_name = model_name_for(config, image_size)
    factory = host.registries.models.get(model_name)
    torch.manual_seed(seed_for(config.seed, "init"))  # identical init on every rank
    G, D = factory(latent_dim=sampler.input_dim, channels=channels, image_size=image_size)
    modules: dict[str, nn.Module] = {"G": G, "D": D}
    groups: dict[str, list[str]] = {"G": ["G"], "D": ["D"]}
    for extra in build_plugin_modules(host, config, dict(modules), sampler):
        for name, (module, group) in (extra or {}).items():
            if name in modules:
                raise ValueError(f"two plugins build a module named {name!r}")
            if group not in groups:
                raise ValueError(f"module {name!r}: optimizer group must be 'D' or 'G', got {group!r}")
            modules[name] = module
            groups[group].append(name)
    if config.spectral_norm:
        for name in groups["D"]:
            apply_spectral_norm(modules[name])
    for module in modules.values():
        module.to(device)
    return Networks(sampler=sampler, model_name=model_name, modules=modules, groups=groups)


def build_plugin_modules(host: Host, config: TrainConfig, models: dict[str, nn.Module], sampler: Any) -> list:
    """``ganrun_build_modules`` of each plugin in turn (pluggy's call order), each under the
    global RNG seeded from the run seed and that plugin's name, and the RNG restored after:
    a plugin's initialisation is a function of the seed and its own name alone, so adding,
    removing or reordering another plugin never shifts it."""
    results = []
    for impl in reversed(host.pm.hook.ganrun_build_modules.get_hookimpls()):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(config.seed, f"build:{impl.plugin_name}", 0, 0))
            results.extend(
                host.run("ganrun_build_modules", only=impl.plugin_name, config=config, models=models, sampler=sampler)
            )
    return results


def _make_adam(params: list[nn.Parameter], lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam with the fused kernel where available (one kernel for all tensors), else foreach."""
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)


def _group_params(networks: Networks, group: str) -> list[nn.Parameter]:
    return [p for name in networks.groups[group] for p in networks.modules[name].parameters()]


def make_optimizers(config: TrainConfig, networks: Networks) -> dict[str, torch.optim.Adam]:
    """One Adam per group, with the configured learning rates and betas (no state until a step)."""
    betas = (config.beta1, config.beta2)
    return {
        "G": _make_adam(_group_params(networks, "G"), config.lr_g, betas),
        "D": _make_adam(_group_params(networks, "D"), config.lr_d, betas),
    }


def optimizer_settings(config: TrainConfig, networks: Networks) -> dict[str, OptimizerSettings]:
    """The Adams ``make_optimizers`` builds, as settings only (``OptimizerSettings``): each group's
    parameters with Adam's own defaults (read from its signature) and the configured learning
    rate and betas, for checking a checkpoint's optimizer entries without building optimizers."""
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(torch.optim.Adam.__init__).parameters.items()
        if name not in ("self", "params")
    }
    betas = (config.beta1, config.beta2)
    return {
        group: OptimizerSettings(
            torch.optim.Adam, [{"params": _group_params(networks, group), **defaults, "lr": lr, "betas": betas}]
        )
        for group, lr in (("G", config.lr_g), ("D", config.lr_d))
    }
