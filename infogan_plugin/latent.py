"""The InfoGAN latent specification: incompressible noise z followed by the codes c.

G's input is ``[z | c_1 | c_2 | ...]`` and Q's output is ``[q_1 | q_2 | ...]``, one
chunk per code slot sized by that slot's Q loss. ``LatentSpec`` owns this layout:
sampling, splitting Q's output, the weighted information loss and its bounds, and
traversal grids.

Multi-dimensional continuous codes: a command-line ``uniform:2`` is meant to become
TWO slots of dim 1 (named, weighted and plotted separately, as in the paper's c2/c3).
A code constructed with ``dim > 1`` still works everywhere; ``traversal_inputs``
then sweeps one of its dimensions, chosen by ``dim_index``.

Nothing here reads tensor values back to the host, so sampling and the loss never
stall an accelerator.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Sequence

import torch
from einops import rearrange, repeat

from infogan_plugin.codes import DEFAULT_TRAVERSAL_STEPS, LatentCode
from infogan_plugin.qlosses import QLoss
from registry.plugins import UnknownNameError
from registry.train.noise import sample_noise

__all__ = ["CodeSlot", "LatentSpec", "NoiseKind", "build_latent_spec", "parse_code_spec"]

NoiseKind = Literal["uniform", "normal"]
NoiseSampler = Callable[[int, int, torch.Generator, "torch.device | str"], torch.Tensor]


def _uniform_noise(n: int, dim: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    return sample_noise("uniform", n, dim, generator=generator, device=device)


def _normal_noise(n: int, dim: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    return sample_noise("normal", n, dim, generator=generator, device=device)


_NOISE_SAMPLERS: dict[str, NoiseSampler] = {"uniform": _uniform_noise, "normal": _normal_noise}


@dataclass(frozen=True)
class CodeSlot:
    """One named code in G's input together with the Q loss that recovers it and its weight."""

    name: str
    code: LatentCode
    q_loss: QLoss
    lam: float  # lambda in L = L_GAN - lambda * L_I

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError(f"CodeSlot: name must be non-empty, got {self.name!r}")
        if not (math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"CodeSlot {self.name!r}: lam must be finite and >= 0, got {self.lam!r}")
        self.q_loss.bind(self.code)  # the loss sees its code; fails here if it cannot model it


class LatentSpec:
    """Layout of G's input (z then codes in slot order) and of Q's output."""

    def __init__(self, *, noise_dim: int, slots: Sequence[CodeSlot], noise: NoiseKind = "uniform") -> None:
        if noise_dim < 0:
            raise ValueError(f"LatentSpec: noise_dim must be >= 0, got {noise_dim!r}")
        if noise not in _NOISE_SAMPLERS:
            raise ValueError(f"LatentSpec: noise must be one of {sorted(_NOISE_SAMPLERS)}, got {noise!r}")
        if not slots:
            raise ValueError("LatentSpec: slots must contain at least one code")
        names = [slot.name for slot in slots]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"LatentSpec: slot names must be unique, repeated: {duplicates}")

        self.noise_dim = noise_dim
        self.noise: NoiseKind = noise
        self.slots: tuple[CodeSlot, ...] = tuple(slots)
        self._noise_sampler = _NOISE_SAMPLERS[noise]

        self._input_widths = [slot.code.input_width for slot in self.slots]
        self._q_sizes = [slot.q_loss.num_outputs(slot.code) for slot in self.slots]
        # column where each slot starts in G's input / Q's output
        self._input_offsets = [noise_dim + sum(self._input_widths[:i]) for i in range(len(self.slots))]
        self._q_offsets = [sum(self._q_sizes[:i]) for i in range(len(self.slots))]
        self.input_dim: int = noise_dim + sum(self._input_widths)
        self.q_dim: int = sum(self._q_sizes)

    def __repr__(self) -> str:
        return f"LatentSpec(noise_dim={self.noise_dim}, noise={self.noise!r}, slots={list(self.slots)!r})"

    def index(self, name: str) -> int:
        """Slot index of the code called ``name``."""
        for i, slot in enumerate(self.slots):
            if slot.name == name:
                return i
        raise KeyError(f"no code slot named {name!r}; slots: {[slot.name for slot in self.slots]}")

    def sample(
        self, n: int, *, generator: torch.Generator, device: torch.device | str
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """G input ``(n, input_dim)`` and the per-slot code values ``(n, input_width_i)``.

        Draws z first, then each code in slot order, all from ``generator``.
        """
        z = self._noise_sampler(n, self.noise_dim, generator, device)
        codes = [slot.code.sample(n, generator=generator, device=device) for slot in self.slots]
        return torch.cat([z, *codes], dim=1), codes

    def sample_pairs(
        self, n: int, *, generator: torch.Generator, device: torch.device | str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pairs of G inputs for a contrastive regulariser (InfoGAN-CR, Lin et al. 2020).

        Returns ``(input_a, input_b, shared)``: both ``(n, input_dim)``, with the same z and
        the same value of one code per row, ``shared`` ``(n,)`` int64 being that slot's
        index (uniform over slots); every other code is drawn independently for each member.
        """
        a, _ = self.sample(n, generator=generator, device=device)
        b, _ = self.sample(n, generator=generator, device=device)
        shared = torch.randint(len(self.slots), (n,), generator=generator, device=device)
        starts = torch.tensor(self._input_offsets, device=device)[shared]
        ends = starts + torch.tensor(self._input_widths, device=device)[shared]
        cols = torch.arange(self.input_dim, device=device)
        keep = (cols < self.noise_dim) | ((cols >= starts[:, None]) & (cols < ends[:, None]))
        return a, torch.where(keep, a, b), shared

    def split_input(self, g_input: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Inverse of the concatenation in ``sample``: ``(B, input_dim)`` -> z, [codes] (views)."""
        self._check_width(g_input, self.input_dim, "G input")
        z, *codes = g_input.split([self.noise_dim, *self._input_widths], dim=1)
        return z, codes

    def split_q(self, q_out: torch.Tensor) -> list[torch.Tensor]:
        """Q's output ``(B, q_dim)`` -> per-slot chunks ``(B, num_outputs_i)`` (views)."""
        self._check_width(q_out, self.q_dim, "Q output")
        return list(q_out.split(self._q_sizes, dim=1))

    def information_loss(
        self,
        q_out: torch.Tensor,
        codes: Sequence[torch.Tensor],
        *,
        weights: Sequence[float] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted mutual-information loss ``sum_i w_i * mean_b NLL_i`` (fp32 scalar).

        Returns it with ``{slot name: mean NLL}``; those per-slot tensors keep their
        graph so the caller decides whether to detach them for logging. ``weights``
        default to each slot's ``lam`` (pass e.g. all-ones to train Q alone).
        """
        chunks = self.split_q(q_out)
        if len(codes) != len(self.slots):
            raise ValueError(f"information_loss: expected {len(self.slots)} code tensors, got {len(codes)}")
        weights = [slot.lam for slot in self.slots] if weights is None else list(weights)
        if len(weights) != len(self.slots):
            raise ValueError(f"information_loss: expected {len(self.slots)} weights, got {len(weights)}")

        nll_means: dict[str, torch.Tensor] = {}
        total = torch.zeros((), dtype=torch.float32, device=q_out.device)
        for slot, chunk, code, weight in zip(self.slots, chunks, codes, weights):
            nll_mean = slot.q_loss.nll(chunk, code).mean()
            nll_means[slot.name] = nll_mean
            total = total + weight * nll_mean
        return total, nll_means

    def entropies(self) -> dict[str, float]:
        """H(c_i) in nats per slot."""
        return {slot.name: slot.code.entropy() for slot in self.slots}

    def reachable_maxima(self) -> dict[str, float | None]:
        """Per slot, the largest L_I its code and Q loss can reach (``QLoss.reachable_max``), in
        nats; ``None`` where the loss states none. ``L_I`` is read against it, not against H(c)."""
        return {slot.name: slot.q_loss.reachable_max() for slot in self.slots}

    def lower_bounds(self, nll_means: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Variational bound L_I = H(c) - E[-log Q(c|x)] <= I(c; G(z, c)) per slot, in nats."""
        entropies = self.entropies()
        unknown = sorted(set(nll_means) - set(entropies))
        if unknown:
            raise KeyError(f"lower_bounds: unknown slot names {unknown}; slots: {sorted(entropies)}")
        return {name: entropies[name] - nll for name, nll in nll_means.items()}

    def traversal_inputs(
        self,
        slot_index: int,
        *,
        n_rows: int,
        generator: torch.Generator,
        device: torch.device | str,
        base: torch.Tensor | None = None,
        dim_index: int = 0,
        steps: int = DEFAULT_TRAVERSAL_STEPS,
    ) -> torch.Tensor:
        """G inputs for a traversal grid, ``(n_rows * V, input_dim)`` in row-major order.

        Each row keeps z and all other codes fixed (drawn once per row from
        ``generator``, or taken from ``base`` ``(n_rows, input_dim)``) and sweeps
        dimension ``dim_index`` of slot ``slot_index`` over its traversal values.
        """
        if not 0 <= slot_index < len(self.slots):
            raise ValueError(f"traversal_inputs: slot_index must be in [0, {len(self.slots)}), got {slot_index!r}")
        code = self.slots[slot_index].code
        if not 0 <= dim_index < code.dim:
            raise ValueError(f"traversal_inputs: dim_index must be in [0, {code.dim}), got {dim_index!r}")
        values = code.traversal_values(steps=steps).to(device)  # (V, w): one code dimension
        width = values.shape[1]
        start = self._input_offsets[slot_index] + dim_index * width

        if base is None:
            base = self.sample(n_rows, generator=generator, device=device)[0]
        elif tuple(base.shape) != (n_rows, self.input_dim):
            raise ValueError(
                f"traversal_inputs: base must have shape ({n_rows}, {self.input_dim}), got {tuple(base.shape)}"
            )
        grid = repeat(base.to(device=device, dtype=torch.float32), "r d -> r v d", v=values.shape[0]).clone()
        grid[:, :, start : start + width] = values  # broadcast over rows
        return rearrange(grid, "r v d -> (r v) d")

    def describe(self) -> dict[str, Any]:
        """JSON-able record of the whole layout, for checkpoints and run records::

            {"noise_dim": 62, "noise": "uniform", "input_dim": 74, "q_dim": 12,
             "slots": [{"name", "code", "q_loss", "lambda", "input_columns", "q_columns"}, ...]}

        ``noise`` is the distribution of z (``uniform`` on (-1, 1) or ``normal``); each slot's
        ``input_columns``/``q_columns`` are [start, stop) in G's input and Q's output.
        ``LatentSpec.from_description`` rebuilds the spec from it, ``check_description``
        compares a spec with it.
        """
        return {
            "noise_dim": self.noise_dim,
            "noise": self.noise,
            "input_dim": self.input_dim,
            "q_dim": self.q_dim,
            "slots": [
                {
                    "name": slot.name,
                    "code": slot.code.describe(),
                    "q_loss": slot.q_loss.describe(),
                    "lambda": slot.lam,
                    "input_columns": [in_start, in_start + in_width],
                    "q_columns": [q_start, q_start + q_size],
                }
                for slot, in_start, in_width, q_start, q_size in zip(
                    self.slots, self._input_offsets, self._input_widths, self._q_offsets, self._q_sizes
                )
            ],
        }

    @classmethod
    def from_description(cls, description: Mapping[str, Any] | str, *, registries: Any = None) -> LatentSpec:
        """Rebuild the spec that ``describe()`` recorded (a dict, or its JSON text).

        Code types and Q losses are looked up by the names the description records, in
        ``registries`` (``registry.Host.create(["infogan", "my_plugin"]).registries`` for a
        third-party code type; default: the InfoGAN plugin's built-ins). The rebuilt spec is
        then checked against the description field by field (columns included), so a
        description that a spec cannot reproduce is a ``ValueError`` naming the field.
        """
        description = _description_dict(description)
        if registries is None:
            registries = _builtin_registries()
        slots = []
        for i, entry in enumerate(_field(description, "slots", list)):
            where = f"slots[{i}]"
            if not isinstance(entry, Mapping):
                raise ValueError(f"LatentSpec description: {where} must be an object, got {type(entry).__name__}")
            code_record = dict(_field(entry, "code", Mapping, where))
            loss_record = dict(_field(entry, "q_loss", Mapping, where))
            code_type = _lookup(registries.latent_codes, code_record.pop("type", None), f"{where}.code.type")
            loss_type = _lookup(registries.q_losses, loss_record.pop("name", None), f"{where}.q_loss.name")
            init = (
                {f.name for f in dataclasses.fields(code_type) if f.init}
                if dataclasses.is_dataclass(code_type)
                else set()
            )
            try:
                code = code_type(**{key: value for key, value in code_record.items() if key in init})
                q_loss = loss_type(**loss_record)
                slot = CodeSlot(
                    _field(entry, "name", str, where), code, q_loss, float(_field(entry, "lambda", (int, float), where))
                )
            except (TypeError, ValueError) as exc:
                raise ValueError(f"LatentSpec description: {where} cannot be rebuilt: {exc}") from None
            slots.append(slot)
        noise_dim = _field(description, "noise_dim", int)
        spec = cls(noise_dim=noise_dim, slots=slots, noise=_field(description, "noise", str))
        spec.check_description(description)
        return spec

    def check_description(self, description: Mapping[str, Any] | str) -> None:
        """Raise ``ValueError`` naming the first field where ``description`` (what
        ``describe()`` recorded, e.g. in a checkpoint's metadata) differs from this spec:
        the check to make before loading G and Q weights into modules built for this spec."""
        recorded = json.loads(json.dumps(_description_dict(description)))
        current = json.loads(json.dumps(self.describe()))
        difference = _first_difference(recorded, current, "")
        if difference is not None:
            where, theirs, ours = difference
            raise ValueError(
                f"LatentSpec description differs at {where or 'the top level'}: {theirs} in the description, "
                f"{ours} in this spec"
            )

    def input_layout(self) -> dict[str, Any]:
        """G's input columns for serving G without ganrun (``ganrun export`` stores it):
        ``{"input_dim", "noise_dim", "noise", "codes": [{"name", "type", "columns": [start,
        stop), "width", "code": describe()}]}``, z occupying columns ``[0, noise_dim)``."""
        return {
            "input_dim": self.input_dim,
            "noise_dim": self.noise_dim,
            "noise": self.noise,
            "codes": [
                {
                    "name": slot.name,
                    "type": slot.code.type_name,
                    "columns": [start, start + width],
                    "width": width,
                    "code": slot.code.describe(),
                }
                for slot, start, width in zip(self.slots, self._input_offsets, self._input_widths)
            ],
        }

    @staticmethod
    def _check_width(tensor: torch.Tensor, expected: int, what: str) -> None:
        if tensor.dim() != 2 or tensor.shape[1] != expected:
            raise ValueError(f"{what} must have shape (B, {expected}), got {tuple(tensor.shape)}")


def _description_dict(description: Mapping[str, Any] | str) -> dict[str, Any]:
    if isinstance(description, str):
        try:
            description = json.loads(description)
        except json.JSONDecodeError as exc:
            raise ValueError(f"LatentSpec description: not JSON ({exc})") from None
    if isinstance(description, list):
        raise ValueError(
            "LatentSpec description: a list is the slot layout describe() returned before the noise was "
            "recorded; wrap it as {'noise_dim': N, 'noise': 'uniform', 'slots': [...]} with the noise you trained with"
        )
    if not isinstance(description, Mapping):
        raise ValueError(f"LatentSpec description: expected an object, got {type(description).__name__}")
    return dict(description)


def _field(record: Mapping[str, Any], key: str, kind: Any, where: str = "") -> Any:
    name = f"{where}.{key}" if where else key
    if key not in record:
        raise ValueError(f"LatentSpec description: {name} is missing")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"LatentSpec description: {name} has the wrong type ({type(value).__name__}: {value!r})")
    return value


def _lookup(registry: Any, name: Any, where: str) -> Any:
    if not isinstance(name, str):
        raise ValueError(f"LatentSpec description: {where} must be a name, got {name!r}")
    try:
        return registry.get(name)
    except UnknownNameError as exc:
        raise ValueError(
            f"LatentSpec description: {where}: {exc}; pass registries=registry.Host.create([...]).registries "
            f"with the plugin that registers it"
        ) from None


def _builtin_registries() -> Any:
    """The registries of the InfoGAN plugin alone (its code types and Q losses)."""
    import infogan_plugin.plugin
    from registry.plugins import Registries, get_plugin_manager

    pm = get_plugin_manager()
    pm.register(infogan_plugin.plugin, name="infogan")
    return Registries.collect(pm)


def _first_difference(theirs: Any, ours: Any, where: str) -> tuple[str, str, str] | None:
    """The first path where two JSON values differ, with both sides in words."""
    if isinstance(theirs, dict) and isinstance(ours, dict):
        for key in [*ours, *(k for k in theirs if k not in ours)]:
            path = f"{where}.{key}" if where else key
            if key not in theirs:
                return path, "absent", json.dumps(ours[key])
            if key not in ours:
                return path, json.dumps(theirs[key]), "absent"
            found = _first_difference(theirs[key], ours[key], path)
            if found is not None:
                return found
        return None
    if isinstance(theirs, list) and isinstance(ours, list):
        if len(theirs) != len(ours):
            return where, f"{len(theirs)} entries", f"{len(ours)} entries"
        for i, (a, b) in enumerate(zip(theirs, ours)):
            found = _first_difference(a, b, f"{where}[{i}]")
            if found is not None:
                return found
        return None
    if (
        theirs != ours
        or type(theirs) is not type(ours)
        and not (isinstance(theirs, (int, float)) and isinstance(ours, (int, float)))
    ):
        return where, json.dumps(theirs), json.dumps(ours)
    return None


_SPEC_FORM = "TYPE[:N][,key=value...]"
MAX_CODES = 1024  # code slots of a run: each has its own loss weight, metrics and traversal picture
_TYPE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIZE_RE = re.compile(r"[0-9]+")


def parse_code_spec(text: str) -> tuple[str, int | None, dict[str, str]]:
    """Parse a command-line code spec such as ``uniform:2,low=-1,high=1,lambda=0.05``.

    Returns ``(type name, size or None, {option: raw string})``. What the size means
    (classes for a categorical, dimensions for a continuous code) and how options
    are converted is up to the caller, which knows the code type.
    """

    def fail(reason: str) -> ValueError:
        return ValueError(f"invalid code spec {text!r}: {reason}; expected {_SPEC_FORM}, e.g. 'categorical:10'")

    head, *option_parts = [part.strip() for part in text.split(",")]
    if not head:
        raise fail("missing code type")
    type_name, has_size, size_text = (part.strip() for part in head.partition(":"))
    if not _TYPE_RE.fullmatch(type_name):
        raise fail(f"code type {type_name!r} is not a name")
    size: int | None = None
    if has_size:
        if not _SIZE_RE.fullmatch(size_text):
            raise fail(f"size {size_text!r} is not a whole number")
        size = int(size_text)
        if size < 1:
            raise fail(f"size must be >= 1, got {size}")

    options: dict[str, str] = {}
    for part in option_parts:
        key, has_eq, value = (piece.strip() for piece in part.partition("="))
        if not has_eq:
            raise fail(f"option {part!r} has no '='")
        if not key or not value:
            raise fail(f"option {part!r} needs both a key and a value")
        if key in options:
            raise fail(f"option {key!r} given more than once")
        options[key] = value
    return type_name, size, options


_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")


def _slot_names(text: str, name: str | None, before: int) -> Callable[[int, int], str]:
    """How the codes of one spec are named: ``cN`` by position among all codes (the default),
    or the spec's ``name=``: the name itself for a spec with one code, ``NAME_1``, ``NAME_2``,
    ... for one that expands into several (``uniform:3,name=pose``)."""
    if name is None:
        return lambda k, count: f"c{before + k + 1}"
    if not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"{text!r}: name={name!r} is not a code name; use a letter then up to 31 letters, digits or _, "
            f"e.g. name=digit"
        )
    return lambda k, count: name if count == 1 else f"{name}_{k + 1}"


def build_latent_spec(config: Any, registries: Any) -> LatentSpec:
    """The noise and codes of ``config`` (``config.extra["code"]``), looked up by name.

    Each spec ``TYPE[:N][,key=value...]`` may carry three options of its own besides the
    code type's: ``lambda=`` (this code's weight), ``loss=`` (a registered Q loss) and
    ``name=`` (what metrics, ``eval``, ``encode`` and ``generate`` call it; default ``cN``).
    A code without ``lambda=`` takes ``--lambda`` if given, else its type's default.
    """
    global_lambda = config.extra.get("info_lambda")
    slots: list[CodeSlot] = []
    for text in config.extra.get("code") or []:
        type_name, size, options = parse_code_spec(str(text))
        try:
            code_type = registries.latent_codes.get(type_name)
        except UnknownNameError as exc:
            raise ValueError(f"{text!r}: {exc}") from None
        options = dict(options)
        lam_text, loss_name = options.pop("lambda", None), options.pop("loss", None)
        names = _slot_names(text, options.pop("name", None), len(slots))
        try:
            lam = float(lam_text) if lam_text is not None else None
        except ValueError:
            raise ValueError(f"{text!r}: lambda={lam_text!r} is not a number") from None
        try:
            loss_type = registries.q_losses.get(loss_name or code_type.default_q_loss)
        except UnknownNameError as exc:
            raise ValueError(f"{text!r}: {exc}") from None
        separate = getattr(code_type.from_spec, "__func__", None) is LatentCode.from_spec.__func__
        if separate and size is not None and len(slots) + size > MAX_CODES:
            raise ValueError(
                f"{text!r}: {size} separate codes, {len(slots) + size} in all; at most {MAX_CODES} are allowed "
                f"(each is weighted, measured and pictured on its own)"
            )
        try:
            codes = code_type.from_spec(size, options)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{text!r}: {exc}") from None
        for k, code in enumerate(codes):
            weight = (
                lam if lam is not None else global_lambda if global_lambda is not None else code_type.default_lambda
            )
            name = names(k, len(codes))
            if name in (slot.name for slot in slots):
                raise ValueError(f"{text!r}: a code is named {name!r} already; give each code its own name=")
            slots.append(CodeSlot(name, code, loss_type(), float(weight)))  # one loss per slot
    if not slots:
        raise ValueError("at least one --code is needed, e.g. --code categorical:10")
    return LatentSpec(noise_dim=config.noise_dim, slots=slots, noise=config.noise)
