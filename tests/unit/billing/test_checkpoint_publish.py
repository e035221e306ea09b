"""The checkpoint publish hook's decisions (billing/log/publish.py) and its config keys
(billing/config.py): what a witness target takes, how long it backs off, what an answer means,
what a log line may show, and which configurations are refused at start."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from billing.config import ConfigError, CoordinatorConfig, load_config
from billing.log.publish import (
    COMMAND_FAILED,
    HTTP_ERROR,
    OK,
    command_environment,
    command_outcome,
    http_outcome,
    publisher_from_config,
    redact_url,
    retry_delay_s,
    takes,
)
from billing.store.base import StoredCheckpoint


def checkpoint(size: int) -> StoredCheckpoint:
    return StoredCheckpoint(size, f"{size:064x}", f"note {size}\n", "2026-11-27T12:00:00.000Z")


# -- what a target's slot takes: the newest, never an older or the same one -------------------


def test_an_idle_target_takes_any_checkpoint_even_the_empty_log() -> None:
    assert takes(checkpoint(0), None, None)


def test_newest_wins_over_an_undelivered_older_checkpoint() -> None:
    assert takes(checkpoint(5), checkpoint(3), None)
    assert takes(checkpoint(5), checkpoint(3), 2)


@pytest.mark.parametrize(
    ("candidate", "pending", "delivered"),
    [(3, 5, None), (5, 5, None), (5, None, 5), (4, None, 5), (4, 3, 6)],
)
def test_an_older_or_already_held_checkpoint_is_not_taken(
    candidate: int, pending: int | None, delivered: int | None
) -> None:
    """Same size, same note: the sequencer signs one checkpoint per size (C2SP
    tlog-checkpoint has no timestamp), so a witness gains nothing from it twice."""
    slot = None if pending is None else checkpoint(pending)
    assert not takes(checkpoint(candidate), slot, delivered)


# -- back-off: exponential ceiling, capped, full jitter --------------------------------------


def test_retry_ceiling_doubles_from_initial_and_stops_at_the_cap() -> None:
    ceilings = [retry_delay_s(n, 0.5, 4.0, rand=1.0) for n in range(1, 8)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_retry_jitter_spans_zero_to_the_ceiling() -> None:
    assert retry_delay_s(3, 1.0, 60.0, rand=0.0) == 0.0
    assert retry_delay_s(3, 1.0, 60.0, rand=0.5) == 2.0


def test_retry_after_very_many_failures_stays_at_the_cap() -> None:
    assert retry_delay_s(10_000, 1.0, 60.0, rand=1.0) == 60.0


def test_retry_delay_needs_a_failure() -> None:
    with pytest.raises(ValueError):
        retry_delay_s(0, 1.0, 60.0, rand=0.5)


# -- outcomes ------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "outcome"), [(200, OK), (202, OK), (204, OK)])
def test_any_2xx_is_delivered_rfc9110_15_3(status: int, outcome: str) -> None:
    assert http_outcome(status) == outcome


@pytest.mark.parametrize("status", [301, 307, 400, 401, 404, 409, 429, 500, 503])
def test_anything_else_is_retried(status: int) -> None:
    """A redirect is not followed (RFC 9110 §15.4: a 301/302 may turn the POST into a GET)."""
    assert http_outcome(status) == HTTP_ERROR


def test_command_outcome_is_its_exit_status() -> None:
    assert command_outcome(0) == OK
    assert command_outcome(1) == COMMAND_FAILED
    assert command_outcome(-9) == COMMAND_FAILED


# -- secrets stay out of logs, labels and the command's environment ---------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://witness.example/add", "https://witness.example/add"),
        ("https://u:pw@witness.example:8443/add", "https://***@witness.example:8443/add"),
        ("http://token@127.0.0.1/w", "http://***@127.0.0.1/w"),
        ("https://w.example/add?key=s3cret&log=a", "https://w.example/add?key=***&log=***"),
        ("https://w.example/add#frag", "https://w.example/add"),
    ],
)
def test_redact_url_hides_user_info_and_query_values(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_command_environment_adds_the_checkpoint_and_drops_coordinator_settings() -> None:
    base = {"PATH": "/usr/bin", "CACHET_COORDINATOR_DB": "postgresql://u:pw@h/db"}
    env = command_environment(base, "cachet.local/log", checkpoint(7))
    assert env == {
        "PATH": "/usr/bin",
        "CACHET_CHECKPOINT_ORIGIN": "cachet.local/log",
        "CACHET_CHECKPOINT_SIZE": "7",
        "CACHET_CHECKPOINT_ROOT": f"{7:064x}",
    }


# -- configuration ---------------------------------------------------------------------------


def test_publishing_is_off_by_default() -> None:
    config = CoordinatorConfig()
    assert config.checkpoint_publish_urls == () and config.checkpoint_publish_command == ()
    assert publisher_from_config(config, CollectorRegistry()) is None


def test_empty_arrays_are_the_default_no_target() -> None:
    table: dict[str, object] = {"checkpoint_publish_urls": [], "checkpoint_publish_command": []}
    assert load_config(table, {}, {}) == CoordinatorConfig()


def test_urls_from_a_file_array_or_a_whitespace_separated_env_var() -> None:
    urls = ["http://127.0.0.1:9/a", "https://w.example/add"]
    config = load_config({"checkpoint_publish_urls": urls}, {}, {})
    assert config.checkpoint_publish_urls == tuple(urls)
    env = {"CACHET_COORDINATOR_CHECKPOINT_PUBLISH_URLS": " ".join(urls)}
    assert load_config({}, env, {}).checkpoint_publish_urls == tuple(urls)


def test_command_as_an_array_or_a_string_split_like_a_shell_without_one() -> None:
    table: dict[str, object] = {"checkpoint_publish_command": "/bin/witness --log 'a b' $HOME"}
    config = load_config(table, {}, {})
    assert config.checkpoint_publish_command == ("/bin/witness", "--log", "a b", "$HOME")
    table = {"checkpoint_publish_command": ["/bin/witness", "--log", "a b"]}
    assert load_config(table, {}, {}).checkpoint_publish_command == ("/bin/witness", "--log", "a b")


def test_env_overrides_the_file_command() -> None:
    env = {"CACHET_COORDINATOR_CHECKPOINT_PUBLISH_COMMAND": "/bin/true"}
    table = {"checkpoint_publish_command": ["/bin/false"]}
    assert load_config(table, env, {}).checkpoint_publish_command == ("/bin/true",)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"checkpoint_publish_urls": ["ftp://w.example/x"]}, "http:// or https://"),
        ({"checkpoint_publish_urls": ["w.example/add"]}, "http:// or https://"),
        ({"checkpoint_publish_urls": ["http:///no-host"]}, "http:// or https://"),
        ({"checkpoint_publish_urls": ["http://w.example:99999/"]}, "http:// or https://"),
        ({"checkpoint_publish_urls": [""]}, "http:// or https://"),
        ({"checkpoint_publish_urls": [1]}, "array of strings"),
        ({"checkpoint_publish_urls": {"a": "b"}}, "array of strings"),
        ({"checkpoint_publish_command": ""}, "is empty"),
        ({"checkpoint_publish_command": "   "}, "is empty"),
        ({"checkpoint_publish_command": ["", "x"]}, "program name is empty"),
        ({"checkpoint_publish_command": "witness 'unclosed"}, "checkpoint_publish_command"),
        ({"checkpoint_publish_command": 3}, "array of strings"),
        ({"checkpoint_publish_timeout_s": 0}, "> 0"),
        ({"checkpoint_publish_timeout_s": "nan"}, "> 0"),
        ({"checkpoint_publish_retry_initial_s": -1}, "> 0"),
        (
            {"checkpoint_publish_retry_initial_s": 5, "checkpoint_publish_retry_max_s": 1},
            "retry_max_s must be >=",
        ),
    ],
)
def test_bad_publish_config_is_refused_naming_the_key(
    table: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        load_config(table, {}, {})
    assert "checkpoint_publish" in str(refused.value)


def test_a_refused_url_is_not_echoed_it_may_hold_a_password() -> None:
    with pytest.raises(ConfigError) as refused:
        load_config({"checkpoint_publish_urls": ["ftp://u:s3cret@w.example/"]}, {}, {})
    assert "s3cret" not in str(refused.value)


def test_a_command_that_is_not_an_executable_is_refused_at_start() -> None:
    config = load_config({"checkpoint_publish_command": "/nonexistent/witness-push"}, {}, {})
    with pytest.raises(ConfigError, match="not an executable"):
        publisher_from_config(config, CollectorRegistry())


# -- the coordinator's keys are all documented (config.example.toml, docs/configuration.md) --

ROOT = Path(__file__).resolve().parents[3]


def toml_text(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(json.dumps(item) for item in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def coordinator_section() -> str:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    return text[text.index("\n[coordinator]\n") :]


def test_config_example_lists_every_coordinator_key_at_its_default() -> None:
    section = coordinator_section()
    for field in dataclasses.fields(CoordinatorConfig):
        if field.default is None:  # no TOML spelling for "unset": shown as examples
            assert re.search(rf"^## {field.name} = ", section, re.M), field.name
            continue
        line = f"# {field.name} = {toml_text(field.default)}"
        assert re.search(rf"^{re.escape(line)}$", section, re.M), line


def test_config_example_coordinator_table_uncommented_gives_the_defaults() -> None:
    uncommented = "\n".join(line.removeprefix("# ") for line in coordinator_section().splitlines())
    table = tomllib.loads(uncommented)["coordinator"]
    assert load_config(table, {}, {}) == CoordinatorConfig()


def test_configuration_doc_lists_every_coordinator_key_env_and_default() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| **`")
    }
    for field in dataclasses.fields(CoordinatorConfig):
        row = rows.get(f"**`{field.name}`**")
        assert row is not None, field.name
        assert f"`CACHET_COORDINATOR_{field.name.upper()}`" in row
        default = "unset" if field.default is None else f"`{toml_text(field.default)}`"
        assert default in row, field.name
