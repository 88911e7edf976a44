"""torch.distributed setup for runs started by ``torchrun``; a no-op otherwise."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistInfo:
    """Read torchrun's variables (RANK, LOCAL_RANK, WORLD_SIZE); single process if absent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=world,
    )


def init(info: DistInfo, device: torch.device) -> None:
    """Join the process group: NCCL for CUDA devices, gloo for CPU."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = datetime.timedelta(minutes=10)
    kwargs: dict = {"device_id": device} if device.type == "cuda" else {}
    store = _attempt_store(info, timeout)
    if store is not None:
        kwargs.update(store=store, rank=info.rank, world_size=info.world_size)
    dist.init_process_group(backend=backend, timeout=timeout, **kwargs)


def _attempt_store(info: DistInfo, timeout: datetime.timedelta):
    """A rendezvous store namespaced by torchrun's restart count, or None outside torchrun.

    After ``torchrun --max-restarts`` restarts a job, the workers of the new attempt share
    the agent's store with the old attempt's keys; gloo could read a dead worker's address
    from it and fail with "connectFullMesh ... Connection refused". A prefix per attempt
    keeps each attempt's rendezvous to itself.
    """
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None or "MASTER_ADDR" not in os.environ:
        return None
    agent_hosts_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    base = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        info.world_size,
        is_master=info.rank == 0 and not agent_hosts_store,
        timeout=timeout,
    )
    return dist.PrefixStore(f"ganrun/attempt-{attempt}", base)


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def all_max(info: DistInfo, values: torch.Tensor) -> torch.Tensor:
    """The element-wise maximum of ``values`` over all ranks (in place), so a verdict drawn
    from it is the same on every rank; ``values`` itself outside torchrun."""
    if info.enabled and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def gather_bytes(info: DistInfo, state: torch.Tensor) -> list[torch.Tensor]:
    """All ranks' copies of a uint8 CPU tensor of equal size (an RNG state), rank order."""
    if not info.enabled:
        return [state]
    backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    local = state.to(backend_device)
    out = [torch.empty_like(local) for _ in range(info.world_size)]
    dist.all_gather(out, local)
    return [t.cpu() for t in out]


def destroy(info: DistInfo, *, clean: bool = True) -> None:
    """Leave the process group. After a clean run every rank meets at a barrier first, so no
    rank tears down its transport while a peer still talks to it (gloo aborts the process
    with "terminate called without an active exception" when that happens)."""
    if info.enabled and dist.is_initialized():
        if clean:
            try:
                dist.barrier()
            except RuntimeError:
                pass
        dist.destroy_process_group()
