"""Training throughput of the paper's MNIST InfoGAN: the project's step against a reference step.

Model (Chen et al. 2016, appendix C.1): 62 U(-1, 1) noise variables + one Cat(10) code + two
U(-1, 1) codes; G: FC1024-BN-ReLU, FC7x7x128-BN-ReLU, deconv64-BN-ReLU, deconv1-Tanh;
D: conv64-LReLU, conv128-BN-LReLU, FC1024-BN-LReLU and a real/fake logit; Q: FC128-BN-LReLU
and the code outputs, on D's shared trunk.

"ours" is the project's own training step: a ``registry.train.trainer.Trainer`` built with the
``infogan`` plugin, timed through ``Trainer.train_step()``. "reference" is the same model
trained the way the widely used public PyTorch InfoGAN implementations do it, written out below:
a shared D trunk ("FrontEnd"), a D head (sigmoid + BCE) and a Q head (FC128-BN-LReLU, then
separate outputs for the class logits, the means and the variances of the continuous codes,
scored by cross-entropy and a Gaussian NLL with the predicted variance); the D step
backpropagates the real batch and then the detached fakes; the G step runs the trunk on the fakes
again and reads D's head and Q from that pass; ``torch.optim.Adam`` with torch's default
implementation choice (no ``foreach``/``fused`` argument), one optimizer over FrontEnd + D head
and one over G + Q head; D's weight gradients are computed in the G step and thrown away (no
``requires_grad`` toggling); ``.item()`` on the losses every step. The fully connected layers
are ``nn.Linear`` in both (the public code writes them as 1x1 / 7x7 convolutions, the same
arithmetic). Both read real batches from the same resident tensor, so data loading is not part
of the comparison. Building the Trainer sets the process's allocator options
(``registry.cpu.allocator``), so the reference runs with them too; compare separate processes with
``GANRUN_NO_MALLOPT=1`` to see their effect.

For each batch size it times blocks of ``--steps-per-rep`` steps after ``--warmup`` steps,
alternating the two variants (ours first on even repetitions, reference first on odd ones),
and prints images per second (median and spread over repetitions), the ratio ours/reference
(median of the per-repetition ratios), the peak memory of each variant, the analytic FLOPs of
one step per image, the achieved GFLOP/s, and two ceilings measured on the same device: a large
matmul (fp32, or bf16 when the trainer autocasts) and the fastest of the model's own convolutions
run alone (forward + backward).

FLOP convention: forward = 2 x MACs of every conv, deconv and linear layer; backward = 2 x
forward (input gradient + weight gradient), counted for every pass even where a step can skip
part of it. One step = G once + D's trunk and head three times (real, detached fake, fake for G)
+ Q twice. Elementwise work (BatchNorm, activations, losses, Adam) is not counted. Both variants
are scored with the same FLOP count, so GFLOP/s ratios equal throughput ratios.

Timing uses the wall clock by default. On a machine shared with other jobs, ``--threads 1
--clock cpu`` times this process's CPU time instead, which other jobs barely disturb.

    python benchmarks/throughput.py                     # batch 64, 128 and 256 (about 2-3 min on 2 cores)
    python benchmarks/throughput.py --batch-size 128 --reps 9
    python benchmarks/throughput.py --threads 1 --clock cpu
    python benchmarks/throughput.py --device cuda --amp --compile
"""

from __future__ import annotations

import argparse
import datetime
import math
import os

os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # the memory profile's notes about earlier blocks
import platform
import resource
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from registry.nets.models import init_dcgan  # the same initialisation as the project's models
from registry.config import TrainConfig
from registry.data import to_training_tensor
from registry.plugins import Host
from registry.train import Trainer

NOISE_DIM = 62
CODES = ["categorical:10", "uniform:2"]
N_CLASSES, N_CONT = 10, 2
LATENT_DIM = NOISE_DIM + N_CLASSES + N_CONT  # 74
SLOPE = 0.1
DEFAULT_BATCHES = (64, 128, 256)


# ----------------------------------------------------------------------------- reference step
class RefG(nn.Module):
    """G: FC1024-BN-ReLU, FC7x7x128-BN-ReLU, deconv 64 (4x4 s2) BN-ReLU, deconv 1 (4x4 s2) Tanh."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(LATENT_DIM, 1024, bias=False),
            nn.BatchNorm1d(1024),
            nn.ReLU(True),
            nn.Linear(1024, 128 * 7 * 7, bias=False),
            nn.BatchNorm1d(128 * 7 * 7),
            nn.ReLU(True),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(True),
            nn.ConvTranspose2d(64, 1, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(-1, 128, 7, 7))


class FrontEnd(nn.Module):
    """D's trunk shared with Q: conv64-LReLU, conv128-BN-LReLU, FC1024-BN-LReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1),
            nn.LeakyReLU(SLOPE, True),
            nn.Conv2d(64, 128, 4, 2, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.LeakyReLU(SLOPE, True),
        )
        self.fc = nn.Sequential(
            nn.Linear(128 * 7 * 7, 1024, bias=False), nn.BatchNorm1d(1024), nn.LeakyReLU(SLOPE, True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


class RefD(nn.Module):
    """D's head: the probability that the input is real."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Sequential(nn.Linear(1024, 1), nn.Sigmoid())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.main(h).view(-1)


class RefQ(nn.Module):
    """Q's head: FC128-BN-LReLU, then separate outputs for the class logits, means and variances."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(1024, 128, bias=False), nn.BatchNorm1d(128), nn.LeakyReLU(SLOPE, True))
        self.disc = nn.Linear(128, N_CLASSES)
        self.mu = nn.Linear(128, N_CONT)
        self.var = nn.Linear(128, N_CONT)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = self.body(h)
        return self.disc(y), self.mu(y), self.var(y).exp()


def gaussian_nll(x: torch.Tensor, mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """-log N(x; mu, var) summed over the code dimensions, averaged over the batch."""
    logli = -0.5 * (var * (2 * torch.pi) + 1e-6).log() - (x - mu).pow(2) / (var * 2.0 + 1e-6)
    return -logli.sum(1).mean()


class ReferenceStep:
    """The public implementations' training step for the same model, on the same data tensor."""

    def __init__(
        self, data: torch.Tensor, batch_size: int, device: torch.device, *, amp: bool, compile: bool, seed: int = 0
    ) -> None:
        torch.manual_seed(seed)
        self.G, self.FE, self.D, self.Q = (m().to(device) for m in (RefG, FrontEnd, RefD, RefQ))
        for m in (self.G, self.FE, self.D, self.Q):
            init_dcgan(m)
        self.optimD = torch.optim.Adam(
            [{"params": self.FE.parameters()}, {"params": self.D.parameters()}], lr=2e-4, betas=(0.5, 0.99)
        )
        self.optimG = torch.optim.Adam(
            [{"params": self.G.parameters()}, {"params": self.Q.parameters()}], lr=1e-3, betas=(0.5, 0.99)
        )
        self.criterionD = nn.BCELoss()
        self.criterionQ_dis = nn.CrossEntropyLoss()
        comp = torch.compile if compile else (lambda m: m)
        self.g, self.fe, self.d, self.q = (comp(m) for m in (self.G, self.FE, self.D, self.Q))
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else None
        self.data, self.batch_size, self.device = data, batch_size, device
        self.gen = torch.Generator(device=device).manual_seed(seed + 1)
        self.perm, self.pos = torch.randperm(len(data), device=device), 0
        self.history: list[tuple[float, ...]] = []

    def _ctx(self):
        return self.autocast if self.autocast is not None else nullcontext()

    def _real_batch(self) -> torch.Tensor:
        if self.pos + self.batch_size > len(self.data):
            self.perm, self.pos = torch.randperm(len(self.data), device=self.device), 0
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.data.index_select(0, idx)

    def _noise(self, b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.randint(N_CLASSES, (b,), generator=self.gen, device=self.device)
        dis_c = F.one_hot(idx, N_CLASSES).float()
        con_c = torch.rand(b, N_CONT, generator=self.gen, device=self.device) * 2 - 1
        noise = torch.rand(b, NOISE_DIM, generator=self.gen, device=self.device) * 2 - 1
        return torch.cat([noise, dis_c, con_c], 1), idx, con_c

    def __call__(self) -> None:
        real_x = self._real_batch()
        b = real_x.shape[0]
        # D step: real part, then fake part, each with its own backward.
        self.optimD.zero_grad()
        label = torch.full((b,), 1.0, device=self.device)
        with self._ctx():
            probs_real = self.d(self.fe(real_x))
        loss_real = self.criterionD(probs_real.float(), label)
        loss_real.backward()
        z, idx, con_c = self._noise(b)
        with self._ctx():
            fake_x = self.g(z)
            probs_fake = self.d(self.fe(fake_x.detach()))
        label.fill_(0.0)
        loss_fake = self.criterionD(probs_fake.float(), label)
        loss_fake.backward()
        D_loss = loss_real + loss_fake
        self.optimD.step()
        # G and Q step: the trunk runs on the fakes again; D's head and Q read that one pass.
        self.optimG.zero_grad()
        with self._ctx():
            h = self.fe(fake_x)
            probs = self.d(h)
            q_logits, q_mu, q_var = self.q(h)
        label.fill_(1.0)
        gen_loss = self.criterionD(probs.float(), label)
        dis_loss = self.criterionQ_dis(q_logits.float(), idx)
        con_loss = gaussian_nll(con_c, q_mu.float(), q_var.float()) * 0.1
        G_loss = gen_loss + dis_loss + con_loss
        G_loss.backward()
        self.optimG.step()
        self.history.append((D_loss.item(), G_loss.item(), gen_loss.item(), dis_loss.item(), con_loss.item()))
        if len(self.history) > 1000:
            self.history.clear()


# ----------------------------------------------------------------------------- the project's step
def build_trainer(batch_size: int, device: str, *, amp: bool, compile: bool) -> Trainer:
    host = Host.create(["infogan"])
    cfg = TrainConfig(
        noise_dim=NOISE_DIM,
        noise="uniform",
        lr_g=1e-3,
        lr_d=2e-4,
        batch_size=batch_size,
        device=device,
        amp=amp,
        compile=compile,
        progress=False,
        extra={"code": list(CODES), "info_lambda": None},
    )
    host.run("ganrun_configure", config=cfg, registries=host.registries)
    run_dir = Path(tempfile.gettempdir()) / "ganrun-throughput-unused"  # never written by train_step
    return Trainer(cfg, host, run_dir)


class OursStep:
    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def __call__(self) -> None:
        self.trainer.train_step()
        self.trainer.step += 1


# ----------------------------------------------------------------------------- FLOPs
def layer_macs(modules: list[nn.Module], inputs: list[torch.Tensor]) -> list[tuple[str, nn.Module, tuple, int]]:
    """(name, layer, input shape, MACs per image) of every conv, deconv and linear layer, via hooks."""
    found: list[tuple[str, nn.Module, tuple, int]] = []

    def hook(name):
        def fn(m, args, out):
            x = args[0]
            b = x.shape[0]
            if isinstance(m, nn.Linear):
                macs = m.in_features * m.out_features
            elif isinstance(m, nn.ConvTranspose2d):  # every input pixel scatters a k x k x C_out patch
                macs = x[0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            else:  # Conv2d: every output pixel gathers a k x k x C_in patch
                macs = out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            found.append((name, m, tuple(x.shape[1:]), macs))
            del b

        return fn

    handles = []
    for module, prefix in zip(modules, ("G", "D", "Q")):
        for name, m in module.named_modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                handles.append(m.register_forward_hook(hook(f"{prefix}.{name}")))
    try:
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        with torch.no_grad():
            G, D, Q = modules
            fake = G(inputs[0])
            _, feats = D(fake)
            Q(feats)
    finally:
        for h in handles:
            h.remove()
        for m, mode in zip(modules, modes):
            m.train(mode)
    return found


_ONEDNN_LINEAR_COUNTED = False


def _count_onednn_linear() -> None:
    """Teach flop_counter the oneDNN linear op that registry.cpu.linear runs (it has no formula)."""
    global _ONEDNN_LINEAR_COUNTED
    if _ONEDNN_LINEAR_COUNTED:
        return
    from torch.utils.flop_counter import register_flop_formula

    @register_flop_formula(torch.ops.mkldnn._linear_pointwise)
    def _linear_flops(x_shape, w_shape, *args, **kwargs) -> int:
        return 2 * math.prod(x_shape[:-1]) * w_shape[0] * w_shape[1]

    _ONEDNN_LINEAR_COUNTED = True


def executed_flops_per_image(fn: Callable[[], None], batch: int) -> float:
    """Matmul/conv FLOPs one call of ``fn`` really executes, per image (torch.utils.flop_counter)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        _count_onednn_linear()

        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        return counter.get_total_flops() / batch
    except Exception:  # compiled modules and exotic builds: not essential
        return float("nan")


def step_flops_per_image(trainer: Trainer) -> tuple[float, dict[str, float]]:
    G, D, Q = (trainer.modules[n] for n in ("G", "D", "Q"))
    z, _ = trainer.sampler.sample(
        2, generator=torch.Generator(device=trainer.device).manual_seed(0), device=trainer.device
    )
    layers = layer_macs([G, D, Q], [z])
    macs = {k: sum(m for name, _, _, m in layers if name.startswith(k + ".")) for k in ("G", "D", "Q")}
    passes = {"G": 1, "D": 3, "Q": 2}  # D: real, detached fake, fake for G; Q: in the D and in the G step
    fwd = {k: 2.0 * macs[k] * passes[k] for k in macs}
    total = sum(3.0 * f for f in fwd.values())  # forward + backward (= 2 x forward)
    return total, {"macs_G": macs["G"], "macs_D": macs["D"], "macs_Q": macs["Q"]}


# ----------------------------------------------------------------------------- ceilings
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_rate(
    fn: Callable[[], None],
    flops: float,
    device: torch.device,
    *,
    min_time: float,
    reps: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Best GFLOP/s of ``reps`` timed blocks of ``fn`` (each block runs at least ``min_time`` s)."""
    fn()
    fn()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    once = max(time.perf_counter() - t0, 1e-6)
    n = max(1, int(min_time / once))
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t0 = clock()
        for _ in range(n):
            fn()
        _sync(device)
        best = min(best, max(clock() - t0, 1e-9) / n)
    return flops / best / 1e9


def matmul_ceiling(
    device: torch.device,
    n: int,
    *,
    min_time: float,
    reps: int,
    clock: Callable[[], float] = time.perf_counter,
    dtype: torch.dtype = torch.float32,
) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    return _best_rate(lambda: torch.mm(a, b, out=out), 2.0 * n**3, device, min_time=min_time, reps=reps, clock=clock)


def conv_ceiling(
    trainer: Trainer, batch: int, *, min_time: float, reps: int, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, str]:
    """Fastest conv/deconv layer of the model, copied and run alone: forward + backward (input and
    weight gradients) on random inputs of its training shape at this batch size (under the
    trainer's autocast when it uses one)."""
    import copy

    device = trainer.device
    G, D, Q = (trainer.modules[n] for n in ("G", "D", "Q"))
    z, _ = trainer.sampler.sample(2, generator=torch.Generator(device=device).manual_seed(0), device=device)
    best, best_name = 0.0, "?"
    for name, layer, in_shape, macs in layer_macs([G, D, Q], [z]):
        if not isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            continue
        m = copy.deepcopy(layer).requires_grad_(True)
        x = torch.randn(batch, *in_shape, device=device, requires_grad=True)
        grad = torch.randn_like(m(x))

        def fwd_bwd(m=m, x=x, grad=grad):
            x.grad = None
            m.weight.grad = None
            if m.bias is not None:
                m.bias.grad = None
            with trainer.stepper.autocast():
                y = m(x)
            y.backward(grad.to(y.dtype))

        rate = _best_rate(fwd_bwd, 3 * 2.0 * macs * batch, device, min_time=min_time, reps=reps, clock=clock)
        if rate > best:
            best, best_name = rate, f"{name} {type(layer).__name__} {tuple(in_shape)}"
    return best, best_name


# ----------------------------------------------------------------------------- memory
def _vm_hwm_kib() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux /proc/self/clear_refs, value 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def step_tensor_peak_mib(fn: Callable[[], None]) -> float:
    """Peak tensor memory one call of ``fn`` allocates above what it started with, from the
    profiler's allocation events (CPU: one number per variant, unaffected by what the other
    variant or the allocator keeps in the process). Two calls are profiled and the second one is
    measured, so every block it frees was allocated while the profiler was watching."""
    from torch.profiler import ProfilerActivity, profile, record_function

    mark = "throughput.measured_step"
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
        with record_function(mark):
            fn()
    events = list(prof.profiler.kineto_results.events())
    start = min(e.start_ns() for e in events if e.name() == mark)
    memory = sorted((e for e in events if e.name() == "[memory]"), key=lambda e: e.start_ns())
    held = sum(e.nbytes() for e in memory if e.start_ns() < start)
    base = peak = held
    for e in memory:
        if e.start_ns() >= start:
            held += e.nbytes()
            peak = max(peak, held)
    return (peak - base) / 2**20


class PeakMemory:
    """Peak memory of what runs between ``reset()`` and ``read()``: CUDA allocator peak on a GPU,
    peak process RSS on the CPU (whole process, since the last reset where Linux allows one)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.resettable = device.type == "cuda" or _reset_peak_rss()
        self.what = (
            "torch.cuda.max_memory_allocated"
            if device.type == "cuda"
            else "peak process RSS (VmHWM, reset per block)"
            if self.resettable
            else "peak process RSS (ru_maxrss, whole run)"
        )

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.resettable:
            _reset_peak_rss()

    def read_mib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        hwm = _vm_hwm_kib() if self.resettable else None
        if hwm is None:
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return hwm / 1024


# ----------------------------------------------------------------------------- driver
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_block(fn: Callable[[], None], steps: int, device: torch.device, clock: Callable[[], float]) -> float:
    _sync(device)
    t0 = clock()
    for _ in range(steps):
        fn()
    _sync(device)
    return clock() - t0


def _spread(values: list[float]) -> str:
    return f"{min(values):.0f}-{max(values):.0f}"


def machine_line(device: torch.device) -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"cpu: {cpu}, nproc {os.cpu_count()}, torch threads {torch.get_num_threads()}"
    if device.type == "cuda":
        text += f", gpu: {torch.cuda.get_device_name(device)}"
    return text


def load_line() -> str:
    try:
        return "load average: " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average: ?"


def bench_batch(batch: int, args: argparse.Namespace, device_name: str) -> dict:
    trainer = build_trainer(batch, device_name, amp=args.amp, compile=args.compile)
    device = trainer.device
    ours = OursStep(trainer)
    # The reference autocasts exactly when the trainer does (the trainer decides where --amp applies).
    ref = ReferenceStep(
        to_training_tensor(trainer.dataset, device), batch, device, amp=trainer.amp, compile=args.compile
    )
    mem = PeakMemory(device)
    flops, _ = step_flops_per_image(trainer)

    def measure_ceilings() -> tuple[float, tuple[float, str]]:
        clock = CLOCKS[args.clock]
        return (
            matmul_ceiling(
                device,
                args.matmul_size,
                min_time=args.ceiling_time,
                reps=2,
                clock=clock,
                dtype=torch.bfloat16 if trainer.amp else torch.float32,
            ),
            conv_ceiling(trainer, batch, min_time=args.ceiling_time, reps=2, clock=clock),
        )

    ceilings = [measure_ceilings()]
    fns: dict[str, Callable[[], None]] = {"ours": ours, "reference": ref}
    failed: dict[str, str] = {}
    if args.only:
        failed.update({name: "not run (--only)" for name in fns if name != args.only})
    for name, fn in fns.items():
        if name in failed:
            continue
        try:
            for _ in range(args.warmup):
                fn()
        except RuntimeError as exc:  # e.g. a dtype mismatch under --amp: report it, time the other one
            failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    if len(failed) == len(fns):
        raise SystemExit(f"batch {batch}: both steps failed: {failed}")
    clock = CLOCKS[args.clock]
    times: dict[str, list[float]] = {name: [] for name in fns}
    peaks: dict[str, float] = {name: 0.0 for name in fns}
    for rep in range(args.reps):
        order = ("ours", "reference") if rep % 2 == 0 else ("reference", "ours")
        for name in order:
            if name in failed:
                continue
            mem.reset()
            times[name].append(time_block(fns[name], args.steps_per_rep, device, clock))
            peaks[name] = max(peaks[name], mem.read_mib())
        if rep == args.reps // 2:  # ceilings in the middle too: best of three moments
            ceilings.append(measure_ceilings())
    ceilings.append(measure_ceilings())
    ips = {k: [batch * args.steps_per_rep / t for t in v] for k, v in times.items()}
    ratios = [r / o for o, r in zip(times["ours"], times["reference"])]
    executed = {
        name: executed_flops_per_image(fns[name], batch) if name not in failed else float("nan") for name in fns
    }
    step_peaks = {
        name: (step_tensor_peak_mib(fns[name]) if device.type == "cpu" and name not in failed else float("nan"))
        for name in fns
    }
    ceil_mm = max(c[0] for c in ceilings)
    ceil_conv, conv_name = max((c[1] for c in ceilings), key=lambda c: c[0])
    return {
        "batch": batch,
        "device": device,
        "amp": trainer.amp,
        "ips": ips,
        "failed": failed,
        "ratio": statistics.median(ratios) if ratios else float("nan"),
        "ratios": ratios,
        "flops": flops,
        "executed": executed,
        "peaks": peaks,
        "step_peaks": step_peaks,
        "mem_what": mem.what,
        "ceil_mm": ceil_mm,
        "ceil_conv": ceil_conv,
        "conv_name": conv_name,
        "load": load_line(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=None, help="run just this batch size (default: 64, 128, 256)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    parser.add_argument(
        "--amp",
        action="store_true",
        help="the trainer's --amp (bf16 autocast where it applies); the reference follows the trainer",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks, for both variants")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    parser.add_argument(
        "--steps-per-rep", type=int, default=None, help="steps in one timed repetition (default: 3 on CPU, 50 on CUDA)"
    )
    parser.add_argument(
        "--only",
        choices=["ours", "reference"],
        default=None,
        help="time one variant alone (compare separate processes, e.g. the reference with "
        "GANRUN_NO_MALLOPT=1 against ours without it)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time (default); cpu: this process's CPU time, which other jobs on a "
        "busy machine barely disturb (use with --threads 1; CPU device only)",
    )
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the square fp32 matmul ceiling")
    parser.add_argument("--ceiling-time", type=float, default=0.3, help="seconds per ceiling measurement block")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device_name = args.device
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine; use --device cpu")
    if args.clock == "cpu" and device_name.startswith("cuda"):
        parser.error("--clock cpu measures CPU time; use the default wall clock with --device cuda")
    if args.steps_per_rep is None:
        args.steps_per_rep = 50 if device_name.startswith("cuda") else 3
    batches = [args.batch_size] if args.batch_size else list(DEFAULT_BATCHES)

    print(f"ganrun throughput, {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"command: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}")
    print(
        f"torch {torch.__version__}, device {device_name}, amp {args.amp}, compile {args.compile}, "
        f"GANRUN_NO_MALLOPT={os.environ.get('GANRUN_NO_MALLOPT', '')!s}"
    )
    print(
        f"reps {args.reps} x {args.steps_per_rep} steps after {args.warmup} warm-up steps, variants interleaved, "
        f"{args.clock} clock" + (" (img/s per CPU-second of this process)" if args.clock == "cpu" else "")
    )
    header_done = False
    for batch in batches:
        r = bench_batch(batch, args, device_name)
        if not header_done:
            print(machine_line(r["device"]))
            print(
                f"memory: 'peak MiB' is the {r['mem_what']}"
                + (
                    "; 'step MiB' is the peak tensor memory one step allocates above what it started with "
                    "(profiler allocation events)"
                    if r["device"].type == "cpu"
                    else ""
                )
            )
            header_done = True
        gf = r["flops"] / 1e9
        amp_note = "" if r["amp"] == args.amp else f", --amp not applied on {r['device'].type} by the trainer"
        print(f"\nbatch {batch}  ({r['load']}{amp_note})")
        print(
            f"  analytic FLOPs per image per step: {r['flops'] / 1e6:.1f} MFLOP "
            f"(fwd = 2 x MACs, bwd = 2 x fwd; G x1, D x3, Q x2); executed (flop_counter): "
            f"ours {r['executed']['ours'] / 1e6:.1f}, reference {r['executed']['reference'] / 1e6:.1f}"
        )
        print(
            f"  ceilings: matmul {args.matmul_size}^2 {'bf16' if r['amp'] else 'fp32'} {r['ceil_mm']:.1f} GFLOP/s; "
            f"fastest own conv fwd+bwd {r['ceil_conv']:.1f} GFLOP/s ({r['conv_name']})"
        )
        print(
            f"  {'variant':<10} {'img/s median':>12} {'spread':>12} {'GFLOP/s':>8} {'of matmul':>9} "
            f"{'of conv':>8} {'peak MiB':>9} {'step MiB':>9}"
        )
        for name in ("ours", "reference"):
            if name in r["failed"]:
                print(f"  {name:<10} {r['failed'][name]}" if args.only else f"  {name:<10} failed: {r['failed'][name]}")
                continue
            med = statistics.median(r["ips"][name])
            rate = med * gf
            print(
                f"  {name:<10} {med:>12.0f} {_spread(r['ips'][name]):>12} {rate:>8.1f} "
                f"{rate / r['ceil_mm']:>9.1%} {rate / r['ceil_conv']:>8.1%} {r['peaks'][name]:>9.0f} "
                f"{r['step_peaks'][name]:>9.0f}"
            )
        if r["ratios"]:
            print(f"  per-rep ratios: {' '.join(f'{x:.2f}' for x in r['ratios'])}")
            print(f"ratio ours/reference: {r['ratio']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
