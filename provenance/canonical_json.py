"""RFC 8785 JSON Canonicalization Scheme (JCS) and a strict parser for untrusted JSON.

``canonicalize`` delegates to the ``rfc8785`` package (RFC 8785 §3.2: sorted keys by UTF-16 code
units, ECMAScript number serialisation, minimal string escaping, no whitespace).

``parse`` is the one door for JSON from outside. It accepts exactly the I-JSON subset (RFC 7493)
that ``canonicalize`` can reproduce and raises only ``FormatError``: invalid UTF-8, a byte order
mark, duplicate object keys, NaN/Infinity, numbers that overflow a double, lone surrogates
(RFC 7493 §2.1), nesting deeper than the interpreter's recursion limit (the C parser's guard).
Integers within ±(2**53 - 1) (RFC 7493 §2.2) parse as ``int``; larger ones parse as ``float`` (a
JSON number is a double, RFC 8785 §3.2.2.3), so typed field checks (``type(x) is int``) refuse
them. Checks that would walk the whole value run only when the text could need them, so a
400 kB batch parses at close to ``json.loads`` speed.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import rfc8785

from provenance.errors import FormatError

MAX_SAFE_INTEGER = 2**53 - 1  # RFC 7493 §2.2
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # valid UTF-8 text can't hold one raw
_MAX_INT_DIGITS = 400


def canonicalize(obj: object) -> bytes:
    """Return the RFC 8785 canonical bytes of ``obj``.

    Raises ``ValueError`` (our misuse) for values JCS cannot represent.
    """
    try:
        result: bytes = rfc8785.dumps(obj)  # type: ignore[arg-type]
    except rfc8785.CanonicalizationError as exc:
        raise ValueError(f"not canonicalizable: {exc}") from exc
    except RecursionError:
        raise ValueError("not canonicalizable: nested too deeply") from None
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


def _object_from_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise FormatError(
            f"duplicate JSON object key {_first_duplicate(pairs)!r:.60} (RFC 8785 §3.1)"
        )
    return obj


def _first_duplicate(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return ""


def _has_lone_surrogate(value: object) -> bool:
    """Iterative walk; only run when the text holds a surrogate escape."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return False


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
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise FormatError("JSON string holds a lone surrogate (RFC 7493 §2.1)")
    return value
