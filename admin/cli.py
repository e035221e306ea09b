"""`cachet admin create-user`: create an administrator of the web UI (there is no default user
and no default password).

    cachet admin create-user --data DIR [--db DSN] --username NAME [--password-file FILE] [--json]

The password is read from ``--password-file`` (first line) or asked twice at a prompt without
echo; it must be 10..1024 characters. The hash is scrypt (``admin.passwords``). Creator portal
passwords are set by an admin in the UI (Creators → a creator → Portal login) or with
``PUT /v1/admin/creators/{account}/password``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import secrets
import sys
from pathlib import Path

from admin.passwords import check_password_policy, hash_password
from admin.store import ADMIN, AdminStore, UiUser, UserExistsError
from provenance.records import format_timestamp, is_name

EXIT_FAIL = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "admin",
        help="manage the web UI's administrators",
        description="Manage the coordinator's web UI (/admin/) accounts.",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    create = actions.add_parser("create-user", help="create an administrator")
    create.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="the coordinator's data folder (default ./cachet-coordinator)",
    )
    create.add_argument(
        "--db",
        metavar="DSN",
        default=None,
        help="the coordinator's database (default SQLite in the data folder; postgresql://…)",
    )
    create.add_argument("--username", required=True, help="the new administrator's name")
    create.add_argument(
        "--password-file",
        metavar="FILE",
        type=Path,
        default=None,
        help="read the password from the first line of FILE (else prompt)",
    )
    create.add_argument("--json", action="store_true", help="print machine-readable output")
    create.set_defaults(handler=_create_user)


def _fail(reason: str) -> int:
    print(f"cachet admin: {reason}", file=sys.stderr)
    return EXIT_FAIL


def _read_password(path: Path | None) -> str:
    if path is not None:
        lines = path.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    if not sys.stdin.isatty():
        raise ValueError("no terminal to prompt on: use --password-file FILE")
    first = getpass.getpass("New admin password: ")
    if getpass.getpass("Repeat the password: ") != first:
        raise ValueError("the passwords differ")
    return first


async def _create(args: argparse.Namespace, password_hash: str) -> None:
    from billing.cli import _config
    from billing.service import open_store, utc_now

    config = _config(argparse.Namespace(data=args.data, db=args.db, config=None))
    store = await open_store(config)  # the coordinator's migrations first (then the admin's)
    await store.close()
    now = format_timestamp(utc_now())
    admin_store = await AdminStore.open(config, now)
    try:
        await admin_store.add_user(UiUser(args.username, ADMIN, None, password_hash, now))
    finally:
        await admin_store.close()


def _create_user(args: argparse.Namespace) -> int:
    from billing.config import ConfigError

    if not is_name(args.username):
        return _fail("username must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}")
    try:
        password = _read_password(args.password_file)
        check_password_policy(password)
    except (ValueError, OSError) as exc:
        return _fail(str(exc))
    password_hash = hash_password(password, secrets.token_bytes(16))
    try:
        asyncio.run(_create(args, password_hash))
    except UserExistsError:
        return _fail(f"user {args.username} exists already")
    except (ConfigError, OSError) as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps({"username": args.username, "role": ADMIN}))
    else:
        print(f"created admin user {args.username}; log in at /admin/login")
    return 0
