"""RFC 8785 JSON Canonicalization Scheme (JCS) and a strict parser for untrusted JSON.

``canonicalize`` delegates to the ``rfc8785`` package (RFC 8785 §3.2: sorted keys by UTF-16 code
units, ECMAScript number serialisation, minimal string escaping, no whitespace).

``parse`` is the one door for JSON from outside. It accepts exactly the I-JSON subset (RFC 7493)
that ``canonicalize`` can reproduce and raises only ``FormatError``: invalid UTF-8, a byte order
mark, duplicate object keys, NaN/Infinity, numbers that overflow a double, lone surrogates
(RFC 7493 §2.1), nesting deeper than ``MAX_DEPTH``. Integers within ±(2**53 - 1) (RFC 7493 §2.2)
parse as ``int``; larger ones parse as ``float`` (a JSON number is a double, RFC 8785 §3.2.2.3),
so typed field checks (``type(x) is int``) refuse them.
"""

from __future__ import annotations

import json
import math
from typing import Any

import rfc8785

from provenance.errors import FormatError

MAX_SAFE_INTEGER = 2**53 - 1  # RFC 7493 §2.2
MAX_DEPTH = 64
_MAX_INT_DIGITS = 400


def canonicalize(obj: object) -> bytes:
    """Return the RFC 8785 canonical bytes of ``obj``.

    Raises ``ValueError`` (our misuse) for values JCS cannot represent.
    """
    try:
        result: bytes = rfc8785.dumps(obj)  # type: ignore[arg-type]
    except rfc8785.CanonicalizationError as exc:
        raise ValueError(f"not canonicalizable: {exc}") from exc
    return result


def _reject_constant(name: str) -> Any:
    raise FormatError(f"JSON number {name} is not allowed (RFC 8785 §3.2.2.3)")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise FormatError(f"JSON number {text[:40]!r} overflows a double")
    return value


def _parse_int(text: str) -> int | float:
    if len(text) > _MAX_INT_DIGITS:
        raise FormatError("JSON integer too long")
    value = int(text)
    if abs(value) > MAX_SAFE_INTEGER:  # RFC 8785 §3.2.2.3: a number is an IEEE 754 double
        return _parse_float(text)
    return value


def _check_key(key: str) -> None:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError("JSON string holds a lone surrogate (RFC 7493 §2.1)") from None


def _object_from_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise FormatError(f"duplicate JSON object key {key!r:.60} (RFC 8785 §3.1)")
        _check_key(key)
        obj[key] = value
    return obj


def _check_tree(value: object, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise FormatError(f"JSON nested deeper than {MAX_DEPTH}")
    if isinstance(value, str):
        _check_key(value)
    elif isinstance(value, list):
        for item in value:
            _check_tree(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _check_tree(item, depth + 1)


def parse(data: bytes) -> object:
    """Parse untrusted JSON bytes; raise only ``FormatError``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("parse() takes bytes")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"JSON is not valid UTF-8 at byte {exc.start}") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object_from_pairs,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
        )
    except FormatError:
        raise
    except RecursionError:
        raise FormatError("JSON nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError and int-conversion limits
        raise FormatError(f"malformed JSON: {exc}") from None
    _check_tree(value, 0)
    return value
