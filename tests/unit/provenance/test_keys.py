"""Ed25519 (RFC 8032) keys named and identified as in C2SP signed-note."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.errors import FormatError, SignatureError, UnknownKeyError
from provenance.keys import (
    KeyRing,
    SigningKey,
    SigningKeyRing,
    VerifierKey,
    compute_key_id,
    format_signing_key,
    format_verifier_key,
    generate_signing_key,
    parse_signing_key,
    parse_verifier_key,
)

RFC8032_7_1 = [
    (  # TEST 1
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (  # TEST 2
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (  # TEST 3
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]

# The example key pair of Go's golang.org/x/mod/sumdb/note (the reference signed-note code).
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032_7_1)
def test_rfc8032_7_1_vectors(seed: str, public: str, message: str, signature: str) -> None:
    key = SigningKey("test", bytes.fromhex(seed))
    assert key.verifier.public_key == bytes.fromhex(public)
    assert key.sign(bytes.fromhex(message)) == bytes.fromhex(signature)
    key.verifier.verify(bytes.fromhex(message), bytes.fromhex(signature))
    with pytest.raises(SignatureError):
        key.verifier.verify(bytes.fromhex(message) + b"x", bytes.fromhex(signature))


def test_key_id_is_sha256_of_name_newline_alg_key_c2sp_signed_note() -> None:
    key = parse_verifier_key(GO_VERIFIER)
    assert key.key_id.hex() == "c74f20a3"
    assert compute_key_id("PeterNeumann", key.public_key) == bytes.fromhex("c74f20a3")


def test_go_note_example_keys_round_trip() -> None:
    signer = parse_signing_key(GO_SIGNER)
    assert signer.verifier == parse_verifier_key(GO_VERIFIER)
    assert format_signing_key(signer) == GO_SIGNER
    assert format_verifier_key(signer.verifier) == GO_VERIFIER


@settings(max_examples=30, deadline=None)
@given(
    st.binary(min_size=32, max_size=32), st.from_regex(r"[A-Za-z0-9.:/_-]{1,30}", fullmatch=True)
)
def test_key_strings_round_trip(seed: bytes, name: str) -> None:
    key = generate_signing_key(name, seed)
    assert parse_signing_key(format_signing_key(key)) == key
    assert parse_verifier_key(format_verifier_key(key.verifier)) == key.verifier


@pytest.mark.parametrize(
    "text",
    [
        "",
        "name",
        "name+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "Other+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # id of another name
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+AhpC2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # alg 0x02
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",  # short
        "PeterNeumann+c74f20a3+!!!",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "\ud800+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # lone surrogate
    ],
)
def test_parse_verifier_key_rejects_junk(text: str) -> None:
    with pytest.raises(FormatError):
        parse_verifier_key(text)


@pytest.mark.parametrize(
    "text", ["", GO_VERIFIER, GO_SIGNER.replace("c74f20a3", "00000000"), "PRIVATE+KEY+x+1+2"]
)
def test_parse_signing_key_rejects_junk(text: str) -> None:
    with pytest.raises(FormatError):
        parse_signing_key(text)


def test_keyring_accepts_any_listed_key_and_names_unknown_ones() -> None:
    old, new = (
        generate_signing_key("edge-1", b"\x01" * 32),
        generate_signing_key("edge-1", b"\x02" * 32),
    )
    ring = SigningKeyRing([new, old])
    assert ring.current == new
    trusted = ring.verifiers()
    for key in (old, new):
        trusted.verify("edge-1", key.key_id, b"m", key.sign(b"m"))
    stranger = generate_signing_key("edge-1", b"\x03" * 32)
    with pytest.raises(UnknownKeyError):
        trusted.verify("edge-1", stranger.key_id, b"m", stranger.sign(b"m"))
    with pytest.raises(UnknownKeyError):
        trusted.verify("edge-2", new.key_id, b"m", new.sign(b"m"))
    with pytest.raises(SignatureError):
        trusted.verify("edge-1", new.key_id, b"m", old.sign(b"m"))
    with pytest.raises(SignatureError):
        KeyRing([new.verifier]).verify("edge-1", new.key_id, b"m", b"short")


def test_misuse_raises_value_error() -> None:
    with pytest.raises(ValueError, match="seed"):
        generate_signing_key("a", b"short")
    with pytest.raises(ValueError, match="key name"):
        generate_signing_key("a+b", b"\x00" * 32)
    with pytest.raises(ValueError, match="public key"):
        VerifierKey("a", b"\x00")
    with pytest.raises(ValueError, match="at least one"):
        SigningKeyRing([])


def test_signing_key_repr_hides_seed() -> None:
    assert "seed" not in repr(generate_signing_key("a", b"\x07" * 32))
