"""C2SP signed-note and C2SP tlog-checkpoint."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.checkpoint import Checkpoint, format_checkpoint, parse_checkpoint
from provenance.errors import FormatError, SignatureError, UnknownKeyError
from provenance.keys import generate_signing_key, parse_signing_key, parse_verifier_key
from provenance.signed_note import open_note, sign_note, split_note

from .test_keys import GO_SIGNER, GO_VERIFIER

GO_NOTE = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNX"
    "gKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_TEXT = GO_NOTE.split("\n\n")[0] + "\n"


def test_go_note_example_opens_c2sp_signed_note() -> None:
    assert open_note(GO_NOTE.encode(), [parse_verifier_key(GO_VERIFIER)]) == GO_TEXT


def test_signing_reproduces_the_go_note_example() -> None:
    assert sign_note(GO_TEXT, [parse_signing_key(GO_SIGNER)]) == GO_NOTE


def test_unknown_signature_lines_are_ignored_c2sp_signed_note() -> None:
    other = generate_signing_key("witness.example/w1", b"\x05" * 32)
    note = sign_note(GO_TEXT, [other, parse_signing_key(GO_SIGNER)])
    assert open_note(note.encode(), [parse_verifier_key(GO_VERIFIER)]) == GO_TEXT
    with pytest.raises(UnknownKeyError):
        open_note(note.encode(), [generate_signing_key("x", b"\x06" * 32).verifier])


def test_tampered_text_or_signature_is_rejected() -> None:
    key = parse_verifier_key(GO_VERIFIER)
    with pytest.raises(SignatureError):
        open_note(GO_NOTE.replace("answer", "Answer").encode(), [key])
    with pytest.raises(SignatureError):
        open_note(GO_NOTE.replace("ZJkuBS9UG", "ZJkuBS9UH").encode(), [key])


@pytest.mark.parametrize(
    "note",
    [
        b"",
        b"no blank line\n",
        b"text\n\n",  # no signature lines
        b"text\n\n\xe2\x80\x94 name AAAA\n",  # too short
        b"text\n\n- name " + b"A" * 96 + b"\n",  # hyphen, not em dash
        b"text\n\n\xe2\x80\x94 name " + b"A" * 96,  # no final newline
        b"text\n\n\xe2\x80\x94 name !!!!\n",
        b"te\x00xt\n\n\xe2\x80\x94 name " + b"A" * 96 + b"\n",
        b"\xff\n\n\xe2\x80\x94 name " + b"A" * 96 + b"\n",
    ],
)
def test_malformed_notes_are_format_errors(note: bytes) -> None:
    with pytest.raises(FormatError):
        open_note(note, [parse_verifier_key(GO_VERIFIER)])


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=200))
def test_split_note_returns_or_raises_format_error(data: bytes) -> None:
    for end in range(len(data) + 1):
        try:
            split_note(data[:end])
        except FormatError:
            pass


def test_checkpoint_round_trip_c2sp_tlog_checkpoint() -> None:
    checkpoint = Checkpoint("example.com/log", 42, bytes(range(32)), ("ext one",))
    text = format_checkpoint(checkpoint)
    assert text == "example.com/log\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\next one\n"
    assert parse_checkpoint(text) == checkpoint
    key = generate_signing_key("example.com/log", b"\x09" * 32)
    note = sign_note(text, [key])
    assert parse_checkpoint(open_note(note.encode(), [key.verifier])) == checkpoint


@pytest.mark.parametrize(
    "text",
    [
        "",
        "origin\n1\n",
        "origin\n01\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "origin\n-1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "origin\n1\nAAEC\n",
        "origin\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "origin\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n",
        "origin\n99999999999999999999999\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    ],
)
def test_parse_checkpoint_rejects_malformed(text: str) -> None:
    with pytest.raises(FormatError):
        parse_checkpoint(text)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=120))
def test_parse_checkpoint_returns_or_raises_format_error(data: bytes) -> None:
    for end in range(len(data) + 1):
        try:
            parse_checkpoint(data[:end])
        except FormatError:
            pass


def test_sign_note_misuse() -> None:
    key = generate_signing_key("k", b"\x01" * 32)
    with pytest.raises(ValueError, match="newline"):
        sign_note("no newline", [key])
    with pytest.raises(ValueError, match="blank line"):
        sign_note("a\n\nb\n", [key])
    with pytest.raises(ValueError, match="at least one"):
        sign_note("a\n", [])


def test_note_limits_and_bad_lines_c2sp_signed_note() -> None:
    key = parse_verifier_key(GO_VERIFIER)
    line = GO_NOTE.split("\n\n")[1]
    with pytest.raises(FormatError, match="too many"):
        open_note((GO_TEXT + "\n" + line * 101).encode(), [key])
    with pytest.raises(FormatError, match="too large"):
        open_note(b"a" * (1 << 20) + GO_NOTE.encode(), [key])
    with pytest.raises(FormatError, match="want"):
        open_note((GO_TEXT + "\n" + line.replace(" x08go", " extra x08go")).encode(), [key])
    short = base64.b64encode(parse_verifier_key(GO_VERIFIER).key_id + b"\x00" * 10).decode()
    with pytest.raises(FormatError, match="64 bytes"):
        open_note((GO_TEXT + f"\n\u2014 PeterNeumann {short}\n").encode(), [key])
