"""HTTP field access over plain header lists (RFC 9110 §5).

Headers are ``list[tuple[str, str]]``: the field name as received and the value already
trimmed of surrounding whitespace, both latin-1 strings. Field names compare
case-insensitively (RFC 9110 §5.1). Several lines of one field combine into one value by
joining with ", " (§5.3), and list-valued fields are split into members by
:func:`split_list` (§5.6.1), which knows that a comma inside a quoted-string is data.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

__all__ = [
    "Headers",
    "combined_value",
    "get_first",
    "get_values",
    "has_field",
    "replace_fields",
    "split_list",
    "without_fields",
]

Headers = list[tuple[str, str]]

_OWS = " \t"  # RFC 9110 §5.6.3


def get_values(headers: Headers, name: str) -> list[str]:
    """All values of field ``name`` (case-insensitive, RFC 9110 §5.1), in received order."""
    wanted = name.lower()
    return [value for field, value in headers if field.lower() == wanted]


def get_first(headers: Headers, name: str) -> str | None:
    """The value of the first line of field ``name``, or None if the field is absent."""
    wanted = name.lower()
    for field, value in headers:
        if field.lower() == wanted:
            return value
    return None


def has_field(headers: Headers, name: str) -> bool:
    """Whether at least one line of field ``name`` is present (RFC 9110 §5.1)."""
    return get_first(headers, name) is not None


def split_list(values: Iterable[str]) -> list[str]:
    """List members across all field lines (RFC 9110 §5.6.1).

    Commas inside a quoted-string (with backslash quoted-pairs, §5.6.4) do not split.
    Members are trimmed of optional whitespace; empty members (``a, , b``) are dropped,
    as §5.6.1 requires recipients to accept and ignore them.
    """
    members: list[str] = []
    for value in values:
        members.extend(_split_one(value))
    return members


def _split_one(value: str) -> list[str]:
    members: list[str] = []
    current: list[str] = []
    in_quotes = False
    escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif in_quotes and char == "\\":
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif char == "," and not in_quotes:
            members.append("".join(current))
            current = []
            continue
        current.append(char)
    members.append("".join(current))
    return [m.strip(_OWS) for m in members if m.strip(_OWS)]


def combined_value(headers: Headers, name: str) -> str | None:
    """The field's lines joined with ", " (RFC 9110 §5.3), or None if the field is absent."""
    values = get_values(headers, name)
    if not values:
        return None
    return ", ".join(values)


def without_fields(headers: Headers, names: Collection[str]) -> Headers:
    """A copy of ``headers`` without any line of the named fields (``names`` in lowercase)."""
    return [(field, value) for field, value in headers if field.lower() not in names]


def replace_fields(stored: Headers, update: Headers, *, keep: Collection[str] = ()) -> Headers:
    """Stored headers updated from a 304 or HEAD response (RFC 9111 §3.2).

    Every field present in ``update`` replaces all stored lines of that field: the new
    lines take the place of the first stored line of the field, later stored lines of it
    are dropped, and fields not stored before are appended in ``update`` order. Fields named
    in ``keep`` (lowercase) are never replaced, e.g. Content-Length (§3.2 lists fields a
    cache must not update).
    """
    replacing: dict[str, list[tuple[str, str]]] = {}
    for field, value in update:
        lowered = field.lower()
        if lowered not in keep:
            replacing.setdefault(lowered, []).append((field, value))
    merged: Headers = []
    placed: set[str] = set()
    for field, value in stored:
        lowered = field.lower()
        if lowered not in replacing:
            merged.append((field, value))
        elif lowered not in placed:
            merged.extend(replacing[lowered])
            placed.add(lowered)
    for lowered, lines in replacing.items():
        if lowered not in placed:
            merged.extend(lines)
    return merged
