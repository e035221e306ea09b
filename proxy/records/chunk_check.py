"""The sealer's fast check of a whole spool chunk: one regular-expression match per frame.

``Sealer`` used to split every frame's payload into records and run ``check_record`` on each:
a Python loop whose calls cost more than the C-level match inside them. A chunk whose records are
all plain valid records (the case on a working edge) is accepted here by ONE ``fullmatch`` of a
pattern compiled for the sealer's edge: records joined by ``\\n``, each in the exact canonical
form ``check_record``'s regular expression accepts, with the edge id written in as a literal and
the manifest => creator/content_id rule written into the pattern's structure; then the counters
line. The calendar check of ``ts`` is the one ``check_record`` makes, once per distinct second.

Anything else (a record of another edge, an invalid or unusual record, a malformed counters line)
gives None, and the caller takes the per-record reference path (``segments.decode_chunk`` +
``sealer.check_record``), which decides record by record. So this check only ever accepts less
than the reference: tests/unit/test_chunk_check.py checks, on random and mutated chunks, that
whenever it accepts, the reference accepts every record and yields the same records, stamps and
counters.

Where ``provenance/_fastrecords.c`` is built, the same check runs there instead (one compiled
walk of the grammar, which also hashes each record's RFC 9162 leaf), ~7x less CPU than the
``fullmatch``; the regular expression stays as the reference and the fallback, and every test
runs both.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import NamedTuple

from provenance import fastrecords
from provenance.records import is_name, is_timestamp

_H = r"[0-9a-f]{64}"
_N = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_I = r"(?:0|[1-9][0-9]{0,14})"
_ATTRIBUTION = (
    r',"content_id":(?:null,"creator":(?:null|"' + _N + r'"),"edge":EDGE,"manifest":null'
    r'|"sha256:' + _H + r'","creator":(?:null,"edge":EDGE,"manifest":null'
    r'|"' + _N + r'","edge":EDGE,"manifest":(?:null|"sha256:' + _H + r'")))'
)  # fmt: skip
# provenance.records' canonical-record pattern without capture groups (keys in RFC 8785 order).
_RECORD = (
    r'\{"bytes":' + _I + r',"cache":"(?:hit|miss|stale|revalidated|bypass|error)"'
    r'(?:,"cache_key_hash":"sha256:' + _H + r'")?' + _ATTRIBUTION +
    r',"method":"[!#$%&\'*+.^_`|~0-9A-Za-z-]{1,32}","origin_bytes":' + _I +
    r',"request_id":"[\x21\x23-\x5b\x5d-\x7e]{1,128}"'
    r',"sample_rate":"(?:0|1|0\.[0-9]{0,5}[1-9])","status":[1-5][0-9]{2}'
    r',"tier":"(?:memory|disk|origin|none)"(?:,"trace_id":"(?!0{32})[0-9a-f]{32}")?'
    r',"ts":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"'
    r',"upstream_of":(?:null|"' + _N + r'"),"use":"(?:view|training)","v":1\}'
)  # fmt: skip
_COUNTERS = r"(?:\n#served=([0-9]{1,18}),dropped=([0-9]{1,18}))?"
# In a record that matched, only the ts key is a quoted "ts" followed by ':"' (no string value
# may hold a quote), so this finds exactly one stamp per record.
_STAMP = re.compile(rb'"ts":"([^"]{24})"')
_COUNTERS_LINE = re.compile(rb"#served=([0-9]{1,18}),dropped=([0-9]{1,18})")
_NEWLINE = ord("\n")
_WANT = fastrecords.WANT_RECORDS | fastrecords.WANT_STAMPS | fastrecords.WANT_LEAVES
_sha256 = hashlib.sha256


def seconds_are_real(seconds: Iterable[bytes], seconds_ok: dict[bytes, bool]) -> bool:
    """Is every ``ts`` second (``YYYY-MM-DDTHH:MM:SS`` bytes, already of the right shape) a real
    calendar instant (RFC 3339 §5.7)? ``seconds_ok`` caches the answers: one check per distinct
    second, for the sealer's every path."""
    for second in seconds:
        ok = seconds_ok.get(second)
        if ok is None:
            ok = seconds_ok[second] = is_timestamp(second.decode() + ".000Z")
        if not ok:
            return False
    return True


class CheckedChunk(NamedTuple):  # a tuple: made for every frame the sealer reads
    """A frame's payload whose every record is valid: the records, their ``ts`` (bytes), the
    answers the frame stands for (as ``segments.decode_chunk`` reads them), and the records'
    RFC 9162 leaf hashes (§2.1.1, SHA-256 of 0x00 and the record), which the batch's root needs.
    """

    records: list[bytes]
    stamps: list[bytes]
    served: int
    dropped: int
    leaves: list[bytes]


class ChunkChecker:
    """Accepts the payload of a frame whose records are all valid records of ``edge``."""

    def __init__(self, edge: str, *, compiled: bool = True) -> None:
        """``compiled``: use ``provenance/_fastrecords.c`` when it is built (tests turn it off
        to run the regular expression, the reference, on the same input)."""
        self.edge = edge
        self._edge_bytes = edge.encode("utf-8", "replace")
        self._pattern: re.Pattern[bytes] | None = None
        if compiled and fastrecords.scan_records is not None:
            self.check = self._check_compiled  # type: ignore[method-assign]
        if is_name(edge):  # any other edge id can't be in a valid record: reference path
            record = _RECORD.replace("EDGE", re.escape(f'"{edge}"'))
            self._pattern = re.compile(f"(?:{record}\\n)*{record}{_COUNTERS}".encode("ascii"))

    def check(self, payload: bytes, seconds_ok: dict[bytes, bool]) -> CheckedChunk | None:
        """The chunk's records if all are valid, else None (decide record by record).
        ``seconds_ok`` caches calendar checks of ``ts`` seconds, as for ``check_record``."""
        if self._pattern is None:
            return None
        match = self._pattern.fullmatch(payload)
        if match is None:
            return None
        stamps = _STAMP.findall(payload)
        if not seconds_are_real({stamp[:19] for stamp in stamps}, seconds_ok):
            return None
        records = payload.split(b"\n")
        if match[1] is None:
            served, dropped = len(records), 0
        else:
            del records[-1]
            served, dropped = int(match[1]), int(match[2])
        if len(stamps) != len(records):  # can't happen (see _STAMP); never guess
            return None
        # provenance.merkle.leaf_hash (RFC 9162 §2.1.1) without a Python call per record
        leaves = [_sha256(b"\x00" + record).digest() for record in records]
        return CheckedChunk(records, stamps, served, dropped, leaves)

    def _check_compiled(self, payload: bytes, seconds_ok: dict[bytes, bool]) -> CheckedChunk | None:
        """``check`` by ``provenance/_fastrecords.c``: the same records accepted, ~7x less CPU
        (tests/unit/test_chunk_check.py runs both). A last line starting with ``#`` can only be
        the counters line, as in the pattern."""
        scan = fastrecords.scan_records
        assert scan is not None
        end, counters = len(payload), None
        last_line = payload.rfind(b"\n") + 1
        if last_line and payload.startswith(b"#", last_line):
            counters = _COUNTERS_LINE.fullmatch(payload, last_line)
            if counters is None:
                return None
            end = last_line - 1
        scanned = scan(payload, 0, end, _NEWLINE, self._edge_bytes, _WANT, None)
        if scanned is None:
            return None
        records, stamps, seconds, _, leaves = scanned
        assert records is not None and stamps is not None and leaves is not None
        if not seconds_are_real(seconds, seconds_ok):
            return None
        if counters is None:
            return CheckedChunk(records, stamps, len(records), 0, leaves)
        return CheckedChunk(records, stamps, int(counters[1]), int(counters[2]), leaves)
