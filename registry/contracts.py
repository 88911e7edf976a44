"""What a plugin registers, checked when it registers it, and hook-like names that do nothing.

``check_registration(kind, name, value)`` returns the missing pieces of one ``register()``
call (empty when it keeps its contract); the registry turns them into one ``PluginError``
line that names the plugin, so a Q loss registered as an instance or a code class without
``discrete`` fails when the plugin loads, not half-way through training.

``check_hook_result(hook, result)`` does the same for what a hook called while training
returns (loss terms, progress-bar text, checkpoint state), so a plugin returning a list or a
non-scalar loss is named at once instead of failing deep inside the host.

``unmarked_hooks(plugin)`` finds functions named ``ganrun_*`` that pluggy will never call:
ones without the ``@hookimpl`` marker, and names that match no hookspec.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from typing import Any, ClassVar, get_origin

from registry import hookspecs

__all__ = [
    "LATENT_CODE_MEMBERS",
    "Q_LOSS_MEMBERS",
    "check_hook_result",
    "check_registration",
    "nearest_hook",
    "unknown_hooks",
    "unmarked_hooks",
]

# Members the InfoGAN consumer reads from every code type (infogan_plugin.LatentCode documents
# each): class variables a subclass must set, and methods the base class declares abstract.
LATENT_CODE_MEMBERS = (
    "type_name",
    "default_q_loss",
    "default_lambda",
    "discrete",
    "sample",
    "entropy",
    "traversal_values",
    "from_spec",
    "input_width",
)
# Methods every Q loss has (infogan_plugin.QLoss declares them); ``predict`` and the rest default.
Q_LOSS_MEMBERS = ("num_outputs", "nll")


def _missing_members(cls: type, members: tuple[str, ...]) -> list[str]:
    missing = [m for m in members if not hasattr(cls, m)]
    missing += sorted(m for m in getattr(cls, "__abstractmethods__", ()) if m not in missing)
    return missing


def _is_class_variable(annotation: Any) -> bool:
    if isinstance(annotation, str):  # ``from __future__ import annotations``
        return annotation.replace("typing.", "").startswith("ClassVar")
    return annotation is ClassVar or get_origin(annotation) is ClassVar


def _not_a_dataclass(cls: type) -> str | None:
    """Why ``cls`` lacks its own ``@dataclass`` decorator, or ``None``. Without it the fields the
    class declares are plain class attributes: ``--code TYPE,field=...`` cannot set them, the run
    does not record them, and the error comes later and elsewhere (a Q loss, an option)."""
    fix = f"the @dataclass(frozen=True, kw_only=True) decorator on class {cls.__name__}"
    if not dataclasses.is_dataclass(cls):
        return f"{fix} (a code type is a frozen keyword-only dataclass; its fields are the --code options)"
    fields = {f.name for f in dataclasses.fields(cls)}
    plain = [
        name
        for name, annotation in inspect.get_annotations(cls).items()
        if name not in fields and not _is_class_variable(annotation)
    ]
    if plain:
        return (
            f"{fix}: without it the annotated {', '.join(plain)} stay plain class attributes, not fields, "
            f"so --code options cannot set them and runs do not record them (annotate constants ClassVar)"
        )
    return None


def _check_latent_code(value: Any) -> list[str]:
    if not inspect.isclass(value):
        return [f"a class (got {_what(value)}); register the code class itself, it is instantiated per --code"]
    problems = [f"member {m}" for m in _missing_members(value, LATENT_CODE_MEMBERS)]
    undecorated = _not_a_dataclass(value)
    if undecorated:
        problems.append(undecorated)
    discrete = getattr(value, "discrete", None)
    if hasattr(value, "discrete") and not isinstance(discrete, bool):
        problems.append(f"discrete as True or False (got {discrete!r})")
    lam = getattr(value, "default_lambda", None)
    if hasattr(value, "default_lambda") and (
        isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0
    ):
        problems.append(f"default_lambda as a number >= 0 (got {lam!r})")
    for text_member in ("type_name", "default_q_loss"):
        if hasattr(value, text_member) and not (
            isinstance(getattr(value, text_member), str) and getattr(value, text_member)
        ):
            problems.append(f"{text_member} as a non-empty string (got {getattr(value, text_member)!r})")
    return problems


def _check_q_loss(value: Any) -> list[str]:
    if not callable(value) or (not inspect.isclass(value) and all(hasattr(value, m) for m in Q_LOSS_MEMBERS)):
        # an instance would be shared by every code slot, and each slot binds its own code
        return [
            (
                f"a class or a factory function (got {_what(value)}); register {type(value).__name__} itself: "
                f"every code slot builds its own loss, bound to its code"
            )
        ]
    if inspect.isclass(value):
        return [f"member {m}" for m in _missing_members(value, Q_LOSS_MEMBERS)]
    return []


def _check_factory(value: Any) -> list[str]:
    return [] if callable(value) else [f"a callable factory (got {_what(value)})"]


def _check_gan_loss(value: Any) -> list[str]:
    return [f"a callable member {m}" for m in ("d", "g") if not callable(getattr(value, m, None))]


def _check_command(value: Any) -> list[str]:
    import click

    return [] if isinstance(value, click.Command) else [f"a click.Command (got {_what(value)})"]


CHECKS: dict[str, Callable[[Any], list[str]]] = {
    "latent code type": _check_latent_code,
    "Q loss": _check_q_loss,
    "dataset": _check_factory,
    "model": _check_factory,
    "GAN loss": _check_gan_loss,
    "command": _check_command,
}


def check_registration(kind: str, value: Any) -> list[str]:
    """What a registered ``value`` of ``kind`` (a registry's kind, e.g. ``"Q loss"``) lacks."""
    check = CHECKS.get(kind)
    return check(value) if check is not None else []


def _what(value: Any) -> str:
    if inspect.isclass(value):
        return f"class {value.__name__}"
    if inspect.isfunction(value):
        return f"function {value.__name__}"
    return f"an instance of {type(value).__name__}"


def hook_names() -> list[str]:
    """Every hookspec name."""
    return sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("ganrun_"))


def nearest_hook(name: str) -> str:
    """``; did you mean ganrun_x?`` for a misspelt hook name, else where the hooks are listed."""
    close = difflib.get_close_matches(name, hook_names(), n=1)
    return f"; did you mean {close[0]}?" if close else "; hooks: docs/plugins.md"


def unknown_hooks(plugin: Any, project: str = "ganrun") -> list[str]:
    """One line per ``@hookimpl``-marked function of ``plugin`` whose name matches no hookspec
    (pluggy refuses those), with the nearest hook name."""
    known = hook_names()
    return [
        f"{name} is marked @hookimpl but matches no ganrun hook{nearest_hook(name)}"
        for name in sorted(dir(plugin))
        if name.startswith(f"{project}_")
        and name not in known
        and hasattr(getattr(plugin, name, None), f"{project}_impl")
    ]


def unmarked_hooks(plugin: Any, project: str = "ganrun") -> list[str]:
    """One line per ``ganrun_*`` function of ``plugin`` that pluggy will never call: without
    the ``@hookimpl`` marker, or (marked or not) named like no hookspec, with the nearest name."""
    known = hook_names()
    lines = []
    for name in sorted(dir(plugin)):
        if not name.startswith(f"{project}_"):
            continue
        member = getattr(plugin, name, None)
        if not callable(member):
            continue
        marked = hasattr(member, f"{project}_impl")
        if name not in known:
            if not marked:  # a marked one is refused by activate() already (``unknown_hooks``)
                lines.append(f"{name} matches no ganrun hook and is never called{nearest_hook(name)}")
        elif not marked:
            lines.append(f"{name} has no @hookimpl marker and is never called; decorate it with @registry.hookimpl")
    return lines


def _is_scalar(value: Any) -> bool:
    import torch

    return torch.is_tensor(value) and value.dim() == 0 and value.is_floating_point()


def _is_tensor(value: Any) -> bool:
    import torch

    return torch.is_tensor(value)


def _is_text(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


# hook -> (what each value must be, the check, the expected form said in the message)
HOOK_RESULTS: dict[str, tuple[str, Callable[[Any], bool], str]] = {
    "ganrun_d_loss_terms": ("a floating-point scalar tensor", _is_scalar, "{name: scalar tensor}"),
    "ganrun_g_loss_terms": ("a floating-point scalar tensor", _is_scalar, "{name: scalar tensor}"),
    "ganrun_log": ("text or a number", _is_text, "{label: text} or None"),
    "ganrun_checkpoint_state": ("a tensor", _is_tensor, "{key: tensor} or None"),
}


def _texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _commands(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(part, str) for part in item)
        for item in value
    )


# hook -> {key: (what its value must be, the check)}: results whose keys are fixed
KEYED_RESULTS: dict[str, dict[str, tuple[str, Callable[[Any], bool]]]] = {
    "ganrun_run_summary": {
        "what": ("a string", lambda value: isinstance(value, str)),
        "results": ("a list of strings", _texts),
        "commands": ("a list of (arguments, purpose)", _commands),
    },
}
HOOK_RESULTS["ganrun_run_summary"] = ("", lambda value: True, "a dict with 'what', 'results' or 'commands'")


def check_hook_result(hook: str, result: Any) -> str | None:
    """What is wrong with one plugin's non-None ``result`` of ``hook`` (``None`` when it keeps
    the contract): a dict with non-empty string keys and values of the hook's kind (or, for a
    hook in ``KEYED_RESULTS``, of each key's kind)."""
    what, check, form = HOOK_RESULTS[hook]
    if hook in KEYED_RESULTS:
        if not isinstance(result, dict):
            return f"returned {_what(result)}, not {form}"
        keys = KEYED_RESULTS[hook]
        for key, value in result.items():
            if key not in keys:
                return f"returned the key {key!r}; keys are {', '.join(repr(k) for k in keys)}"
            kind, fits = keys[key]
            if not fits(value):
                return f"returned {key!r} as {_what(value)}; {key!r} must be {kind}"
        return None
    if not isinstance(result, dict):
        return f"returned {_what(result)}; return {form}"
    for key, value in result.items():
        if not isinstance(key, str) or not key:
            return f"returned the key {key!r}; keys are non-empty strings ({form})"
        if not check(value):
            if _is_tensor(value):
                got = f"a tensor of shape {list(value.shape)} and dtype {str(value.dtype).removeprefix('torch.')}"
            else:
                got = _what(value)
            return f"returned {key!r} as {got}, not {what}; return {form}"
    return None
