"""Test plugin: at every log step each rank dumps its parameters, so a test can check that
data-parallel ranks hold identical weights (only rank 0 writes checkpoints)."""

import os
from pathlib import Path

from safetensors.torch import save_file

from registry.plugins import hookimpl


@hookimpl
def ganrun_log(trainer, step, metrics):
    out = Path(os.environ["RANK_DUMP_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"{name}.{key}": p.detach().cpu().contiguous()
               for name, module in trainer.modules.items() for key, p in module.named_parameters()}
    save_file(tensors, str(out / f"rank{trainer.dist.rank}-step{step}.safetensors"))
