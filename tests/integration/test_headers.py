"""Header handling through a real `cachet proxy`: hop-by-hop (RFC 9110 §7.6.1), Via (§7.6.3),
X-Forwarded-*, X-Request-ID, Age (RFC 9111 §5.1); 1xx and odd upstream framing (RFC 9112)."""

from __future__ import annotations

import http.client

import pytest

from tests.integration.conftest import Origin, Proxy


def names_of(headers: list[list[str]]) -> set[str]:
    return {name.lower() for name, _ in headers}


def value_of(headers: list[list[str]], name: str) -> str | None:
    for field_name, value in headers:
        if field_name.lower() == name:
            return value
    return None


def test_hop_by_hop_request_fields_are_not_forwarded_rfc9110_s7_6_1(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    proxy.get(
        path,
        headers={
            "Connection": "keep-alive, X-Private-Hop",
            "X-Private-Hop": "secret",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Connection": "keep-alive",
            "X-End-To-End": "kept",
        },
    )
    [seen] = origin.requests(path)
    names = names_of(seen["headers"])
    for hop in ("x-private-hop", "keep-alive", "te", "proxy-connection"):
        assert hop not in names
    assert value_of(seen["headers"], "connection") in (None, "keep-alive", "close")
    assert value_of(seen["headers"], "x-end-to-end") == "kept"


def test_hop_by_hop_response_fields_are_not_forwarded_rfc9110_s7_6_1(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        {
            "headers": [
                ["Connection", "X-Origin-Hop"],
                ["X-Origin-Hop", "secret"],
                ["Keep-Alive", "timeout=5"],
                ["Proxy-Connection", "keep-alive"],
                ["X-End-To-End", "kept"],
            ],
            "body": "ok",
        },
    )
    response = proxy.get(path)
    names = {name.lower() for name, _ in response.headers}
    for hop in ("x-origin-hop", "keep-alive", "proxy-connection"):
        assert hop not in names
    assert response.header("Connection") in (None, "keep-alive", "close")
    assert response.header("X-End-To-End") == "kept"


def test_via_is_added_both_ways_rfc9110_s7_6_3(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(path, {"headers": [["Via", "1.1 origin-side"]], "body": "ok"})
    response = proxy.get(path, headers={"Via": "1.0 client-side"})
    [seen] = origin.requests(path)
    upstream_via = value_of(seen["headers"], "via") or ""
    assert upstream_via.startswith("1.0 client-side")
    assert upstream_via.endswith("1.1 cachet")
    downstream_via = ", ".join(response.all("Via"))
    assert downstream_via.startswith("1.1 origin-side")
    assert downstream_via.endswith("1.1 cachet")


def test_x_forwarded_fields_reach_origin(proxy: Proxy, origin: Origin, path: str) -> None:
    proxy.get(path, headers={"Host": "shop.example.test", "X-Forwarded-For": "203.0.113.9"})
    [seen] = origin.requests(path)
    assert value_of(seen["headers"], "x-forwarded-for") == "127.0.0.1"  # untrusted peer: replaced
    assert value_of(seen["headers"], "x-forwarded-proto") == "http"
    assert value_of(seen["headers"], "x-forwarded-host") == "shop.example.test"


def test_request_id_is_generated(proxy: Proxy, origin: Origin, path: str) -> None:
    first, second = proxy.get(path), proxy.get(path)
    first_id, second_id = first.header("X-Request-ID"), second.header("X-Request-ID")
    assert first_id and second_id and first_id != second_id
    seen = origin.requests(path)
    assert [value_of(r["headers"], "x-request-id") for r in seen] == [first_id, second_id]


def test_sane_client_request_id_is_propagated(proxy: Proxy, origin: Origin, path: str) -> None:
    response = proxy.get(path, headers={"X-Request-ID": "client-abc.123"})
    assert response.header("X-Request-ID") == "client-abc.123"
    [seen] = origin.requests(path)
    assert value_of(seen["headers"], "x-request-id") == "client-abc.123"


def test_a_client_request_id_sent_again_gets_a_fresh_one(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    """Records are deduplicated by request id (issue 5), so a repeated client id would leave
    the second request unbilled: the edge keeps a client's id once and replaces repeats."""
    first = proxy.get(path, headers={"X-Request-ID": "client-repeat-1"})
    second = proxy.get(path, headers={"X-Request-ID": "client-repeat-1"})
    assert first.header("X-Request-ID") == "client-repeat-1"
    replaced = second.header("X-Request-ID")
    assert replaced and replaced != "client-repeat-1"


def test_insane_client_request_id_is_replaced(proxy: Proxy, origin: Origin, path: str) -> None:
    response = proxy.get(path, headers={"X-Request-ID": "bad id with spaces " + "x" * 200})
    generated = response.header("X-Request-ID")
    assert generated and " " not in generated
    [seen] = origin.requests(path)
    assert value_of(seen["headers"], "x-request-id") == generated


def test_age_present_on_hits_rfc9111_s5_1(proxy: Proxy, origin: Origin, path: str) -> None:
    origin.script(path, {"headers": [["Cache-Control", "max-age=300"], ["Age", "7"]], "body": "a"})
    proxy.get(path)
    hit = proxy.get(path)
    assert hit.header("X-Cache-Status") == "HIT"
    age = hit.header("Age")
    assert age is not None and int(age) >= 7


def test_interim_1xx_responses_then_final_rfc9110_s15_2(
    proxy: Proxy, origin: Origin, path: str
) -> None:
    origin.script(
        path,
        {
            "interim": [[100, []], [103, [["Link", "</style.css>; rel=preload"]]]],
            "body": "final body",
        },
    )
    response = proxy.get(path)
    assert response.status == 200
    assert response.body == b"final body"


@pytest.mark.parametrize("framing", ["close", "chunked"])
def test_odd_upstream_framing_is_relayed_whole_rfc9112_s6(
    proxy: Proxy, origin: Origin, path: str, framing: str
) -> None:
    """A close-delimited body (no Content-Length) and a chunked body with chunk extensions
    and trailers both reach the client whole, and the connection stays usable."""
    origin.script(path, {"framing": framing, "body_size": 50_000})
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200
            assert response.read() == b"x" * 50_000
    finally:
        conn.close()
    assert origin.count(path) == 2
