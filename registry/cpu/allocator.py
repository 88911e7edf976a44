"""Process-level speed settings for CPU training.

glibc's malloc returns large freed blocks to the kernel (they are mmap'ed above
M_MMAP_THRESHOLD, and the heap top is trimmed above M_TRIM_THRESHOLD). A training step
frees and re-allocates the same multi-megabyte activation buffers every time, so each
step pays for page faults on fresh memory. Raising both thresholds keeps those pages in
the process. Set GANRUN_NO_MALLOPT=1 to leave the allocator alone (or preload another
allocator such as jemalloc or tcmalloc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_KEEP_BYTES = 1 << 30  # blocks up to 1 GiB come from (and go back to) the heap, not mmap

_done = False


def tune_allocator() -> bool:
    """Keep freed buffers in the process on glibc; returns whether anything was changed."""
    global _done
    if _done or not sys.platform.startswith("linux") or os.environ.get("GANRUN_NO_MALLOPT"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, _KEEP_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, _KEEP_BYTES) == 1
    _done = ok
    return ok


def cpu_bf16() -> bool:
    """Whether this CPU runs bf16 natively through oneDNN (AVX512-BF16 or AMX)."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
