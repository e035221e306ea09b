"""Invalidation after unsafe requests (proxy/cache/invalidation.py), RFC 9111 §4.4."""

from __future__ import annotations

import pytest

from proxy.cache.invalidation import keys_to_invalidate
from proxy.http.fields import Headers

TARGET = "http://example.com/items/1"


def keys(
    headers: Headers, *, method: str = "POST", status: int = 200, host: str = "example.com"
) -> list[str]:
    return keys_to_invalidate(method, status, "http", host, "/items/1", headers)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "PURGE-ISH", "get"])
def test_unsafe_or_unknown_method_invalidates_target_rfc9111_s4_4(method: str) -> None:
    """Including methods whose safety is unknown (method names are case-sensitive)."""
    assert keys([], method=method) == [TARGET]


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE"])
def test_safe_methods_invalidate_nothing_rfc9111_s4_4(method: str) -> None:
    assert keys([("Location", "/items/2")], method=method) == []


@pytest.mark.parametrize("status", [200, 201, 204, 301, 303, 399])
def test_non_error_status_invalidates_rfc9111_s4_4(status: int) -> None:
    assert keys([], status=status) == [TARGET]


@pytest.mark.parametrize("status", [100, 400, 404, 409, 500, 503])
def test_error_status_invalidates_nothing_rfc9111_s4_4(status: int) -> None:
    assert keys([("Location", "/items/2")], status=status) == []


def test_location_and_content_location_same_origin_rfc9111_s4_4() -> None:
    headers = [("Location", "/items/2"), ("Content-Location", "http://EXAMPLE.com:80/items/3?v=1")]
    assert keys(headers) == [
        TARGET,
        "http://example.com/items/2",
        "http://example.com/items/3?v=1",
    ]


def test_relative_reference_resolved_against_target_rfc9111_s4_4() -> None:
    assert keys([("Location", "2")]) == [TARGET, "http://example.com/items/2"]


def test_fragment_is_not_part_of_the_key_rfc9111_s4_4() -> None:
    assert keys([("Location", "/items/2#top")]) == [TARGET, "http://example.com/items/2"]


@pytest.mark.parametrize(
    "location",
    [
        "http://other.example/items/2",
        "//other.example/items/2",
        "https://example.com/items/2",
        "http://example.com:8080/items/2",
        "http://sub.example.com/items/2",
    ],
)
def test_other_origins_never_invalidated_rfc9111_s4_4(location: str) -> None:
    """A cache MUST NOT invalidate a URI from a different origin (denial of service)."""
    assert keys([("Location", location), ("Content-Location", location)]) == [TARGET]


def test_duplicate_of_target_listed_once_rfc9111_s4_4() -> None:
    assert keys([("Content-Location", "/items/1")]) == [TARGET]


def test_host_with_default_port_normalised_rfc9111_s4_4() -> None:
    assert keys([("Location", "/x")], host="Example.com:80") == [
        TARGET,
        "http://example.com/x",
    ]
