"""C2SP tlog-checkpoint: the body of a signed note naming a log's size and root hash.

<origin>\\n
<tree size, decimal, no leading zeros>\\n
<base64 root hash (32 bytes)>\\n
[<extension line>\\n ...]
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from provenance.errors import FormatError

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_MAX_SIZE = 2**64 - 1


@dataclass(frozen=True)
class Checkpoint:
    """A log's origin, tree size and RFC 9162 root hash, plus optional extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.origin or not _is_line(self.origin):
            raise ValueError("checkpoint origin must be one non-empty line")
        if not 0 <= self.size <= _MAX_SIZE:
            raise ValueError("checkpoint size out of range")
        if len(self.root_hash) != 32:
            raise ValueError("checkpoint root hash is 32 bytes")
        if not all(line and _is_line(line) for line in self.extensions):
            raise ValueError("checkpoint extension lines must be non-empty single lines")


def _is_line(text: str) -> bool:
    return not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def format_checkpoint(checkpoint: Checkpoint) -> str:
    """The note text of a checkpoint (sign it with ``signed_note.sign_note``)."""
    root = base64.b64encode(checkpoint.root_hash).decode("ascii")
    lines = [checkpoint.origin, str(checkpoint.size), root, *checkpoint.extensions]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str | bytes) -> Checkpoint:
    """Parse a checkpoint body (the text of an opened note); FormatError if malformed."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("checkpoint is not valid UTF-8") from None
    if not text.endswith("\n"):
        raise FormatError("checkpoint must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise FormatError("checkpoint needs origin, size and root hash lines")
    origin, size_text, root_text, *extensions = lines
    if not _DECIMAL.fullmatch(size_text) or int(size_text) > _MAX_SIZE:
        raise FormatError("checkpoint size is not a decimal without leading zeros")
    try:
        root = base64.b64decode(root_text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise FormatError("checkpoint root hash is not base64") from None
    try:
        return Checkpoint(origin, int(size_text), root, tuple(extensions))
    except ValueError as exc:
        raise FormatError(f"bad checkpoint: {exc}") from None
