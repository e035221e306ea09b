"""The h11 invariant: every parser fed arbitrary input returns a value or raises FormatError.

Bytes parsers are also fed every prefix of their input (truncation byte by byte).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.batches import parse_sealed_batch
from provenance.canonical_json import parse
from provenance.checkpoint import parse_checkpoint
from provenance.content_id import parse_content_id
from provenance.errors import FormatError
from provenance.keys import generate_signing_key, parse_signing_key, parse_verifier_key
from provenance.manifests import parse_manifest
from provenance.receipts import parse_receipt
from provenance.records import parse_record, parse_timestamp, sample_rate_ppm
from provenance.signed_note import open_note

TRUSTED = [generate_signing_key("k", b"\x41" * 32).verifier]
BYTES_PARSERS: list[Callable[[bytes], object]] = [
    parse,
    parse_record,
    parse_sealed_batch,
    parse_manifest,
    parse_receipt,
    parse_checkpoint,
    lambda data: open_note(data, TRUSTED),
]
TEXT_PARSERS: list[Callable[[str], object]] = [
    parse_verifier_key,
    parse_signing_key,
    parse_content_id,
    parse_timestamp,
    sample_rate_ppm,
    parse_checkpoint,
]
JSONISH = st.sampled_from([b"{", b"}", b"[", b"]", b'"', b":", b",", b"null", b"1", b"\\u", b"\n"])
FUZZ_BYTES = st.binary(max_size=60) | st.lists(JSONISH, max_size=30).map(b"".join)
NOTEISH = st.sampled_from(["\n", "\u2014 ", "k ", "+", "PRIVATE+KEY+", "AQ==", "sha256:", "0"])
ANY_CHAR = st.characters(blacklist_categories=())  # includes lone surrogates
FUZZ_TEXT = st.text(ANY_CHAR, max_size=40) | st.lists(
    NOTEISH | st.text(ANY_CHAR, max_size=2), max_size=12
).map("".join)


def accepts_or_format_error(parser: Callable[[bytes], object], data: bytes) -> None:
    try:
        parser(data)
    except FormatError:
        pass
    except Exception as exc:  # the invariant under test: nothing else escapes
        pytest.fail(f"{parser} raised {type(exc).__name__}: {exc} for {data!r}")


@pytest.mark.parametrize("parser", BYTES_PARSERS)
@settings(max_examples=80, deadline=None)
@given(data=FUZZ_BYTES)
def test_bytes_parsers_only_raise_format_error(
    parser: Callable[[bytes], object], data: bytes
) -> None:
    for end in range(len(data) + 1):
        accepts_or_format_error(parser, data[:end])


@pytest.mark.parametrize("parser", TEXT_PARSERS)
@settings(max_examples=80, deadline=None)
@given(text=FUZZ_TEXT)
def test_text_parsers_only_raise_format_error(parser: Callable[[str], object], text: str) -> None:
    try:
        parser(text)
    except FormatError:
        pass
