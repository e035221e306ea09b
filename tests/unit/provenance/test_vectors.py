"""The committed JSON vectors (tests/vectors/) hold, and equal what scripts/gen_vectors.py makes."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pytest

from provenance import errors
from provenance.keys import parse_signing_key, parse_verifier_key
from provenance.merkle import leaf_hash, verify_consistency, verify_inclusion
from provenance.records import parse_record, record_from_obj, record_to_canonical_bytes
from provenance.signed_note import open_note

from .test_merkle import ref_mth

ROOT = Path(__file__).resolve().parents[3]
VECTORS = ROOT / "tests" / "vectors"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


def expect(expected: str, check: Any, *args: Any) -> None:
    if expected == "ok":
        check(*args)
        return
    error = getattr(errors, expected)
    with pytest.raises(error) as info:
        check(*args)
    assert type(info.value) is error


def hashes(items: list[str]) -> list[bytes]:
    return [bytes.fromhex(item) for item in items]


def test_committed_vectors_equal_generator_output() -> None:
    generated = runpy.run_path(str(ROOT / "scripts" / "gen_vectors.py"))["build_all"]()
    for name, data in generated.items():
        assert (VECTORS / name).read_bytes() == data, f"{name} is stale: run scripts/gen_vectors.py"


def test_merkle_roots_match_the_rfc9162_reference() -> None:
    for case in load("merkle.json")["roots"]:
        leaves = [f"leaf-{i}".encode() for i in range(case["size"])]
        assert ref_mth(leaves).hex() == case["root"]


def test_merkle_inclusion_vectors_rfc9162_2_1_3_2() -> None:
    cases = load("merkle.json")["inclusion"]
    assert {c["expected"] for c in cases} == {"ok", "RootMismatchError", "ProofFormatError"}
    for case in cases:
        expect(
            case["expected"],
            verify_inclusion,
            bytes.fromhex(case["leaf_hash"]),
            case["index"],
            case["size"],
            hashes(case["proof"]),
            bytes.fromhex(case["root"]),
        )


def test_merkle_corruptions_that_must_fail_do_fail() -> None:
    must_fail = ("bit-flipped", "truncated", "extra element", "wrong leaf", "31 bytes", "index ==")
    for kind in ("inclusion", "consistency"):
        for case in load("merkle.json")[kind]:
            if any(word in case["description"] for word in must_fail):
                assert case["expected"] != "ok", case["description"]


def test_merkle_consistency_vectors_rfc9162_2_1_4_2() -> None:
    for case in load("merkle.json")["consistency"]:
        expect(
            case["expected"],
            verify_consistency,
            case["size1"],
            case["size2"],
            hashes(case["proof"]),
            bytes.fromhex(case["root1"]),
            bytes.fromhex(case["root2"]),
        )


def test_record_vectors() -> None:
    vectors = load("records.json")
    for case in vectors["valid"]:
        record = record_from_obj(case["record"])
        assert record_to_canonical_bytes(record) == case["canonical"].encode()
        assert leaf_hash(case["canonical"].encode()).hex() == case["leaf_hash"]
        assert parse_record(case["canonical"].encode()) == record
    for case in vectors["invalid"]:
        expect(case["expected"], parse_record, case["json"].encode())


def test_signed_note_vectors_c2sp_signed_note() -> None:
    vectors = load("signed_note.json")
    verifiers = [parse_verifier_key(k["verifier"]) for k in vectors["keys"]]
    for key, verifier in zip(vectors["keys"], verifiers, strict=True):
        assert parse_signing_key(key["signer"]).verifier == verifier
        assert parse_signing_key(key["signer"]).seed.hex() == key["seed"]
    for case in vectors["cases"]:
        trusted = [verifiers[i] for i in case["trusted"]]
        expect(case["expected"], open_note, case["note"].encode(), trusted)
        if case["expected"] == "ok":
            assert open_note(case["note"].encode(), trusted) == vectors["text"]
