"""`cachet keygen`, `cachet manifest create|sign|verify`, `cachet verify receipt` as real
processes in temporary folders: the happy paths and every bad input the issue names (missing
file, malformed JSON, wrong key, tampered manifest, tampered file, truncated key, 0644 key,
overwrite without --force). Failures must be ONE stderr line ``cachet <cmd>: <reason>``."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from provenance.batches import ZERO_HASH_HEX, batch_log_leaf_hash, header_hash, seal_batch
from provenance.checkpoint import Checkpoint, format_checkpoint
from provenance.keys import VerifierKey, format_verifier_key, generate_signing_key
from provenance.merkle import MerkleTree
from provenance.receipts import Receipt, format_receipt, receipt_to_obj
from provenance.records import Record, record_leaf_hash
from provenance.signed_note import sign_note

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, object]:
        obj = json.loads(self.out)
        assert isinstance(obj, dict)
        return obj


def cachet(cwd: Path, *args: str) -> Run:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "cachet", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def assert_fails(run: Run, command: str, code: int, *needles: str) -> None:
    """Non-zero exit and exactly one stderr line ``cachet <command>: <reason>``."""
    assert run.code == code, (run.code, run.err)
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith(f"cachet {command}: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    content = tmp_path / "content"
    (content / "video").mkdir(parents=True)
    (content / "a.txt").write_bytes(b"hello\n")
    (content / "video" / "clip.mp4").write_bytes(b"\x00\x01" * 1000)
    (content / "blob").write_bytes(b"raw")
    (content / ".hidden").write_bytes(b"skip me")
    (content / ".git").mkdir()
    (content / ".git" / "config").write_bytes(b"skip me too")
    return tmp_path


def keygen(cwd: Path, name: str = "alice", out: str = "alice.key") -> dict[str, object]:
    run = cachet(cwd, "keygen", "--name", name, "--out", out, "--json")
    assert run.code == 0, run.err
    return run.json()


def create(cwd: Path, *extra: str, key: str = "alice.key.pub", out: str = "m.json") -> Run:
    return cachet(
        cwd, "manifest", "create", "content", "--creator", "alice", "--key", key,
        "--license", "CC-BY-4.0", "--training-use", "allowed", "--out", out, *extra,
    )  # fmt: skip


def signed_manifest(cwd: Path) -> None:
    keygen(cwd)
    assert create(cwd).code == 0
    run = cachet(cwd, "manifest", "sign", "m.json", "--key", "alice.key", "--out", "s.json")
    assert run.code == 0, run.err


# --- keygen -------------------------------------------------------------------------------------


def test_keygen_writes_private_0600_and_verifier_key(tmp_path: Path) -> None:
    """C2SP signed-note key formats; the private key never appears in the output."""
    run = cachet(tmp_path, "keygen", "--name", "alice", "--out", "alice.key")
    assert run.code == 0, run.err
    private = (tmp_path / "alice.key").read_text()
    public = (tmp_path / "alice.key.pub").read_text().strip()
    assert private.startswith("PRIVATE+KEY+alice+")
    assert stat.S_IMODE((tmp_path / "alice.key").stat().st_mode) == 0o600
    key_id = public.split("+")[1]
    assert public.startswith(f"alice+{key_id}+")
    assert f"key id: {key_id}" in run.out
    assert public in run.out
    # PRIVATE+KEY+<name>+<key id>+<base64 seed>: base64 may itself hold '+', so split from the left.
    seed = private.strip().split("+", 4)[4]
    assert seed
    assert seed not in run.out + run.err


def test_keygen_json_and_fresh_randomness(tmp_path: Path) -> None:
    first = keygen(tmp_path, out="one.key")
    second = keygen(tmp_path, out="two.key")
    assert first["key_id"] != second["key_id"]
    assert first["verifier_key"] == (tmp_path / "one.key.pub").read_text().strip()
    assert "PRIVATE" not in json.dumps(first)


def test_keygen_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    keygen(tmp_path)
    before = (tmp_path / "alice.key").read_bytes()
    run = cachet(tmp_path, "keygen", "--name", "alice", "--out", "alice.key")
    assert_fails(run, "keygen", 2, "already exists", "--force")
    assert (tmp_path / "alice.key").read_bytes() == before
    (tmp_path / "alice.key").unlink()  # a lone .pub still blocks: never half-replace a pair
    run = cachet(tmp_path, "keygen", "--name", "alice", "--out", "alice.key")
    assert_fails(run, "keygen", 2, "alice.key.pub already exists")
    assert not (tmp_path / "alice.key").exists()
    run = cachet(tmp_path, "keygen", "--name", "alice", "--out", "alice.key", "--force")
    assert run.code == 0, run.err
    assert stat.S_IMODE((tmp_path / "alice.key").stat().st_mode) == 0o600


def test_keygen_refuses_a_bad_name(tmp_path: Path) -> None:
    run = cachet(tmp_path, "keygen", "--name", "a+b", "--out", "k")
    assert_fails(run, "keygen", 2, "invalid key name")
    assert not (tmp_path / "k").exists()


# --- manifest create / sign / verify ------------------------------------------------------------


def test_create_sign_verify_round_trip(work: Path) -> None:
    keygen(work)
    created = create(work, "--json")
    assert created.code == 0, created.err
    unsigned = json.loads((work / "m.json").read_bytes())
    assert "signature" not in unsigned
    signed = cachet(
        work, "manifest", "sign", "m.json", "--key", "alice.key", "--out", "s.json", "--json"
    )
    assert signed.code == 0, signed.err
    verified = cachet(
        work, "manifest", "verify", "s.json", "--key", "alice.key.pub", "--dir", "content"
    )
    assert verified.code == 0, verified.err
    mid = created.json()["manifest_id"]
    assert signed.json()["manifest_id"] == mid
    assert f"manifest id: {mid}" in verified.out
    assert "signature" in json.loads((work / "s.json").read_bytes())


def test_create_walks_sorted_regular_files_and_skips_dotfiles(work: Path) -> None:
    keygen(work)
    assert create(work, "--base-path", "/media/").code == 0
    items = json.loads((work / "m.json").read_bytes())["items"]
    assert [i["path"] for i in items] == ["/media/a.txt", "/media/blob", "/media/video/clip.mp4"]
    by_path = {i["path"]: i for i in items}
    clip = by_path["/media/video/clip.mp4"]
    assert clip["media_type"] == "video/mp4"
    assert clip["size_bytes"] == 2000
    assert clip["content_id"] == "sha256:" + hashlib.sha256(b"\x00\x01" * 1000).hexdigest()
    assert by_path["/media/a.txt"]["media_type"] == "text/plain"
    assert by_path["/media/blob"]["media_type"] == "application/octet-stream"


def test_create_hashes_a_multi_chunk_file_exactly(work: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # spans several 1 MiB read chunks
    (work / "content" / "big.bin").write_bytes(data)
    keygen(work)
    assert create(work).code == 0
    items = json.loads((work / "m.json").read_bytes())["items"]
    big = next(i for i in items if i["path"] == "/big.bin")
    assert big["content_id"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert big["size_bytes"] == len(data)


def test_create_terms_version_and_supersedes(work: Path) -> None:
    keygen(work)
    extra = ["--training-use", "on_terms", "--training-terms", "ask first"]
    extra += ["--per-hit-micros", "10", "--per-gb-micros", "20000", "--currency", "EUR"]
    extra += ["--supersedes", "sha256:" + "ab" * 32, "--version", "2"]
    assert create(work, *extra).code == 0
    obj = json.loads((work / "m.json").read_bytes())
    assert obj["payout_terms"] == {"per_hit_micros": 10, "per_gb_micros": 20000, "currency": "EUR"}
    assert (obj["training_use"], obj["training_terms"]) == ("on_terms", "ask first")
    assert (obj["version"], obj["supersedes"]) == (2, "sha256:" + "ab" * 32)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--training-use", "on_terms"], "training_terms"),
        (["--version", "2"], "supersedes"),
        (["--per-hit-micros", "-1"], "micros"),
        (["--base-path", "media"], "--base-path"),
    ],
)
def test_create_refuses_bad_terms(work: Path, extra: list[str], needle: str) -> None:
    keygen(work)
    assert_fails(create(work, *extra), "manifest create", 2, needle)
    assert not (work / "m.json").exists()


def test_create_refuses_a_key_not_named_for_the_creator(work: Path) -> None:
    keygen(work, name="bob", out="bob.key")
    assert_fails(create(work, key="bob.key.pub"), "manifest create", 2, "not named for")


def test_create_refuses_missing_or_empty_dir(work: Path) -> None:
    keygen(work)
    for child in list((work / "content").rglob("*"))[::-1]:
        child.rmdir() if child.is_dir() else child.unlink()
    assert_fails(create(work), "manifest create", 2, "no regular files")
    (work / "content").rmdir()
    assert_fails(create(work), "manifest create", 2, "not a directory")


def test_create_refuses_to_overwrite_output_without_force(work: Path) -> None:
    keygen(work)
    (work / "m.json").write_text("keep")
    assert_fails(create(work), "manifest create", 2, "already exists")
    assert (work / "m.json").read_text() == "keep"
    assert create(work, "--force").code == 0


def test_missing_files_are_one_line_errors(work: Path) -> None:
    keygen(work)
    run = cachet(work, "manifest", "sign", "nope.json", "--key", "alice.key", "--out", "s")
    assert_fails(run, "manifest sign", 2, "nope.json does not exist")
    run = cachet(work, "manifest", "verify", "nope.json", "--key", "alice.key.pub")
    assert_fails(run, "manifest verify", 2, "does not exist")
    assert_fails(create(work, key="missing.pub"), "manifest create", 2, "does not exist")
    run = cachet(work, "verify", "receipt", "nope.json", "--log-key", "alice.key.pub")
    assert_fails(run, "verify receipt", 2, "does not exist")


@pytest.mark.parametrize("garbage", [b"", b"{", b"[1,2]", b'{"v":1}', b"\xff\xfe", b"null"])
def test_malformed_json_is_a_one_line_error(work: Path, garbage: bytes) -> None:
    keygen(work)
    (work / "bad.json").write_bytes(garbage)
    run = cachet(work, "manifest", "sign", "bad.json", "--key", "alice.key", "--out", "s")
    assert_fails(run, "manifest sign", 2, "bad.json")
    run = cachet(work, "manifest", "verify", "bad.json", "--key", "alice.key.pub")
    assert_fails(run, "manifest verify", 2, "bad.json")
    run = cachet(work, "verify", "receipt", "bad.json", "--log-key", "alice.key.pub")
    assert_fails(run, "verify receipt", 2, "bad.json")
    assert not (work / "s").exists()


def test_sign_refuses_the_wrong_key(work: Path) -> None:
    keygen(work)
    assert create(work).code == 0
    keygen(work, out="other.key")  # same name, different key: a different key id
    run = cachet(work, "manifest", "sign", "m.json", "--key", "other.key", "--out", "s.json")
    assert_fails(run, "manifest sign", 1, "wrong key")
    assert not (work / "s.json").exists()


def test_verify_refuses_the_wrong_key(work: Path) -> None:
    signed_manifest(work)
    keygen(work, out="other.key")
    run = cachet(work, "manifest", "verify", "s.json", "--key", "other.key.pub")
    assert_fails(run, "manifest verify", 1, "UnknownKeyError")
    run = cachet(work, "manifest", "verify", "s.json", "--key", "other.key.pub", "--key",
                 "alice.key.pub")  # fmt: skip
    assert run.code == 0, run.err  # rotation: any listed key


def test_verify_catches_a_tampered_manifest(work: Path) -> None:
    signed_manifest(work)
    obj = json.loads((work / "s.json").read_bytes())
    obj["items"][0]["content_id"] = "sha256:" + "00" * 32
    (work / "s.json").write_text(json.dumps(obj))
    run = cachet(work, "manifest", "verify", "s.json", "--key", "alice.key.pub")
    assert_fails(run, "manifest verify", 1, "SignatureError")


def test_verify_dir_reports_changed_missing_and_extra_files(work: Path) -> None:
    signed_manifest(work)
    (work / "content" / "a.txt").write_bytes(b"hellO\n")
    (work / "content" / "blob").unlink()
    (work / "content" / "new.txt").write_bytes(b"new")
    run = cachet(work, "manifest", "verify", "s.json", "--key", "alice.key.pub", "--dir",
                 "content")  # fmt: skip
    assert run.code == 1
    lines = run.err.splitlines()
    assert lines[0] == (
        "cachet manifest verify: content does not match the manifest: 1 changed, 1 missing, 1 extra"
    )
    assert [line.strip() for line in lines[1:]] == ["changed /a.txt", "missing /blob",
                                                    "extra /new.txt"]  # fmt: skip


def test_verify_dir_json_lists_the_differences(work: Path) -> None:
    signed_manifest(work)
    (work / "content" / "a.txt").write_bytes(b"same size")
    run = cachet(work, "manifest", "verify", "s.json", "--key", "alice.key.pub", "--dir",
                 "content", "--json")  # fmt: skip
    assert run.code == 1
    assert run.json()["differences"] == ["changed /a.txt"]


def test_truncated_key_file_is_refused(work: Path) -> None:
    signed_manifest(work)
    text = (work / "alice.key").read_text()
    (work / "alice.key").write_text(text[:30])
    run = cachet(work, "manifest", "sign", "m.json", "--key", "alice.key", "--out", "t.json")
    assert_fails(run, "manifest sign", 2, "not a valid private key")
    pub = (work / "alice.key.pub").read_text()
    (work / "alice.key.pub").write_text(pub[:20])
    run = cachet(work, "manifest", "verify", "s.json", "--key", "alice.key.pub")
    assert_fails(run, "manifest verify", 2, "not a valid verifier key")


def test_world_readable_private_key_is_refused(work: Path) -> None:
    keygen(work)
    assert create(work).code == 0
    (work / "alice.key").chmod(0o644)
    run = cachet(work, "manifest", "sign", "m.json", "--key", "alice.key", "--out", "s.json")
    assert_fails(run, "manifest sign", 2, "mode 0644", "chmod 600")
    assert not (work / "s.json").exists()
    assert text_not_leaked(work, run)


def text_not_leaked(work: Path, run: Run) -> bool:
    # PRIVATE+KEY+<name>+<id>+<seed>: the seed is base64, which may itself hold a "+"
    seed = (work / "alice.key").read_text().strip().split("+", 4)[4]
    return seed not in run.out + run.err


def test_help_explains_every_command(tmp_path: Path) -> None:
    for args in (["keygen"], ["manifest"], ["manifest", "create"], ["manifest", "sign"],
                 ["manifest", "verify"], ["verify"], ["verify", "receipt"]):  # fmt: skip
        run = cachet(tmp_path, *args, "--help")
        assert run.code == 0, (args, run.err)
        assert "usage: cachet " + " ".join(args) in run.out


# --- verify receipt -----------------------------------------------------------------------------

EDGE_KEY = generate_signing_key("edge-1", b"\x41" * 32)
LOG_KEY = generate_signing_key("log.example", b"\x42" * 32)


def make_receipt(batch_index: int = 1, record_index: int = 2) -> Receipt:
    """A log of 3 batches of 5 records; the receipt of one record."""
    batches, prev = [], ZERO_HASH_HEX
    for seq in range(3):
        records = [
            Record(
                f"req-{seq}-{i}",
                f"2026-11-27T03:00:0{i}.000Z",
                "edge-1",
                "GET",
                200,
                "hit",
                "memory",
                100 + i,
                0,
            )
            for i in range(5)
        ]
        sealed = seal_batch(records, "edge-1", seq, prev, EDGE_KEY)
        prev = header_hash(sealed.header)
        batches.append(sealed)
    log = MerkleTree([batch_log_leaf_hash(b.header, b.signature) for b in batches])
    note = sign_note(format_checkpoint(Checkpoint("log.example", 3, log.root())), [LOG_KEY])
    sealed = batches[batch_index]
    in_batch = MerkleTree([record_leaf_hash(r) for r in sealed.records])
    return Receipt(
        record=sealed.records[record_index],
        header=sealed.header,
        signature=sealed.signature,
        record_index=record_index,
        record_proof=tuple(in_batch.inclusion_proof(record_index)),
        batch_index=batch_index,
        batch_proof=tuple(log.inclusion_proof(batch_index)),
        checkpoint=note,
    )


@pytest.fixture
def receipt_dir(tmp_path: Path) -> Path:
    (tmp_path / "receipt.json").write_bytes(format_receipt(make_receipt()))
    (tmp_path / "log.pub").write_text(cachet_key(LOG_KEY.verifier))
    (tmp_path / "edge.pub").write_text(cachet_key(EDGE_KEY.verifier))
    return tmp_path


def cachet_key(key: VerifierKey) -> str:
    return format_verifier_key(key) + "\n"


def test_verify_receipt_prints_what_was_verified(receipt_dir: Path) -> None:
    run = cachet(receipt_dir, "verify", "receipt", "receipt.json", "--log-key", "log.pub",
                 "--edge-key", "edge.pub", "--origin", "log.example")  # fmt: skip
    assert run.code == 0, run.err
    assert "request req-1-2" in run.out
    assert "seq 1" in run.out
    assert "size 3" in run.out
    assert "edge signature checked" in run.out


def test_verify_receipt_json(receipt_dir: Path) -> None:
    run = cachet(receipt_dir, "verify", "receipt", "receipt.json", "--log-key", "log.pub",
                 "--json")  # fmt: skip
    assert run.code == 0, run.err
    obj = run.json()
    assert obj["request_id"] == "req-1-2"
    assert (obj["batch_seq"], obj["checkpoint_size"], obj["edge"]) == (1, 3, "edge-1")
    assert obj["edge_signature_checked"] is False
    assert isinstance(obj["root"], str) and len(obj["root"]) == 64


def test_verify_receipt_with_the_wrong_log_key(receipt_dir: Path) -> None:
    other = generate_signing_key("log.example", b"\x43" * 32)
    (receipt_dir / "other.pub").write_text(cachet_key(other.verifier))
    run = cachet(receipt_dir, "verify", "receipt", "receipt.json", "--log-key", "other.pub")
    assert_fails(run, "verify receipt", 1, "does not verify")


def test_verify_receipt_with_the_wrong_origin(receipt_dir: Path) -> None:
    run = cachet(receipt_dir, "verify", "receipt", "receipt.json", "--log-key", "log.pub",
                 "--origin", "other.log")  # fmt: skip
    assert_fails(run, "verify receipt", 1, "origin")


def test_verify_receipt_catches_a_tampered_record(receipt_dir: Path) -> None:
    obj = receipt_to_obj(make_receipt())
    record = obj["record"]
    assert isinstance(record, dict)
    record["bytes"] = 999_999
    (receipt_dir / "receipt.json").write_text(json.dumps(obj))
    run = cachet(receipt_dir, "verify", "receipt", "receipt.json", "--log-key", "log.pub")
    assert_fails(run, "verify receipt", 1, "RootMismatchError")


def test_verify_receipt_with_an_unknown_edge_key(receipt_dir: Path) -> None:
    other = generate_signing_key("edge-1", b"\x44" * 32)
    (receipt_dir / "edge2.pub").write_text(cachet_key(other.verifier))
    run = cachet(receipt_dir, "verify", "receipt", "receipt.json", "--log-key", "log.pub",
                 "--edge-key", "edge2.pub")  # fmt: skip
    assert_fails(run, "verify receipt", 1, "UnknownKeyError")
