"""Entity tags and the cache-relevant preconditions (RFC 9110 §8.8.3, §13.1.2, §13.1.3).

``entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE`` with ``etagc = %x21 / %x23-7E / obs-text``:
an opaque tag may contain commas and backslashes (there are no escapes), so lists of entity
tags are scanned here rather than with the quoted-string aware ``split_list``. "W/" is
case-sensitive. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from proxy.http.dates import parse_http_date

__all__ = [
    "EntityTag",
    "if_modified_since_passes",
    "if_none_match_passes",
    "parse_etag",
    "parse_etag_list",
    "strong_match",
    "weak_match",
]

_ENTITY_TAG = re.compile(r'(W/)?("[\x21\x23-\x7e\x80-\xff]*")')
_OWS = " \t"


@dataclass(frozen=True, slots=True)
class EntityTag:
    """An entity tag; ``opaque`` includes the double quotes (``'"xyzzy"'``)."""

    opaque: str
    weak: bool


def parse_etag(value: str) -> EntityTag | None:
    """An ETag field value (RFC 9110 §8.8.3), or None if it is not one entity-tag."""
    match = _ENTITY_TAG.fullmatch(value.strip(_OWS))
    if match is None:
        return None
    return EntityTag(opaque=match[2], weak=match[1] is not None)


def parse_etag_list(values: Iterable[str]) -> list[EntityTag] | Literal["*"] | None:
    """If-Match / If-None-Match lines: ``"*"`` or ``#entity-tag`` (RFC 9110 §13.1.1-2).

    Returns "*" for a lone star, the tags in order otherwise (empty members allowed, as in
    any list, §5.6.1), and None when malformed, including "*" mixed with tags.
    """
    text = ", ".join(values)
    tags: list[EntityTag] = []
    star = False
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char in _OWS or char == ",":
            pos += 1
            continue
        if char == "*":
            star, pos = True, pos + 1
        else:
            match = _ENTITY_TAG.match(text, pos)
            if match is None:
                return None
            tags.append(EntityTag(opaque=match[2], weak=match[1] is not None))
            pos = match.end()
        while pos < len(text) and text[pos] in _OWS:
            pos += 1
        if pos < len(text) and text[pos] != ",":
            return None
    if star:
        return "*" if not tags and text.count("*") == 1 else None
    return tags


def weak_match(a: EntityTag, b: EntityTag) -> bool:
    """Weak comparison (RFC 9110 §8.8.3.2): opaque tags equal, weakness ignored."""
    return a.opaque == b.opaque


def strong_match(a: EntityTag, b: EntityTag) -> bool:
    """Strong comparison (RFC 9110 §8.8.3.2): both strong and opaque tags equal."""
    return not a.weak and not b.weak and a.opaque == b.opaque


def if_none_match_passes(condition_values: list[str], current_etag: str | None) -> bool | None:
    """Evaluate If-None-Match against a stored response (RFC 9110 §13.1.2).

    False means the condition is false (send 304 to GET/HEAD), True that it holds, None
    that the field is malformed and must be ignored. "*" is false because a stored
    response is a current representation. Comparison is weak. A current ETag that is
    absent or unparseable matches nothing.
    """
    condition = parse_etag_list(condition_values)
    if condition is None:
        return None
    if condition == "*":
        return False
    current = parse_etag(current_etag) if current_etag is not None else None
    if current is None:
        return True
    return not any(weak_match(tag, current) for tag in condition)


def if_modified_since_passes(value: str, last_modified: float | None) -> bool | None:
    """Evaluate If-Modified-Since (RFC 9110 §13.1.3).

    None if the date is invalid (ignore the field); False ("not modified") when
    ``last_modified`` (POSIX seconds) is at or before the date; True otherwise, including
    when there is no modification date to compare (the caller may pass the stored
    response's Date instead, RFC 9111 §4.3.2).
    """
    since_s = parse_http_date(value)
    if since_s is None:
        return None
    if last_modified is None:
        return True
    return last_modified > since_s
