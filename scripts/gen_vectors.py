#!/usr/bin/env python3
"""Write the provenance test vectors: tests/vectors/{merkle,records,signed_note}.json.

Run: .venv/bin/python scripts/gen_vectors.py   (tests/unit/provenance/test_vectors.py checks
that the committed files equal this script's output, and that each case has its outcome)
Every value is deterministic: keys come from fixed seeds, leaves from fixed strings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provenance.checkpoint import Checkpoint, format_checkpoint
from provenance.errors import CachetError
from provenance.keys import format_signing_key, format_verifier_key, generate_signing_key
from provenance.merkle import (
    MerkleTree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from provenance.records import Record, record_to_canonical_bytes, record_to_obj
from provenance.signed_note import sign_note

VECTORS = Path(__file__).resolve().parent.parent / "tests" / "vectors"
MAX_SIZE = 20


def outcome(check: Callable[..., None], *args: object) -> str:
    try:
        check(*args)
    except CachetError as exc:
        return type(exc).__name__
    return "ok"


def flip(proof: list[bytes], which: int) -> list[bytes]:
    bad = list(proof)
    bad[which] = bytes([bad[which][0] ^ 0x01]) + bad[which][1:]
    return bad


def tree_leaves(size: int) -> list[bytes]:
    return [leaf_hash(f"leaf-{i}".encode()) for i in range(size)]


def inclusion_cases() -> list[dict[str, object]]:
    cases: list[dict[str, object]] = []
    for size in range(1, MAX_SIZE + 1):
        leaves = tree_leaves(size)
        tree = MerkleTree(leaves)
        root = tree.root()
        for index in sorted({0, 1, size // 2, size - 2, size - 1} & set(range(size))):
            proof = tree.inclusion_proof(index)
            variants: list[tuple[str, bytes, int, int, list[bytes]]] = [
                ("valid", leaves[index], index, size, proof)
            ]
            if index in (0, size // 2, size - 1):
                variants += [
                    ("extra element appended", leaves[index], index, size, [*proof, root]),
                    ("wrong leaf hash", leaf_hash(b"other"), index, size, proof),
                    ("size + 1", leaves[index], index, size + 1, proof),
                    ("index == size", leaves[index], size, size, proof),
                ]
                if proof:
                    variants += [
                        ("first hash bit-flipped", leaves[index], index, size, flip(proof, 0)),
                        ("last hash bit-flipped", leaves[index], index, size, flip(proof, -1)),
                        ("truncated by one", leaves[index], index, size, proof[:-1]),
                        (
                            "hash cut to 31 bytes",
                            leaves[index],
                            index,
                            size,
                            [proof[0][:31], *proof[1:]],
                        ),
                    ]
                if size > index + 1:
                    variants.append(("size - 1", leaves[index], index, size - 1, proof))
                if index + 1 < size:
                    variants.append(("index + 1", leaves[index], index + 1, size, proof))
            for description, leaf, idx, sz, prf in variants:
                cases.append(
                    {
                        "description": f"inclusion of leaf {index} of {size}: {description}",
                        "leaf_hash": leaf.hex(),
                        "index": idx,
                        "size": sz,
                        "proof": [p.hex() for p in prf],
                        "root": root.hex(),
                        "expected": outcome(verify_inclusion, leaf, idx, sz, prf, root),
                    }
                )
    return cases


def consistency_cases() -> list[dict[str, object]]:
    cases: list[dict[str, object]] = []
    for size2 in range(1, MAX_SIZE + 1):
        leaves = tree_leaves(size2)
        tree = MerkleTree(leaves)
        root2 = tree.root()
        for size1 in sorted({1, 2, size2 // 2, size2 - 1, size2} & set(range(1, size2 + 1))):
            root1 = tree.subtree_root(0, size1)
            proof = tree.consistency_proof(size1)
            variants: list[tuple[str, int, int, list[bytes], bytes, bytes]] = [
                ("valid", size1, size2, proof, root1, root2)
            ]
            if size1 in (1, size2 // 2, size2 - 1) and size1 < size2:
                variants += [
                    ("first hash bit-flipped", size1, size2, flip(proof, 0), root1, root2),
                    ("last hash bit-flipped", size1, size2, flip(proof, -1), root1, root2),
                    ("truncated by one", size1, size2, proof[:-1], root1, root2),
                    ("extra element appended", size1, size2, [*proof, root2], root1, root2),
                    ("old size + 1", size1 + 1, size2, proof, root1, root2),
                    ("new size + 1", size1, size2 + 1, proof, root1, root2),
                    ("old size > new size", size2 + 1, size2, proof, root1, root2),
                    ("roots swapped", size1, size2, proof, root2, root1),
                    ("empty proof", size1, size2, [], root1, root2),
                ]
                if size1 > 1:
                    variants.append(("old size - 1", size1 - 1, size2, proof, root1, root2))
            for description, s1, s2, prf, r1, r2 in variants:
                cases.append(
                    {
                        "description": f"consistency {size1} -> {size2}: {description}",
                        "size1": s1,
                        "size2": s2,
                        "proof": [p.hex() for p in prf],
                        "root1": r1.hex(),
                        "root2": r2.hex(),
                        "expected": outcome(verify_consistency, s1, s2, prf, r1, r2),
                    }
                )
    return cases


def merkle_vectors() -> dict[str, object]:
    return {
        "about": "RFC 9162 §2.1; leaf i of every tree is leaf_hash(UTF-8 'leaf-<i>'). Some "
        "'size +/- 1' cases are 'ok': an inclusion proof does not bind the tree size when the "
        "path has the same shape; the signed checkpoint binds size and root together.",
        "roots": [
            {"size": n, "root": MerkleTree(tree_leaves(n)).root().hex()}
            for n in range(MAX_SIZE + 1)
        ],
        "inclusion": inclusion_cases(),
        "consistency": consistency_cases(),
    }


def record_vectors() -> dict[str, object]:
    base: dict[str, Any] = {
        "request_id": "req-0001",
        "ts": "2026-11-27T03:38:49.123Z",
        "edge": "edge-1",
        "method": "GET",
        "status": 200,
        "cache": "hit",
        "tier": "memory",
        "bytes": 5120,
        "origin_bytes": 0,
    }
    miss: dict[str, Any] = {
        **base,
        "request_id": 'q"uote\\back',
        "cache": "miss",
        "tier": "origin",
        "origin_bytes": 5120,
    }
    records = [
        Record(**base),
        Record(
            **miss,
            content_id="sha256:" + "0f" * 32,
            creator="alice",
            manifest="sha256:" + "a1" * 32,
            sample_rate="0.25",
            use="training",
            upstream_of="edge-child",
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            cache_key_hash="sha256:" + "c4" * 32,
        ),
        Record(**{**base, "cache": "error", "tier": "none", "status": 502, "bytes": 0}),
    ]
    valid = [
        {
            "record": record_to_obj(r),
            "canonical": record_to_canonical_bytes(r).decode(),
            "leaf_hash": leaf_hash(record_to_canonical_bytes(r)).hex(),
        }
        for r in records
    ]
    good = record_to_obj(records[0])
    changes: list[tuple[str, dict[str, object]]] = [
        ("status out of range", {"status": 700}),
        ("bytes as a string", {"bytes": "5120"}),
        ("ts without milliseconds", {"ts": "2026-11-27T03:38:49Z"}),
        ("unknown cache outcome", {"cache": "HIT"}),
        ("unknown field", {"client_ip": "192.0.2.1"}),
        ("sample_rate as a number", {"sample_rate": 1}),
        ("manifest without creator", {"manifest": "sha256:" + "a1" * 32}),
    ]
    invalid = [
        {
            "description": description,
            "json": json.dumps({**good, **change}),
            "expected": "FormatError",
        }
        for description, change in changes
    ]
    return {
        "about": "Record contract; leaf_hash = RFC 9162 leaf of canonical",
        "valid": valid,
        "invalid": invalid,
    }


def signed_note_vectors() -> dict[str, object]:
    log = generate_signing_key("log.example/cachet", bytes(range(32)))
    witness = generate_signing_key("witness.example/w1", bytes(range(32, 64)))
    text = format_checkpoint(Checkpoint("log.example/cachet", 7, bytes(range(32))))
    note = sign_note(text, [log, witness])
    keys = [
        {
            "name": k.name,
            "seed": k.seed.hex(),
            "signer": format_signing_key(k),
            "verifier": format_verifier_key(k.verifier),
        }
        for k in (log, witness)
    ]
    cases = [
        ("signed by log and witness, log trusted", note, [0], "ok"),
        ("signed by log and witness, witness trusted", note, [1], "ok"),
        ("no trusted key signed", note, [], "UnknownKeyError"),
        ("text tampered", note.replace("\n7\n", "\n8\n", 1), [0], "SignatureError"),
        ("hyphen instead of em dash", note.replace("\u2014", "-"), [0], "FormatError"),
        ("missing final newline", note[:-1], [0], "FormatError"),
        ("no blank line", text, [0], "FormatError"),
    ]
    return {
        "about": "C2SP signed-note over a C2SP tlog-checkpoint body",
        "keys": keys,
        "text": text,
        "cases": [
            {"description": d, "note": n, "trusted": t, "expected": e} for d, n, t, e in cases
        ],
    }


def build_all() -> dict[str, bytes]:
    """File name -> exact file bytes."""
    files = {
        "merkle.json": merkle_vectors(),
        "records.json": record_vectors(),
        "signed_note.json": signed_note_vectors(),
    }
    return {name: dump_json(value).encode() for name, value in files.items()}


def dump_json(value: object, depth: int = 0) -> str:
    """JSON with one case per line: readable diffs without a line per hash."""
    pad = " " * depth
    if isinstance(value, dict) and depth < 1:
        items = [f"{pad} {json.dumps(k)}: {dump_json(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}" + ("\n" if depth == 0 else "")
    if isinstance(value, list) and value and isinstance(value[0], dict):
        lines = [f"{pad} {json.dumps(item, ensure_ascii=False)}" for item in value]
        return "[\n" + ",\n".join(lines) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=False)


def main() -> None:
    VECTORS.mkdir(parents=True, exist_ok=True)
    for name, data in build_all().items():
        (VECTORS / name).write_bytes(data)
        print(f"wrote {VECTORS / name} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
