"""Is a D that sits at chance unable to learn, or kept there by G? Train it alone and see.

Loads a checkpoint, freezes G, and takes ``--steps`` D updates (the run's own D, optimizer
state, learning rate and GAN loss; the recipe's information term left out) on fresh real
batches against G's samples, printing D's loss, the gap between mean real and fake logits and
the logits' spread. ``--fresh`` trains a newly initialised D of the same model (with spectral
norm if the run used it) instead. A D that separates the two within a few dozen updates was not
broken: in training, G's updates undo each of D's gains.

    OMP_NUM_THREADS=1 python benchmarks/d_alone.py RUN_OR_CHECKPOINT --steps 300
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from registry import Host, find_checkpoint
from registry.nets.spectral import apply_spectral_norm
from registry.train import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run folder (its newest checkpoint) or a checkpoint file")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=30, help="print every this many updates")
    parser.add_argument("--fresh", action="store_true", help="a newly initialised D instead of the run's")
    parser.add_argument("--plugin", action="append", default=["infogan"], help="plugins the run was trained with")
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = find_checkpoint(args.run)
    if path is None or not path.is_file():
        parser.error(f"{args.run}: no checkpoint there")
    trainer = Trainer.from_checkpoint(path, Host.create(args.plugin), device="cpu")
    cfg = trainer.config
    G, D, opt = trainer.modules["G"], trainer.modules["D"], trainer.optimizers["D"]
    for module in trainer.modules.values():
        module.train()
    if args.fresh:
        torch.manual_seed(cfg.seed + 1)
        _, D = trainer.host.registries.models.get(trainer.model_name)(
            latent_dim=trainer.sampler.input_dim,
            channels=trainer.dataset.channels,
            image_size=trainer.dataset.image_size,
        )
        if cfg.spectral_norm:
            apply_spectral_norm(D)
        opt = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    print(
        f"{path} (step {trainer.step}): {'a fresh' if args.fresh else 'the run’s'} D alone against the frozen G, "
        f"lr {cfg.lr_d:g}, {cfg.gan_loss} loss"
    )
    for update in range(args.steps + 1):
        real = trainer.real_batch()
        trainer.step += 1
        with torch.no_grad():
            g_input, _ = trainer.sampler.sample(cfg.batch_size, generator=trainer.latent_gen, device=trainer.device)
            fake = G(g_input)
        real_logits, _ = D(real)
        fake_logits, _ = D(fake)
        loss = trainer.gan_loss.d(real_logits, fake_logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if update % args.every == 0:
            logits = torch.cat([real_logits, fake_logits]).detach()
            print(
                f"update {update:4d}: D loss {loss.item():.3f}, logit gap "
                f"{(real_logits.mean() - fake_logits.mean()).item():7.3f}, spread {logits.std().item():.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
