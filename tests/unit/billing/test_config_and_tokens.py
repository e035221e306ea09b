"""Coordinator configuration layers and bearer tokens (RFC 6750 §2.1)."""

from __future__ import annotations

import pytest

from billing.config import ConfigError, load_config, parse_listen
from billing.tokens import bearer_token, format_token, hash_token


def test_layers_flags_over_env_over_file() -> None:
    config = load_config(
        {"listen": "127.0.0.1:1", "checkpoint_every_batches": 5, "log_origin": "a.example/log"},
        {"CACHET_COORDINATOR_LISTEN": "127.0.0.1:2", "CACHET_COORDINATOR_MAX_FUTURE_SKEW_S": "9"},
        {"listen": "127.0.0.1:3", "db": None},
    )
    assert config.listen == "127.0.0.1:3"
    assert config.checkpoint_every_batches == 5 and config.max_future_skew_s == 9.0
    assert config.log_origin == "a.example/log" and config.db is None


@pytest.mark.parametrize(
    "table",
    [{"nope": 1}, {"checkpoint_every_batches": "x"}, {"sqlite_synchronous": "OFF"},
     {"listen": "7070"}, {"max_pending_batches": 0}],
)  # fmt: skip
def test_bad_values_are_config_errors(table: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        load_config(table, {}, {})


def test_only_sqlite_dsns_for_now() -> None:
    """SQLAlchemy's convention: sqlite:///relative, sqlite:////absolute."""
    assert str(load_config({}, {}, {"db": "sqlite:////tmp/x.db"}).sqlite_path) == "/tmp/x.db"
    assert str(load_config({}, {}, {"db": "sqlite:///x.db"}).sqlite_path) == "x.db"
    with pytest.raises(ConfigError, match="unsupported"):
        _ = load_config({}, {}, {"db": "postgresql://h/db"}).sqlite_path


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:7070") == ("127.0.0.1", 7070)
    assert parse_listen("[::1]:80") == ("::1", 80)


def test_bearer_token_rfc6750_2_1() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


def test_tokens_are_random_prefixed_and_stored_hashed() -> None:
    token = format_token("cachet-admin-", bytes(32))
    assert token.startswith("cachet-admin-") and len(hash_token(token)) == 64
    with pytest.raises(ValueError):
        format_token("cachet-admin-", bytes(8))
