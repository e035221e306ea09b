"""C2SP signed-note: a UTF-8 text ending in a newline, a blank line, then signature lines.

Each signature line is ``— <key name> <base64(4-byte key id || signature)>\\n`` (an em dash,
U+2014, then a space). The signature is Ed25519 over the text alone, including its final newline.
``open_note`` ignores lines by keys it does not know (as the spec requires), raises
``SignatureError`` if a known key's signature is bad, ``UnknownKeyError`` if no known key signed,
and ``FormatError`` for a malformed note.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence

from provenance.errors import FormatError, UnknownKeyError
from provenance.keys import (
    KEY_ID_SIZE,
    SIGNATURE_SIZE,
    KeyRing,
    SigningKey,
    VerifierKey,
    is_key_name,
)

MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
_SIG_PREFIX = "\u2014 "
_FORBIDDEN_TEXT = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise FormatError("note text must end with a newline")
    if _FORBIDDEN_TEXT.search(text):
        raise FormatError("note text holds a control character other than newline")


def sign_note(text: str, keys: Sequence[SigningKey]) -> str:
    """Return the signed note: ``text``, a blank line, one signature line per key."""
    if not keys:
        raise ValueError("sign_note() needs at least one key")
    try:
        _check_text(text)
    except FormatError as exc:
        raise ValueError(str(exc)) from None
    if "\n\n" in text:
        raise ValueError("note text must not contain a blank line")
    message = text.encode("utf-8")
    lines = []
    for key in keys:
        blob = base64.b64encode(key.key_id + key.sign(message)).decode("ascii")
        lines.append(f"{_SIG_PREFIX}{key.name} {blob}\n")
    return text + "\n" + "".join(lines)


def _parse_signature_line(line: str) -> tuple[str, bytes, bytes]:
    if not line.startswith(_SIG_PREFIX):
        raise FormatError("signature line does not start with '\u2014 '")
    parts = line[len(_SIG_PREFIX) :].split(" ")
    if len(parts) != 2 or not is_key_name(parts[0]):
        raise FormatError("signature line: want '\u2014 <name> <base64>'")
    try:
        blob = base64.b64decode(parts[1].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise FormatError("signature line: invalid base64") from None
    if len(blob) <= KEY_ID_SIZE:
        raise FormatError("signature line: signature too short")
    return parts[0], blob[:KEY_ID_SIZE], blob[KEY_ID_SIZE:]


def split_note(note: bytes) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """Split a note into its text and (name, key id, signature) triples; FormatError if bad."""
    if len(note) > MAX_NOTE_BYTES:
        raise FormatError("note too large")
    try:
        decoded = bytes(note).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("note is not valid UTF-8") from None
    split = decoded.rfind("\n\n")
    if split < 0:
        raise FormatError("note has no blank line before its signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    _check_text(text)
    if not block.endswith("\n"):
        raise FormatError("signature block must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise FormatError("note has too many signatures")
    return text, [_parse_signature_line(line) for line in lines]


def open_note(note: bytes, verifiers: KeyRing | Iterable[VerifierKey]) -> str:
    """Verify a note; return its text if at least one known key signed it and none lied."""
    ring = verifiers if isinstance(verifiers, KeyRing) else KeyRing(verifiers)
    text, signatures = split_note(note)
    message = text.encode("utf-8")
    verified = 0
    for name, key_id, signature in signatures:
        try:
            key = ring.find(name, key_id)
        except UnknownKeyError:
            continue  # C2SP signed-note: signatures by unknown keys are ignored
        if len(signature) != SIGNATURE_SIZE:
            raise FormatError(f"signature by {name} is not {SIGNATURE_SIZE} bytes")
        key.verify(message, signature)
        verified += 1
    if verified == 0:
        raise UnknownKeyError("note is not signed by any trusted key")
    return text
