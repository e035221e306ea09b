"""Cache-Control (RFC 9111 §5.2), targeted fields such as CDN-Cache-Control (RFC 9213) and
Pragma (RFC 9111 §5.4), parsed into one :class:`Directives` value.

Cache-Control is parsed tolerantly: a member whose name is not a token is skipped, and a
member with a token name but a malformed argument (``no-store=a b``, an unterminated
quoted-string) is kept with its raw argument text. Keeping it is the conservative choice:
``private`` or ``no-store`` with junk after it must still restrict caching, and
:meth:`Directives.seconds` reports a junk ``max-age`` as :data:`INVALID` so the caller can
treat the response as stale (§4.2.1). When a directive repeats, the first occurrence wins
(§4.2.1 allows "use the first").

A targeted field is an RFC 8941 Structured Field Dictionary (RFC 9213 §2.1) and is parsed
strictly: any syntax error, or an empty field, yields None and the cache ignores the field.
Mapping to directives: Boolean true gives no argument; Boolean false (``no-store=?0``) means
the directive is absent; Integers, Decimals and Tokens become their text; Strings their
content; an Inner List the ", "-joined text of its items (so ``no-cache=("a" "b")`` still
names fields); Byte Sequences their base64 text. Parameters are ignored. A repeated key
takes its last value, as RFC 8941 §4.2.2 requires.

RFC 9213 §2.1 infers each directive's type from Cache-Control (``max-age`` an Integer,
``no-store`` a Boolean, ``no-cache`` a Boolean or a String) and says implementations SHOULD
NOT consume values that break it; RFC 8941 §2's default for a broken constraint is to ignore
the field. So a known directive of the wrong type (``max-age="60"``, ``max-age=1.5``,
``max-age=-1``, ``public=3``) makes the whole field ignored, and the cache falls back to
Cache-Control, as for a syntax error. Unknown directives may have any type. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from proxy.http.fields import split_list

__all__ = [
    "INVALID",
    "MAX_DELTA_SECONDS",
    "Directives",
    "parse_cache_control",
    "parse_pragma_no_cache",
    "parse_targeted_cache_control",
]

INVALID: Final = -1
MAX_DELTA_SECONDS: Final = 2**31  # RFC 9111 §1.2.2: larger delta-seconds clamp to this

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(r"[0-9]+")
_OWS = " \t"


@dataclass(frozen=True, slots=True)
class Directives:
    """Cache directives: lowercase name -> argument (unquoted) or None when bare."""

    values: Mapping[str, str | None]

    def has(self, name: str) -> bool:
        """Whether the directive is present, with or without an argument."""
        return name.lower() in self.values

    def get(self, name: str) -> str | None:
        """The directive's argument; None when absent or bare (use :meth:`has` to tell)."""
        return self.values.get(name.lower())

    def seconds(self, name: str) -> int | None:
        """A delta-seconds argument (RFC 9111 §1.2.2): None if absent, INVALID if unusable.

        Unusable means bare, empty, negative, fractional or not digits. A quoted value
        (``max-age="60"``) is accepted, as §5.2 asks recipients to. Values above 2**31
        clamp to 2**31.
        """
        lowered = name.lower()
        if lowered not in self.values:
            return None
        argument = self.values[lowered]
        if argument is None or _DIGITS.fullmatch(argument) is None:
            return INVALID
        return min(int(argument), MAX_DELTA_SECONDS)

    def field_names(self, name: str) -> tuple[str, ...] | None:
        """Field names qualifying ``no-cache``/``private`` (RFC 9111 §5.2.2.4, §5.2.2.7).

        None if the directive is absent, () if it has no argument, else the lowercase
        names listed in its argument.
        """
        lowered = name.lower()
        if lowered not in self.values:
            return None
        argument = self.values[lowered]
        if argument is None:
            return ()
        return tuple(member.lower() for member in split_list([argument]))


def parse_cache_control(values: Iterable[str]) -> Directives:
    """Directives from all Cache-Control field lines (RFC 9111 §5.2); never raises."""
    directives: dict[str, str | None] = {}
    for member in split_list(values):
        name, _, argument = member.partition("=")
        name = name.strip(_OWS)
        if _TOKEN.fullmatch(name) is None:
            continue
        lowered = name.lower()
        if lowered in directives:
            continue
        directives[lowered] = _unquote(argument.strip(_OWS)) if "=" in member else None
    return Directives(directives)


def parse_pragma_no_cache(values: Iterable[str]) -> bool:
    """Whether Pragma lists ``no-cache`` (RFC 9111 §5.4), case-insensitively."""
    return any(member.lower() == "no-cache" for member in split_list(values))


def _unquote(argument: str) -> str:
    """The content of a well-formed quoted-string (RFC 9110 §5.6.4), else the raw text."""
    if len(argument) < 2 or argument[0] != '"' or argument[-1] != '"':
        return argument
    content: list[str] = []
    escaped = False
    for char in argument[1:-1]:
        if escaped:
            content.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return argument
        else:
            content.append(char)
    return argument if escaped else "".join(content)


# ---- RFC 8941 Structured Field Dictionary, enough for RFC 9213 targeted fields ----


class _SfError(Exception):
    """The text is not a valid Structured Field; the targeted field must be ignored."""


_SF_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_SF_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_SF_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]*)?")
_SF_BYTES = re.compile(r":[A-Za-z0-9+/=]*:")

# RFC 9213 §2.1: the types inferred from the Cache-Control directives (RFC 9111 §5.2.2).
_INTEGER_DIRECTIVES = frozenset({"max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"})
_BOOLEAN_DIRECTIVES = frozenset(
    {"must-revalidate", "must-understand", "no-store", "no-transform", "proxy-revalidate"}
    | {"public", "immutable"}
)
_FIELD_NAMES_DIRECTIVES = frozenset({"no-cache", "private"})  # Boolean, or names as a String

# A parsed member: (argument, present, RFC 8941 type of the value).
_Member = tuple[str | None, bool, str]


def parse_targeted_cache_control(values: Iterable[str]) -> Directives | None:
    """Directives from a targeted field such as CDN-Cache-Control (RFC 9213 §2.1).

    None if the combined field value is empty or not an RFC 8941 Dictionary.
    """
    text = ", ".join(values).strip(" ")
    if not text:
        return None
    try:
        members = _SfParser(text).parse_dictionary()
    except _SfError:
        return None
    if not all(
        _has_inferred_type(key, argument, kind) for key, (argument, _, kind) in members.items()
    ):
        return None
    return Directives({key: arg for key, (arg, present, _) in members.items() if present})


def _has_inferred_type(key: str, argument: str | None, kind: str) -> bool:
    """Whether a directive's value has the type RFC 9213 §2.1 infers for it."""
    if key in _INTEGER_DIRECTIVES:
        return kind == "integer" and argument is not None and not argument.startswith("-")
    if key in _BOOLEAN_DIRECTIVES:
        return kind == "boolean"
    if key in _FIELD_NAMES_DIRECTIVES:
        return kind in ("boolean", "string", "inner-list")
    return True


class _SfParser:
    """RFC 8941 §4.2 parsing over one string; each method consumes from ``self.pos``."""

    def __init__(self, text: str) -> None:
        if not text.isascii():
            raise _SfError("non-ASCII")
        self.text = text
        self.pos = 0

    def parse_dictionary(self) -> dict[str, _Member]:
        members: dict[str, _Member] = {}
        while self.pos < len(self.text):
            key = self._match(_SF_KEY)
            value: _Member
            if self._peek() == "=":
                self.pos += 1
                value = self._item_or_inner_list()
            else:
                value = (None, True, "boolean")
                self._parameters()
            members.pop(key, None)
            members[key] = value
            self._skip(_OWS)
            if self.pos == len(self.text):
                return members
            if self._peek() != ",":
                raise _SfError("expected comma")
            self.pos += 1
            self._skip(_OWS)
            if self.pos == len(self.text):
                raise _SfError("trailing comma")
        return members

    def _item_or_inner_list(self) -> _Member:
        if self._peek() != "(":
            value = self._bare_item()
            self._parameters()
            return value
        self.pos += 1
        items: list[str] = []
        while True:
            self._skip(" ")
            if self._peek() == ")":
                self.pos += 1
                self._parameters()
                return ", ".join(items), True, "inner-list"
            argument, present, _ = self._bare_item()
            self._parameters()
            items.append(argument if argument is not None else "?1" if present else "?0")
            if self._peek() not in (" ", ")"):
                raise _SfError("bad inner list")

    def _bare_item(self) -> _Member:
        """(argument, present, type): Boolean true -> (None, True, "boolean"), false ->
        (None, False, "boolean")."""
        char = self._peek()
        if char == "-" or char.isdigit():
            return self._number()
        if char == '"':
            return self._string(), True, "string"
        if char == "?":
            flag = self.text[self.pos + 1 : self.pos + 2]
            if flag not in ("0", "1"):
                raise _SfError("bad boolean")
            self.pos += 2
            return None, flag == "1", "boolean"
        if char == ":":
            return self._match(_SF_BYTES)[1:-1], True, "bytes"
        return self._match(_SF_TOKEN), True, "token"

    def _number(self) -> _Member:
        number = self._match(_SF_NUMBER)
        whole, dot, fraction = number.lstrip("-").partition(".")
        if not dot:
            if len(whole) > 15:
                raise _SfError("integer too long")
            return str(int(number)), True, "integer"
        if len(whole) > 12 or not 1 <= len(fraction) <= 3:
            raise _SfError("bad decimal")
        return number, True, "decimal"

    def _string(self) -> str:
        self.pos += 1
        content: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\":
                escaped = self.text[self.pos : self.pos + 1]
                if escaped not in ('"', "\\"):
                    raise _SfError("bad escape")
                content.append(escaped)
                self.pos += 1
            elif char == '"':
                return "".join(content)
            elif not " " <= char <= "~":
                raise _SfError("bad string character")
            else:
                content.append(char)
        raise _SfError("unterminated string")

    def _parameters(self) -> None:
        while self._peek() == ";":
            self.pos += 1
            self._skip(" ")
            self._match(_SF_KEY)
            if self._peek() == "=":
                self.pos += 1
                self._bare_item()

    def _match(self, pattern: re.Pattern[str]) -> str:
        match = pattern.match(self.text, self.pos)
        if match is None:
            raise _SfError(f"expected {pattern.pattern} at {self.pos}")
        self.pos = match.end()
        return match.group()

    def _peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def _skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1
