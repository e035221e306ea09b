"""Statements in the global log: their leaves, and the statement proofs creators check offline.

The coordinator's one RFC 9162 log holds two kinds of leaf. A batch leaf's data is the batch's
signed header, the canonical JSON ``{"header": {...}, "signature": "<base64>"}``
(``provenance.batches.batch_log_leaf_hash``, unchanged). A statement leaf's data is the
canonical JSON (RFC 8785)::

    {"creator": "alice", "kind": "statement", "period": "day-2026-11-27T00:00:00Z",
     "sha256": "<hex SHA-256 of the statement's canonical JSON without its sha256>"}

Why the two can never be confused (domain separation): every leaf's data is one canonical JSON
object, which has exactly one spelling; a batch leaf's keys are exactly ``header`` and
``signature``, a statement leaf's exactly ``creator``, ``kind``, ``period`` and ``sha256``, and
RFC 8785 sorts keys, so the bytes differ from the second byte on (``{"header":`` against
``{"creator":``) and each parser refuses the other's key set. ``kind`` names the leaf type, so a
later kind is one more value, never a reinterpretation. Both are hashed the same way (RFC 9162
§2.1.1 ``SHA-256(0x00 || data)``), so a mirror with the entry bundles recomputes every leaf.

A statement proof (what ``GET /v1/creator/statements/{period}`` returns, and what
``cachet verify statement`` reads) is::

    {"v": 1, "statement": {...},
     "anchor": {"leaf_index": 57, "tree_size": 60, "inclusion_proof": ["<hex>", ...],
                "checkpoint": "<signed note text>"}}

or, until the sequencer has put the statement's leaf in a signed checkpoint,
``{"v": 1, "statement": {...}, "anchor": null, "pending": "<why>"}``. No I/O here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provenance.batches import BatchHeader
from provenance.canonical_json import canonicalize, parse
from provenance.checkpoint import Checkpoint, parse_checkpoint
from provenance.errors import FormatError, VerificationError
from provenance.keys import VerifierKey
from provenance.merkle import leaf_hash, verify_inclusion
from provenance.receipts import index_from_obj, proof_from_obj
from provenance.signed_note import open_note
from provenance.tiles import parse_log_entry

STATEMENT_LEAF_KIND = "statement"
STATEMENT_PROOF_VERSION = 1
MAX_CREATOR_CHARS = 256
_LEAF_FIELDS = frozenset({"creator", "kind", "period", "sha256"})
_ANCHOR_FIELDS = frozenset({"leaf_index", "tree_size", "inclusion_proof", "checkpoint"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PERIOD_ID = re.compile(r"(hour|day|month)-[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:00:00Z")
_PERIOD_START = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:00:00\.000Z")


class PendingStatementError(FormatError):
    """A statement proof without an anchor yet: its leaf was not in a signed checkpoint."""


@dataclass(frozen=True, slots=True)
class StatementLeaf:
    """One closed statement as the global log holds it: who, which period (its id, e.g.
    ``day-2026-11-27T00:00:00Z``) and the statement's hash."""

    creator: str
    period: str
    sha256: str

    def __post_init__(self) -> None:
        if not isinstance(self.creator, str) or not 0 < len(self.creator) <= MAX_CREATOR_CHARS:
            raise FormatError(f"statement leaf 'creator' must be 1-{MAX_CREATOR_CHARS} chars")
        if not isinstance(self.period, str) or not _PERIOD_ID.fullmatch(self.period):
            raise FormatError("statement leaf 'period' must be a period id such as "
                              "day-2026-11-27T00:00:00Z")  # fmt: skip
        if not isinstance(self.sha256, str) or not _HEX64.fullmatch(self.sha256):
            raise FormatError("statement leaf 'sha256' must be 64 lowercase hex digits")


def statement_leaf_data(leaf: StatementLeaf) -> bytes:
    """The leaf's data: the entry a tiles mirror reads (canonical JSON, see the module doc)."""
    return canonicalize(
        {"creator": leaf.creator, "kind": STATEMENT_LEAF_KIND, "period": leaf.period,
         "sha256": leaf.sha256}
    )  # fmt: skip


def statement_leaf_hash(leaf: StatementLeaf) -> bytes:
    """The global log's leaf hash of a statement (RFC 9162 §2.1.1 over its leaf data)."""
    return leaf_hash(statement_leaf_data(leaf))


def parse_statement_leaf(data: bytes) -> StatementLeaf:
    """A statement leaf from its data; FormatError unless it is exactly the canonical form."""
    obj = parse(data)
    if not isinstance(obj, dict) or obj.keys() != _LEAF_FIELDS:
        raise FormatError(f"statement leaf must be an object with exactly: "
                          f"{', '.join(sorted(_LEAF_FIELDS))}")  # fmt: skip
    if obj["kind"] != STATEMENT_LEAF_KIND:
        raise FormatError(f"statement leaf 'kind' must be {STATEMENT_LEAF_KIND!r}")
    leaf = StatementLeaf(obj["creator"], obj["period"], obj["sha256"])
    if statement_leaf_data(leaf) != data:
        raise FormatError("statement leaf is not canonical JSON")
    return leaf


def statement_content_hash(statement: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the statement's RFC 8785 canonical JSON without its ``sha256`` field."""
    return hashlib.sha256(
        canonicalize({k: v for k, v in statement.items() if k != "sha256"})
    ).hexdigest()


def leaf_of_statement(statement: object) -> StatementLeaf:
    """The leaf a statement (JSON object) stands for, after checking that it hashes to its own
    ``sha256``: VerificationError for a statement changed after its close."""
    if not isinstance(statement, dict):
        raise FormatError("'statement' must be a JSON object")
    period = statement.get("period")
    if not isinstance(period, dict) or not isinstance(period.get("start"), str):
        raise FormatError("statement 'period' must be an object with kind and start")
    if not _PERIOD_START.fullmatch(period["start"]):
        raise FormatError("statement period 'start' must look like 2026-11-27T00:00:00.000Z")
    leaf = StatementLeaf(
        statement.get("creator"),  # type: ignore[arg-type]  # checked by StatementLeaf
        f"{period.get('kind')}-{period['start'][:19]}Z",
        statement.get("sha256"),  # type: ignore[arg-type]
    )
    computed = statement_content_hash(statement)
    if computed != leaf.sha256:
        raise VerificationError(
            f"statement content does not hash to its sha256 {leaf.sha256} (it hashes to "
            f"{computed}): a line or total was changed after the period closed"
        )
    return leaf


@dataclass(frozen=True)
class StatementProof:
    statement: dict[str, Any]
    leaf_index: int
    tree_size: int
    inclusion_proof: tuple[bytes, ...]
    checkpoint: str


def statement_proof_to_obj(proof: StatementProof) -> dict[str, object]:
    return {
        "v": STATEMENT_PROOF_VERSION,
        "statement": proof.statement,
        "anchor": {
            "leaf_index": proof.leaf_index,
            "tree_size": proof.tree_size,
            "inclusion_proof": [item.hex() for item in proof.inclusion_proof],
            "checkpoint": proof.checkpoint,
        },
    }


def pending_statement_obj(statement: dict[str, Any], reason: str) -> dict[str, object]:
    """A statement whose leaf is not in a signed checkpoint yet (no anchor to give)."""
    return {"v": STATEMENT_PROOF_VERSION, "statement": statement, "anchor": None,
            "pending": reason}  # fmt: skip


def statement_proof_from_obj(obj: object) -> StatementProof:
    """Parse (not verify); PendingStatementError for a pending one, FormatError otherwise."""
    if not isinstance(obj, dict) or not {"v", "statement", "anchor"} <= obj.keys():
        raise FormatError("statement proof must be an object with v, statement and anchor")
    if type(obj["v"]) is not int or obj["v"] != STATEMENT_PROOF_VERSION:
        raise FormatError(f"statement proof 'v' must be {STATEMENT_PROOF_VERSION}")
    if obj["anchor"] is None and obj.keys() == {"v", "statement", "anchor", "pending"}:
        raise PendingStatementError(
            f"the statement is not anchored yet ({obj['pending']}); fetch it again after the "
            "log's next checkpoint"
        )
    anchor = obj["anchor"]
    if obj.keys() != {"v", "statement", "anchor"} or not isinstance(anchor, dict):
        raise FormatError("statement proof must be an object with exactly v, statement, anchor")
    if anchor.keys() != _ANCHOR_FIELDS:
        raise FormatError(f"statement 'anchor' must hold exactly: "
                          f"{', '.join(sorted(_ANCHOR_FIELDS))}")  # fmt: skip
    if not isinstance(anchor["checkpoint"], str):
        raise FormatError("anchor 'checkpoint' must be the signed note as a string")
    if not isinstance(obj["statement"], dict):
        raise FormatError("'statement' must be a JSON object")
    return StatementProof(
        statement=obj["statement"],
        leaf_index=index_from_obj(anchor["leaf_index"], "leaf_index", "anchor"),
        tree_size=index_from_obj(anchor["tree_size"], "tree_size", "anchor"),
        inclusion_proof=proof_from_obj(anchor["inclusion_proof"], "inclusion_proof", "anchor"),
        checkpoint=anchor["checkpoint"],
    )


def parse_statement_proof(data: bytes) -> StatementProof:
    return statement_proof_from_obj(parse(data))


def verify_statement_proof(
    proof: StatementProof, log_key: VerifierKey, expected_origin: str | None = None
) -> Checkpoint:
    """Check a statement proof offline against the log key alone; return its checkpoint.

    Raises, typed: the checkpoint note is not signed by ``log_key`` (SignatureError /
    UnknownKeyError); another origin than ``expected_origin``; the anchor's ``tree_size`` is
    not the checkpoint's; the statement does not hash to its ``sha256`` (changed after the
    close); its leaf is not at ``leaf_index`` of the checkpoint's tree (RFC 9162 §2.1.3.2)."""
    checkpoint = parse_checkpoint(open_note(proof.checkpoint.encode("utf-8"), [log_key]))
    if expected_origin is not None and checkpoint.origin != expected_origin:
        raise VerificationError(f"checkpoint origin {checkpoint.origin!r} is not the expected log")
    if proof.tree_size != checkpoint.size:
        raise VerificationError(
            f"anchor tree_size {proof.tree_size} is not the checkpoint's size {checkpoint.size}"
        )
    leaf = leaf_of_statement(proof.statement)
    try:
        verify_inclusion(
            statement_leaf_hash(leaf),
            proof.leaf_index,
            checkpoint.size,
            proof.inclusion_proof,
            checkpoint.root_hash,
        )
    except VerificationError as exc:
        raise type(exc)(
            f"the statement of {leaf.creator} for {leaf.period} is not leaf {proof.leaf_index} "
            f"of the checkpoint's tree: {exc}"
        ) from None
    return checkpoint


def parse_global_log_entry(entry: bytes) -> tuple[BatchHeader, bytes] | StatementLeaf:
    """A global log entry (an entry bundle's item) as what it is: a batch's (header, signature)
    or a statement leaf; FormatError if it is neither, in its one canonical spelling."""
    if entry.startswith(b'{"header":'):
        return parse_log_entry(entry)
    return parse_statement_leaf(entry)
