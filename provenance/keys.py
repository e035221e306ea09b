"""Ed25519 keys (RFC 8032) named and identified as in C2SP signed-note.

Key id (C2SP signed-note, "Signatures"): the first 4 bytes of
SHA-256(name || 0x0A || 0x01 || 32-byte public key), 0x01 being the Ed25519 signature type.

Text encodings (C2SP signed-note, "Verifier keys" / Go's note package):
    verifier  ``<name>+<8 hex key id>+<base64(0x01 || public key)>``
    signer    ``PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || 32-byte seed)>``

A key name is non-empty UTF-8 with no whitespace, no ``+`` and no control characters.
``verify_*`` functions return None or raise ``VerificationError``; they never return a bool.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from provenance.errors import FormatError, SignatureError, UnknownKeyError

ALG_ED25519 = 0x01  # C2SP signed-note signature type for Ed25519
KEY_ID_SIZE = 4
SIGNATURE_SIZE = 64  # RFC 8032 §5.1.6
SEED_SIZE = 32
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")
_BAD_NAME_CHAR = re.compile(r"[\s+\x00-\x1f\x7f]")


def is_key_name(name: object) -> bool:
    """True if ``name`` is a valid signed-note key name."""
    if not isinstance(name, str) or name == "" or _BAD_NAME_CHAR.search(name) is not None:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _require_name(name: str) -> None:
    if not is_key_name(name):
        raise ValueError(f"invalid key name {name!r}: empty, whitespace, '+' or control char")


def compute_key_id(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note key id: SHA-256(name || "\\n" || 0x01 || public key)[:4]."""
    material = name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    return hashlib.sha256(material).digest()[:KEY_ID_SIZE]


@dataclass(frozen=True)
class VerifierKey:
    """A named Ed25519 public key."""

    name: str
    public_key: bytes
    key_id: bytes = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _require_name(self.name)
        if len(self.public_key) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        object.__setattr__(self, "key_id", compute_key_id(self.name, self.public_key))
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.public_key))

    @property
    def key_id_hex(self) -> str:
        return self.key_id.hex()

    def verify(self, message: bytes, signature: bytes) -> None:
        """RFC 8032 §5.1.7: return None or raise SignatureError."""
        if len(signature) != SIGNATURE_SIZE:
            raise SignatureError(f"signature by {self.name} is not {SIGNATURE_SIZE} bytes")
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            raise SignatureError(
                f"signature by key {self.name}+{self.key_id_hex} is invalid"
            ) from None


@dataclass(frozen=True)
class SigningKey:
    """A named Ed25519 private key, held as its 32-byte seed (RFC 8032 §5.1.5)."""

    name: str
    seed: bytes = field(repr=False)
    verifier: VerifierKey = field(init=False, compare=False)
    _key: Ed25519PrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _require_name(self.name)
        if len(self.seed) != SEED_SIZE:
            raise ValueError("an Ed25519 seed is 32 bytes")
        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "verifier", VerifierKey(self.name, public))

    @property
    def key_id(self) -> bytes:
        return self.verifier.key_id

    def sign(self, message: bytes) -> bytes:
        """RFC 8032 §5.1.6: the 64-byte signature of ``message``."""
        return self._key.sign(message)


def generate_signing_key(name: str, seed: bytes) -> SigningKey:
    """A signing key from 32 random bytes drawn by the caller (the shell owns randomness)."""
    return SigningKey(name, bytes(seed))


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise FormatError(f"{what}: invalid base64") from None


def _split_key_fields(text: str, what: str) -> tuple[str, str, bytes]:
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise FormatError(f"{what}: want <name>+<hex key id>+<base64 key>")
    name, hex_id, b64 = parts
    if not is_key_name(name):
        raise FormatError(f"{what}: invalid key name")
    if not _HEX_KEY_ID.fullmatch(hex_id):
        raise FormatError(f"{what}: key id is not 8 lowercase hex digits")
    raw = _b64decode(b64, what)
    if len(raw) != 33 or raw[0] != ALG_ED25519:
        raise FormatError(f"{what}: not an Ed25519 key (want 0x01 and 32 bytes)")
    return name, hex_id, raw[1:]


def format_verifier_key(key: VerifierKey) -> str:
    """``<name>+<hex id>+<base64(0x01 || public key)>``."""
    encoded = base64.b64encode(bytes([ALG_ED25519]) + key.public_key).decode("ascii")
    return f"{key.name}+{key.key_id_hex}+{encoded}"


def parse_verifier_key(text: str) -> VerifierKey:
    """Parse a verifier key string; FormatError if malformed or its key id does not match."""
    if not isinstance(text, str):
        raise TypeError("parse_verifier_key() takes str")
    name, hex_id, public = _split_key_fields(text.strip(), "verifier key")
    key = VerifierKey(name, public)
    if key.key_id_hex != hex_id:
        raise FormatError("verifier key: key id does not match name and key")
    return key


def format_signing_key(key: SigningKey) -> str:
    """``PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>``."""
    encoded = base64.b64encode(bytes([ALG_ED25519]) + key.seed).decode("ascii")
    return f"PRIVATE+KEY+{key.name}+{key.key_id.hex()}+{encoded}"


def parse_signing_key(text: str) -> SigningKey:
    """Parse a signer key string; FormatError if malformed or its key id does not match."""
    if not isinstance(text, str):
        raise TypeError("parse_signing_key() takes str")
    text = text.strip()
    if not text.startswith("PRIVATE+KEY+"):
        raise FormatError("signer key: want PRIVATE+KEY+<name>+<hex key id>+<base64 seed>")
    name, hex_id, seed = _split_key_fields(text[len("PRIVATE+KEY+") :], "signer key")
    key = SigningKey(name, seed)
    if key.key_id.hex() != hex_id:
        raise FormatError("signer key: key id does not match name and key")
    return key


@dataclass(frozen=True)
class KeyRing:
    """Trusted verifier keys; rotation is a list: accept a signature by any listed key."""

    keys: tuple[VerifierKey, ...]

    def __init__(self, keys: Iterable[VerifierKey]) -> None:
        object.__setattr__(self, "keys", tuple(keys))

    def find(self, name: str, key_id: bytes) -> VerifierKey:
        """The key with that name and key id, or raise UnknownKeyError."""
        for key in self.keys:
            if key.key_id == key_id and key.name == name:
                return key
        raise UnknownKeyError(f"no trusted key {name}+{bytes(key_id).hex()}")

    def verify(self, name: str, key_id: bytes, message: bytes, signature: bytes) -> None:
        """Return None or raise UnknownKeyError / SignatureError."""
        self.find(name, key_id).verify(message, signature)


@dataclass(frozen=True)
class SigningKeyRing:
    """Own signing keys, newest first: sign with ``keys[0]``, publish every verifier."""

    keys: tuple[SigningKey, ...]

    def __init__(self, keys: Sequence[SigningKey]) -> None:
        if not keys:
            raise ValueError("a signing key ring needs at least one key")
        object.__setattr__(self, "keys", tuple(keys))

    @property
    def current(self) -> SigningKey:
        return self.keys[0]

    def verifiers(self) -> KeyRing:
        return KeyRing(key.verifier for key in self.keys)
