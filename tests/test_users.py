"""Users and tokens on the real databases: Argon2 hashes, sign-in, the last admin kept,
SPOONFEEDER_AUTH turned into users once, and tokens that stop the moment they are
revoked or expire; and the `python -m spoonfeeder users` command a person runs."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from spoonfeeder.context import AppContext
from spoonfeeder.db.models import ApiToken, User
from spoonfeeder.errors import NotFoundError, ValidationError
from spoonfeeder.users import UserService
from tests.conftest import MakeApp

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
        self.seconds = 0.0

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.seconds

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)
        self.seconds += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def users(ctx: AppContext, clock: Clock) -> UserService:
    return UserService(ctx.sessions, now=clock.now, clock=clock.monotonic)


def test_a_user_signs_in_with_their_password_only(users: UserService, ctx: AppContext) -> None:
    alice = users.add("alice", "correct horse", role="admin")
    assert alice.is_admin and not alice.disabled
    assert users.authenticate("alice", "correct horse") == alice
    assert users.authenticate("alice", "Correct horse") is None
    assert users.authenticate("mallory", "correct horse") is None
    assert users.authenticate("alice", None) is None
    with ctx.sessions() as session:
        stored = session.scalar(select(User.password_hash).where(User.name == "alice"))
    assert stored.startswith("$argon2id$") and "correct horse" not in stored


def test_bad_names_and_passwords_get_sentences(users: UserService) -> None:
    for name in ("", " ", "-dash-first", "a" * 65, "semi;colon", 42):
        with pytest.raises(ValidationError, match="user name is 1–64"):
            users.add(name, "long enough")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="at least 8 characters"):
        users.add("bob", "short")
    with pytest.raises(ValidationError, match="role is one of: admin, user"):
        users.add("bob", "long enough", role="root")
    users.add("bob", "long enough")
    with pytest.raises(ValidationError, match="'bob' exists already"):
        users.add("bob", "another one")
    with pytest.raises(NotFoundError, match="No user named 'carol'"):
        users.set_password("carol", "long enough")


def test_a_changed_password_or_a_disabled_user_counts_at_once(users: UserService) -> None:
    users.add("alice", "first password", role="admin")
    users.add("bob", "bobs password")
    assert users.authenticate("bob", "bobs password") is not None  # now remembered
    users.set_password("bob", "new password")
    assert users.authenticate("bob", "bobs password") is None
    assert users.authenticate("bob", "new password") is not None
    users.set_disabled("bob")
    assert users.authenticate("bob", "new password") is None
    users.set_disabled("bob", False)
    assert users.authenticate("bob", "new password") is not None


def test_the_last_admin_cannot_be_disabled_or_demoted(users: UserService) -> None:
    users.add("alice", "first password", role="admin")
    users.add("bob", "bobs password")
    with pytest.raises(ValidationError, match="alice is the last enabled admin"):
        users.set_disabled("alice")
    with pytest.raises(ValidationError, match="last enabled admin"):
        users.set_role("alice", "user")
    users.set_role("bob", "admin")
    assert users.set_disabled("alice").disabled is True


def test_spoonfeeder_auth_becomes_users_on_the_first_start_only(make_app: MakeApp) -> None:
    ctx = make_app(spoonfeeder_auth="alice:wonder,bob:builder")
    listed = {user.name: user.role for user in ctx.users.list_users()}
    assert listed == {"alice": "admin", "bob": "user"}
    # Short passwords of an existing setup keep working.
    assert ctx.users.authenticate("bob", "builder") is not None
    ctx.users.set_password("bob", "a better password")
    again = make_app(spoonfeeder_auth="alice:wonder,bob:builder", data=ctx.settings.data_dir)
    assert again.users.authenticate("bob", "builder") is None  # the database decides now
    assert again.users.authenticate("bob", "a better password") is not None
    assert any("users exist in the database" in notice for notice in again.operator_notices())


def test_a_token_works_until_revoked_or_expired(users: UserService, clock: Clock) -> None:
    alice = users.add("alice", "first password", role="admin")
    bob = users.add("bob", "bobs password")
    lasting = users.create_token(alice, "laptop script")
    clock.advance(1)
    brief = users.create_token(alice, "one hour", expires_at=clock.now() + timedelta(hours=1))
    assert lasting.secret.startswith("sf_") and len(lasting.secret) > 40
    assert users.user_for_token(lasting.secret) == alice
    assert users.user_for_token(brief.secret) == alice
    assert users.user_for_token(lasting.secret + "x") is None
    assert users.user_for_token("not-a-token") is None
    listed = users.list_tokens(alice)
    assert [token.name for token in listed] == ["one hour", "laptop script"]  # newest first
    assert all(lasting.secret not in repr(token) for token in listed)
    assert users.list_tokens(bob) == []
    with pytest.raises(NotFoundError, match="belong to someone else"):
        users.revoke_token(bob, lasting.token.id)

    clock.advance(3601)
    assert users.user_for_token(brief.secret) is None
    assert [token.state(clock.now()) for token in users.list_tokens(alice)] == [
        "expired",
        "active",
    ]
    revoked = users.revoke_token(alice, lasting.token.id)
    assert revoked.state(clock.now()) == "revoked"
    assert users.user_for_token(lasting.secret) is None


def test_a_tokens_last_use_is_written_at_most_once_a_minute(
    users: UserService, clock: Clock, ctx: AppContext
) -> None:
    alice = users.add("alice", "first password", role="admin")
    made = users.create_token(alice, "cron")

    def last_used() -> datetime | None:
        with ctx.sessions() as session:
            return session.scalar(select(ApiToken.last_used_at))

    assert last_used() is None
    users.user_for_token(made.secret)
    first = last_used()
    assert first == clock.now()
    clock.advance(30)
    users.user_for_token(made.secret)
    assert last_used() == first
    clock.advance(31)
    users.user_for_token(made.secret)
    assert last_used() == clock.now()


def test_a_disabled_users_tokens_stop_and_bad_token_input_is_refused(users: UserService) -> None:
    users.add("alice", "first password", role="admin")
    bob = users.add("bob", "bobs password")
    made = users.create_token(bob, "ci")
    users.set_disabled("bob")
    assert users.user_for_token(made.secret) is None
    with pytest.raises(ValidationError, match="Give the token a name"):
        users.create_token(bob, "  ")
    with pytest.raises(ValidationError, match="expiry date is in the past"):
        users.create_token(bob, "old", expires_at=datetime(2020, 1, 1))
    with pytest.raises(NotFoundError):
        users.revoke_token(bob, "not-a-uuid")


def run_users(data: Path, db_url: str, *args: str, password: str | None = None):
    env = {**os.environ, "SPOONFEEDER_DATA_DIR": str(data), "DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "spoonfeeder", "users", *args],
        input=password + "\n" if password is not None else None,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


def test_the_users_command_manages_users(empty_db_url: str, tmp_path: Path) -> None:
    added = run_users(
        tmp_path,
        empty_db_url,
        "add",
        "alice",
        "--role",
        "admin",
        "--password-stdin",
        password="pw-alice-1",
    )
    assert added.returncode == 0, added.stderr
    assert "Added alice (admin)." in added.stdout
    assert "restart the app to turn sign-in on" in added.stdout
    bob = run_users(tmp_path, empty_db_url, "add", "bob", "--password-stdin", password="pw-bob-12")
    assert bob.returncode == 0 and "restart" not in bob.stdout
    assert run_users(tmp_path, empty_db_url, "disable", "bob").stdout.strip() == "bob is disabled."
    listed = run_users(tmp_path, empty_db_url, "list").stdout
    assert "alice" in listed and "admin" in listed and "bob" in listed and "(disabled)" in listed

    short = run_users(tmp_path, empty_db_url, "passwd", "bob", "--password-stdin", password="short")
    assert short.returncode != 0
    assert "at least 8 characters" in short.stderr and "Traceback" not in short.stderr
    last = run_users(tmp_path, empty_db_url, "disable", "alice")
    assert last.returncode != 0 and "last enabled admin" in last.stderr
    nobody = run_users(tmp_path, empty_db_url, "enable", "carol")
    assert "No user named 'carol'" in nobody.stderr and "Traceback" not in nobody.stderr
    no_terminal = run_users(tmp_path, empty_db_url, "add", "dave")
    assert no_terminal.returncode != 0 and "--password-stdin" in no_terminal.stderr
