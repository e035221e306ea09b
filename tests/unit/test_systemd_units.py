"""deploy/systemd/*.service: each unit runs the `cachet` console script with a subcommand and
flags the CLI accepts (they appear in that subcommand's --help and parse), keeps its state in its
StateDirectory, and carries the hardening docs/operations.md promises."""

from __future__ import annotations

import argparse
import shlex
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from cachet.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
UNITS = {
    "cachet-proxy.service": ("proxy", "--cache-dir"),
    "cachet-coordinator.service": ("coordinator", "--data"),
}
EXEC_PREFIXES = "-@:+!"  # systemd.service(5): special executable prefixes
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections → key → values (systemd allows a key more than once); continuations joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in text.replace("\\\n", " ").splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = sections.setdefault(stripped[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {stripped!r}"
        key, sep, value = stripped.partition("=")
        assert sep, f"not KEY=VALUE: {stripped!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def load_unit(name: str) -> dict[str, dict[str, list[str]]]:
    return parse_unit((ROOT / "deploy" / "systemd" / name).read_text(encoding="utf-8"))


def exec_argvs(service: dict[str, list[str]]) -> list[list[str]]:
    commands = service.get("ExecStartPre", []) + service["ExecStart"]
    return [shlex.split(command.lstrip(EXEC_PREFIXES)) for command in commands]


def subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            chosen: argparse.ArgumentParser = action.choices[name]
            return chosen
    raise AssertionError(f"no subcommand {name!r}")


def command_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser of the deepest subcommand named in argv (e.g. `coordinator migrate`)."""
    parser = build_parser()
    for word in argv[1:]:
        if word.startswith("-"):
            continue
        try:
            parser = subparser(parser, word)
        except AssertionError:
            break
    return parser


@pytest.mark.parametrize("name", sorted(UNITS))
def test_exec_lines_run_the_cachet_console_script(name: str) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    subcommand, _ = UNITS[name]
    for argv in exec_argvs(load_unit(name)["Service"]):
        assert PurePosixPath(argv[0]).is_absolute()  # systemd wants an absolute path
        assert PurePosixPath(argv[0]).name in pyproject["project"]["scripts"]
        assert argv[1] == subcommand


@pytest.mark.parametrize("name", sorted(UNITS))
def test_every_flag_is_in_the_subcommands_help_and_parses(name: str) -> None:
    for argv in exec_argvs(load_unit(name)["Service"]):
        help_text = command_parser(argv).format_help()
        flags = [word.split("=", 1)[0] for word in argv[1:] if word.startswith("--")]
        assert flags
        for flag in flags:
            assert flag in help_text, (argv, flag)
        build_parser().parse_args(argv[1:])  # unknown flags or bad values exit


@pytest.mark.parametrize("name", sorted(UNITS))
def test_state_lives_in_the_state_directory(name: str) -> None:
    service = load_unit(name)["Service"]
    (state,) = service["StateDirectory"]
    state_path = f"/var/lib/{state}"
    _, dir_flag = UNITS[name]
    for argv in exec_argvs(service):
        assert argv[argv.index(dir_flag) + 1] == state_path
    assert service["WorkingDirectory"] == [state_path]


@pytest.mark.parametrize("name", sorted(UNITS))
def test_hardened_and_not_root(name: str) -> None:
    service = load_unit(name)["Service"]
    runs_as = service.get("User", []) + service.get("DynamicUser", [])
    assert runs_as and runs_as[0] not in ("root", "0", "no")
    for key, value in HARDENING.items():
        assert service.get(key) == [value], key
    assert "AmbientCapabilities" not in service  # binding below 1024 is opt-in, commented out


def test_each_service_has_its_own_user() -> None:
    """A compromised proxy must not read the coordinator's log key on a shared host."""
    users = {name: load_unit(name)["Service"]["User"][0] for name in UNITS}
    assert len(set(users.values())) == len(users)


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_starts_after_the_network_and_installs(name: str) -> None:
    unit = load_unit(name)
    assert "network-online.target" in unit["Unit"]["After"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_coordinator_migrates_before_it_starts() -> None:
    service = load_unit("cachet-coordinator.service")["Service"]
    (pre,) = [shlex.split(cmd.lstrip(EXEC_PREFIXES)) for cmd in service["ExecStartPre"]]
    assert pre[1:3] == ["coordinator", "migrate"]
    (start,) = [shlex.split(cmd) for cmd in service["ExecStart"]]
    assert start[start.index("--listen") + 1] == "127.0.0.1:7070"  # behind a TLS proxy


def test_parse_unit_joins_continuations_and_keeps_repeated_keys() -> None:
    text = "[Service]\n# c\nExecStartPre=a\nExecStartPre=b \\\n  c\n"
    assert parse_unit(text) == {"Service": {"ExecStartPre": ["a", "b    c"]}}
