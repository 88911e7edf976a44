"""Every seeded random stream of a run, derived from the one ``--seed``.

- ``seed_for(seed, stream, rank)``: the seeds of the long-lived streams: module
  initialisation (``init``), the latent draws of each rank (``latent``), the fixed batch
  of the sample pictures (``fixed``) and plugins' own fixed draws (``plugin``);
- ``step_seed(seed, stream, rank, step)``: a named stream's seed for one step, behind
  ``Trainer.step_generator`` (nothing to save: a resumed run draws the same);
- ``EpochSampler``: the data order, one seeded permutation per epoch.

All of them mix with the same constants and keep to 63 bits, what
``torch.Generator.manual_seed`` accepts.
"""

from __future__ import annotations

import zlib

import torch

from registry.data.base import DatasetError

__all__ = ["EpochSampler", "seed_for", "step_seed"]

_SEED_MULTIPLIER = 1_000_003
_SEED_MASK = (1 << 63) - 1


def seed_for(seed: int, stream: str, rank: int = 0) -> int:
    """Independent, reproducible seeds for each random stream and rank."""
    offsets = {"init": 0, "latent": 1, "fixed": 2, "plugin": 3}
    return (seed * _SEED_MULTIPLIER + offsets[stream] * 7_919 + rank * 104_729) & _SEED_MASK


def step_seed(seed: int, stream: str, rank: int, step: int) -> int:
    """The seed of one named stream (e.g. a plugin's pairs or transforms) for one step of one
    rank: a pure function of its arguments, so a resumed run draws what the straight run drew."""
    base = seed_for(seed, "plugin", rank)
    return (base + zlib.crc32(stream.encode()) * 2_654_435_761 + step * 6_700_417) & _SEED_MASK


def _epoch_seed(seed: int, epoch: int) -> int:
    """Generator seed for one epoch: ``(seed * 1_000_003 + epoch) & (2**63 - 1)``.

    The prime multiplier keeps (seed, epoch) pairs from colliding for any
    realistic number of epochs (seed s, epoch e+1 never equals seed s+1,
    epoch e unless e reaches a million), and masking to 63 bits keeps the
    value inside what ``torch.Generator.manual_seed`` accepts, negative seeds
    included.
    """
    return (seed * _SEED_MULTIPLIER + epoch) & _SEED_MASK


class EpochSampler:
    """Stateless, seeded batch order: the batch for global step s is a pure function of (seed, s), so
    resuming at step s needs no saved state and crosses epoch boundaries exactly.

    Epoch ``e = s // steps_per_epoch`` shuffles with ``torch.randperm(N)`` seeded by
    :func:`_epoch_seed`. ``steps_per_epoch = N // (batch_size * world_size)``;
    the last partial batch is dropped so every step has full batches.

    Under data parallelism, step ``k`` of an epoch takes the global batch
    ``perm[k*B*W : (k+1)*B*W]`` and rank ``r`` takes the ``r``-th slice of it.
    Ranks therefore see disjoint shards, and the union over ranks equals the
    batch a single process with batch size ``B*W`` would draw, so changing the
    world size at a fixed global batch does not change the data order.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if world_size < 1:
            raise ValueError(f"world_size must be at least 1, got {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        global_batch = batch_size * world_size
        if global_batch > n:
            across = f" x world size {world_size} = {global_batch}" if world_size > 1 else ""
            raise DatasetError(
                f"batch size {batch_size}{across} is larger than the dataset ({n} images); "
                "use a smaller batch size or a larger dataset"
            )
        self.n = n
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.steps_per_epoch: int = n // global_batch
        self._cached_epoch: int | None = None
        self._cached_perm: torch.Tensor | None = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        # Consecutive steps share an epoch, so caching one permutation makes
        # indices() O(batch) instead of O(N) for all but the first step.
        if self._cached_epoch != epoch or self._cached_perm is None:
            gen = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
            self._cached_perm = torch.randperm(self.n, generator=gen)
            self._cached_epoch = epoch
        return self._cached_perm

    def indices(self, step: int) -> torch.Tensor:
        """(batch_size,) int64 CPU dataset indices for this rank at global step ``step``."""
        if step < 0:
            raise ValueError(f"step must be non-negative, got {step}")
        epoch, k = divmod(step, self.steps_per_epoch)
        perm = self._permutation(epoch)
        start = (k * self.world_size + self.rank) * self.batch_size
        # clone() so a caller mutating the batch cannot corrupt the cached permutation.
        return perm[start : start + self.batch_size].clone()
