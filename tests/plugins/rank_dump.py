"""Test plugin: at every log step each rank dumps its parameters, so a test can check that
data-parallel ranks hold identical weights (only rank 0 writes checkpoints)."""

import os
import signal
from pathlib import Path

from safetensors.torch import save_file

from registry.plugins import hookimpl


@hookimpl
def ganrun_log(trainer, step, metrics):
    out = Path(os.environ["RANK_DUMP_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{name}.{key}": p.detach().cpu().contiguous()
        for name, module in trainer.modules.items()
        for key, p in module.named_parameters()
    }
    save_file(tensors, str(out / f"rank{trainer.dist.rank}-step{step}.safetensors"))


@hookimpl
def ganrun_step_end(trainer, step):
    """With KILL_RANK_AT=<rank>:<step>, that rank dies by SIGKILL on the first attempt of a
    torchrun job (TORCHELASTIC_RESTART_COUNT 0), like a lost worker."""
    target = os.environ.get("KILL_RANK_AT")
    if not target or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return
    rank, at = (int(v) for v in target.split(":"))
    if trainer.dist.rank == rank and step == at:
        os.kill(os.getpid(), signal.SIGKILL)
