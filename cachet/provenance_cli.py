"""`cachet keygen`, `cachet manifest create|sign|verify`, `cachet verify receipt|statement`: the
I/O shell around `provenance/` for creators and auditors.

Exit status: 0 success; 1 the thing checked is wrong (bad signature, wrong key, tampered file or
receipt); 2 the input could not be used (missing or malformed file, too-open key, usage). Every
failure prints one line ``cachet <command>: <reason>`` on stderr (a directory mismatch adds one
detail line per file after it). Private keys never reach stdout or stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeAlias

from cachet import content_dir, keyfiles
from provenance.canonical_json import canonicalize, parse
from provenance.errors import CachetError, FormatError, VerificationError
from provenance.keys import KeyRing, format_verifier_key, generate_signing_key, is_key_name
from provenance.manifests import (
    Manifest,
    PayoutTerms,
    format_signed_manifest,
    manifest_from_obj,
    manifest_id,
    manifest_to_obj,
    parse_manifest,
    sign_manifest,
    verify_manifest,
)
from provenance.receipts import parse_receipt, verify_receipt
from provenance.records import format_timestamp
from provenance.statement_leaves import (
    PendingStatementError,
    parse_statement_proof,
    verify_statement_proof,
)

Handler = Callable[[argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EXIT_VERIFY_FAILED = 1
EXIT_BAD_INPUT = 2
SEED_SIZE_BYTES = 32
MAX_MANIFEST_BYTES = 64 << 20
MAX_RECEIPT_BYTES = 4 << 20
OUTPUT_FILE_MODE = 0o644
_EXIT_EPILOG = "Exit status: 0 ok, 1 verification failed, 2 unusable input."


class CommandFailed(Exception):
    """A command's failure: a one-line reason, an exit status, optional detail lines."""

    def __init__(
        self, reason: str, exit_code: int = EXIT_BAD_INPUT, details: Iterable[str] = ()
    ) -> None:
        super().__init__(reason)
        self.exit_code = exit_code
        self.details = tuple(details)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _guarded(command: str, run: Handler) -> Handler:
    """Run a command; turn every expected failure into its one stderr line and exit status."""

    def handler(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except CommandFailed as exc:
            reason, code, details = str(exc), exc.exit_code, exc.details
        except VerificationError as exc:
            reason, code, details = f"{type(exc).__name__}: {exc}", EXIT_VERIFY_FAILED, ()
        except CachetError as exc:
            reason, code, details = str(exc), EXIT_BAD_INPUT, ()
        print(f"cachet {command}: {_one_line(reason)}", file=sys.stderr)
        for line in details:
            print(f"  {_one_line(line)}", file=sys.stderr)
        return code

    return handler


def _emit(args: argparse.Namespace, obj: dict[str, object], lines: Iterable[str]) -> None:
    if args.json:
        print(json.dumps(obj, indent=2, sort_keys=True))
    else:
        for line in lines:
            print(line)


def _read_input(path: Path, what: str, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise CommandFailed(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise CommandFailed(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise CommandFailed(f"{what} {path} is larger than {max_bytes} bytes")
    return data


def _write_output(path: Path, data: bytes, force: bool) -> None:
    keyfiles.write_file_atomically(path, data, OUTPUT_FILE_MODE, force=force)


# --- keygen -------------------------------------------------------------------------------------


def _run_keygen(args: argparse.Namespace) -> int:
    if not is_key_name(args.name):
        raise CommandFailed(f"invalid key name {args.name!r}: no whitespace, '+' or control chars")
    private_path = Path(args.out)
    public_path = keyfiles.verifier_key_path(private_path)
    for path in (private_path, public_path):
        if not args.force and os.path.lexists(path):
            raise CommandFailed(f"{path} already exists (use --force to overwrite)")
    key = generate_signing_key(args.name, os.urandom(SEED_SIZE_BYTES))
    keyfiles.write_private_key(private_path, key, force=args.force)
    try:
        keyfiles.write_verifier_key(public_path, key.verifier, force=args.force)
    except keyfiles.KeyFileError:
        if not args.force:
            private_path.unlink(missing_ok=True)  # ours, just made: leave no half-made pair
        raise
    verifier = format_verifier_key(key.verifier)
    obj: dict[str, object] = {
        "name": key.name,
        "key_id": key.key_id.hex(),
        "verifier_key": verifier,
        "private_key_file": str(private_path),
        "verifier_key_file": str(public_path),
    }
    _emit(
        args,
        obj,
        [
            f"key id: {key.key_id.hex()}",
            f"verifier key: {verifier}",
            f"private key written to {private_path} (mode 0600; keep it secret)",
            f"verifier key written to {public_path}",
        ],
    )
    return 0


# --- manifest create ----------------------------------------------------------------------------


def _run_manifest_create(args: argparse.Namespace) -> int:
    key = keyfiles.read_any_verifier_key(Path(args.key))
    if key.name != args.creator:
        raise CommandFailed(f"key {key.name}+{key.key_id_hex} is not named for {args.creator!r}")
    items = content_dir.items_from_dir(Path(args.dir), args.base_path)
    terms = PayoutTerms(args.per_hit_micros, args.per_gb_micros, args.currency)
    try:
        manifest = Manifest(
            creator=args.creator,
            key_id=key.key_id_hex,
            items=tuple(items),
            license=args.license,
            training_use=args.training_use,
            payout_terms=terms,
            created=format_timestamp(datetime.now(UTC)),
            version=args.version,
            supersedes=args.supersedes,
            training_terms=args.training_terms,
        )
    except ValueError as exc:
        raise CommandFailed(str(exc)) from None
    _write_output(Path(args.out), canonicalize(manifest_to_obj(manifest)), args.force)
    return _report_manifest(args, manifest, f"wrote unsigned manifest {args.out}")


def _report_manifest(args: argparse.Namespace, manifest: Manifest, first_line: str) -> int:
    mid = manifest_id(manifest)
    total_bytes = sum(item.size_bytes for item in manifest.items)
    obj: dict[str, object] = {
        "manifest_id": mid,
        "creator": manifest.creator,
        "key_id": manifest.key_id,
        "version": manifest.version,
        "items": len(manifest.items),
        "size_bytes": total_bytes,
    }
    lines = [first_line, f"manifest id: {mid}", f"items: {len(manifest.items)} ({total_bytes} B)"]
    _emit(args, obj, lines)
    return 0


# --- manifest sign / verify ---------------------------------------------------------------------


def _read_unsigned_manifest(path: Path) -> Manifest:
    obj = parse(_read_input(path, "manifest", MAX_MANIFEST_BYTES))
    if isinstance(obj, dict):
        obj.pop("signature", None)  # re-signing replaces any old signature
    try:
        return manifest_from_obj(obj)
    except FormatError as exc:
        raise CommandFailed(f"{path} is not a valid manifest: {exc}") from None


def _run_manifest_sign(args: argparse.Namespace) -> int:
    try:
        manifest = _read_unsigned_manifest(Path(args.manifest))
    except FormatError as exc:
        raise CommandFailed(f"{args.manifest} is not valid JSON: {exc}") from None
    key = keyfiles.read_signing_key(Path(args.key))
    if key.name != manifest.creator or key.key_id.hex() != manifest.key_id:
        raise CommandFailed(
            f"wrong key: {key.name}+{key.key_id.hex()} is not the manifest's key "
            f"{manifest.creator}+{manifest.key_id}",
            EXIT_VERIFY_FAILED,
        )
    signed = sign_manifest(manifest, key)
    _write_output(Path(args.out), format_signed_manifest(signed), args.force)
    return _report_manifest(args, manifest, f"wrote signed manifest {args.out}")


def _summarise(differences: list[str], root: str) -> str:
    counts = {kind: sum(d.startswith(kind + " ") for d in differences) for kind in _KINDS}
    text = ", ".join(f"{counts[kind]} {kind}" for kind in _KINDS)
    return f"{root} does not match the manifest: {text}"


_KINDS = ("changed", "missing", "extra")


def _run_manifest_verify(args: argparse.Namespace) -> int:
    data = _read_input(Path(args.manifest), "manifest", MAX_MANIFEST_BYTES)
    try:
        signed = parse_manifest(data)
    except FormatError as exc:
        raise CommandFailed(f"{args.manifest} is not a valid signed manifest: {exc}") from None
    keys = KeyRing(keyfiles.read_any_verifier_key(Path(path)) for path in args.key)
    verify_manifest(signed, keys)
    manifest = signed.manifest
    if args.dir is not None:
        differences = content_dir.compare_dir(manifest.items, Path(args.dir), args.base_path)
        if differences:
            if args.json:
                print(
                    json.dumps(
                        {
                            "manifest_id": manifest_id(manifest),
                            "ok": False,
                            "differences": differences,
                        },
                        indent=2,
                    )
                )
            raise CommandFailed(_summarise(differences, args.dir), EXIT_VERIFY_FAILED, differences)
    checked = f" and every file in {args.dir} matches" if args.dir is not None else ""
    return _report_manifest(args, manifest, f"signature ok{checked}")


# --- verify receipt -----------------------------------------------------------------------------


def _run_verify_receipt(args: argparse.Namespace) -> int:
    data = _read_input(Path(args.receipt), "receipt", MAX_RECEIPT_BYTES)
    try:
        receipt = parse_receipt(data)
    except FormatError as exc:
        raise CommandFailed(f"{args.receipt} is not a valid receipt: {exc}") from None
    log_key = keyfiles.read_verifier_key(Path(args.log_key))
    edge_keys = None
    if args.edge_key:
        edge_keys = KeyRing(keyfiles.read_verifier_key(Path(path)) for path in args.edge_key)
    try:
        checkpoint = verify_receipt(receipt, log_key, edge_keys, args.origin)
    except CachetError as exc:  # a proof of the wrong shape is a failed check too
        raise CommandFailed(
            f"receipt does not verify: {type(exc).__name__}: {exc}", EXIT_VERIFY_FAILED
        ) from None
    header = receipt.header
    obj: dict[str, object] = {
        "verified": True,
        "request_id": receipt.record.request_id,
        "edge": header.edge,
        "batch_seq": header.seq,
        "record_index": receipt.record_index,
        "batch_index": receipt.batch_index,
        "log_origin": checkpoint.origin,
        "checkpoint_size": checkpoint.size,
        "root": checkpoint.root_hash.hex(),
        "edge_signature_checked": edge_keys is not None,
    }
    lines = [
        f"receipt verified: request {receipt.record.request_id}",
        f"batch: edge {header.edge} seq {header.seq}, record {receipt.record_index} "
        f"of {header.count}"
        + (" (edge signature checked)" if edge_keys is not None else " (edge key not given)"),
        f"checkpoint: {checkpoint.origin} size {checkpoint.size} root {obj['root']}",
    ]
    _emit(args, obj, lines)
    return 0


# --- verify statement ---------------------------------------------------------------------------


def _run_verify_statement(args: argparse.Namespace) -> int:
    data = _read_input(Path(args.statement), "statement", MAX_RECEIPT_BYTES)
    try:
        proof = parse_statement_proof(data)
    except PendingStatementError as exc:
        raise CommandFailed(f"{args.statement}: {exc}") from None
    except FormatError as exc:
        raise CommandFailed(f"{args.statement} is not a valid statement proof: {exc}") from None
    log_key = keyfiles.read_verifier_key(Path(args.log_key))
    try:
        checkpoint = verify_statement_proof(proof, log_key, args.origin)
    except CachetError as exc:  # a proof of the wrong shape is a failed check too
        raise CommandFailed(
            f"statement does not verify: {type(exc).__name__}: {exc}", EXIT_VERIFY_FAILED
        ) from None
    statement = proof.statement
    obj: dict[str, object] = {
        "verified": True,
        "creator": statement["creator"],
        "period": statement["period"],
        "sha256": statement["sha256"],
        "leaf_index": proof.leaf_index,
        "log_origin": checkpoint.origin,
        "checkpoint_size": checkpoint.size,
        "root": checkpoint.root_hash.hex(),
    }
    period = statement["period"]
    lines = [
        f"statement verified: {statement['creator']}, {period.get('kind')} from "
        f"{period.get('start')}, sha256 {statement['sha256']}",
        f"leaf {proof.leaf_index} of checkpoint: {checkpoint.origin} size {checkpoint.size} "
        f"root {obj['root']}",
    ]
    _emit(args, obj, lines)
    return 0


# --- argument parsers ---------------------------------------------------------------------------


def _add_common(parser: argparse.ArgumentParser, *, force: bool) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    if force:
        parser.add_argument("--force", action="store_true", help="overwrite existing output")


def _register_keygen(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "keygen",
        help="make an Ed25519 signing key (C2SP signed-note format)",
        description="Make an Ed25519 key pair: PATH holds the private key (mode 0600, "
        "PRIVATE+KEY+<name>+<id>+<seed>), PATH.pub the verifier key "
        "(<name>+<id>+<key>). A creator's key name must be the creator account.",
        epilog="Example: cachet keygen --name alice --out alice.key. " + _EXIT_EPILOG,
    )
    parser.add_argument("--name", required=True, help="key name (creator account or edge id)")
    parser.add_argument("--out", required=True, metavar="PATH", help="private key file")
    _add_common(parser, force=True)
    parser.set_defaults(handler=_guarded("keygen", _run_keygen))


def _register_create(manifest_parsers: Subparsers) -> None:
    parser = manifest_parsers.add_parser(
        "create",
        help="hash a folder of files into an unsigned manifest",
        description="Walk DIR (sorted; regular files only; dotfiles skipped), hash every file "
        "with SHA-256 as it streams, and write an unsigned manifest. Sign it with "
        "`cachet manifest sign`.",
        epilog=_EXIT_EPILOG,
    )
    parser.add_argument("dir", metavar="DIR", help="folder of the content to claim")
    parser.add_argument("--creator", required=True, metavar="ACCOUNT", help="creator account")
    parser.add_argument(
        "--key", required=True, metavar="KEY", help="verifier (.pub) or private key"
    )
    parser.add_argument("--license", required=True, metavar="TEXT", help="e.g. CC-BY-4.0")
    parser.add_argument(
        "--training-use", required=True, choices=("allowed", "not_allowed", "on_terms")
    )
    parser.add_argument("--training-terms", metavar="TEXT", help="required with on_terms")
    parser.add_argument("--per-hit-micros", type=int, default=0, metavar="N")
    parser.add_argument("--per-gb-micros", type=int, default=0, metavar="N")
    parser.add_argument("--currency", default="USD", help="ISO 4217 code (default USD)")
    parser.add_argument("--supersedes", metavar="MANIFEST_ID", help="id of the previous version")
    parser.add_argument("--version", type=int, default=1, metavar="N", help="manifest version")
    parser.add_argument("--base-path", default="/", metavar="/PREFIX", help="URL path prefix")
    parser.add_argument("--out", required=True, metavar="FILE", help="manifest JSON to write")
    _add_common(parser, force=True)
    parser.set_defaults(handler=_guarded("manifest create", _run_manifest_create))


def _register_sign_verify(manifest_parsers: Subparsers) -> None:
    sign = manifest_parsers.add_parser(
        "sign",
        help="sign a manifest with the creator's private key",
        description="Sign MANIFEST with the private key whose name and key id it names.",
        epilog=_EXIT_EPILOG,
    )
    sign.add_argument("manifest", metavar="MANIFEST", help="unsigned manifest JSON")
    sign.add_argument("--key", required=True, metavar="PRIVATE_KEY", help="private key file")
    sign.add_argument("--out", required=True, metavar="FILE", help="signed manifest to write")
    _add_common(sign, force=True)
    sign.set_defaults(handler=_guarded("manifest sign", _run_manifest_sign))
    verify = manifest_parsers.add_parser(
        "verify",
        help="check a signed manifest (and optionally the files it names)",
        description="Check the signature of MANIFEST against --key; with --dir, re-hash the "
        "files and report every missing, changed or extra file by path.",
        epilog=_EXIT_EPILOG,
    )
    verify.add_argument("manifest", metavar="MANIFEST", help="signed manifest JSON")
    verify.add_argument(
        "--key", required=True, action="append", metavar="KEY", help="creator key (repeatable)"
    )
    verify.add_argument("--dir", metavar="DIR", help="folder to check against the items")
    verify.add_argument("--base-path", default="/", metavar="/PREFIX", help="as for create")
    _add_common(verify, force=False)
    verify.set_defaults(handler=_guarded("manifest verify", _run_manifest_verify))


def _register_verify(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("verify", help="check receipts and statements offline")
    kinds = parser.add_subparsers(dest="verify_kind", metavar="KIND")
    kinds.required = True
    receipt = kinds.add_parser(
        "receipt",
        help="check a request's receipt against the log's key",
        description="Check offline that a record is in a signed batch that is in the log: the "
        "checkpoint's signature, both inclusion proofs and, with --edge-key, the batch signature.",
        epilog=_EXIT_EPILOG,
    )
    receipt.add_argument("receipt", metavar="FILE", help="receipt JSON")
    receipt.add_argument("--log-key", required=True, metavar="LOGKEY.pub", help="log verifier key")
    receipt.add_argument("--edge-key", action="append", metavar="EDGE.pub", help="repeatable")
    receipt.add_argument("--origin", metavar="NAME", help="expected checkpoint origin (log name)")
    _add_common(receipt, force=False)
    receipt.set_defaults(handler=_guarded("verify receipt", _run_verify_receipt))
    statement = kinds.add_parser(
        "statement",
        help="check a creator's statement against the log's key",
        description="Check offline that a statement (the JSON of GET /v1/creator/statements/"
        "{period}) is unchanged since its period closed and is a leaf of the coordinator's "
        "global log: the checkpoint's signature, the statement's own hash and its inclusion "
        "proof (RFC 9162).",
        epilog=_EXIT_EPILOG,
    )
    statement.add_argument("statement", metavar="FILE", help="statement proof JSON")
    statement.add_argument(
        "--log-key", required=True, metavar="LOGKEY.pub", help="log verifier key"
    )
    statement.add_argument("--origin", metavar="NAME", help="expected checkpoint origin (log name)")
    _add_common(statement, force=False)
    statement.set_defaults(handler=_guarded("verify statement", _run_verify_statement))


def register(subparsers: Subparsers) -> None:
    """Add `keygen`, `manifest` and `verify` to the `cachet` command."""
    _register_keygen(subparsers)
    manifest = subparsers.add_parser("manifest", help="create, sign and verify creator manifests")
    manifest_parsers = manifest.add_subparsers(dest="manifest_command", metavar="ACTION")
    manifest_parsers.required = True
    _register_create(manifest_parsers)
    _register_sign_verify(manifest_parsers)
    _register_verify(subparsers)
