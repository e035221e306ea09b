"""`cachet up`: the whole system on one machine, on the embedded default (no external services).

It runs, as child processes of one supervisor: the coordinator (SQLite, admin UI, creator
portal), a sample origin serving a demo creator's content, and one proxy enrolled with the
coordinator. Keys and data live in one folder (`--data`), created on the first run and reused
after: the first run generates the coordinator's admin token, the demo creator's key and signed
manifest, and the edge's enrolment, and shows the secrets once. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from cachet.content_dir import items_from_dir
from cachet.keyfiles import read_signing_key, write_file_atomically, write_private_key
from provenance.keys import SigningKey, format_verifier_key, generate_signing_key
from provenance.manifests import (
    Manifest,
    PayoutTerms,
    format_signed_manifest,
    manifest_id,
    parse_manifest,
    sign_manifest,
)
from provenance.records import format_timestamp
from proxy.registry_client import STATE_FILE as REGISTRY_STATE_FILE
from proxy.registry_client import ManifestIndex

DEMO_CREATOR = "demo-creator"
DEMO_EDGE = "edge-demo"
CONTENT_PREFIX = "/creator/"
STATE_FILE = "up.json"
READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Addresses:
    coordinator: str
    proxy: str
    proxy_admin: str
    origin: str

    def url(self, which: str) -> str:
        address: str = getattr(self, which)
        return "http://" + address


class UpError(Exception):
    """`cachet up` cannot go on; the message is one line for the user."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "up",
        help="run the whole system on this machine: coordinator, one proxy, a demo origin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data", default="./cachet-data", metavar="DIR", help="default ./cachet-data"
    )
    parser.add_argument("--coordinator-listen", default="127.0.0.1:7070", metavar="HOST:PORT")
    parser.add_argument("--proxy-listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    parser.add_argument("--proxy-admin-listen", default="127.0.0.1:9091", metavar="HOST:PORT")
    parser.add_argument("--origin-listen", default="127.0.0.1:8000", metavar="HOST:PORT")
    parser.add_argument(
        "--demo-traffic",
        action="store_true",
        help="send a steady trickle of requests through the proxy so the dashboards fill",
    )
    parser.add_argument(
        "--demo-rate",
        type=float,
        default=5.0,
        metavar="PER_S",
        help="requests per second of --demo-traffic (default 5)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    addresses = Addresses(
        args.coordinator_listen, args.proxy_listen, args.proxy_admin_listen, args.origin_listen
    )
    data = Path(args.data).resolve()
    rate = args.demo_rate if args.demo_traffic else 0.0
    try:
        prepared = prepare(data)
        return asyncio.run(up(prepared, addresses, rate))
    except UpError as error:
        print(f"cachet up: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


@dataclass
class Prepared:
    """What the file system gives `cachet up` before anything starts."""

    data: Path
    state: dict[str, Any]
    content_dir: Path
    demo_paths: list[str]
    creator_key: SigningKey
    signed_manifest: bytes
    manifest_id: str


def prepare(data: Path) -> Prepared:
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    (data / "logs").mkdir(exist_ok=True)
    content = _demo_content(data)
    key = _creator_key(data)
    signed, identifier = _demo_manifest(data, key, content)
    paths = [CONTENT_PREFIX + p.name for p in sorted(content.iterdir()) if p.is_file()]
    return Prepared(data, _load_state(data), content, paths, key, signed, identifier)


async def up(prepared: Prepared, addresses: Addresses, demo_rate_per_s: float) -> int:
    data, state = prepared.data, prepared.state
    supervisor = Supervisor(data / "logs")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        first_run = not state.get("set_up")
        admin_token = await _coordinator_admin_token(data) if first_run else None
        logins: dict[str, str] = {}
        if first_run:
            logins["admin"] = await _create_admin_user(data)
        await supervisor.start(
            "coordinator",
            ["coordinator", "--listen", addresses.coordinator, "--data", str(data / "coordinator")],
        )
        await _wait_ready(addresses.url("coordinator") + "/healthz", supervisor)
        content_dir = prepared.content_dir
        if first_run:
            assert admin_token is not None
            state = await _set_up(prepared, addresses, admin_token)
            logins[DEMO_CREATOR] = await _set_creator_password(addresses, admin_token)
            _save_state(data, state)
        await supervisor.start(
            "origin",
            [
                "sample-origin",
                "--listen", addresses.origin,
                "--content-dir", str(content_dir),
                "--content-prefix", CONTENT_PREFIX,
            ],
        )  # fmt: skip
        await _wait_ready(addresses.url("origin") + "/", supervisor)
        token_env = {"CACHET_PROXY_ENROLMENT_TOKEN": str(state.get("enrolment_token", ""))}
        await supervisor.start("proxy", _proxy_args(data, addresses, state), token_env)
        await _wait_ready(addresses.url("proxy_admin") + "/healthz", supervisor)
        await _wait_attributing(data / "proxy", prepared, supervisor)
        _print_banner(addresses, data, admin_token, state, logins)
        traffic = (
            loop.create_task(_demo_traffic(addresses, prepared.demo_paths, demo_rate_per_s, stop))
            if demo_rate_per_s > 0
            else None
        )
        failed = await supervisor.watch(stop)
        if traffic is not None:
            traffic.cancel()
        if failed is not None:
            raise UpError(f"{failed} stopped unexpectedly; see {data / 'logs' / failed}.log")
        return 0
    finally:
        await supervisor.stop_all()


class Supervisor:
    """Child processes of `cachet up`, started in order and stopped in reverse."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._children: list[tuple[str, asyncio.subprocess.Process]] = []

    async def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        """``env``: extra environment, for secrets (never on a command line, which any local
        user can read in /proc)."""
        log = (self._logs / f"{name}.log").open("ab")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cachet", *args,
            stdout=log, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops children in order
            env={**os.environ, **(env or {})},
        )  # fmt: skip
        log.close()
        self._children.append((name, process))

    def exited(self) -> str | None:
        for name, process in self._children:
            if process.returncode is not None:
                return name
        return None

    async def watch(self, stop: asyncio.Event) -> str | None:
        """Wait for Ctrl-C (None) or a child's unexpected exit (its name)."""
        while not stop.is_set():
            failed = self.exited()
            if failed is not None:
                return failed
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass
        return None

    async def stop_all(self) -> None:
        for _name, process in reversed(self._children):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()
        self._children.clear()


async def _wait_ready(url: str, supervisor: Supervisor) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            failed = supervisor.exited()
            if failed is not None:
                raise UpError(f"{failed} exited at start; see its log in the data folder's logs/")
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise UpError(f"{url} did not answer within {READY_TIMEOUT_S:.0f} s")


async def _wait_attributing(proxy_dir: Path, prepared: Prepared, supervisor: Supervisor) -> None:
    """Wait for the proxy's first registry poll (saved in its registry state file). Before it,
    the proxy serves the demo content unattributed: no X-Provenance, nothing billed, and the
    copy it caches stays so until it expires; so `cachet up` is not up until then."""
    state_path = proxy_dir / REGISTRY_STATE_FILE
    probe = prepared.demo_paths[0]
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if supervisor.exited() is not None:
            raise UpError("the proxy exited at start; see its log in the data folder's logs/")
        try:
            index = ManifestIndex.from_obj(json.loads(state_path.read_bytes())["index"])
        except (OSError, ValueError, KeyError, TypeError):
            index = ManifestIndex()  # not written yet (it is replaced whole, never torn)
        found = index.lookup_path("", probe)
        if found is not None and found.manifest_id == prepared.manifest_id:
            return
        await asyncio.sleep(0.1)
    raise UpError(
        f"the proxy did not load the demo manifest from the coordinator within "
        f"{READY_TIMEOUT_S:.0f} s; see logs/proxy.log in the data folder"
    )


async def _coordinator_admin_token(data: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cachet", "coordinator", "admin-token",
        "--data", str(data / "coordinator"), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    if process.returncode != 0:
        raise UpError(f"could not create the admin token: {err.decode().strip()}")
    token: str = json.loads(out)["admin_token"]
    return token


async def _create_admin_user(data: Path) -> str:
    """The admin UI's first user, `admin`, with a generated password (shown once)."""
    password = secrets.token_urlsafe(18)
    secret = data / ".admin-password"
    write_file_atomically(secret, password.encode() + b"\n", 0o600, force=True)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cachet", "admin", "create-user",
            "--data", str(data / "coordinator"), "--username", "admin",
            "--password-file", str(secret),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await process.communicate()
    finally:
        secret.unlink(missing_ok=True)
    if process.returncode != 0:
        raise UpError(f"could not create the admin UI user: {err.decode().strip()}")
    return password


async def _set_creator_password(addresses: Addresses, admin_token: str) -> str:
    """The demo creator's portal password (shown once)."""
    password = secrets.token_urlsafe(18)
    url = f"{addresses.url('coordinator')}/v1/admin/creators/{DEMO_CREATOR}/password"
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.put(url, json={"password": password}) as response,
    ):
        if response.status not in (200, 201, 204):
            raise UpError(f"setting the demo creator's password failed: {await response.text()}")
    return password


def _demo_content(data: Path) -> Path:
    """The demo creator's files, written once (deterministic, so their content ids are too)."""
    folder = data / "demo-content"
    if folder.is_dir():
        return folder
    folder.mkdir()
    (folder / "article.html").write_text(
        "<!doctype html><title>Edge economics</title><h1>Paying the people whose bytes the "
        "edge serves</h1><p>A demo article served through cachet.</p>\n"
    )
    (folder / "chart.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="60">'
        '<rect x="5" y="20" width="20" height="35" fill="#2b6cb0"/>'
        '<rect x="35" y="10" width="20" height="45" fill="#2f855a"/>'
        '<rect x="65" y="30" width="20" height="25" fill="#c05621"/></svg>\n'
    )
    (folder / "dataset.csv").write_text(
        "day,requests,hits\n" + "".join(f"{d},{100 + d * 7},{80 + d * 6}\n" for d in range(30))
    )
    (folder / "preview.bin").write_bytes(bytes(range(256)) * 1024)
    return folder


def _creator_key(data: Path) -> SigningKey:
    creator_dir = data / "creator"
    creator_dir.mkdir(exist_ok=True, mode=0o700)
    key_path = creator_dir / f"{DEMO_CREATOR}.key"
    if key_path.exists():
        return read_signing_key(key_path)
    key = generate_signing_key(DEMO_CREATOR, os.urandom(32))
    write_private_key(key_path, key)
    return key


def _demo_manifest(data: Path, key: SigningKey, content: Path) -> tuple[bytes, str]:
    """The demo creator's signed manifest over the demo content, made once and kept."""
    path = data / "creator" / "manifest.json"
    if path.exists():
        signed = path.read_bytes()
        return signed, manifest_id(parse_manifest(signed).manifest)
    manifest = Manifest(
        creator=DEMO_CREATOR,
        key_id=key.verifier.key_id_hex,
        items=tuple(items_from_dir(content, CONTENT_PREFIX)),
        license="CC-BY-4.0",
        training_use="on_terms",
        training_terms="training use billed at the training rate",
        payout_terms=PayoutTerms(per_hit_micros=100, per_gb_micros=20_000, currency="USD"),
        created=format_timestamp(datetime.now(UTC)),
    )
    signed = format_signed_manifest(sign_manifest(manifest, key))
    write_file_atomically(path, signed, 0o644, force=True)
    return signed, manifest_id(manifest)


async def _set_up(prepared: Prepared, addresses: Addresses, admin_token: str) -> dict[str, Any]:
    """First run: register the demo creator, publish its manifest, mint the edge's
    enrolment token."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    base = addresses.url("coordinator")
    verifier = format_verifier_key(prepared.creator_key.verifier)
    async with aiohttp.ClientSession(headers=headers) as session:
        await _post(session, base + "/v1/admin/creators",
                    {"account": DEMO_CREATOR, "verifier_keys": [verifier]},
                    allow=(201, 409))  # fmt: skip
        async with session.post(base + "/v1/manifests", data=prepared.signed_manifest) as response:
            if response.status not in (200, 201):
                raise UpError(f"publishing the demo manifest failed: {await response.text()}")
        enrolment = await _post(session, base + "/v1/admin/enrolment-tokens", {}, allow=(200, 201))
    return {
        "set_up": True,
        "creator": DEMO_CREATOR,
        "manifest": prepared.manifest_id,
        "edge": DEMO_EDGE,
        "enrolment_token": enrolment["token"],
    }


async def _post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], allow: tuple[int, ...]
) -> dict[str, Any]:
    async with session.post(url, json=body) as response:
        text = await response.text()
        if response.status not in allow:
            raise UpError(f"POST {url} answered {response.status}: {text[:200]}")
        result: dict[str, Any] = json.loads(text) if text else {}
        return result


def _proxy_args(data: Path, addresses: Addresses, state: dict[str, Any]) -> list[str]:
    return [
        "proxy",
        "--listen", addresses.proxy,
        "--admin-listen", addresses.proxy_admin,
        "--origin", addresses.url("origin"),
        "--cache-dir", str(data / "proxy"),
        "--coordinator", addresses.url("coordinator"),
        "--edge-id", str(state.get("edge", DEMO_EDGE)),
        "--batch-max-interval-ms", "1000",
    ]  # fmt: skip


def _load_state(data: Path) -> dict[str, Any]:
    path = data / STATE_FILE
    if not path.exists():
        return {}
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UpError(f"{path} is unreadable ({error}); move it away to set up anew") from None
    return state


def _save_state(data: Path, state: dict[str, Any]) -> None:
    body = json.dumps(state, indent=2).encode()
    write_file_atomically(data / STATE_FILE, body, 0o600, force=True)


def _print_banner(
    addresses: Addresses,
    data: Path,
    admin_token: str | None,
    state: dict[str, Any],
    logins: dict[str, str],
) -> None:
    proxy = addresses.url("proxy")
    lines = [
        "",
        "Cachet is up (data in " + str(data) + ")",
        f"  proxy          {proxy}  (try: curl -si {proxy}{CONTENT_PREFIX}article.html)",
        f"  proxy admin    {addresses.url('proxy_admin')}/metrics",
        f"  coordinator    {addresses.url('coordinator')}  (checkpoint: /v1/checkpoint)",
        f"  admin UI       {addresses.url('coordinator')}/admin/",
        f"  creator portal {addresses.url('coordinator')}/portal/",
        f"  demo origin    {addresses.url('origin')}",
        f"  demo creator   {state.get('creator')} (manifest {state.get('manifest')})",
    ]
    if logins:
        lines += ["", "  Logins (shown once; keep them):"]
        lines += [f"    {user}: {password}" for user, password in logins.items()]
        lines += [
            "    (admin UI: user admin; creator portal: user demo-creator;",
            "     `cachet admin create-user` adds administrators)",
        ]
    if admin_token is not None:
        lines += [
            "",
            "  Admin API token (shown once; `cachet coordinator admin-token --data "
            f"{data / 'coordinator'}` makes a new one):",
            f"    {admin_token}",
        ]
    lines += ["", "Press Ctrl-C to stop.", ""]
    print("\n".join(lines), flush=True)


async def _demo_traffic(
    addresses: Addresses, creator_paths: list[str], rate_per_s: float, stop: asyncio.Event
) -> None:
    """A steady trickle through the proxy: the creator's files, a few with a training-use
    declaration, and the sample origin's own pages."""
    paths = [*creator_paths, "/hello.txt", "/api/info.json", "/validated.txt", "/bytes/2048"]
    base = addresses.url("proxy")
    interval_s = 1.0 / rate_per_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not stop.is_set():
            path = paths[secrets.randbelow(len(paths))]
            headers = {"X-Cachet-Use": "training"} if secrets.randbelow(10) == 0 else {}
            try:
                async with session.get(base + path, headers=headers) as response:
                    await response.read()
            except (aiohttp.ClientError, TimeoutError):
                pass
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass
