"""Creator manifests: id, signature, strict parsing."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.canonical_json import canonicalize
from provenance.errors import FormatError, SignatureError, UnknownKeyError
from provenance.keys import KeyRing, generate_signing_key
from provenance.manifests import (
    Manifest,
    ManifestItem,
    PayoutTerms,
    format_signed_manifest,
    manifest_canonical_bytes,
    manifest_id,
    manifest_to_obj,
    parse_manifest,
    sign_manifest,
    verify_manifest,
)

CREATOR_KEY = generate_signing_key("alice", b"\x21" * 32)


def make_manifest(**overrides: object) -> Manifest:
    fields: dict[str, object] = {
        "creator": "alice",
        "key_id": CREATOR_KEY.key_id.hex(),
        "items": (
            ManifestItem("sha256:" + "1" * 64, "/videos/a.mp4", 1234, "video/mp4"),
            ManifestItem("sha256:" + "2" * 64, "/img/*.png", 99, "image/png"),
        ),
        "license": "CC-BY-4.0",
        "training_use": "on_terms",
        "training_terms": "Ask first.",
        "payout_terms": PayoutTerms(per_hit_micros=10, per_gb_micros=20_000, currency="USD"),
        "created": "2026-11-27T03:38:49.123Z",
    }
    fields.update(overrides)
    return Manifest(**fields)  # type: ignore[arg-type]


def test_manifest_id_is_sha256_of_unsigned_canonical_bytes() -> None:
    m = make_manifest()
    assert manifest_canonical_bytes(m) == canonicalize(manifest_to_obj(m))
    assert manifest_id(m) == "sha256:" + hashlib.sha256(manifest_canonical_bytes(m)).hexdigest()
    signed = sign_manifest(m, CREATOR_KEY)
    assert manifest_id(parse_manifest(format_signed_manifest(signed)).manifest) == manifest_id(m)


def test_sign_verify_round_trip() -> None:
    signed = sign_manifest(make_manifest(), CREATOR_KEY)
    parsed = parse_manifest(format_signed_manifest(signed))
    assert parsed == signed
    verify_manifest(parsed, [CREATOR_KEY.verifier])
    verify_manifest(parsed, KeyRing([CREATOR_KEY.verifier]))


def test_tampered_or_foreign_manifest_is_refused() -> None:
    signed = sign_manifest(make_manifest(), CREATOR_KEY)
    richer = dataclasses.replace(signed.manifest, payout_terms=PayoutTerms(11, 20_000))
    with pytest.raises(SignatureError):
        verify_manifest(dataclasses.replace(signed, manifest=richer), [CREATOR_KEY.verifier])
    with pytest.raises(UnknownKeyError):
        verify_manifest(signed, [generate_signing_key("alice", b"\x22" * 32).verifier])
    mallory = generate_signing_key("mallory", b"\x23" * 32)
    with pytest.raises(ValueError, match="creator"):
        sign_manifest(make_manifest(), mallory)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"creator": "a b"}, "creator"),
        ({"key_id": "zz"}, "key_id"),
        ({"version": 0}, "version"),
        ({"version": 2}, "supersedes"),
        ({"supersedes": "sha256:" + "0" * 64}, "supersedes"),
        ({"version": 2, "supersedes": "nope"}, "supersedes"),
        ({"created": "2026-11-27"}, "created"),
        ({"license": ""}, "license"),
        ({"items": ()}, "items"),
        ({"items": (ManifestItem("sha256:x", "/a", 1, "a/b"),)}, "content_id"),
        ({"items": (ManifestItem("sha256:" + "1" * 64, "", 1, "a/b"),)}, "path"),
        ({"items": (ManifestItem("sha256:" + "1" * 64, "/a", -1, "a/b"),)}, "size_bytes"),
        ({"items": (ManifestItem("sha256:" + "1" * 64, "/a", 1, "Video"),)}, "media_type"),
        ({"items": (ManifestItem("sha256:" + "1" * 64, "/a", 1, "a/b"),) * 2}, "distinct"),
        ({"training_use": "maybe", "training_terms": None}, "training_use"),
        ({"training_terms": None}, "training_terms"),
        ({"training_use": "allowed"}, "training_terms"),
        ({"payout_terms": PayoutTerms(1.5, 0)}, "micros"),  # type: ignore[arg-type]
        ({"payout_terms": PayoutTerms(1, 0, "usd")}, "currency"),
    ],
)
def test_bad_manifests_are_refused_with_a_reason(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_manifest(**overrides)
    obj = manifest_to_obj(make_manifest())
    obj.update(json.loads(json.dumps({k: _to_json(v) for k, v in overrides.items()})))
    obj["signature"] = "A" * 86 + "=="
    with pytest.raises(FormatError, match=message):
        parse_manifest(json.dumps(obj).encode())


def _to_json(value: object) -> object:
    if isinstance(value, tuple):
        return [dataclasses.asdict(item) for item in value]
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)  # type: ignore[arg-type]
    return value


def test_parse_manifest_structure_errors() -> None:
    good = json.loads(format_signed_manifest(sign_manifest(make_manifest(), CREATOR_KEY)))
    mutations: list[Callable[[Any], object]] = [
        lambda o: o.pop("signature"),
        lambda o: o.update(signature="AAAA"),
        lambda o: o.pop("license"),
        lambda o: o.update(colour="red"),
        lambda o: o["items"][0].update(extra=1),
        lambda o: o["payout_terms"].pop("currency"),
        lambda o: o.update(items="all"),
    ]
    for mutate in mutations:
        obj = json.loads(json.dumps(good))
        mutate(obj)
        with pytest.raises(FormatError):
            parse_manifest(json.dumps(obj).encode())


def test_parse_manifest_truncated_byte_by_byte_only_format_error() -> None:
    data = format_signed_manifest(sign_manifest(make_manifest(), CREATOR_KEY))
    for end in range(len(data)):
        with pytest.raises(FormatError):
            parse_manifest(data[:end])


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=80))
def test_parse_manifest_arbitrary_bytes_only_format_error(data: bytes) -> None:
    for end in range(len(data) + 1):
        try:
            parse_manifest(data[:end])
        except FormatError:
            pass


def test_manifest_version_field_and_item_shape() -> None:
    obj = json.loads(format_signed_manifest(sign_manifest(make_manifest(), CREATOR_KEY)))
    with pytest.raises(FormatError, match="'v'"):
        parse_manifest(json.dumps({**obj, "v": 2}).encode())
    with pytest.raises(FormatError, match="JSON object"):
        parse_manifest(json.dumps({**obj, "items": ["/a"]}).encode())
    with pytest.raises(FormatError, match="signature"):
        parse_manifest(json.dumps({**obj, "signature": "not base64!"}).encode())
