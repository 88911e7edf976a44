"""The hook contract of ``ganrun``: the reference documentation for plugin authors.

Every extension point of the trainer is one of the functions below. A plugin is any
object (usually a module) with functions of the same names decorated with
``registry.hookimpl``; it only needs to implement the hooks it cares about, and it may
accept a subset of each hook's arguments (pluggy passes arguments by name).

Hooks are grouped by the phase in which the host calls them. ``ganrun_*`` names are
stable API; the CHANGELOG records every change to them.

Every call into a plugin is isolated: an exception raised in a hook becomes one line,
``plugin 'x' failed in ganrun_...: ValueError: ...`` (``GANRUN_TRACE=1`` prints its
traceback). For the hooks that list, describe or build (the registration hooks,
``ganrun_train_options``, ``ganrun_config_defaults``) ``ganrun plugins`` marks the plugin
BROKEN and ``--help`` keeps working; in the hooks that run during training the run stops with
its checkpoints as they were, and the line names the step and the checkpoint to resume from.
What the loss-term, ``ganrun_log`` and ``ganrun_checkpoint_state`` hooks return is checked
against the types documented below, naming the plugin. A hook may refuse with a message for
the user by raising ``click.ClickException`` (or ``ValueError`` from ``ganrun_configure``,
``CheckpointError`` from ``ganrun_load_checkpoint_state``); those pass through unchanged.
A ``ganrun_*`` function without the ``@hookimpl`` marker, or with a name that is no hook
below, is never called; activating the plugin warns about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only
    import click

    from registry.train import StepContext, Trainer

hookspec = pluggy.HookspecMarker("ganrun")

# --------------------------------------------------------------------------------------
# Registration: called once when a plugin manager is built, for every active plugin.
# --------------------------------------------------------------------------------------


@hookspec
def ganrun_register_latent_codes(register: Callable[[str, type], None]) -> None:
    """Register latent-code types by name.

    Called once per plugin while the host builds its registries. Call
    ``register(name, code_type)`` for each type, where ``code_type`` is a class (usually a
    subclass of ``infogan_plugin.LatentCode``) that the code-type consumer instantiates
    from a ``--code name:N,key=value`` spec. ``register`` checks the class at once: it must
    have ``type_name``, ``default_q_loss``, ``default_lambda`` (a number >= 0), ``discrete``
    (a bool), ``sample``, ``entropy``, ``traversal_values``, ``from_spec`` and
    ``input_width``, with no abstract method left; otherwise the error names the plugin and
    what is missing. Registering a name that another plugin already registered is an error
    that names both plugins; a built-in name (no ``--plugin`` can switch a built-in off)
    asks for a rename. Return value is ignored.
    """


@hookspec
def ganrun_register_q_losses(register: Callable[[str, Any], None]) -> None:
    """Register Q losses by name.

    Called once per plugin while the host builds its registries. Call
    ``register(name, loss_type)`` where ``loss_type`` is a class (usually a subclass of
    ``infogan_plugin.QLoss``) or a function, called with no arguments, that returns a new loss
    turning the auxiliary head's output for one code into ``-log Q(c|x)`` per sample. Each code
    slot calls it once and binds its code to the result (``QLoss.bind``, then ``self.code``),
    so never register an instance: ``register`` refuses one, and a class without
    ``num_outputs`` or ``nll``, naming the plugin. Duplicate names are an error naming both
    plugins. Return value is ignored.
    """


@hookspec
def ganrun_register_datasets(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register datasets by name.

    Called once per plugin while the host builds its registries. Call
    ``register(name, factory)`` (checked to be callable) where ``factory(*, data_dir, image_size)`` returns a
    ``registry.data.ImageDataset`` (uint8 images, optional labels and factors).
    ``data_dir`` is ``None`` unless the user passed ``--data-dir``; a factory that needs
    one raises ``registry.data.DatasetError`` saying so. A factory that reads no folder (its
    images are generated or packaged) sets the attribute ``reads_data_dir = False`` on itself,
    and ``train --data-dir`` is then refused instead of silently ignored. Return value is ignored.
    """


@hookspec
def ganrun_register_models(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register generator/discriminator architectures by name.

    Called once per plugin while the host builds its registries. Call
    ``register(name, factory)`` where ``factory(*, latent_dim, channels, image_size)``
    returns a ``(generator, discriminator)`` pair of ``torch.nn.Module``:

    - ``generator(g_input)`` maps ``(B, latent_dim)`` to images ``(B, C, H, W)`` in [-1, 1];
    - ``discriminator(x)`` returns ``(logits, features)``: real/fake logits ``(B,)`` and the
      trunk features ``(B, F)`` those logits were computed from, so auxiliary heads read
      the same pass. The discriminator exposes ``feature_dim`` (``F``).

    A factory raises ``ValueError`` for an image size or channel count it cannot serve. It is
    also called under ``torch.device("meta")`` to size a run before it is built (see
    ``ganrun_build_modules``), so it builds modules and does nothing else.
    """


@hookspec
def ganrun_register_gan_losses(register: Callable[[str, Any], None]) -> None:
    """Register adversarial losses by name (``--gan-loss``).

    Called once per plugin while the host builds its registries; the return value is
    ignored. Call ``register(name, loss)`` where ``loss`` has two pure functions,
    ``loss.d(real_logits, fake_logits)`` and ``loss.g(fake_logits)``, each returning a
    scalar tensor. Built-ins: ``nonsaturating`` (the default) and ``hinge``.
    """


@hookspec
def ganrun_register_commands(register: Callable[[Any], None]) -> None:
    """Register extra ``ganrun`` sub-commands.

    Called once per plugin while the host builds its registries; the return value is
    ignored. Call ``register(command)`` with a ``click.Command`` (anything else is refused,
    naming the plugin). The command is available when
    its plugin is active (``ganrun --plugin NAME COMMAND``). Names must not clash with
    the built-in commands or another plugin's.
    """


# --------------------------------------------------------------------------------------
# Configuration: called while the ``train`` command is built and its options merged.
# --------------------------------------------------------------------------------------


@hookspec
def ganrun_train_options() -> list[click.Option]:
    """Return extra ``click.Option`` objects for ``ganrun train``.

    Called when the ``train`` command is built. Each option's value lands in
    ``config.extra[option.name]`` and may also be set in the TOML config under the same
    key. Give options ``default=None`` and put the real default in
    ``ganrun_config_defaults`` so the TOML file can override it.
    """


@hookspec
def ganrun_config_defaults() -> dict[str, Any]:
    """Return default values for configuration keys.

    Called before the TOML file and command-line flags are applied, so users always win.
    Keys are ``TrainConfig`` field names (e.g. ``{"model": "dcgan28", "lr_g": 1e-3}``) or
    the names of this plugin's own options. When several plugins set the same key, the
    one registered last wins.
    """


@hookspec
def ganrun_resume_mutable_options() -> list[str]:
    """Return the names of this plugin's options that may change when a run resumes.

    Called when ``--resume`` compares the saved configuration with the requested one. List
    only options that change what is logged or shown, never what is computed (for example a
    logging switch); any other difference makes the resume refuse to start.
    """


@hookspec
def ganrun_configure(config: Any, registries: Any) -> None:
    """Validate or adjust the merged configuration, in place.

    Called once after defaults, the TOML file and command-line flags are merged, before
    anything is built. ``registries`` (a ``registry.plugins.Registries``) lets a plugin
    check names against what the active plugins registered. Raise ``click.BadParameter`` (or
    ``ValueError``) with a message naming the option to refuse bad input; the CLI shows it as a
    usage error.
    """


# --------------------------------------------------------------------------------------
# Building: called once per run, before the first step (also on resume).
# --------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def ganrun_latent_sampler(config: Any, registries: Any) -> Any:
    """Return the object that makes the generator's input, or ``None`` to pass.

    ``registries`` holds the named latent codes and Q losses of the active plugins.
    The first non-None result wins; if every plugin passes, the host samples plain noise
    of ``config.noise_dim`` dimensions. The object must have an ``input_dim`` attribute
    (the generator's input width) and a method
    ``sample(n, *, generator, device) -> (g_input (n, input_dim), latent)`` that draws
    only from ``generator``. ``latent`` is opaque to the host and handed back to the
    loss hooks as ``ctx.latent``.
    It may also have ``input_layout()`` returning a JSON-able description of the input
    columns (``ganrun export`` stores it with the generator; InfoGAN's lists each code's).
    """


@hookspec
def ganrun_build_modules(config: Any, models: dict[str, Any], sampler: Any) -> dict[str, tuple[Any, str]] | None:
    """Return extra modules to train, as ``{name: (module, optimizer_group)}``.

    Called after the generator ``models["G"]`` and discriminator ``models["D"]`` are
    built. ``optimizer_group`` is ``"D"`` or ``"G"``: the module's parameters join that
    network's optimizer (an auxiliary head on D's trunk belongs to ``"D"``). The host moves
    the modules to the device, saves them in checkpoints under ``model.<name>`` and wraps
    them for data-parallel training. Names must be unique across plugins.
    Before the real build the host calls this hook (and the model factory) once more under
    ``torch.device("meta")`` to size the run without allocating, so build modules here and
    nothing else: no files, no counters, no tensors placed on an explicit device.
    """


# --------------------------------------------------------------------------------------
# Training step: called on every step. Never synchronise with the GPU here (no
# ``.item()``, ``.tolist()`` or printing tensors); log with ``ctx.log`` instead.
# --------------------------------------------------------------------------------------


@hookspec
def ganrun_d_loss_terms(ctx: StepContext) -> dict[str, Any] | None:
    """Return extra loss terms for the discriminator step, as ``{name: scalar tensor}``.

    Called on every step after D has been run on the real batch and on the detached
    fakes. ``ctx.real`` and ``ctx.fake`` hold ``logits``, trunk ``features`` and the
    ``images`` D read (so a term may run D again, e.g. on transformed fakes);
    ``ctx.latent`` is what the sampler returned; ``ctx.modules`` the live modules. The
    terms are added to D's loss (they train every module in the ``"D"`` group) and each
    is logged as ``d/<name>``.
    """


@hookspec
def ganrun_g_loss_terms(ctx: StepContext) -> dict[str, Any] | None:
    """Return extra loss terms for the generator step, as ``{name: scalar tensor}``.

    Called on every step after D has been run on the (non-detached) fakes; D-group
    parameters are frozen during this step, so the terms train the ``"G"`` group only:
    the generator and the modules plugins put in that group. ``ctx.modules`` holds the
    frozen D-group modules, the G-group modules and the generator itself as ``"G"`` (to
    generate more images, e.g. pairs for a contrastive term). ``ctx.real`` is ``None``.
    Each term is added to G's loss and logged as ``g/<name>``.
    """


@hookspec
def ganrun_step_end(trainer: Trainer, step: int) -> None:
    """Observe the end of a step (``step`` counts completed steps, from 1).

    Called after both optimiser steps. Keep it cheap and free of host syncs; use
    ``ganrun_log`` for work that needs numbers on the host.
    """


@hookspec
def ganrun_log(trainer: Trainer, step: int, metrics: dict[str, float]) -> dict[str, str] | None:
    """Observe metrics at a log step, after they were read from the device.

    Called every ``--log-every`` steps with the averages since the previous log step
    (``metrics`` maps names to floats). A plugin may add derived entries to ``metrics``
    (they are written to ``metrics.jsonl``, which happens after this hook). Return a small
    ``{label: text}`` dict to show in the progress bar, or ``None``.
    """


@hookspec
def ganrun_sample(trainer: Trainer, step: int, run_dir: Any) -> None:
    """Write pictures for step ``step`` into ``run_dir`` (rank 0 only).

    Called every ``--sample-every`` steps and at the end of training, after the host has
    written its own ``samples/step-XXXXXXXXX.png`` grid. Models are in eval mode and
    gradients are disabled during the call.
    """


@hookspec
def ganrun_report_sections(
    run_dir: Any, metrics: list[dict], baseline_metrics: list[dict] | None
) -> list[tuple[str, ...]] | None:
    """Return sections for ``ganrun report RUN`` as ``[(title, html, place), ...]``.

    Called once when the report is built. ``metrics`` are the run's ``metrics.jsonl`` lines
    as dicts; ``baseline_metrics`` those of ``--baseline RUN`` or ``None``. ``place`` (one of
    ``registry.report.PLACES``) says where the section goes; the page shows results first:
    ``"headline"`` (a few figures that say how the run went, under the title), ``"pictures"``
    (what the plugin is about, e.g. traversals), ``"samples"`` (the host's sample grid),
    ``"charts"`` (curves; give each a one-line ``caption`` on how to read it), ``"more"``
    (anything else; the place of a ``(title, html)`` pair) and ``"details"`` (folded at the
    end, with the host's configuration). Within a place the host's sections come first.
    ``registry.report`` has helpers for charts (``line_chart``: inline SVG, or a PNG also
    written to ``RUN/plots/`` under ``--plots png``) and embedded PNGs (``image_tag``; pass
    ``scale=upscale_for(image size)`` to draw generated images large and sharp).
    """


@hookspec
def ganrun_run_summary(run_dir: Any, config: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Describe a run in a few words for people: what it is, how it went, what to run next.

    Called by ``ganrun report`` (for the page's title and its list of commands) and when
    ``train`` finishes (for the summary it prints). ``config`` is the run's configuration as
    ``config.json`` records it under ``"config"`` (plugin options under ``"extra"``; ``{}``
    when unreadable), ``metrics`` the newest line of ``metrics.jsonl`` (with ``"step"``;
    ``{}`` when there is none). Return ``None`` or a dict with any of these keys:

    - ``"what"``: a short phrase naming the method and its settings, e.g.
      ``"InfoGAN, categorical:10 + uniform:2"``; the title reads ``RUN: <what> on <dataset>,
      <N> steps``.
    - ``"results"``: one-line texts of the figures that say how the run went, from ``metrics``
      (printed at the end of training).
    - ``"commands"``: ``[(arguments, purpose), ...]``, commands to run next on this run: the
      arguments as typed after ``ganrun`` and the run's ``--plugin`` flags, which the host
      adds (e.g. ``("eval runs/x", "the accuracy and L_I on 10,000 samples")``).
    """


# --------------------------------------------------------------------------------------
# Checkpoints: called when a checkpoint is written or restored.
# --------------------------------------------------------------------------------------


@hookspec
def ganrun_checkpoint_state(trainer: Trainer) -> dict[str, Any] | None:
    """Return extra tensors to store in the checkpoint, as ``{key: tensor}``.

    Modules returned by ``ganrun_build_modules`` are saved by the host already; use this
    for state that is not a module (a running statistic, a generator state). The host
    stores each key under ``plugin.<key>``; keys must be unique across plugins.
    Also called when a run is loaded for use (``load_run``, ``generate``, ``export``, ...),
    to check the checkpoint's entries against what the plugin writes: then ``trainer`` is a
    ``registry.train.InferenceState`` (``config``, ``host``, ``modules``, ``sampler``, ``step``,
    ``device``, ``image_shape``, ``run_dir``; no dataset or optimizers).
    """


@hookspec
def ganrun_load_checkpoint_state(trainer: Trainer, tensors: dict[str, Any]) -> None:
    """Restore what ``ganrun_checkpoint_state`` saved.

    Called on resume with every tensor stored under ``plugin.`` (the prefix removed), and
    when a run is loaded for use, with ``trainer`` a ``registry.train.InferenceState`` (see
    ``ganrun_checkpoint_state``). Raise ``registry.checkpoint.CheckpointError`` if an entry
    this plugin needs is missing: missing state is never skipped silently.
    """
