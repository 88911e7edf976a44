"""InfoGAN metrics on a trained run: the information bound per code, unsupervised
classification accuracy of each categorical code (Q's argmax matched to labels) and, for
runs on a dataset with ground-truth factors (``ImageDataset.ground_truth``, e.g. ``shapes``),
disentanglement metrics of Q's code estimates."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from infogan_plugin.bounds import reachable_max
from infogan_plugin.codes import Categorical
from infogan_plugin.latent import LatentSpec
from registry.eval.assignment import cluster_accuracy, confusion_counts
from infogan_plugin.qlosses import CategoricalCE


def _eval_mode(trainer: Any):
    for module in trainer.modules.values():
        module.eval()


@torch.no_grad()
def q_outputs(trainer: Any, images: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """Q's output (N, q_dim) for images (N, C, H, W) in [-1, 1], read from D's trunk."""
    _eval_mode(trainer)
    D, Q = trainer.modules["D"], trainer.modules["Q"]
    outs = []
    for start in range(0, images.shape[0], batch_size):
        _, features = D(images[start : start + batch_size].to(trainer.device))
        outs.append(Q(features).float())
    return torch.cat(outs)


def label_problem(labels: torch.Tensor | None) -> str:
    """Why the unsupervised accuracy cannot mean anything on these labels ("" when it can):
    labels of a single class (any code, even a constant one, matches them all: 100%) or
    negative ones (no class index is negative)."""
    if labels is None or labels.numel() == 0:
        return ""
    classes = torch.unique(labels.cpu())
    low, high = int(classes.min()), int(classes.max())
    if low < 0:
        return f"the labels range over {low}..{high}; class labels are 0 or more"
    if len(classes) < 2:
        return (
            f"every label is {low}, a single class: any code, even a constant one, would match it at 100%, "
            f"so the accuracy would say nothing; are these the labels of these images?"
        )
    return ""


def label_warnings(labels: torch.Tensor | None, spec: LatentSpec) -> list[str]:
    """Lines about labels the accuracy can use but reads differently than one expects: more
    classes than a categorical code has values (the accuracy is capped below 100%)."""
    if labels is None or labels.numel() == 0 or label_problem(labels):
        return []
    cpu = labels.cpu()
    classes, counts = torch.unique(cpu, return_counts=True)
    low, high = int(classes.min()), int(classes.max())
    lines = []
    for slot in spec.slots:
        if isinstance(slot.code, Categorical) and len(classes) > slot.code.k:
            best = int(counts.sort(descending=True).values[: slot.code.k].sum()) / cpu.numel()
            lines.append(
                f"{slot.name}: the labels hold {len(classes)} classes ({low}..{high}) and {slot.name} has "
                f"{slot.code.k} values, so at most {slot.code.k} classes can be matched: its accuracy is at most "
                f"{best:.2%}"
            )
    return lines


def classifies(trainer: Any) -> bool:
    """Whether ``classification_accuracy`` has anything to score: labelled data and a discrete code."""
    return trainer.dataset.labels is not None and any(slot.code.discrete for slot in trainer.sampler.slots)


@torch.no_grad()
def classification_accuracy(trainer: Any) -> dict[str, dict[str, Any]]:
    """For each categorical code: accuracy of argmax Q(c|x) on the labelled real data after
    the best one-to-one matching of code values to labels (Hungarian algorithm)."""
    if not classifies(trainer):
        return {}  # nothing to score: skip Q's pass over the whole dataset
    return categorical_accuracy(trainer.sampler, q_outputs(trainer, trainer.data), trainer.dataset.labels)


def categorical_accuracy(spec: LatentSpec, q_out: torch.Tensor, labels: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Unsupervised accuracy of every categorical code of ``spec`` on labelled images.

    ``q_out`` is Q's output ``(N, q_dim)`` for N images (read in eval mode), ``labels`` their
    classes ``(N,)``. Q's most likely value of each categorical code is matched one-to-one to
    the labels by the Hungarian algorithm (``cluster_accuracy``, which needs scipy: ``pip
    install 'ganrun[eval]'``), as the paper scores its MNIST code. Returns, per categorical
    slot, ``{"accuracy": fraction correct, "mapping": {code value: label} (as strings),
    "labels": the sorted classes, "confusion": counts[code value][label index]}``, the entry
    ``ganrun eval`` writes to ``eval.json``; codes of other types are left out.
    """
    if q_out.dim() != 2 or q_out.shape[1] != spec.q_dim:
        raise ValueError(f"categorical_accuracy: q_out must have shape (N, {spec.q_dim}), got {tuple(q_out.shape)}")
    labels = torch.as_tensor(labels).detach().cpu()
    if labels.dim() != 1 or labels.shape[0] != q_out.shape[0] or labels.is_floating_point():
        raise ValueError(
            f"categorical_accuracy: labels must be integers of shape ({q_out.shape[0]},), one per row of q_out; "
            f"got {str(labels.dtype).removeprefix('torch.')} of shape {tuple(labels.shape)}"
        )
    results = {}
    for slot, chunk in zip(spec.slots, spec.split_q(q_out.detach())):
        if not isinstance(slot.code, Categorical):  # a Bernoulli code is discrete but not a clustering
            continue
        predicted = slot.q_loss.predict(chunk).argmax(dim=1).cpu()
        accuracy, mapping = cluster_accuracy(predicted, labels)
        classes = sorted(int(c) for c in torch.unique(labels))
        results[slot.name] = {
            "accuracy": accuracy,
            "mapping": {str(k): int(v) for k, v in mapping.items()},
            "labels": classes,
            "confusion": confusion_counts(predicted, labels, slot.code.k, classes),
        }
    return results


@torch.no_grad()
def information_bounds(
    trainer: Any,
    *,
    n: int = 10_000,
    seed: int = 1234,
    batch_size: int = 500,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, dict[str, float]]:
    """L_I = H(c) - E[-log Q(c|x)] per code on ``n`` fresh samples of G (eval mode), in nats, as
    ``{code: {"L_I", "H", "ratio": L_I / H (None where H <= 0: no share of it, see
    ``bounds.NO_RATIO``), "L_I_max": the reachable maximum
    of its Q loss or None}}``; ``progress(k)`` is told of every ``k`` samples done."""
    spec: LatentSpec = trainer.sampler
    _eval_mode(trainer)
    gen = torch.Generator(device=trainer.device).manual_seed(seed)
    G, D, Q = trainer.modules["G"], trainer.modules["D"], trainer.modules["Q"]
    totals = {slot.name: 0.0 for slot in spec.slots}
    done = 0
    while done < n:
        b = min(batch_size, n - done)
        g_input, codes = spec.sample(b, generator=gen, device=trainer.device)
        _, features = D(G(g_input))
        _, nll = spec.information_loss(Q(features).float(), codes)
        for name, value in nll.items():
            totals[name] += float(value) * b
        done += b
        if progress is not None:
            progress(b)
    entropies = spec.entropies()
    ceilings = {slot.name: reachable_max(slot) for slot in spec.slots}
    out = {}
    for name, total in totals.items():
        h = entropies[name]
        l_i = h - total / n
        # "ratio" stays L_I / H (scripts read it), null where H <= 0 (a differential entropy can
        # be zero or negative: Beta(2, 2) has -0.125 nats); "L_I_max" is what L_I is read against
        ratio = l_i / h if h > 0 else None
        out[name] = {"L_I": l_i, "H": h, "ratio": ratio, "L_I_max": ceilings[name]}
    return out


def q_encoder(trainer: Any, *, batch_size: int = 500):
    """The representation the disentanglement metrics score: Q's point estimate of every code.

    Returns ``encode(images uint8 (N, C, H, W)) -> (N, d)`` float32 on the CPU: images are
    resized to the run's size if needed, scaled to [-1, 1] like the training data, passed
    through D's trunk and Q, and each slot's ``q_loss.point_estimate`` is concatenated in slot
    order: a categorical code contributes one dimension, the index of its most likely class, a
    Gaussian one its mean, and a third-party loss whatever its ``point_estimate`` gives (by
    default ``code.value_of(predict(...))``, so a one-column Bernoulli code is its likelier bit).
    """
    from registry.data import resize_uint8, uint8_to_float

    spec: LatentSpec = trainer.sampler
    size = trainer.dataset.image_size

    def encode(images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != size:
            images = resize_uint8(images.cpu(), size)
        x = uint8_to_float(images, trainer.device)
        q_out = q_outputs(trainer, x, batch_size=batch_size)
        columns = [slot.q_loss.point_estimate(chunk).float() for slot, chunk in zip(spec.slots, spec.split_q(q_out))]
        return torch.cat(columns, dim=1).cpu()

    return encode


def encoder_layout(trainer: Any) -> list[str]:
    """Names of the representation's dimensions, one per column of ``q_encoder``: the slot
    name for a one-column estimate, ``[argmax]`` after it for a categorical code scored by
    ``CategoricalCE``, ``[j]`` for column ``j`` of a wider one. Widths come from each loss's
    ``point_estimate`` of a zero Q output."""
    names = []
    for slot in trainer.sampler.slots:
        probe = torch.zeros(1, slot.q_loss.num_outputs(slot.code))
        width = slot.q_loss.point_estimate(probe).shape[1]
        if isinstance(slot.q_loss, CategoricalCE):
            names.append(f"{slot.name}[argmax]")
        elif width == 1:
            names.append(slot.name)
        else:
            names.extend(f"{slot.name}[{j}]" for j in range(width))
    return names


def disentanglement_metrics(
    trainer: Any,
    *,
    num_samples: int = 10_000,
    seed: int = 0,
    batch_size: int = 1000,
    on_metric: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """MIG, FactorVAE score, DCI disentanglement and SAP of Q's code estimates on a run
    trained on a dataset that declares ground-truth factors (``ImageDataset.ground_truth``), with
    fresh ground truth drawn and rendered by it on the run's device (for ``shapes``: the full
    factor grid). Sizes are disentanglement_lib's scaled by
    ``num_samples / 10,000`` (see ``registry.eval.disentanglement.evaluate_all``, which also
    describes ``on_metric``)."""
    from registry.eval.disentanglement import evaluate_all

    truth = trainer.dataset.ground_truth
    if truth is None:
        raise ValueError(
            f"disentanglement metrics need a dataset with ground-truth factors; "
            f"{trainer.config.dataset!r} declares none"
        )
    device = trainer.device

    def render(factors: torch.Tensor) -> torch.Tensor:
        return truth.render(factors.to(device))

    started = time.perf_counter()
    results = evaluate_all(
        q_encoder(trainer),
        truth.sizes,
        truth.sample,
        render,
        seed=seed,
        num_samples=num_samples,
        batch_size=batch_size,
        on_metric=on_metric,
    )
    out: dict[str, Any] = {
        "encoder": encoder_layout(trainer),
        "factors": list(truth.names),
        "num_samples": num_samples,
        "seed": seed,
    }
    out.update({name: result.to_json() for name, result in results.items()})
    out["seconds"] = time.perf_counter() - started
    return out


def confusion_lines(result: dict[str, Any]) -> list[str]:
    """A categorical code's ``classification`` entry as text rows: per code value, the label it
    was matched to and how many samples of each label Q assigns to it."""
    labels, counts, mapping = result["labels"], result["confusion"], result["mapping"]
    lines = ["value  label |" + "".join(f"{c:>6}" for c in labels)]
    for value, row in enumerate(counts):
        matched = mapping.get(str(value))
        lines.append(f"{value:>5}  {'-' if matched is None else matched:>5} |" + "".join(f"{n:>6}" for n in row))
    return lines
