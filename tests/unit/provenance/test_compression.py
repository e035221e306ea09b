"""provenance/compression.py: gzip (RFC 1952) and CRC-32 through ISA-L, or zlib where ISA-L is
not installed. Both backends must give the standard library's answers, so an edge and a
coordinator interoperate whichever each has; every check here runs on both."""

from __future__ import annotations

import contextlib
import gzip
import importlib
import sys
import zlib
from collections.abc import Iterator
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance import compression


def test_isal_is_what_this_install_uses() -> None:
    """It is a dependency (pyproject.toml); a silent fallback would cost the forwarder ~10x."""
    assert compression.BACKEND == "isal"


@contextlib.contextmanager
def imported(backend: str) -> Iterator[ModuleType]:
    """The module as imported with ISA-L ("isal") or where ``isal`` is missing ("zlib"); the
    module as installed again afterwards."""
    saved = sys.modules.get("isal")
    try:
        if backend == "zlib":
            sys.modules["isal"] = None  # type: ignore[assignment]  # import isal: ImportError
        module = importlib.reload(compression)
        assert backend == module.BACKEND
        yield module
    finally:
        if saved is None:
            sys.modules.pop("isal", None)
        else:
            sys.modules["isal"] = saved
        importlib.reload(compression)


@pytest.fixture(params=["isal", "zlib"])
def backend(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    with imported(request.param) as module:
        yield module


def both() -> Iterator[ModuleType]:
    """Each backend in turn (hypothesis tests can't take a per-test fixture)."""
    for name in ("isal", "zlib"):
        with imported(name) as module:
            yield module


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000), start=st.integers(0, 2**32 - 1))
def test_crc32_is_zlibs(data: bytes, start: int) -> None:
    for module in both():
        assert module.crc32(data) == zlib.crc32(data)
        assert module.crc32(data, start) == zlib.crc32(data, start)
        assert module.crc32(memoryview(data)[1:]) == zlib.crc32(data[1:])


def test_compressed_bodies_are_standard_gzip_and_repeatable(backend: ModuleType) -> None:
    """RFC 1952: the standard library reads it back; MTIME 0, so the same data gives the same
    bytes (no clock in the shared core)."""
    body = b'{"header":{},"records":[' + b'{"bytes":1024,"cache":"hit"},' * 5000 + b"]}"
    compressed = backend.gzip_compress(body)
    assert gzip.decompress(compressed) == body
    assert compressed[4:8] == b"\x00\x00\x00\x00"  # MTIME
    assert backend.gzip_compress(body) == compressed
    assert len(compressed) * 20 < len(body)


def test_the_inflater_reads_standard_gzip_within_a_limit(backend: ModuleType) -> None:
    body = bytes(range(256)) * 400
    compressed = gzip.compress(body)
    inflater = backend.gzip_inflater()
    assert inflater.decompress(compressed) == body
    assert inflater.eof
    limited = backend.gzip_inflater()
    assert len(limited.decompress(compressed, 1000)) == 1000
    assert not limited.eof
    truncated = backend.gzip_inflater()
    truncated.decompress(compressed[:-8])
    assert not truncated.eof
    trailing = backend.gzip_inflater()
    assert trailing.decompress(compressed + b"junk") == body
    assert trailing.unused_data == b"junk"


@pytest.mark.parametrize(
    "garbage", [b"not gzip, and long enough for a header", b"\x1f\x8b\x08\x00" + b"\xff" * 40]
)
def test_a_corrupt_stream_raises_one_of_the_named_errors(
    backend: ModuleType, garbage: bytes
) -> None:
    with pytest.raises(backend.DECOMPRESS_ERRORS):
        backend.gzip_inflater().decompress(garbage)


def test_a_stream_too_short_for_a_header_never_ends(backend: ModuleType) -> None:
    """zlib refuses 8 bytes of garbage at once, ISA-L waits for the 10-byte header: either way
    it never reaches its end, which ingest's decode_body refuses as truncated."""
    inflater = backend.gzip_inflater()
    try:
        assert inflater.decompress(b"not gzip") == b""
    except backend.DECOMPRESS_ERRORS:
        return
    assert not inflater.eof
