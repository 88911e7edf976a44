"""Add InfoGAN to a GAN training loop you wrote yourself, without ganrun's trainer.

Everything below is an ordinary PyTorch GAN on the MNIST digits that ship with ganrun:
its own generator and discriminator, its own Adam optimizers, its own loop. The lines
marked ``# InfoGAN:`` are all that InfoGAN adds (Chen et al. 2016):

1. describe the latent codes with a ``LatentSpec`` and feed G ``[z | c]`` from ``spec.sample``;
2. put a ``QHead`` on the discriminator's trunk features and train it with D;
3. add ``spec.information_loss(Q(features), codes)`` to both D's and G's loss;
4. log ``spec.lower_bounds(nll)``, the bound L_I <= I(c; G(z, c)) per code, in nats.

Run it::

    python examples/embed_in_your_gan.py --steps 2000 --out runs/embedded

It prints one JSON line of losses and L_I per log step and writes ``OUT/checkpoint.safetensors``
(models and optimizers, loadable with ``registry.load_training_state``) and one traversal
grid per code, ``OUT/traversal-<code>.png``: each row fixes z and the other codes, the
columns sweep this code. Watch ``L_I/digit`` approach ln 10 ~ 2.30 nats as the categorical
code takes over the digit class.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from infogan_plugin import (
    Categorical,
    CategoricalCE,
    CodeSlot,
    GaussianNLLFixed,
    LatentSpec,
    QHead,
    Uniform,
    traversals,
)  # InfoGAN:
from registry import save_training_state
from registry.data import load_digits, to_training_tensor

TRAVERSAL_ROWS = 10


class Generator(nn.Module):
    """A small MLP generator: (B, input_dim) -> (B, 1, 28, 28) in [-1, 1]."""

    def __init__(self, input_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, 28 * 28),
            nn.Tanh(),
        )

    def forward(self, g_input: torch.Tensor) -> torch.Tensor:
        return self.net(g_input).view(-1, 1, 28, 28)


class Discriminator(nn.Module):
    """A small MLP discriminator returning real/fake logits (B,) and its trunk features (B, F)."""

    def __init__(self, hidden: int = 256, feature_dim: int = 128) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.trunk = nn.Sequential(
            nn.Flatten(),
            nn.Linear(28 * 28, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, feature_dim),
            nn.LeakyReLU(0.2),
        )
        self.head = nn.Linear(feature_dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(x)
        return self.head(features).squeeze(1), features  # InfoGAN: also return the trunk features


def latent_spec(noise_dim: int) -> LatentSpec:
    """InfoGAN: the paper's MNIST codes, one 10-way categorical and two U(-1, 1) codes."""
    return LatentSpec(
        noise_dim=noise_dim,
        slots=[
            CodeSlot("digit", Categorical(k=10), CategoricalCE(), lam=1.0),
            CodeSlot("c2", Uniform(low=-1.0, high=1.0), GaussianNLLFixed(), lam=0.1),
            CodeSlot("c3", Uniform(low=-1.0, high=1.0), GaussianNLLFixed(), lam=0.1),
        ],
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps (default: 200)")
    parser.add_argument("--out", type=Path, default=Path("runs/embedded"), help="output folder")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--noise-dim", type=int, default=62)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    data = to_training_tensor(load_digits(), device)  # (N, 1, 28, 28) in [-1, 1]
    rng = torch.Generator(device=device).manual_seed(args.seed)

    spec = latent_spec(args.noise_dim)  # InfoGAN: noise z plus codes c
    G = Generator(spec.input_dim).to(device)  # InfoGAN: G reads spec.input_dim columns instead of noise_dim
    D = Discriminator().to(device)
    q_head = QHead(in_features=D.feature_dim, out_dim=spec.q_dim).to(device)  # InfoGAN: Q(c|x) on D's trunk
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*D.parameters(), *q_head.parameters()], lr=2e-4, betas=(0.5, 0.999))  # InfoGAN: + Q

    for step in range(1, args.steps + 1):
        real = data[torch.randint(len(data), (args.batch_size,), generator=rng, device=device)]
        # InfoGAN: replaces the noise draw; z is U(-1, 1) as in the paper (noise="normal" in
        # LatentSpec gives N(0, 1), what torch.randn(B, noise_dim) drew)
        g_input, codes = spec.sample(args.batch_size, generator=rng, device=device)
        fake = G(g_input)

        # Discriminator (and Q) step
        real_logits, _ = D(real)
        fake_logits, fake_features = D(fake.detach())
        d_loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        d_info, nll = spec.information_loss(q_head(fake_features), codes)  # InfoGAN: sum_i lambda_i * E[-log Q(c_i|x)]
        d_loss = d_loss + d_info  # InfoGAN
        opt_d.zero_grad(set_to_none=True)  # also clears what the previous G step left in D and Q
        d_loss.backward()
        opt_d.step()

        # Generator step (non-saturating loss)
        fake_logits, fake_features = D(fake)
        g_loss = F.softplus(-fake_logits).mean()
        g_info, _ = spec.information_loss(q_head(fake_features), codes)  # InfoGAN: G makes its codes readable
        g_loss = g_loss + g_info  # InfoGAN
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()

        if step % args.log_every == 0 or step == args.steps:
            bounds = spec.lower_bounds({name: value.detach() for name, value in nll.items()})  # InfoGAN: L_I per code
            record = {"step": step, "d_loss": d_loss.item(), "g_loss": g_loss.item()}
            record.update({f"L_I/{name}": bound.item() for name, bound in bounds.items()})  # InfoGAN
            print(json.dumps({key: round(value, 4) for key, value in record.items()}), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    # InfoGAN: one traversal grid per code (G in eval mode, no_grad, mode restored)
    traversals(G, spec, rows=TRAVERSAL_ROWS, seed=args.seed + 1, out_dir=args.out)
    path = save_training_state(
        args.out / "checkpoint.safetensors",
        modules={"G": G, "D": D, "Q": q_head},  # InfoGAN: + Q
        optimizers={"G": opt_g, "D": opt_d},
        metadata={
            "step": str(args.steps),
            "noise_dim": str(args.noise_dim),
            "latent_spec": json.dumps(spec.describe()),
        },  # InfoGAN: the code layout G's input follows (LatentSpec.from_description rebuilds it)
    )
    print(f"wrote {path} and {len(spec.slots)} traversal grids in {args.out}", flush=True)


if __name__ == "__main__":
    main()
