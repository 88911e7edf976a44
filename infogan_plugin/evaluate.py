"""InfoGAN metrics on a trained run: the information bound per code and unsupervised
classification accuracy of each categorical code (Q's argmax matched to labels)."""

from __future__ import annotations

from typing import Any

import torch

from infogan_plugin.latent import LatentSpec
from infogan_plugin.metrics import cluster_accuracy


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
        _, features = D(images[start:start + batch_size].to(trainer.device))
        outs.append(Q(features).float())
    return torch.cat(outs)


@torch.no_grad()
def classification_accuracy(trainer: Any) -> dict[str, dict[str, Any]]:
    """For each categorical code: accuracy of argmax Q(c|x) on the labelled real data after
    the best one-to-one matching of code values to labels (Hungarian algorithm)."""
    spec: LatentSpec = trainer.sampler
    labels = trainer.dataset.labels
    if labels is None:
        return {}
    q_out = q_outputs(trainer, trainer.data)
    results = {}
    for slot, chunk in zip(spec.slots, spec.split_q(q_out)):
        if not slot.code.discrete:
            continue
        predicted = slot.q_loss.predict(chunk).argmax(dim=1).cpu()
        accuracy, mapping = cluster_accuracy(predicted, labels.cpu())
        results[slot.name] = {"accuracy": accuracy, "mapping": {str(k): int(v) for k, v in mapping.items()}}
    return results


@torch.no_grad()
def information_bounds(trainer: Any, *, n: int = 10_000, seed: int = 1234, batch_size: int = 500) -> dict[str, dict[str, float]]:
    """L_I = H(c) - E[-log Q(c|x)] per code on ``n`` fresh samples of G (eval mode), in nats."""
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
    entropies = spec.entropies()
    out = {}
    for name, total in totals.items():
        h = entropies[name]
        l_i = h - total / n
        out[name] = {"L_I": l_i, "H": h, "ratio": l_i / h if h > 0 else float("nan")}
    return out
