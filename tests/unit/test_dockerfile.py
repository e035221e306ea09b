"""The Dockerfile's structure agrees with the repository, pyproject.toml and the config defaults."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from billing.config import CoordinatorConfig, load_config, parse_listen
from proxy.config import CONFIG_SCHEMA, ProxyConfig, load_proxy_config

ROOT = Path(__file__).resolve().parents[2]


def read_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n\s*", " ", text)
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    instructions = read_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def args_of(word: str, stage: list[tuple[str, str]] | None = None) -> list[str]:
    return [rest for w, rest in (stage or read_instructions()) if w == word]


def parse_env(rest: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(rest))


def dockerignore_patterns() -> set[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_multi_stage_builder_then_slim_runtime() -> None:
    froms = args_of("FROM")
    assert len(froms) >= 2
    assert froms[0].endswith("AS builder")
    assert froms[-1] == "python:3.11-slim"


def test_every_copy_source_exists_and_is_not_dockerignored() -> None:
    ignored = dockerignore_patterns()
    copies = [rest for rest in args_of("COPY") if not rest.startswith("--from")]
    assert copies
    for rest in copies:
        *sources, _dest = rest.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") not in ignored, source


def test_builder_copies_every_package_pyproject_installs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {rest.split()[0] for rest in args_of("COPY") if not rest.startswith("--from")}
    for pattern in includes:
        package = pattern.rstrip("*")
        if (ROOT / package / "__init__.py").exists():
            assert package in copied, package
    assert "README.md" in " ".join(args_of("COPY"))  # pyproject's readme is needed to build


def test_builder_compiles_the_records_check() -> None:
    """setup.py builds provenance/_fastrecords.c as optional: without gcc in the builder the
    image would silently run the slower pure-Python check."""
    assert "setup.py" in " ".join(args_of("COPY"))
    assert any("gcc" in run for run in args_of("RUN")), "the builder installs no C compiler"
    assert any("libssl-dev" in run for run in args_of("RUN")), "nor OpenSSL's headers"


def test_entrypoint_is_the_console_script_from_pyproject() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (entrypoint,) = args_of("ENTRYPOINT")
    command = json.loads(entrypoint)
    assert command == ["cachet"]
    assert command[0] in pyproject["project"]["scripts"]


def test_cmd_reads_the_config_file_the_image_ships() -> None:
    (cmd,) = args_of("CMD", final_stage())
    assert json.loads(cmd) == ["proxy", "--config", "/etc/cachet/config.toml"]
    destinations = [rest.split()[-1] for rest in args_of("COPY", final_stage())]
    assert "/etc/cachet/config.toml" in destinations


def coordinator_port() -> int:
    return parse_listen(CoordinatorConfig().listen)[1]


def final_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in args_of("ENV", final_stage()):
        env.update(parse_env(rest))
    return env


def test_exposed_ports_match_the_config_defaults() -> None:
    defaults = ProxyConfig()
    exposed = {int(port) for rest in args_of("EXPOSE") for port in rest.split()}
    assert exposed == {defaults.listen[1], defaults.admin_listen[1], coordinator_port()}


def test_coordinator_env_is_valid_config_on_its_default_port_in_the_volume() -> None:
    env = {k: v for k, v in final_env().items() if k.startswith("CACHET_COORDINATOR_")}
    assert env, "the image should run `cachet coordinator` with no flags"
    config = load_config({}, env, {})
    host, port = parse_listen(config.listen)
    assert (host, port) == ("0.0.0.0", coordinator_port())
    assert config.data.startswith("/var/lib/cachet/")


def test_env_overrides_are_valid_config_and_keep_the_ports() -> None:
    env = final_env()
    proxy_env = {name: value for name, value in env.items() if name.startswith("CACHET_PROXY_")}
    known = {key.env_var for key in CONFIG_SCHEMA.values()}
    assert set(proxy_env) <= known
    config = load_proxy_config({}, proxy_env, None)
    assert config.listen[1] == ProxyConfig().listen[1]
    assert config.admin_listen[1] == ProxyConfig().admin_listen[1]
    assert config.cache_dir.startswith("/var/lib/cachet")


def healthcheck_code() -> str:
    (healthcheck,) = args_of("HEALTHCHECK")
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"]
    code: str = command[2]
    return code


def test_healthcheck_hits_admin_healthz_with_urllib() -> None:
    (healthcheck,) = args_of("HEALTHCHECK")
    assert f":{ProxyConfig().admin_listen[1]}/healthz" in healthcheck
    assert "urllib.request" in healthcheck
    assert "curl" not in healthcheck  # python:3.11-slim has no curl


def test_healthcheck_probes_the_coordinator_when_pid_1_runs_it() -> None:
    code = healthcheck_code()
    compile(code, "<healthcheck>", "exec")
    assert f"127.0.0.1:{coordinator_port()}/healthz" in code
    assert "b'coordinator' in" in code and "/proc/1/cmdline" in code
    assert "CACHET_HEALTHCHECK_URL" in code


def test_runs_as_a_non_root_user_with_a_state_volume() -> None:
    stage = final_stage()
    (user,) = args_of("USER", stage)
    assert user not in ("root", "0")
    volumes = " ".join(args_of("VOLUME", stage))
    assert "/var/lib/cachet" in volumes


@pytest.mark.parametrize("name", [".git", ".venv", "tests", "**/__pycache__"])
def test_dockerignore_keeps_the_context_small(name: str) -> None:
    assert name in dockerignore_patterns()
