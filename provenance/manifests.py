"""Creator manifests: which content a creator claims, on what terms, signed with their key.

Signed manifest JSON (canonical per RFC 8785)::

    {"v": 1, "creator": "alice", "key_id": "<8 hex>", "version": 2,
     "supersedes": "sha256:<hex>" | null, "created": "2026-11-27T03:38:49.123Z",
     "items": [{"content_id": "sha256:<hex>", "path": "/a.mp4", "size_bytes": 123,
                "media_type": "video/mp4"}],
     "license": "CC-BY-4.0", "training_use": "allowed" | "not_allowed" | "on_terms",
     "training_terms": null | "<text, required for on_terms>",
     "payout_terms": {"per_hit_micros": 10, "per_gb_micros": 20000, "currency": "USD"},
     "signature": "<base64 Ed25519>"}

``manifest_id`` = ``sha256:`` + hex SHA-256 of the canonical bytes of the manifest *without*
``signature``. The signature is Ed25519 over ``b"cachet manifest v1\\n" || those bytes``, made
with the creator's key: its name must be the creator account and its key id ``key_id``.
Version 1 supersedes nothing; every later version names the manifest it supersedes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from provenance.canonical_json import MAX_SAFE_INTEGER, canonicalize, parse
from provenance.content_id import is_content_id
from provenance.errors import FormatError
from provenance.keys import SIGNATURE_SIZE, KeyRing, SigningKey, VerifierKey
from provenance.records import is_name, is_timestamp

MANIFEST_VERSION = 1
MANIFEST_SIGNATURE_PREFIX = b"cachet manifest v1\n"
TRAINING_USES = frozenset({"allowed", "not_allowed", "on_terms"})
MAX_ITEMS = 100_000
_HEX8 = re.compile(r"[0-9a-f]{8}")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FIELDS = frozenset(
    {"v", "creator", "key_id", "version", "supersedes", "created", "items", "license"}
    | {"training_use", "training_terms", "payout_terms"}
)
_ITEM_FIELDS = frozenset({"content_id", "path", "size_bytes", "media_type"})
_PAYOUT_FIELDS = frozenset({"per_hit_micros", "per_gb_micros", "currency"})


@dataclass(frozen=True, slots=True)
class ManifestItem:
    content_id: str
    path: str
    size_bytes: int
    media_type: str


@dataclass(frozen=True, slots=True)
class PayoutTerms:
    per_hit_micros: int
    per_gb_micros: int
    currency: str = "USD"


@dataclass(frozen=True)
class Manifest:
    """An unsigned manifest. Building a bad one raises ValueError."""

    creator: str
    key_id: str
    items: tuple[ManifestItem, ...]
    license: str
    training_use: str
    payout_terms: PayoutTerms
    created: str
    version: int = 1
    supersedes: str | None = None
    training_terms: str | None = None
    v: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        try:
            _validate_manifest(self)
        except FormatError as exc:
            raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class SignedManifest:
    manifest: Manifest
    signature: bytes


def _is_text(value: object, max_len: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= max_len and not _CONTROL.search(value)


def _is_int(value: object, low: int) -> bool:
    return type(value) is int and low <= value <= MAX_SAFE_INTEGER


def _validate_item(index: int, item: ManifestItem) -> None:
    where = f"manifest item {index}"
    if not is_content_id(item.content_id):
        raise FormatError(f"{where}: 'content_id' must be sha256:<64 lowercase hex>")
    if not _is_text(item.path, 2048):
        raise FormatError(f"{where}: 'path' must be 1-2048 characters without control chars")
    if not _is_int(item.size_bytes, 0):
        raise FormatError(f"{where}: 'size_bytes' must be an integer >= 0")
    if not isinstance(item.media_type, str) or not _MEDIA_TYPE.fullmatch(item.media_type):
        raise FormatError(f"{where}: 'media_type' must be a lowercase type/subtype")


def _validate_terms(m: Manifest) -> None:
    if not isinstance(m.training_use, str) or m.training_use not in TRAINING_USES:
        raise FormatError("manifest 'training_use' must be allowed, not_allowed or on_terms")
    if m.training_use == "on_terms" and not _is_text(m.training_terms, 65536):
        raise FormatError("manifest 'training_terms' is required text when training is on_terms")
    if m.training_use != "on_terms" and m.training_terms is not None:
        raise FormatError("manifest 'training_terms' must be null unless training is on_terms")
    terms = m.payout_terms
    if not _is_int(terms.per_hit_micros, 0) or not _is_int(terms.per_gb_micros, 0):
        raise FormatError("manifest payout terms must be integer micros >= 0")
    if not isinstance(terms.currency, str) or not _CURRENCY.fullmatch(terms.currency):
        raise FormatError("manifest payout 'currency' must be an ISO 4217 code such as USD")


def _validate_manifest(m: Manifest) -> None:
    if m.v != MANIFEST_VERSION or type(m.v) is not int:
        raise FormatError(f"manifest 'v' must be {MANIFEST_VERSION}")
    if not is_name(m.creator):
        raise FormatError("manifest 'creator' must be an account name")
    if not isinstance(m.key_id, str) or not _HEX8.fullmatch(m.key_id):
        raise FormatError("manifest 'key_id' must be 8 lowercase hex digits")
    if not _is_int(m.version, 1):
        raise FormatError("manifest 'version' must be an integer >= 1")
    if (m.version == 1) != (m.supersedes is None):
        raise FormatError("manifest 'supersedes' must be null for version 1 and set after")
    if m.supersedes is not None and not is_content_id(m.supersedes):
        raise FormatError("manifest 'supersedes' must be a manifest id sha256:<hex>")
    if not is_timestamp(m.created):
        raise FormatError("manifest 'created' must be RFC 3339 UTC with milliseconds")
    if not _is_text(m.license, 256):
        raise FormatError("manifest 'license' must be 1-256 characters")
    if not 1 <= len(m.items) <= MAX_ITEMS:
        raise FormatError(f"manifest 'items' must hold 1..{MAX_ITEMS} items")
    for index, item in enumerate(m.items):
        _validate_item(index, item)
    if len({item.path for item in m.items}) != len(m.items):
        raise FormatError("manifest items must have distinct paths")
    _validate_terms(m)


def manifest_to_obj(m: Manifest) -> dict[str, object]:
    return {
        "v": m.v,
        "creator": m.creator,
        "key_id": m.key_id,
        "version": m.version,
        "supersedes": m.supersedes,
        "created": m.created,
        "items": [
            {
                "content_id": i.content_id,
                "path": i.path,
                "size_bytes": i.size_bytes,
                "media_type": i.media_type,
            }
            for i in m.items
        ],
        "license": m.license,
        "training_use": m.training_use,
        "training_terms": m.training_terms,
        "payout_terms": {
            "per_hit_micros": m.payout_terms.per_hit_micros,
            "per_gb_micros": m.payout_terms.per_gb_micros,
            "currency": m.payout_terms.currency,
        },
    }


def _exact_object(value: object, fields: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FormatError(f"{what} must be a JSON object")
    if value.keys() != fields:
        missing = ", ".join(sorted(fields - value.keys())) or "-"
        unknown = ", ".join(sorted(value.keys() - fields))[:200] or "-"
        raise FormatError(f"{what}: missing field(s) {missing}; unknown field(s) {unknown}")
    return value


def manifest_from_obj(obj: object) -> Manifest:
    """A Manifest from parsed JSON (without ``signature``); FormatError with the reason."""
    fields = dict(_exact_object(obj, _FIELDS, "manifest"))
    items = fields.pop("items")
    if not isinstance(items, list):
        raise FormatError("manifest 'items' must be a list")
    parsed_items = tuple(
        ManifestItem(**_exact_object(item, _ITEM_FIELDS, f"manifest item {index}"))
        for index, item in enumerate(items[: MAX_ITEMS + 1])
    )
    terms = PayoutTerms(**_exact_object(fields.pop("payout_terms"), _PAYOUT_FIELDS, "payout_terms"))
    try:
        return Manifest(items=parsed_items, payout_terms=terms, **fields)
    except ValueError as exc:
        raise FormatError(str(exc)) from None


def manifest_canonical_bytes(m: Manifest) -> bytes:
    """RFC 8785 bytes of the unsigned manifest."""
    return canonicalize(manifest_to_obj(m))


def manifest_id(m: Manifest) -> str:
    """``sha256:`` + hex SHA-256 of the unsigned manifest's canonical bytes."""
    return "sha256:" + hashlib.sha256(manifest_canonical_bytes(m)).hexdigest()


def sign_manifest(m: Manifest, key: SigningKey) -> SignedManifest:
    """Sign with the creator's key (name = creator, key id = ``key_id``; else ValueError)."""
    if key.name != m.creator or key.key_id.hex() != m.key_id:
        raise ValueError("sign_manifest(): key name/id must match the manifest's creator/key_id")
    return SignedManifest(m, key.sign(MANIFEST_SIGNATURE_PREFIX + manifest_canonical_bytes(m)))


def verify_manifest(signed: SignedManifest, verifiers: KeyRing | Iterable[VerifierKey]) -> None:
    """Return None or raise UnknownKeyError / SignatureError."""
    ring = verifiers if isinstance(verifiers, KeyRing) else KeyRing(verifiers)
    m = signed.manifest
    message = MANIFEST_SIGNATURE_PREFIX + manifest_canonical_bytes(m)
    ring.verify(m.creator, bytes.fromhex(m.key_id), message, signed.signature)


def format_signed_manifest(signed: SignedManifest) -> bytes:
    """Canonical JSON of the manifest with its base64 ``signature``."""
    obj = manifest_to_obj(signed.manifest)
    obj["signature"] = base64.b64encode(signed.signature).decode("ascii")
    return canonicalize(obj)


def parse_manifest(data: bytes) -> SignedManifest:
    """Parse (not verify) a signed manifest; FormatError with a clear reason."""
    obj = parse(data)
    if not isinstance(obj, dict) or "signature" not in obj:
        raise FormatError("signed manifest must be a JSON object with a 'signature'")
    fields = dict(obj)
    signature_text = fields.pop("signature")
    signature = b""
    if isinstance(signature_text, str):
        try:
            signature = base64.b64decode(signature_text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            pass
    if len(signature) != SIGNATURE_SIZE:
        raise FormatError("manifest 'signature' must be base64 of a 64-byte Ed25519 signature")
    return SignedManifest(manifest_from_obj(fields), signature)
