"""The compiled records check (``provenance/_fastrecords.c``), when it was built.

``scan_records`` and ``merkle_root`` are None where the package was installed without a C
compiler or OpenSSL's headers (setup.py builds the module as optional), or when
``CACHET_PURE_PYTHON=1`` is set for ``cachet`` and the benches (``use_environment``). Their
callers then use the pure-Python code, which is the reference they are tested against
(tests/unit/provenance/test_fastrecords.py): both give the same answers.

``scan_records(data, start, end, separator, edge, want, fields_type)`` checks
``data[start:end]`` as one or more canonical records (``provenance.records``'
``CANONICAL_RECORD_PATTERN``, and a manifest only with a creator and a content id) joined by the
byte ``separator``, each of ``edge`` unless it is None. None if any is not; else
``(records, stamps, seconds, fields, leaves)``: the records' bytes (``want & WANT_RECORDS``),
their ``ts`` values as bytes (``WANT_STAMPS``), the distinct ``ts`` seconds in order of
appearance (repeats possible, never missing: the caller checks the calendar once per second),
each record's fields as a ``fields_type`` in ``RecordFields`` order (``WANT_FIELDS``), and each
record's RFC 9162 leaf hash (``WANT_LEAVES``); what was not asked for is None.

``merkle_root(leaf_hashes)``: RFC 9162 MTH, for ``provenance.merkle.root_from_leaf_hashes``;
``leaf_hashes(entries)``: RFC 9162 leaf hashes, for ``provenance.merkle.leaf_hashes``. Where the
CPU has AVX2 and no SHA instructions, the module hashes a batch's leaves and nodes eight at a
time (``provenance/_sha256_lanes.h``), else one at a time through OpenSSL;
``set_sha256_lanes`` switches between the two for tests and benches.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

WANT_RECORDS = 1
WANT_STAMPS = 2
WANT_FIELDS = 4
WANT_LEAVES = 8

ScanResult = tuple[
    list[bytes] | None, list[bytes] | None, list[bytes], list[Any] | None, list[bytes] | None
]
ScanRecords = Callable[
    [bytes | memoryview, int, int, int, bytes | None, int, type | None], ScanResult | None
]

scan_records: ScanRecords | None = None
# (data, start, base, segment, edge) -> (end, starts, stops, stamps, seconds, leaves,
# end_segments, end_offsets, end_skips, served, dropped, first_count): the sealer's runs of
# valid frames (proxy.records.sealer; the C function's doc string says more)
scan_spool_run: Callable[..., tuple[Any, ...]] | None = None
# (end, ..., first_count): per-record values as one bytes object per column (ints as native
# int64s, ts as 24 bytes, leaf hashes as 32), so a run costs no Python object per record.
TS_BYTES = 24
LEAF_BYTES = 32


if TYPE_CHECKING:
    Ints = list[int] | array[int]


def _join_spans(buffers: list[bytes], starts: Ints, stops: Ints, separator: bytes) -> bytes:
    """``separator.join(b[s:e] ...)``: what the compiled join_spans does in one copy."""
    return separator.join(
        buffer[start:stop] for buffer, start, stop in zip(buffers, starts, stops, strict=True)
    )


def _stamp_bounds(stamps: bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
    """(earliest, latest) of 24-byte ts values laid end to end: fixed-width RFC 3339 UTC times
    order as their bytes do."""
    if not stamps or len(stamps) % TS_BYTES:
        raise ValueError("stamp_bounds: one or more 24-byte ts values")
    values = [bytes(stamps[i : i + TS_BYTES]) for i in range(0, len(stamps), TS_BYTES)]
    return min(values), max(values)


join_spans: Callable[[list[bytes], Ints, Ints, bytes], bytes] = _join_spans
stamp_bounds: Callable[[bytes | bytearray | memoryview], tuple[bytes, bytes]] = _stamp_bounds
merkle_root: Callable[[Sequence[bytes] | bytes | bytearray | memoryview], bytes] | None = None
leaf_hashes: Callable[[Sequence[bytes]], list[bytes]] | None = None
set_sha256_lanes: Callable[[bool], bool] | None = None
set_sha256_ni: Callable[[bool], bool] | None = None
set_sha256_ni_pairs: Callable[[bool], bool] | None = None
try:
    from provenance import _fastrecords

    scan_records = _fastrecords.scan_records
    scan_spool_run = _fastrecords.scan_spool_run
    join_spans = _fastrecords.join_spans
    stamp_bounds = _fastrecords.stamp_bounds
    merkle_root = _fastrecords.merkle_root
    leaf_hashes = _fastrecords.leaf_hashes
    set_sha256_lanes = _fastrecords.set_sha256_lanes
    set_sha256_ni = _fastrecords.set_sha256_ni
    set_sha256_ni_pairs = _fastrecords.set_sha256_ni_pairs
except ImportError:  # built without a compiler: the regular expressions serve
    pass

PURE_PYTHON_VARIABLE = "CACHET_PURE_PYTHON"
SHA256_LANES_VARIABLE = "CACHET_SHA256_LANES"
SHA256_NI_VARIABLE = "CACHET_SHA256_NI"
SHA256_NI_PAIRS_VARIABLE = "CACHET_SHA256_NI_PAIRS"


def use_environment(environ: Mapping[str, str]) -> None:
    """``CACHET_PURE_PYTHON=1``: run the regular expressions even where the module is built
    (to compare the two; call before any ``ChunkChecker`` is made). ``CACHET_SHA256_LANES=0``
    or ``1``: hash one at a time through OpenSSL, or eight at a time, whatever the CPU (to
    compare the two; ``1`` raises ValueError without AVX2). ``CACHET_SHA256_NI=0`` or ``1``:
    OpenSSL, or the CPU's SHA extensions directly (``1`` raises ValueError without them).
    ``CACHET_SHA256_NI_PAIRS=0``: with the SHA extensions, one message at a time instead of two
    side by side (to compare the two)."""
    global scan_records, scan_spool_run, merkle_root, leaf_hashes
    if environ.get(PURE_PYTHON_VARIABLE) == "1":
        scan_records = scan_spool_run = merkle_root = leaf_hashes = None
    lanes = environ.get(SHA256_LANES_VARIABLE)
    if lanes in ("0", "1") and set_sha256_lanes is not None:
        set_sha256_lanes(lanes == "1")
    ni = environ.get(SHA256_NI_VARIABLE)
    if ni in ("0", "1") and set_sha256_ni is not None:
        set_sha256_ni(ni == "1")
    pairs = environ.get(SHA256_NI_PAIRS_VARIABLE)
    if pairs in ("0", "1") and set_sha256_ni_pairs is not None:
        set_sha256_ni_pairs(pairs == "1")
