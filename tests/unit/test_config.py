"""Proxy configuration: schema, precedence (defaults < file < env < flags), validation, CLI."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachet.cli import build_parser, main
from proxy import cli as proxy_cli
from proxy.config import (
    CONFIG_SCHEMA,
    ConfigError,
    OriginConfig,
    ProxyConfig,
    load_proxy_config,
    read_config_file,
)
from proxy.config_values import parse_value

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024**2


def load(
    flags: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
    text: str | None = None,
) -> ProxyConfig:
    return load_proxy_config(flags or {}, env or {}, text, file_name="test.toml")


# -- schema ---------------------------------------------------------------------------------


def test_no_input_gives_the_dataclass_defaults() -> None:
    assert load() == ProxyConfig()


def test_schema_covers_every_field_with_its_default() -> None:
    by_field = {key.field: key for key in CONFIG_SCHEMA.values() if key.field}
    field_names = {f.name for f in dataclasses.fields(ProxyConfig)} - {"origins"}
    assert set(by_field) == field_names
    for field in dataclasses.fields(ProxyConfig):
        if field.name in by_field:
            assert by_field[field.name].default == field.default


def test_contract_flags_and_env_names() -> None:
    """ARCHITECTURE.md's CLI contract: these flag spellings are what scripts rely on."""
    flags = {key.flag for key in CONFIG_SCHEMA.values()}
    for flag in ("--listen", "--origin", "--admin-listen", "--cache-dir", "--memory", "--disk"):
        assert flag in flags
    assert {"--workers", "--coordinator"} <= flags
    assert CONFIG_SCHEMA["memory"].env_var == "CACHET_PROXY_MEMORY"
    assert CONFIG_SCHEMA["origin"].env_var == "CACHET_PROXY_ORIGIN"


# -- precedence -----------------------------------------------------------------------------


def test_precedence_defaults_file_env_flags() -> None:
    text = '[proxy]\nworkers = 2\nmemory = "1GiB"\ndisk = "2GiB"\n'
    env = {"CACHET_PROXY_MEMORY": "512MiB", "CACHET_PROXY_DISK": "3GiB"}
    config = load({"disk": "4GB"}, env, text)
    assert config.workers == 2  # file over default
    assert config.memory_bytes == 512 * MiB  # env over file
    assert config.disk_bytes == 4_000_000_000  # flag over env
    assert config.max_object_bytes == 64 * MiB  # default


def test_none_flags_do_not_override() -> None:
    config = load({"workers": None}, {"CACHET_PROXY_WORKERS": "3"})
    assert config.workers == 3


def test_listen_forms() -> None:
    assert load({"listen": "127.0.0.1:8080"}).listen == ("127.0.0.1", 8080)
    assert load({"listen": ":8080"}).listen == ("0.0.0.0", 8080)
    assert load({"listen": "[::1]:9000"}).listen == ("::1", 9000)
    assert load({"listen": "localhost:0"}).listen == ("localhost", 0)


def test_sizes_in_toml_may_be_integers() -> None:
    assert load(text="[proxy]\nmemory = 1048576\n").memory_bytes == MiB


def test_lists_from_env_and_file() -> None:
    env = {"CACHET_PROXY_TARGETED_CACHE_CONTROL": "Acme-Cache-Control, CDN-Cache-Control"}
    assert load(env=env).targeted_cache_control == ("Acme-Cache-Control", "CDN-Cache-Control")
    text = '[proxy]\ntrust_forwarded_from = ["10.0.0.1", "192.168.0.0/16"]\n'
    assert load(text=text).trust_forwarded_from == ("10.0.0.1/32", "192.168.0.0/16")


@pytest.mark.parametrize(("raw", "expected"), [("yes", True), ("0", False), ("TRUE", True)])
def test_booleans_from_env(raw: str, expected: bool) -> None:
    assert load(env={"CACHET_PROXY_ACCESS_LOG": raw}).access_log is expected


# -- origins --------------------------------------------------------------------------------

TWO_HOSTS = """
[proxy]
origin = "http://127.0.0.1:8000/"

[[proxy.origins]]
url = "https://media.example.net"
hosts = ["Media.Example.com:443", "*.cdn.example.com"]
trusted = true
"""


def test_origins_from_file_route_by_host() -> None:
    config = load(text=TWO_HOSTS)
    media = OriginConfig(
        "https://media.example.net", ("media.example.com", "*.cdn.example.com"), True
    )
    default = OriginConfig("http://127.0.0.1:8000", (), False)
    assert config.origins == (media, default)
    assert config.origin_for_host("MEDIA.example.com:8080") == media
    assert config.origin_for_host("a.cdn.example.com") == media
    assert config.origin_for_host("cdn.example.com") == default
    assert config.origin_for_host("other.test") == default
    assert config.origin_for_host(None) == default
    assert config.origin_for_host("bad host!") == default


def test_origin_flag_replaces_the_default_origin_only() -> None:
    config = load({"origin": "http://10.0.0.5:9000", "origin_trusted": True}, text=TWO_HOSTS)
    assert config.origins[-1] == OriginConfig("http://10.0.0.5:9000", (), True)
    assert config.origins[0].hosts == ("media.example.com", "*.cdn.example.com")


def test_route_flags() -> None:
    config = load({"origins": ["a.test,b.test=http://127.0.0.1:1;trusted"]})
    assert config.origins == (OriginConfig("http://127.0.0.1:1", ("a.test", "b.test"), True),)
    assert config.origin_for_host("unrouted.test") is None


def test_routes_from_env_are_whitespace_separated() -> None:
    env = {"CACHET_PROXY_ORIGINS": "a.test=http://h1 b.test=http://h2"}
    assert [o.url for o in load(env=env).origins] == ["http://h1", "http://h2"]


def test_no_origin_is_not_an_error_for_the_loader() -> None:
    assert load().origins == ()


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[proxy]\nlisen = ':80'\n", "unknown key 'lisen' in [proxy]"),
        ("listen = ':80'\n", "unknown top-level key 'listen' (put it under [proxy])"),
        ("[proxy\n", "not valid TOML"),
        ("[[proxy.origins]]\nurl = 'http://x'\nhost = 'a'\n", "unknown key 'host'"),
        ("[[proxy.origins]]\nhosts = ['a']\n", "missing 'url'"),
        ("[proxy]\nworkers = 0\n", "workers: must be at least 1"),
        ("[proxy]\nworkers = '2x'\n", "expected a whole number"),
        ("[proxy]\nmemory = '10M'\n", "ambiguous"),
        ("[proxy]\naccess_log = 'maybe'\n", "expected true or false"),
    ],
)
def test_file_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load(text=text)
    assert str(info.value).startswith("test.toml")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"listen": "8080"}, "--listen: '8080' is not HOST:PORT"),
        ({"listen": "::1:80"}, "brackets"),
        ({"listen": "h:99999"}, "port must be a number"),
        ({"origin": "ftp://x"}, "--origin: 'ftp://x' is not an http:// or https:// URL"),
        ({"origin": "http://x/?q=1"}, "no user, query or fragment"),
        ({"origin": "http://x:port"}, "bad port"),
        ({"coordinator": "nope"}, "--coordinator"),
        ({"heuristic_fraction": "1.5"}, "between 0 and 1"),
        ({"origin_timeout_s": "0"}, "more than 0 seconds"),
        ({"origin_timeout_s": "nan"}, "expected a number"),
        ({"log_level": "loud"}, "not one of debug, info, warning, error"),
        ({"via_name": "my cache"}, "not an HTTP token"),
        ({"trust_forwarded_from": "10.0.0.0/33"}, "not an IP address or network"),
        ({"targeted_cache_control": "Bad Field"}, "not an HTTP token"),
        ({"max_head_size": "100B"}, "at least 1024"),
        ({"origins": ["a.test"]}, "origin #1"),
        ({"origins": ["a.test=http://x;secret"]}, "only ';trusted'"),
        ({"origins": ["a_b!=http://x"]}, "not a host name"),
        ({"origins": ["a.test=http://x", "A.test=http://y"]}, "routed to more than one origin"),
        ({"bogus": "1"}, "unknown option 'bogus'"),
    ],
)
def test_flag_errors_name_the_flag(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(flags)


def test_two_default_origins_are_refused() -> None:
    text = "[[proxy.origins]]\nurl = 'http://a'\n[[proxy.origins]]\nurl = 'http://b'\n"
    with pytest.raises(ConfigError, match="only one default origin"):
        load(text=text)


def test_unknown_env_var_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown environment variable CACHET_PROXY_MEMORYY"):
        load(env={"CACHET_PROXY_MEMORYY": "1GiB"})


def test_unrelated_env_vars_are_ignored() -> None:
    assert load(env={"CACHET_COORDINATOR_DATA": "x", "PATH": "/bin"}) == ProxyConfig()


def test_read_config_file_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        read_config_file(str(tmp_path / "missing.toml"))
    path = tmp_path / "ok.toml"
    path.write_text("[proxy]\n", encoding="utf-8")
    assert read_config_file(str(path)) == "[proxy]\n"


_KINDS = sorted({key.kind for key in CONFIG_SCHEMA.values()})
_RAW = st.one_of(
    st.text(max_size=30),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.text(max_size=10), max_size=3),
    st.dictionaries(st.sampled_from(["url", "hosts", "trusted", "x"]), st.text(max_size=10)),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_KINDS), _RAW)
def test_parsers_return_a_value_or_raise_config_error_only(kind: str, raw: object) -> None:
    try:
        parse_value(kind, raw, "fuzz")  # type: ignore[arg-type]
    except ConfigError as exc:
        message = str(exc)
    else:
        return
    assert message.startswith("fuzz: ")
    assert "\n" not in message


# -- shipped files derived from the schema --------------------------------------------------


def test_config_example_loads_and_documents_every_key() -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    load(text=text)
    uncommented = "\n".join(line.removeprefix("# ") for line in text.splitlines())
    tomllib.loads(uncommented)  # the commented-out example is valid TOML too
    for key in CONFIG_SCHEMA.values():
        if key.kind == "routes":
            assert "[[proxy.origins]]" in text
            continue
        assert re.search(rf"^# {key.name} = {re.escape(key.default_text)}$", text, re.M), key.name


def test_config_example_uncommented_gives_the_defaults_plus_the_example_origins() -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    uncommented = "\n".join(line.removeprefix("# ") for line in text.splitlines())
    config = load(text=uncommented)
    hosted = [o for o in config.origins if o.hosts]
    assert len(hosted) == 1
    assert len(hosted[0].hosts) == 2
    assert dataclasses.replace(config, origins=()) == ProxyConfig()


def test_configuration_doc_lists_every_key_flag_env_and_default() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")
    }
    for key in CONFIG_SCHEMA.values():
        row = rows.get(f"`{key.name}`")
        assert row is not None, key.name
        assert f"`{key.flag}" in row
        assert f"`{key.env_var}`" in row
        assert key.default_text in row


# -- the command line ------------------------------------------------------------------------


def test_proxy_help_has_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["proxy", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for key in CONFIG_SCHEMA.values():
        assert key.flag in out
    assert "--config" in out


def test_cli_builds_the_config_and_runs_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ProxyConfig] = []

    def fake_run(config: ProxyConfig) -> int:
        seen.append(config)
        return 0

    monkeypatch.setattr(proxy_cli, "_server_run", lambda: fake_run)
    monkeypatch.setenv("CACHET_PROXY_WORKERS", "2")
    argv = ["proxy", "--listen", "127.0.0.1:8081", "--origin", "http://127.0.0.1:8000"]
    assert main([*argv, "--memory", "1GiB", "--access-log"]) == 0
    (config,) = seen
    assert config.listen == ("127.0.0.1", 8081)
    assert config.memory_bytes == 1024 * MiB
    assert config.workers == 2
    assert config.access_log is True
    assert config.origins == (OriginConfig("http://127.0.0.1:8000"),)


def test_cli_reads_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[proxy]\norigin = "http://o.test"\nworkers = 3\n', encoding="utf-8")
    args = build_parser().parse_args(["proxy", "--config", str(path), "--workers", "4"])
    config = proxy_cli.build_config(args, {})
    assert config.workers == 4
    assert config.origins[0].url == "http://o.test"
    env_args = build_parser().parse_args(["proxy"])
    assert proxy_cli.build_config(env_args, {"CACHET_PROXY_CONFIG": str(path)}).workers == 3


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["proxy"], "cachet proxy: no origin configured"),
        (["proxy", "--origin", "http://o", "--memory", "10M"], "cachet proxy: --memory: '10M'"),
        (["proxy", "--config", "/nonexistent/c.toml"], "cachet proxy: cannot read config file"),
    ],
)
def test_cli_config_errors_exit_2_with_one_line(
    argv: list[str],
    reason: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in [v for v in os.environ if v.startswith("CACHET_PROXY_")]:
        monkeypatch.delenv(var)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(reason)
    assert err.count("\n") == 1


def test_namespace_without_flags_gives_defaults() -> None:
    args = argparse.Namespace(config=None)
    config = proxy_cli.build_config(args, {"CACHET_PROXY_ORIGIN": "http://o"})
    assert dataclasses.replace(config, origins=()) == ProxyConfig()


# -- NATS publishing (issue 9) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["nats://127.0.0.1:4222", "tls://nats.example:4443", "nats://user:s3cret@h:4222"]
)
def test_nats_url_accepts_nats_and_tls_urls_with_a_host(raw: str) -> None:
    assert load(text=f'[proxy]\nnats_url = "{raw}"\n').nats_url == raw


@pytest.mark.parametrize(
    "raw",
    ["http://user:s3cret@h:4222", "nats://user:s3cret@:4222", "nats://user:s3cret@h:99999",
     "nats://user:s3cret@h:4222/path"],
)  # fmt: skip
def test_a_bad_nats_url_is_refused_without_echoing_its_password(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(text=f'[proxy]\nnats_url = "{raw}"\n')
    assert "s3cret" not in str(info.value)
    assert "nats_url" in str(info.value)


def test_no_nats_url_by_default_means_http_forwarding() -> None:
    config = load(text="")
    assert config.nats_url is None
    assert config.nats_subject == "cachet.batches"
