"""Atomic file writes: a unique temporary file beside the target, fsynced, then renamed over it.

Model files (:func:`pcircuits.serialization.save`) and training checkpoints
(:func:`pcircuits.learning.checkpoint.write_checkpoint`) are written this way, so a reader sees
either the old file or the complete new one, never a partial file:

* the temporary name ``.{name}.{pid}.{random}.tmp`` is unique, so two processes (or two threads)
  writing the same path never write into one temporary file;
* the temporary file is fsynced before the rename and the folder after it, so a power loss
  right after the write does not leave an empty or partial file under the final name;
* an exception (including ``KeyboardInterrupt``) removes the temporary file. A process killed
  outright (``kill -9``) cannot clean up; the next write to the same path removes the temporary
  files of writers that no longer run.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = ["atomic_write"]


def atomic_write(path: os.PathLike | str, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(handle)`` on a fresh temporary file and move it to ``path`` atomically.

    Parameters
    ----------
    path : str or path-like
        The final file; its folder must exist.
    write : callable
        Writes the whole content to the binary file handle it gets.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    folder = path.parent
    prefix = f".{path.name}.{os.getpid()}."
    _remove_stale_temporaries(folder, path.name)
    descriptor, temporary = _create_temporary(folder, prefix)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)
    return path


def _create_temporary(folder: Path, prefix: str) -> tuple[int, str]:
    """A new file ``{prefix}{random}.tmp`` in ``folder``, created exclusively with the permissions the
    umask gives an ordinary new file (so the renamed file is readable like one ``open`` makes)."""
    while True:
        temporary = os.path.join(folder, f"{prefix}{os.urandom(6).hex()}.tmp")
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), \
                temporary
        except FileExistsError:
            continue


def _fsync_folder(folder: Path):
    """Make the rename durable (folders cannot be opened for fsync on every platform)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _remove_stale_temporaries(folder: Path, name: str):
    """Remove ``.{name}.{pid}.*.tmp`` files left by writers of ``name`` that no longer run."""
    start = f".{name}."
    try:
        candidates = [entry for entry in os.listdir(folder) if entry.startswith(start) and entry.endswith(".tmp")]
    except OSError:
        return
    for entry in candidates:
        pid_text = entry[len(start):].split(".", 1)[0]
        if not pid_text.isdigit() or _process_runs(int(pid_text)):
            continue
        try:
            os.unlink(folder / entry)
        except OSError:
            pass


def _process_runs(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True
