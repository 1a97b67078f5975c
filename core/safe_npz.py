"""Reading an untrusted ``.npz`` of weights without believing anything it says.

``np.load`` decompresses a member before anyone sees its name or shape, so a 7 kB upload
whose bzip2 member unpacks to 8 GiB, or whose ``.npy`` header declares a 3.6 TiB array,
takes the server's memory with it. Here the spec decides what may be read, and each step
is bounded before the next one starts:

1. the zip's central directory is counted before :mod:`zipfile` parses it;
2. every member's name, compression method and declared size are checked against the
   weights the spec needs, so nothing is decompressed for a member that cannot fit;
3. each ``.npy`` header is read through a stream capped at a few kilobytes, and its
   dtype and shape are checked before a byte of the array is read;
4. the array is stream-decompressed through a hard byte limit (a declared size can lie).

Pure NumPy + the standard library; every refusal is a sentence.
"""
from __future__ import annotations

import io
import logging
import re
import zipfile
import zlib
from collections.abc import Mapping

import numpy as np
from numpy.lib import format as npy_format

from core.errors import LayerLabError

LOG = logging.getLogger(__name__)

MAX_HEADER_BYTES = 4096          # numpy writes 128; the magic and length add 8-12 more
MAX_ITEMSIZE = 8                 # float64 and int64 are the widest numbers accepted
CHUNK_BYTES = 1 << 20            # arrays are read a mebibyte at a time
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
            zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
_FIX = "Export the weights from Layer Lab to see the format."
_CD_SIGNATURE = b"PK\x01\x02"    # starts every central-directory record


class WeightsRefused(LayerLabError):
    """An ``.npz`` that does not hold exactly the spec's weights as plain numbers."""


class _TooLong(Exception):
    """A member went past the bytes it is allowed to unpack to."""


def not_readable(reason: str) -> WeightsRefused:
    """The refusal for a file-level problem, as one sentence.

    >>> str(not_readable("it is empty"))
    'The weights file is not a readable .npz: it is empty. Export the weights from Layer Lab to see the format.'
    """
    return WeightsRefused(f"The weights file is not a readable .npz: {reason}. {_FIX}")


def shown(name: str, limit: int = 40) -> str:
    """A member name safe to show: plain characters only, at most ``limit`` of them.

    >>> shown("conv1/0")
    'conv1/0'
    >>> shown("[click](https://www.evil.example)")
    '?click??https?//www?evil?example?'
    """
    clean = re.sub(r"[^A-Za-z0-9_/-]", "?", name)      # no markdown, no autolinked URL
    return clean if len(clean) <= limit else clean[:limit] + "…"


def human_bytes(n: int) -> str:
    """A byte count for people.

    >>> human_bytes(1152), human_bytes(8 * 2**30), human_bytes(4 * 10**12)
    ('1.1 kB', '8.0 GiB', '3.6 TiB')
    """
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("kB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def member_limit(shape: tuple[int, ...]) -> int:
    """The most bytes a ``.npy`` member holding ``shape`` may unpack to.

    >>> member_limit((3, 3, 1, 32))
    6400
    """
    return MAX_HEADER_BYTES + MAX_ITEMSIZE * int(np.prod(shape, dtype=np.int64))


def mismatch_sentence(missing: list[str], extra: list[str]) -> str:
    """Which weights are missing and which are not the spec's, as one sentence.

    >>> mismatch_sentence(["conv1/0"], ["conv9/0"])
    'The weights do not fit this spec: missing conv1/0; unexpected conv9/0. Use the spec the weights were exported with.'
    """
    parts = ([f"missing {', '.join(missing[:4])}"] if missing else []) \
        + ([f"unexpected {', '.join(shown(x) for x in extra[:4])}"] if extra else [])
    return ("The weights do not fit this spec: " + "; ".join(parts)
            + ". Use the spec the weights were exported with.")


def sniff(data: bytes) -> str | None:
    """Why ``data`` cannot be an ``.npz`` at all, from its first bytes; None if it may be.

    >>> sniff(b"\\x93NUMPY\\x01\\x00")
    'it is a single .npy array, not an .npz archive of them'
    >>> sniff(b"PK\\x03\\x04") is None
    True
    """
    if not data:
        return "it is empty"
    if data.startswith(b"\x93NUMPY"):
        return "it is a single .npy array, not an .npz archive of them"
    if not data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "it is not a zip archive of .npy arrays"
    return None


def read_npz(data: bytes, expected: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The arrays of an untrusted ``.npz``, exactly the ``expected`` names and shapes.

    Raises :class:`WeightsRefused` with a sentence for anything else; the memory used is
    bounded by what the expected arrays need, whatever the file declares.
    """
    reason = sniff(data)
    if reason:
        raise not_readable(reason)
    archive = _open_archive(data, len(expected))
    members = _check_members(archive.infolist(), expected, len(data))
    arrays = {}
    for key, info in members.items():
        try:
            arrays[key] = _read_member(archive, info, key, tuple(expected[key]))
        except WeightsRefused:
            raise
        except _TooLong:
            raise not_readable(f"{key} unpacks to more bytes than its array needs") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                NotImplementedError, RuntimeError, MemoryError) as exc:
            LOG.info("weights member %s refused: %r", key, exc)
            raise not_readable(f"{key} is damaged (it does not unpack to what its "
                               f"zip entry says)") from None
    for key, arr in arrays.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise WeightsRefused(f"Weight {key} must hold finite numbers, not NaN or "
                                 f"infinity.")
    return arrays


def _open_archive(data: bytes, n_expected: int) -> zipfile.ZipFile:
    """The zip's directory, parsed only once its records are known to be few."""
    # Every record zipfile parses starts with the signature, so the count bounds them
    # (a stray match inside the data only makes the bound looser).
    records = data.count(_CD_SIGNATURE)
    if records > n_expected + 8:
        raise not_readable(f"it has up to {records:,} entries, and this spec has "
                           f"{n_expected} weights")
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
            NotImplementedError, OverflowError) as exc:
        LOG.info("weights archive refused: %r", exc)
        raise not_readable("its zip directory is damaged") from None


def _check_members(infos: list[zipfile.ZipInfo], expected: Mapping[str, tuple[int, ...]],
                   total: int) -> dict[str, zipfile.ZipInfo]:
    """Each expected weight's entry, once names, methods and sizes are all acceptable."""
    members: dict[str, zipfile.ZipInfo] = {}
    extra = []
    for info in infos:
        key = info.filename.removesuffix(".npy")    # np.savez adds .npy to each name
        if key not in expected:
            extra.append(key)
        elif key in members:
            raise not_readable(f"{key} appears twice")
        else:
            members[key] = info
    missing = sorted(set(expected) - set(members))
    if missing or extra:
        raise WeightsRefused(mismatch_sentence(missing, sorted(extra)))
    for key, info in members.items():
        method = info.compress_type
        if method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise not_readable(f"{key} is compressed with "
                               f"{_METHODS.get(method, f'method {method}')}; only stored "
                               f"or deflate entries (np.savez, np.savez_compressed) are read")
        if info.flag_bits & 0x1:
            raise not_readable(f"{key} is encrypted")
        limit = member_limit(tuple(expected[key]))
        if info.file_size > limit:
            raise not_readable(f"{key} says it unpacks to {human_bytes(info.file_size)}, "
                               f"but a {tuple(expected[key])} weight needs at most "
                               f"{human_bytes(limit)}")
        if info.compress_size > total:
            raise not_readable(f"{key} claims more bytes than the file holds")
    return members


class _Capped:
    """A read-only view of a stream that refuses to yield more than ``limit`` bytes."""

    def __init__(self, raw, limit: int) -> None:
        self.raw, self.limit, self.used = raw, limit, 0

    def read(self, n: int | None = -1) -> bytes:
        room = self.limit - self.used
        # Asking for one byte past the limit is how an overrun shows itself.
        n = room + 1 if n is None or n < 0 or n > room + 1 else n
        chunk = self.raw.read(min(n, CHUNK_BYTES))
        self.used += len(chunk)
        if self.used > self.limit:
            raise _TooLong
        return chunk


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str,
                 shape: tuple[int, ...]) -> np.ndarray:
    """One ``.npy`` entry: header checked first, then exactly its array's bytes."""
    with archive.open(info) as raw:
        stream = _Capped(raw, MAX_HEADER_BYTES)
        dtype, fortran = _read_header(stream, key, shape)
        nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        stream.limit = stream.used + nbytes
        buf = bytearray(nbytes)
        view, got = memoryview(buf), 0
        while got < nbytes:
            chunk = stream.read(nbytes - got)
            if not chunk:
                raise not_readable(f"{key} ends before its array does (the file is "
                                   f"cut off)")
            view[got:got + len(chunk)] = chunk
            got += len(chunk)
        stream.read(1)            # anything after the array overruns the limit
    return np.frombuffer(buf, dtype).reshape(shape, order="F" if fortran else "C")


_KINDS = {"b": "true/false", "c": "complex", "O": "Python object", "S": "text",
          "U": "text", "V": "structured or raw", "M": "date", "m": "time-span"}


def _read_header(stream: _Capped, key: str, shape: tuple[int, ...]) -> tuple[np.dtype, bool]:
    """The member's dtype and order, once its header is valid and matches ``shape``."""
    try:
        version = npy_format.read_magic(stream)
        reader = {(1, 0): npy_format.read_array_header_1_0,
                  (2, 0): npy_format.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f"npy version {version}")
        got, fortran, dtype = reader(stream, max_header_size=MAX_HEADER_BYTES)
    except _TooLong:
        raise not_readable(f"{key} has a .npy header longer than "
                           f"{MAX_HEADER_BYTES:,} bytes") from None
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError,
            UnicodeDecodeError, OverflowError) as exc:
        LOG.info("weights member %s header refused: %r", key, exc)
        raise not_readable(f"{key} has no valid .npy header") from None
    if dtype.hasobject:
        raise not_readable(f"{key} holds Python objects (a pickle), which are never "
                           f"loaded")
    if dtype.kind not in "fiu" or dtype.itemsize > MAX_ITEMSIZE:
        what = _KINDS.get(dtype.kind, f"{dtype.itemsize * 8}-bit")
        raise WeightsRefused(f"Weight {key} holds {what} values; weights must be plain "
                             f"numbers (float or int, at most 64-bit).")
    if tuple(got) != tuple(shape):
        text = str(tuple(got))
        text = text if len(text) <= 60 else text[:59] + "…)"
        raise WeightsRefused(f"Weight {key} has shape {text} but the spec needs "
                             f"{tuple(shape)}. Use the spec the weights were exported "
                             f"with.")
    return dtype, fortran
