"""Reading ``.npz`` archives from untrusted sources in bounded memory, without pickles.

Model files (:mod:`pcircuits.serialization`) and training checkpoints
(:mod:`pcircuits.learning.checkpoint`) are zip archives of ``.npy`` entries. Both are read
here, with the same rules:

* every member is a ``.npy`` file, each name appears once;
* the members' declared sizes add up to at most ``max_bytes`` *before* anything is read;
* each entry's header is parsed and checked (numeric dtype, no objects or sub-arrays, at most
  ``max_dims`` dimensions, a size that matches the member's declared size) before its data is
  read into one buffer of exactly that size; a caller's ``check(shape, dtype)`` runs then too.

Problems raise :class:`ArchiveProblem` with a message that names the entry; callers turn it into
their own error type (``CircuitFileError``, ``CheckpointError``) with the file's path.
"""
from __future__ import annotations

import math
import struct
import tokenize
import zipfile
import zlib
from collections import Counter
from typing import Callable

import numpy as np

__all__ = ["ARCHIVE_ERRORS", "ArchiveProblem", "entry_infos", "read_entry"]

#: What the zip reader raises on damaged archives (bad headers, bad CRC, bad compressed data,
#: flags such as encryption that a damaged header may announce).
ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError,
                  RuntimeError, UnicodeDecodeError, OverflowError, struct.error)
#: What parsing a damaged ``.npy`` header may raise besides those.
_HEADER_ERRORS = ARCHIVE_ERRORS + (SyntaxError, TypeError, tokenize.TokenError, MemoryError, RecursionError)
_NUMERIC_KINDS = "biuf"


class ArchiveProblem(Exception):
    """A problem with an archive's members; the message names the entry (not the file)."""


def entry_infos(archive: zipfile.ZipFile, max_bytes: int, what: str) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by entry name (without ``.npy``), checked before any is read.

    Parameters
    ----------
    archive : zipfile.ZipFile
    max_bytes : int
        Most bytes all members may unpack to, together.
    what : str
        What the archive is, for messages (``"a circuit file"``).
    """
    infos = archive.infolist()
    counts = Counter(info.filename for info in infos)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise ArchiveProblem(f"the archive holds {len(duplicates)} name(s) more than once ({duplicates[0]!r}); "
                             f"{what} holds each entry once")
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise ArchiveProblem(f"unexpected entry {info.filename!r}; {what} holds only .npy arrays")
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise ArchiveProblem(f"the entries would unpack to {total} bytes, more than max_bytes={max_bytes} (raise "
                             f"max_bytes to load it)")
    return {info.filename[:-4]: info for info in infos}


def read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, *, max_dims: int = 1,
               check: Callable[[tuple, np.dtype], None] | None = None) -> np.ndarray:
    """One ``.npy`` member as a writable native-endian array, its header checked before its data.

    Parameters
    ----------
    archive, info : the archive and the member
    name : str
        The entry's name for messages.
    max_dims : int
        Most dimensions the array may have.
    check : callable, optional
        ``check(shape, dtype)`` raises :class:`ArchiveProblem` to refuse the entry on its header.
    """
    try:
        with archive.open(info) as stream:
            shape, dtype, order, header_size = _npy_header(stream, name, max_dims)
            if check is not None:
                check(shape, dtype)
            size = math.prod(shape)
            expected = size * dtype.itemsize
            if info.file_size - header_size != expected:
                raise ArchiveProblem(f"the entry {name!r} holds {info.file_size - header_size} data bytes but its "
                                     f"header announces shape {shape} of {dtype} ({expected} bytes): truncated or "
                                     f"corrupted")
            buffer = bytearray(expected)
            view = memoryview(buffer)
            filled = 0
            while filled < expected:
                got = stream.readinto(view[filled:])
                if not got:
                    break
                filled += got
            if filled != expected or stream.read(1):
                raise ArchiveProblem(f"the entry {name!r} does not hold the {expected} data bytes its header "
                                     f"announces: truncated or corrupted")
    except ARCHIVE_ERRORS as err:
        raise ArchiveProblem(f"the entry {name!r} is corrupted or truncated ({str(err)[:120]})") from None
    array = np.frombuffer(buffer, dtype=dtype, count=size).reshape(shape, order=order)
    if not dtype.isnative:
        array = array.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return array


def _npy_header(stream, name: str, max_dims: int) -> tuple[tuple, np.dtype, str, int]:
    """Shape, dtype, memory order and header length of a ``.npy`` stream; refused unless numeric and small in rank."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except _HEADER_ERRORS as err:
        raise ArchiveProblem(f"the entry {name!r} is not a valid array ({str(err)[:120]})") from None
    if dtype.hasobject or dtype.kind not in _NUMERIC_KINDS or dtype.subdtype is not None:
        raise ArchiveProblem(f"the entry {name!r} has dtype {dtype}; only bool, int and float arrays are allowed "
                             f"(no objects, no pickle)")
    if len(shape) > max_dims:
        if max_dims == 1:
            raise ArchiveProblem(f"the entry {name!r} must be 1-D or a scalar, got {len(shape)} dimensions")
        raise ArchiveProblem(f"the entry {name!r} has {len(shape)} dimensions, more than {max_dims}")
    if any(s < 0 for s in shape):
        raise ArchiveProblem(f"the entry {name!r} has a negative size in its shape {shape}")
    return shape, dtype, "F" if fortran_order else "C", stream.tell()
