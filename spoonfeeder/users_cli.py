"""`python -m spoonfeeder users add|list|passwd|disable|enable|role`: manage who signs in.

It works on the database the app uses (the same environment, `.env` and
`--database-url`), upgrading an empty one first, so users can exist before the app's
first start. Passwords are asked for twice at a terminal, or read from one line of
standard input with `--password-stdin` (for scripts); never from the command line,
where other users of the machine could read them.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable

from spoonfeeder.config import load_settings
from spoonfeeder.errors import ConfigError, SpoonFeederError
from spoonfeeder.users import ROLES, UserService, UserView


def add_parser(commands: argparse._SubParsersAction) -> None:
    users = commands.add_parser("users", help="manage the users who sign in")
    users.add_argument("--database-url", help="SQLAlchemy URL (DATABASE_URL)")
    actions = users.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a user")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="user")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    actions.add_parser("list", help="list the users")
    passwd = actions.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    for action, what in (("disable", "stop a user signing in"), ("enable", "let them again")):
        actions.add_parser(action, help=what).add_argument("name")
    role = actions.add_parser("role", help="make a user an admin or a plain user")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)


def read_password(from_stdin: bool, prompt: Callable[[str], str] = getpass.getpass) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ConfigError("no terminal to ask for the password: pass --password-stdin")
    first = prompt("Password: ")
    if prompt("Again: ") != first:
        raise ConfigError("the two passwords differ; nothing was changed")
    return first


def describe(user: UserView) -> str:
    state = "  (disabled)" if user.disabled else ""
    return f"{user.name:<24} {user.role:<6} since {user.created_at:%Y-%m-%d}{state}"


def run(args: argparse.Namespace) -> None:
    from spoonfeeder.db.engine import make_engine, make_session_factory, prepare_schema

    settings = load_settings(database_url=args.database_url)
    engine = make_engine(settings.resolved_database_url)
    try:
        prepare_schema(engine, migrate=True)
        users = UserService(make_session_factory(engine))
        first = not users.any_users()
        try:
            print(act(users, args))
        except SpoonFeederError as exc:
            raise ConfigError(exc.message) from None
        if first and args.action == "add":
            print("This is the first user: restart the app to turn sign-in on.")
    finally:
        engine.dispose()


def act(users: UserService, args: argparse.Namespace) -> str:
    if args.action == "list":
        listed = users.list_users()
        return "\n".join(map(describe, listed)) if listed else "No users: sign-in is off."
    if args.action == "add":
        user = users.add(args.name, read_password(args.password_stdin), args.role)
        return f"Added {user.name} ({user.role})."
    if args.action == "passwd":
        user = users.set_password(args.name, read_password(args.password_stdin))
        return f"Changed the password of {user.name}."
    if args.action in ("disable", "enable"):
        user = users.set_disabled(args.name, args.action == "disable")
        return f"{user.name} is {args.action}d."
    user = users.set_role(args.name, args.role)
    return f"{user.name} is now {'an admin' if user.is_admin else 'a plain user'}."
