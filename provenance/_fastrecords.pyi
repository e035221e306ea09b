from array import array
from collections.abc import Sequence
from typing import Any

def scan_records(
    data: bytes | memoryview,
    start: int,
    end: int,
    separator: int,
    edge: bytes | None,
    want: int,
    fields_type: type | None,
    /,
) -> (
    tuple[list[bytes] | None, list[bytes] | None, list[bytes], list[Any] | None, list[bytes] | None]
    | None
): ...
def scan_spool_run(
    data: bytes | memoryview,
    start: int,
    base: int,
    segment: int,
    edge: bytes,
    /,
) -> tuple[
    int, bytes, bytes, bytes, list[bytes], bytes, bytes, bytes, bytes, bytes, bytes, int
]: ...
def join_spans(
    buffers: list[bytes],
    starts: list[int] | array[int],
    stops: list[int] | array[int],
    separator: bytes,
    /,
) -> bytes: ...
def stamp_bounds(stamps: bytes | bytearray | memoryview, /) -> tuple[bytes, bytes]: ...
def merkle_root(leaf_hashes: Sequence[bytes] | bytes | bytearray | memoryview, /) -> bytes: ...
def set_sha256_lanes(on: bool, /) -> bool: ...
def set_sha256_ni(on: bool, /) -> bool: ...
def set_sha256_ni_pairs(on: bool, /) -> bool: ...
def leaf_hashes(entries: Sequence[bytes], /) -> list[bytes]: ...
