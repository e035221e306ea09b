"""`cachet verify statement FILE --log-key KEY` as a real process: a creator's statement proof
(what GET /v1/creator/statements/{period} serves) checked offline against the global log's
checkpoint (RFC 9162 §2.1.3.2 inclusion, C2SP signed note) with the log key alone. Failures are
ONE stderr line ``cachet verify statement: <reason>``: 1 for a statement that does not verify
(a line changed, another key), 2 for unusable input (missing, malformed, still pending)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from provenance.checkpoint import Checkpoint, format_checkpoint
from provenance.keys import format_verifier_key, generate_signing_key
from provenance.merkle import MerkleTree
from provenance.signed_note import sign_note
from provenance.statement_leaves import (
    StatementProof,
    leaf_of_statement,
    pending_statement_obj,
    statement_content_hash,
    statement_leaf_hash,
    statement_proof_to_obj,
)
from tests.integration.test_provenance_cli import assert_fails, cachet

pytestmark = pytest.mark.integration
LOG_KEY = generate_signing_key("log.example", b"\x51" * 32)
OTHER_KEY = generate_signing_key("log.example", b"\x52" * 32)


def a_statement() -> dict[str, Any]:
    statement: dict[str, Any] = {
        "creator": "alice", "currency": "USD",
        "period": {"kind": "day", "start": "2026-11-27T00:00:00.000Z",
                   "end": "2026-11-28T00:00:00.000Z"},
        "lines": [{"content_id": "sha256:" + "a" * 64, "manifest_id": "sha256:" + "2" * 64,
                   "use": "view", "adjustment_of": None, "requests": "21", "hits": "20",
                   "bytes_served": "3450000000", "bytes_from_cache": "3200000000",
                   "sample_rates": ["1"], "requests_std_error": "0",
                   "rates_source": "platform", "amount_micros": 29000}],
        "gross_micros": 29000, "fee_micros": 5800, "net_micros": 23200,
        "carried_in_micros": 0, "payout_micros": 23200, "carry_out_micros": 0,
    }  # fmt: skip
    statement["sha256"] = statement_content_hash(statement)
    return statement


def a_proof(statement: dict[str, Any], at: int = 2, size: int = 5) -> dict[str, object]:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(size)]  # batches around it
    leaves[at] = statement_leaf_hash(leaf_of_statement(statement))
    tree = MerkleTree(leaves)
    note = sign_note(format_checkpoint(Checkpoint("log.example", size, tree.root())), [LOG_KEY])
    return statement_proof_to_obj(
        StatementProof(statement, at, size, tuple(tree.inclusion_proof(at)), note)
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "log.pub").write_text(format_verifier_key(LOG_KEY.verifier) + "\n")
    (tmp_path / "other.pub").write_text(format_verifier_key(OTHER_KEY.verifier) + "\n")
    (tmp_path / "statement.json").write_text(json.dumps(a_proof(a_statement())))
    return tmp_path


def test_a_statement_verifies_with_the_log_key(work: Path) -> None:
    run = cachet(work, "verify", "statement", "statement.json", "--log-key", "log.pub", "--json")
    assert run.code == 0, run.err
    out = run.json()
    assert out["verified"] is True and out["creator"] == "alice"
    assert (out["leaf_index"], out["checkpoint_size"], out["log_origin"]) == (2, 5, "log.example")
    text = cachet(work, "verify", "statement", "statement.json", "--log-key", "log.pub")
    assert text.code == 0 and text.out.startswith("statement verified: alice, day from")


def test_a_statement_with_one_line_changed_fails_with_one_line(work: Path) -> None:
    proof = json.loads((work / "statement.json").read_text())
    tampered = copy.deepcopy(proof)
    tampered["statement"]["lines"][0]["amount_micros"] = 39000
    (work / "tampered.json").write_text(json.dumps(tampered))
    run = cachet(work, "verify", "statement", "tampered.json", "--log-key", "log.pub")
    assert_fails(run, "verify statement", 1, "does not hash to its sha256", "changed")
    tampered["statement"]["sha256"] = statement_content_hash(tampered["statement"])
    (work / "rehashed.json").write_text(json.dumps(tampered))
    run = cachet(work, "verify", "statement", "rehashed.json", "--log-key", "log.pub")
    assert_fails(run, "verify statement", 1, "RootMismatchError", "is not leaf 2")


def test_another_log_key_or_origin_fails(work: Path) -> None:
    run = cachet(work, "verify", "statement", "statement.json", "--log-key", "other.pub")
    assert_fails(run, "verify statement", 1, "does not verify")
    run = cachet(work, "verify", "statement", "statement.json", "--log-key", "log.pub",
                 "--origin", "elsewhere.example")  # fmt: skip
    assert_fails(run, "verify statement", 1, "origin")


def test_unusable_input_fails_with_one_line(work: Path) -> None:
    run = cachet(work, "verify", "statement", "nope.json", "--log-key", "log.pub")
    assert_fails(run, "verify statement", 2, "does not exist")
    (work / "bad.json").write_text('{"v": 1, "statement": {}}')
    run = cachet(work, "verify", "statement", "bad.json", "--log-key", "log.pub")
    assert_fails(run, "verify statement", 2, "bad.json is not a valid statement proof")
    pending = pending_statement_obj(a_statement(), "its leaf is not in a signed checkpoint yet")
    (work / "pending.json").write_text(json.dumps(pending))
    run = cachet(work, "verify", "statement", "pending.json", "--log-key", "log.pub")
    assert_fails(run, "verify statement", 2, "not anchored yet", "fetch it again")
