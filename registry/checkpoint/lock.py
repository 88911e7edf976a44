"""One writer per run folder: an OS lock held for the life of a training process.

``RunLock(run_dir).acquire()`` takes ``fcntl.flock`` on ``run_dir/.ganrun.lock`` without
waiting and writes the holder's pid into the file. The kernel drops the lock when the
process ends however it ends (SIGKILL, a crash, a lost node), so a stale lock cannot
exist: a lock file left behind is just a file, and the next writer takes it over. The
file itself is never deleted: unlinking a lock file lets two processes lock two different
files of the same name.

Leftovers of killed writers are found here too: ``stale_temporaries`` lists the temporary
files of ``atomic_write`` (``.<name>.<pid>.<8 hex>.tmp``) whose writing process is gone.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
from pathlib import Path

__all__ = ["LOCK_NAME", "RunFolderBusy", "RunLock", "stale_temporaries"]

LOCK_NAME = ".ganrun.lock"

# The names atomic_write gives its temporary files (see registry.checkpoint.atomic).
_TEMP_RE = re.compile(r"\..+\.(\d+)\.[0-9a-f]{8}\.tmp")


class RunFolderBusy(Exception):
    """Another process holds the run folder's lock; ``str()`` is one line naming its pid."""

    def __init__(self, run_dir: Path, pid: int | None):
        self.run_dir, self.pid = run_dir, pid
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"run folder {run_dir} is in use by {holder} (one writer per run folder); "
            f"wait for it to finish or stop it, or choose another --out"
        )


class RunLock:
    """The lock of one run folder; ``acquire()`` creates the folder if needed."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> int | None:
        """The pid written by the process that holds (or last held) the lock, if readable."""
        try:
            text = self.path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def check_free(self) -> None:
        """Raise :class:`RunFolderBusy` if a process holds the lock now; creates nothing (a
        read-only probe, so a refused command leaves the folder as it found it)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return  # no lock file (or no folder): nobody holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunFolderBusy(self.run_dir, self.holder()) from None
        finally:
            os.close(fd)

    def acquire(self) -> "RunLock":
        """Take the lock or raise :class:`RunFolderBusy`; never waits."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a symlink planted under the lock's name is refused, not followed.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunFolderBusy(self.run_dir, self.holder()) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def stale_temporaries(run_dir: Path) -> list[Path]:
    """Temporary files of ``atomic_write`` below ``run_dir`` whose writer is no longer running
    (a save killed half-way leaves one, up to a checkpoint's size). Only a process holding the
    run folder's lock should delete them; a live writer's temporaries (say a ``ganrun report``
    rendering into the folder) are not listed."""
    found = []
    for path in Path(run_dir).rglob(".*.tmp"):
        match = _TEMP_RE.fullmatch(path.name)
        if match and path.is_file() and not path.is_symlink() and not _alive(int(match.group(1))):
            found.append(path)
    return sorted(found)
