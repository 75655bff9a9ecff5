"""Files that appear whole or not at all.

Every file fairseq-lite writes for a user (checkpoints, dict.txt, .bin/.idx, fairseq-generate's results)
goes through `atomic_write`: the data goes to a hidden temp file in the target's directory, which is
flushed and fsynced, then renamed over the target (atomic on POSIX filesystems), and the directory is
fsynced so that the rename itself survives a power loss. A crash or kill at any moment leaves the old file
or the new one, never half of one; at worst a temp file (or a writer's scratch directory) remains, named
`.NAME.tmp-HOST-PID-RANDOM`, and `remove_stale_temp_files` deletes it once its writer is gone.

A full disk or quota (ENOSPC, EDQUOT) becomes a `DiskFullError` naming the file, the space it needed
and what is free, with the target untouched.
"""

import errno
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from fairseq_lite.errors import DiskFullError

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_HOST = re.sub(r"[^\w.-]", "_", socket.gethostname()) or "localhost"
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.tmp-(?P<host>[\w.-]+)-(?P<pid>\d+)-\w+")


def temp_path_for(path: str) -> str:
    """A unique temp name in `path`'s directory that says which process on which host writes it."""
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.tmp-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def scratch_dir(directory: str, name: str) -> str:
    """A new scratch directory in `directory`, named like a temp file so that a killed writer's is removed."""
    return tempfile.mkdtemp(prefix=f".{name}.tmp-{_HOST}-{os.getpid()}-", dir=directory or ".")


def fsync_directory(directory: str) -> None:
    """Make a rename in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def free_space(path: str) -> int | None:
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(path)) or ".").free
    except OSError:
        return None


def disk_full_error(path: str, needed: int | None) -> DiskFullError:
    free = free_space(path)
    need = f"it needs about {format_bytes(needed)}" if needed else "it did not fit"
    have = f" and {format_bytes(free)} are free" if free is not None else ""
    return DiskFullError(
        f"no space left on the device to write {path}: {need}{have}; the previous {os.path.basename(path)} "
        f"(if any) is unchanged. Free some space or write elsewhere"
    )


class AtomicFile:
    """A file object writing to a temp file; `commit()` renames it over the target, `abort()` drops it.

    `size_hint` (bytes) is what the complete file will need, for the message when the disk is full.
    Whether the disk filled up is remembered even when a library (torch.save) turns the OSError from
    `write` into an error of its own.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "wb", size_hint: int | None = None, **open_kwargs: Any):
        if not any(m in mode for m in "wax"):
            raise ValueError(f"atomic_write opens files for writing, not mode {mode!r}")
        self.path = os.fspath(path)
        self.size_hint = size_hint
        self.tmp_path = temp_path_for(self.path)
        self.disk_full = False
        try:
            self._file: IO | None = open(self.tmp_path, mode, **open_kwargs)
        except OSError as e:  # no space even for a new file (inodes, a quota on files)
            if e.errno in _NO_SPACE:
                raise disk_full_error(self.path, size_hint) from e
            raise

    # --- the file interface (what torch.save, numpy and print need) --------------------------------
    def write(self, data: Any) -> int:
        return self._guard(self._file.write, data)

    def writelines(self, lines: Any) -> None:
        self._guard(self._file.writelines, lines)

    def flush(self) -> None:
        self._guard(self._file.flush)

    def fileno(self) -> int:
        return self._file.fileno()

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._file.seekable()

    @property
    def closed(self) -> bool:
        return self._file is None or self._file.closed

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except OSError as e:
            if e.errno in _NO_SPACE:
                self.disk_full = True
            raise

    # --- the end of the write -------------------------------------------------------------------------
    def commit(self) -> None:
        """Flush, fsync and rename over the target."""
        self.sync()
        self.replace()

    def sync(self) -> None:
        """Flush and fsync the temp file (where a full disk shows at last) and close it; on failure the
        temp file is gone and the error translated."""
        try:
            self._guard(self._file.flush)
            self._guard(os.fsync, self._file.fileno())
            self._file.close()
        except BaseException as e:
            self.abort()
            translated = self.translate(e)
            if translated is e:
                raise
            raise translated from e

    def replace(self) -> None:
        """Rename the synced temp file over the target, durably."""
        try:
            os.replace(self.tmp_path, self.path)
        except BaseException:
            self.abort()
            raise
        self._file = None
        fsync_directory(os.path.dirname(os.path.abspath(self.path)))

    def abort(self) -> None:
        if self._file is not None and not self._file.closed:
            try:
                self._file.close()
            except OSError:
                pass
        self._file = None
        try:
            os.remove(self.tmp_path)
        except FileNotFoundError:
            pass

    def translate(self, error: BaseException) -> BaseException:
        """The error to raise for a failed write: DiskFullError when the disk filled up."""
        if isinstance(error, DiskFullError):
            return error
        if self.disk_full or (isinstance(error, OSError) and error.errno in _NO_SPACE):
            return disk_full_error(self.path, self.size_hint)
        return error


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", size_hint: int | None = None, **open_kwargs: Any):
    """`with atomic_write(path, "w", encoding="utf-8") as f: ...`: `path` gets the new content when the
    block ends without an error, and keeps its old content (or stays absent) when it raises."""
    f = AtomicFile(path, mode, size_hint, **open_kwargs)
    try:
        yield f
    except BaseException as e:
        f.abort()
        translated = f.translate(e)
        if translated is e:
            raise
        raise translated from e
    f.commit()


def atomic_copy(src: str, dst: str) -> None:
    """Copy `src` to `dst` atomically (dst's old content survives a failed copy)."""
    with open(src, "rb") as source, atomic_write(dst, "wb", size_hint=os.path.getsize(src)) as out:
        shutil.copyfileobj(source, out, length=16 << 20)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temp_files(directory: str) -> Iterator[str]:
    """Temp files (and scratch directories) in `directory` whose writer (on this host) is no longer running."""
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        m = _TEMP_NAME.fullmatch(name)
        if m and m.group("host") == _HOST and not _process_alive(int(m.group("pid"))):
            yield os.path.join(directory, name)


def remove_stale_temp_files(directory: str) -> list[str]:
    """Delete the temp files left in `directory` by writers that were killed; returns their names."""
    removed = []
    for path in stale_temp_files(directory):
        try:
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(os.path.basename(path))
        except FileNotFoundError:
            pass
    return removed
