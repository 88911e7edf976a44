"""A DCGAN training script in the shape of the popular public ones, with InfoGAN added by
following docs/embedding.md alone (the lines marked ``# InfoGAN``).

Its shape is what such scripts share, not this project's: G and D built from ``nn.Sequential``
blocks (D with dropout and the customary ``BatchNorm2d(n, 0.8)``), D returning only its
real/fake logit, N(0, 1) noise, a shuffling ``DataLoader`` over epochs, and the G update
before the D update. Q reads D's trunk through a forward hook, so D's code and its three call
sites are unchanged. ``tests/test_embedded_dcgan.py`` runs it in fresh processes::

    python tests/embedded_dcgan.py --epochs 2 --out OUT                      # straight
    python tests/embedded_dcgan.py --epochs 1 --out A                        # half, then
    python tests/embedded_dcgan.py --epochs 2 --out B --resume A/state.safetensors

It writes ``OUT/state.safetensors`` after every epoch, one traversal PNG per code, and prints
one JSON line per epoch (losses, L_I per code) and a last one with the accuracy of the
categorical code on held-out labelled digits.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from infogan_plugin import (  # InfoGAN
    Categorical,
    CategoricalCE,
    CodeSlot,
    GaussianNLLFixed,
    LatentSpec,
    QHead,
    Uniform,
    categorical_accuracy,
    traversals,
    trunk_features,
)
from registry import load_training_state, save_training_state, to_training_tensor
from registry.data import load_digits

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--batch-size", type=int, default=16)
parser.add_argument("--images", type=int, default=64, help="training images (the first N digits)")
parser.add_argument("--img-size", type=int, default=16)
parser.add_argument("--latent-dim", type=int, default=8)
parser.add_argument("--lambda0", action="store_true", help="the control: no information term for G")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--resume", type=Path)
opt = parser.parse_args()
torch.manual_seed(0)


def generator(input_dim: int) -> nn.Sequential:
    init = opt.img_size // 4
    return nn.Sequential(
        nn.Linear(input_dim, 32 * init**2),
        nn.Unflatten(1, (32, init, init)),
        nn.BatchNorm2d(32),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(32, 32, 3, stride=1, padding=1),
        nn.BatchNorm2d(32, 0.8),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Upsample(scale_factor=2),
        nn.Conv2d(32, 16, 3, stride=1, padding=1),
        nn.BatchNorm2d(16, 0.8),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(16, 1, 3, stride=1, padding=1),
        nn.Tanh(),
    )


def discriminator_block(in_filters: int, out_filters: int, bn: bool = True) -> list[nn.Module]:
    block = [nn.Conv2d(in_filters, out_filters, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True), nn.Dropout2d(0.25)]
    if bn:
        block.append(nn.BatchNorm2d(out_filters, 0.8))
    return block


def discriminator() -> nn.Sequential:
    size = opt.img_size // 2**3
    return nn.Sequential(
        *discriminator_block(1, 16, bn=False),
        *discriminator_block(16, 32),
        *discriminator_block(32, 64),
        nn.Flatten(),
        nn.Linear(64 * size**2, 1),  # one logit per image: D returns nothing else
    )


# InfoGAN: the codes, with N(0, 1) noise as the script had (z is U(-1, 1) unless noise="normal")
spec = LatentSpec(
    noise_dim=opt.latent_dim,
    noise="normal",
    slots=[
        CodeSlot("digit", Categorical(k=10), CategoricalCE(), lam=1.0),
        CodeSlot("c2", Uniform(), GaussianNLLFixed(), lam=0.1),
    ],
)
G = generator(spec.input_dim)  # InfoGAN: G reads [z | c]
D = discriminator()
trunk = trunk_features(D, D[-2])  # InfoGAN: what D's Flatten gives, captured on every call of D
q_head = QHead(in_features=D[-1].in_features, out_dim=spec.q_dim)  # InfoGAN
adversarial_loss = nn.BCEWithLogitsLoss()
opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
opt_d = torch.optim.Adam([*D.parameters(), *q_head.parameters()], lr=2e-4, betas=(0.5, 0.999))  # InfoGAN: + Q
latent_rng = torch.Generator().manual_seed(1)  # InfoGAN: spec.sample draws from a generator

digits = load_digits(image_size=opt.img_size)
images = to_training_tensor(digits, "cpu")
dataloader = DataLoader(TensorDataset(images[: opt.images]), batch_size=opt.batch_size, shuffle=True, drop_last=True)
held_out, held_out_labels = images[-200:], digits.labels[-200:]

epoch = torch.zeros((), dtype=torch.int64)
state = dict(
    modules={"G": G, "D": D, "Q": q_head},
    optimizers={"G": opt_g, "D": opt_d},
    generators={"torch": torch.default_generator, "latent": latent_rng},  # dropout and shuffling, and c
    tensors={"epoch": epoch},
)
if opt.resume:
    meta = load_training_state(opt.resume, **state)
    spec.check_description(meta["latent_spec"])  # InfoGAN: the codes G and Q were trained with
opt.out.mkdir(parents=True, exist_ok=True)

while epoch < opt.epochs:
    for (real_imgs,) in dataloader:
        valid = torch.ones(real_imgs.shape[0], 1)
        fake = torch.zeros(real_imgs.shape[0], 1)

        # Train Generator
        opt_g.zero_grad()
        g_input, codes = spec.sample(real_imgs.shape[0], generator=latent_rng, device="cpu")  # InfoGAN
        gen_imgs = G(g_input)
        g_loss = adversarial_loss(D(gen_imgs), valid)
        if not opt.lambda0:
            info, _ = spec.information_loss(q_head(trunk.output), codes)  # InfoGAN
            g_loss = g_loss + info
        g_loss.backward()
        opt_g.step()

        # Train Discriminator (zero_grad clears what the G step left in D and Q)
        opt_d.zero_grad()
        real_loss = adversarial_loss(D(real_imgs), valid)
        fake_loss = adversarial_loss(D(gen_imgs.detach()), fake)  # the last call of D: trunk.output is the fakes'
        if opt.lambda0:  # InfoGAN: the control, Q reads detached features with weight 1
            d_info, nll = spec.information_loss(q_head(trunk.output.detach()), codes, weights=[1.0, 1.0])
        else:
            d_info, nll = spec.information_loss(q_head(trunk.output), codes)
        d_loss = (real_loss + fake_loss) / 2 + d_info
        d_loss.backward()
        opt_d.step()

    epoch += 1
    bounds = spec.lower_bounds({name: value.detach() for name, value in nll.items()})  # InfoGAN
    record = {"epoch": int(epoch), "d_loss": d_loss.item(), "g_loss": g_loss.item()}
    print(json.dumps({**record, **{f"L_I/{name}": bound.item() for name, bound in bounds.items()}}), flush=True)
    traversals(G, spec, out_dir=opt.out)  # InfoGAN: eval mode and back, own seed: training goes on as before
    save_training_state(opt.out / "state.safetensors", **state, metadata={"latent_spec": json.dumps(spec.describe())})

# InfoGAN: the categorical code as a classifier of held-out labelled digits
D.eval()
q_head.eval()
with torch.no_grad():
    q_out = q_head(trunk(held_out))
accuracy = categorical_accuracy(spec, q_out, held_out_labels)
print(json.dumps({"accuracy": accuracy["digit"]["accuracy"]}), flush=True)
