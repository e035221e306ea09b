"""Receipts: everything needed to check offline that one request's record is in the log.

A receipt holds the record, its batch header and the edge's signature over it, the record's
inclusion proof in the batch (RFC 9162 §2.1.3), the batch's inclusion proof in the global log,
and a checkpoint (C2SP tlog-checkpoint) signed by the log as a C2SP signed note. JSON::

    {"v": 1, "record": {...}, "batch": {"header": {...}, "signature": "<base64>"},
     "record_index": 3, "record_proof": ["<hex>", ...],
     "batch_index": 41, "batch_proof": ["<hex>", ...], "checkpoint": "<signed note text>"}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from provenance.batches import (
    BatchHeader,
    batch_log_leaf_hash,
    signed_header_from_obj,
    signed_header_to_obj,
    verify_header_signature,
)
from provenance.canonical_json import MAX_SAFE_INTEGER, canonicalize, parse
from provenance.checkpoint import Checkpoint, parse_checkpoint
from provenance.errors import FormatError, VerificationError
from provenance.keys import KeyRing, VerifierKey
from provenance.merkle import verify_inclusion
from provenance.records import Record, record_from_obj, record_leaf_hash, record_to_obj
from provenance.signed_note import open_note

RECEIPT_VERSION = 1
MAX_PROOF_HASHES = 64
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIELDS = frozenset(
    {"v", "record", "batch", "record_index", "record_proof", "batch_index", "batch_proof"}
    | {"checkpoint"}
)


@dataclass(frozen=True)
class Receipt:
    record: Record
    header: BatchHeader
    signature: bytes
    record_index: int
    record_proof: tuple[bytes, ...]
    batch_index: int
    batch_proof: tuple[bytes, ...]
    checkpoint: str


def receipt_to_obj(receipt: Receipt) -> dict[str, object]:
    return {
        "v": RECEIPT_VERSION,
        "record": record_to_obj(receipt.record),
        "batch": signed_header_to_obj(receipt.header, receipt.signature),
        "record_index": receipt.record_index,
        "record_proof": [item.hex() for item in receipt.record_proof],
        "batch_index": receipt.batch_index,
        "batch_proof": [item.hex() for item in receipt.batch_proof],
        "checkpoint": receipt.checkpoint,
    }


def format_receipt(receipt: Receipt) -> bytes:
    """Canonical JSON of the receipt."""
    return canonicalize(receipt_to_obj(receipt))


def proof_from_obj(value: object, name: str, what: str = "receipt") -> tuple[bytes, ...]:
    """A list of proof hashes (hex); ``what`` names the document in the error (statement
    proofs, ``provenance.statement_leaves``, read their anchor with it too)."""
    if not isinstance(value, list) or len(value) > MAX_PROOF_HASHES:
        raise FormatError(f"{what} {name!r} must be a list of at most {MAX_PROOF_HASHES} hashes")
    if not all(isinstance(item, str) and _HEX64.fullmatch(item) for item in value):
        raise FormatError(f"{what} {name!r} must hold 64-hex-digit hashes")
    return tuple(bytes.fromhex(item) for item in value)


def index_from_obj(value: object, name: str, what: str = "receipt") -> int:
    if type(value) is not int or not 0 <= value <= MAX_SAFE_INTEGER:
        raise FormatError(f"{what} {name!r} must be an integer >= 0")
    return value


def receipt_from_obj(obj: object) -> Receipt:
    if not isinstance(obj, dict) or obj.keys() != _FIELDS:
        raise FormatError(f"receipt must be an object with exactly: {', '.join(sorted(_FIELDS))}")
    fields: dict[str, Any] = obj
    if fields["v"] != RECEIPT_VERSION or type(fields["v"]) is not int:
        raise FormatError(f"receipt 'v' must be {RECEIPT_VERSION}")
    if not isinstance(fields["checkpoint"], str):
        raise FormatError("receipt 'checkpoint' must be the signed note as a string")
    header, signature = signed_header_from_obj(fields["batch"])
    return Receipt(
        record=record_from_obj(fields["record"]),
        header=header,
        signature=signature,
        record_index=index_from_obj(fields["record_index"], "record_index"),
        record_proof=proof_from_obj(fields["record_proof"], "record_proof"),
        batch_index=index_from_obj(fields["batch_index"], "batch_index"),
        batch_proof=proof_from_obj(fields["batch_proof"], "batch_proof"),
        checkpoint=fields["checkpoint"],
    )


def parse_receipt(data: bytes) -> Receipt:
    """Parse (not verify) a receipt; FormatError with the reason."""
    return receipt_from_obj(parse(data))


def verify_receipt(
    receipt: Receipt,
    log_key: VerifierKey,
    edge_keys: KeyRing | None = None,
    expected_origin: str | None = None,
) -> Checkpoint:
    """Check a receipt offline and return the checkpoint it is anchored in.

    Checks, raising typed errors: the checkpoint note is signed by ``log_key``; its origin (if
    ``expected_origin``); the batch's inclusion in the checkpoint's tree; the record's inclusion
    under the header's root; the record's edge; and, if ``edge_keys`` is given, the edge's
    signature over the header. Without ``edge_keys`` the log's signature still vouches that the
    coordinator accepted this signed header.
    """
    checkpoint = parse_checkpoint(open_note(receipt.checkpoint.encode("utf-8"), [log_key]))
    if expected_origin is not None and checkpoint.origin != expected_origin:
        raise VerificationError(f"checkpoint origin {checkpoint.origin!r} is not the expected log")
    batch_leaf = batch_log_leaf_hash(receipt.header, receipt.signature)
    verify_inclusion(
        batch_leaf, receipt.batch_index, checkpoint.size, receipt.batch_proof, checkpoint.root_hash
    )
    if receipt.record.edge != receipt.header.edge:
        raise VerificationError("receipt record comes from another edge than its batch")
    verify_inclusion(
        record_leaf_hash(receipt.record),
        receipt.record_index,
        receipt.header.count,
        receipt.record_proof,
        bytes.fromhex(receipt.header.root),
    )
    if edge_keys is not None:
        verify_header_signature(receipt.header, receipt.signature, edge_keys)
    return checkpoint
