"""gzip (RFC 1952) and CRC-32 through ISA-L (the ``isal`` package) where it is installed, else
the standard library's zlib: the same formats and the same bytes out of every check, so either
side of an edge-coordinator pair may have either.

Why: a sealed batch of 1,000 hit records is ~495 KB of JSON. zlib at the forwarder's former
level 5 took ~5-9 ms of the records process's CPU to compress it (5-9 µs per record, more than
sealing it), ISA-L's level 1 takes ~0.6-0.8 ms and compresses it slightly better (9.7:1
against 9.4:1). ISA-L inflates ~1.5-2x faster at the coordinator and computes CRC-32, which
frames every spool write on the proxy's hit path, ~6x faster (0.05 against 0.3 µs per 500
bytes). Measured on the dev box (docs/design/spool.md).

``isal`` is a dependency (pyproject.toml) with wheels for the common platforms; the fallback is
for an install where it could not be built, and the tests check both give the same answers.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Protocol, cast

_igzip: ModuleType | None
zlib_module: ModuleType  # zlib's interface: crc32, decompressobj, error
try:
    from isal import igzip as _igzip
    from isal import isal_zlib as zlib_module
except ImportError:  # no wheel for this platform and no compiler: the standard library serves
    _igzip, zlib_module = None, zlib

BACKEND = "zlib" if _igzip is None else "isal"
# ISA-L's level 1 of 0-3: level 0 loses a third of the ratio (6.2:1), 3 costs 3x the CPU for
# a lower ratio on batch JSON. zlib's 5 is what the forwarder used before ISA-L.
ISAL_LEVEL = 1
ZLIB_LEVEL = 5
# What a corrupt stream raises, whichever backend inflates it.
DECOMPRESS_ERRORS: tuple[type[Exception], ...] = tuple({zlib.error, zlib_module.error})

crc32: Callable[..., int] = zlib_module.crc32


def gzip_compress(data: bytes | memoryview) -> bytes:
    """One gzip member holding ``data``, with MTIME 0 (RFC 1952 §2.3.1: no time stamp): no
    clock read, and the same bytes for the same data."""
    if _igzip is not None:
        return bytes(_igzip.compress(data, compresslevel=ISAL_LEVEL, mtime=0))
    return gzip.compress(data, compresslevel=ZLIB_LEVEL, mtime=0)


def gzip_compress_parts(parts: Sequence[bytes | memoryview]) -> bytes:
    """One gzip member holding the parts one after the other (the same bytes as
    ``gzip_compress`` of them joined, with ISA-L), without joining them into one copy first."""
    if _igzip is not None:
        compressor = zlib_module.compressobj(ISAL_LEVEL, zlib_module.DEFLATED, 31)
    else:
        compressor = zlib.compressobj(ZLIB_LEVEL, zlib.DEFLATED, 31)
    return b"".join([*(compressor.compress(part) for part in parts), compressor.flush()])


def gzip_decompress(data: bytes | memoryview) -> bytes:
    """The data of one gzip member; a ``DECOMPRESS_ERRORS`` error if it is not one, whole."""
    inflater = gzip_inflater()
    out = inflater.decompress(data)
    if not inflater.eof:
        raise zlib.error("truncated gzip member")
    return out


class Inflater(Protocol):
    """What both backends' ``decompressobj`` give: zlib's interface."""

    eof: bool
    unused_data: bytes

    def decompress(self, data: bytes | memoryview, max_length: int = 0, /) -> bytes: ...


def gzip_inflater() -> Inflater:
    """A decompress object for one gzip member (``decompressobj(wbits=31)``)."""
    return cast(Inflater, zlib_module.decompressobj(wbits=31))
