"""Atomic file writes: the one way ganrun puts a file under its final name.

The content goes to a temporary file beside the target (same folder, so the rename stays on
one filesystem; a leading dot and a ``.tmp`` suffix keep it out of every pattern the host
reads, such as ``ckpt-*.safetensors``) and is moved into place with one rename. A reader
(``--resume``, an image viewer, a browser refreshing the report) sees the old file or the
new one, never half of one; if anything fails, the target is untouched and the temporary
file is removed. The file gets the permissions of any file the user creates (0666 less the
umask).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Union

__all__ = ["atomic_write"]

PathLike = Union[str, "os.PathLike[str]"]

# The rename goes through this name so tests can simulate a crash between writing the
# temporary file and publishing it.
_replace: Callable[[PathLike, PathLike], None] = os.replace


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself; best effort where directories cannot be synced."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: PathLike, data: bytes | str | Callable[[BinaryIO], None], *, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically and return the path.

    ``data`` is bytes, text (written as UTF-8) or a function that writes to the open binary
    file (e.g. ``lambda fh: image.save(fh, format="PNG")``). ``durable=True`` also syncs the
    bytes to disk before the rename and the folder after it, so the file survives a power
    loss (checkpoints); pictures and logs skip that cost. The parent folder must exist.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        _replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(target.parent)
    return target
