"""Users and their personal API tokens: who may sign in, with which role, and how.

Passwords are stored as Argon2id hashes (argon2-cffi, its RFC 9106 defaults); a token
is 32 random bytes shown once, stored as its SHA-256 (a token is not guessable, so a
slow hash would only slow every request). With no user in the database, sign-in is
off, as it was before users existed; `SPOONFEEDER_AUTH` pairs become the first users.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.access import EVERYONE, Actor
from spoonfeeder.db.models import ApiToken, User
from spoonfeeder.db.types import utcnow
from spoonfeeder.errors import Forbidden, NotFoundError, ValidationError

log = logging.getLogger(__name__)

ROLES = ("admin", "user")
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # Argon2 takes any length; this bounds the work a caller can ask for
TOKEN_PREFIX = "sf_"
TOKEN_NAME_MAX = 100
# A token's last use is written at most this often, so a busy script does not turn
# every request into a write.
LAST_USED_EVERY = timedelta(minutes=1)
# Basic auth sends the password with every request and Argon2 takes ~50 ms by design:
# a right pair is remembered (as a keyed digest) this long. Changing or disabling a
# user in this process forgets them at once; from another process, within this time.
REMEMBER_SECONDS = 60.0

Now = Callable[[], datetime]


@dataclass(frozen=True)
class UserView:
    id: uuid.UUID
    name: str
    role: str
    disabled: bool
    created_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> Actor:
        return Actor(self.id, self.name, admin=self.is_admin)


@dataclass(frozen=True)
class TokenView:
    id: uuid.UUID
    name: str
    hint: str  # the first characters, enough to tell tokens apart
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class NewToken:
    token: TokenView
    secret: str  # shown to its owner once, never stored


def clean_user_name(text: object) -> str:
    name = text.strip() if isinstance(text, str) else ""
    if not NAME_RULE.fullmatch(name):
        raise ValidationError(
            "A user name is 1–64 letters, digits or . _ @ -, starting with a letter or digit.",
            field="name",
        )
    return name


def check_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValidationError(
            f"A password needs at least {MIN_PASSWORD} characters.", field="password"
        )
    if len(password) > MAX_PASSWORD:
        raise ValidationError(
            f"A password can be at most {MAX_PASSWORD} characters.", field="password"
        )
    return password


def clean_role(role: object) -> str:
    if role not in ROLES:
        raise ValidationError(f"A role is one of: {', '.join(ROLES)}.", field="role")
    return str(role)


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class UserService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        now: Now = utcnow,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._now = now
        self._hasher = hasher or PasswordHasher()
        self._clock = clock
        self._dummy: str | None = None
        self._remember_key = secrets.token_bytes(32)
        self._remembered: dict[bytes, tuple[float, UserView]] = {}
        self._actors: dict[str, tuple[float, Actor]] = {}
        # Decided once at start (`decide_sign_in`): whether every face needs a user.
        # A first user added while the app runs takes a restart, on every face alike.
        self.sign_in_required = False
        self._lock = threading.Lock()

    def decide_sign_in(self) -> bool:
        self.sign_in_required = self.any_users()
        return self.sign_in_required

    def now(self) -> datetime:
        return self._now()

    # -- users --------------------------------------------------------------------

    def any_users(self) -> bool:
        """Whether sign-in is on: some user exists (disabled ones count: disabling the
        last user must not open the app to everyone)."""
        with self._sessions() as session:
            return session.scalar(select(func.count()).select_from(User)) > 0

    def list_users(self) -> list[UserView]:
        with self._sessions() as session:
            rows = session.scalars(select(User).order_by(User.name)).all()
            return [_user_view(row) for row in rows]

    def get(self, name: str) -> UserView:
        with self._sessions() as session:
            return _user_view(self._row(session, name))

    def get_by_id(self, user_id: uuid.UUID) -> UserView | None:
        with self._sessions() as session:
            row = session.get(User, user_id)
            return _user_view(row) if row is not None else None

    def add(self, name: str, password: str, role: str = "user") -> UserView:
        name, role = clean_user_name(name), clean_role(role)
        return self._insert(name, check_password(password), role)

    def set_password(self, name: str, password: str) -> UserView:
        password_hash = self._hasher.hash(check_password(password))
        with self._write() as session:
            row = self._row(session, name)
            row.password_hash = password_hash
            return _user_view(row)

    def set_disabled(self, name: str, disabled: bool = True) -> UserView:
        with self._write() as session:
            row = self._row(session, name)
            if disabled and row.role == "admin" and not row.disabled:
                self._refuse_last_admin(session, row)
            row.disabled = disabled
            return _user_view(row)

    def set_role(self, name: str, role: str) -> UserView:
        role = clean_role(role)
        with self._write() as session:
            row = self._row(session, name)
            if role != "admin" and row.role == "admin" and not row.disabled:
                self._refuse_last_admin(session, row)
            row.role = role
            return _user_view(row)

    def seed_from_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[str]:
        """On first start with SPOONFEEDER_AUTH set, its pairs become users, the first
        an admin, so a setup from before users exist keeps its sign-in. Afterwards the
        database decides; returns a notice when the pairs are ignored."""
        if not pairs:
            return []
        if self.any_users():
            return [
                "SPOONFEEDER_AUTH is set, but users exist in the database, which decide "
                "who signs in: manage them with `python -m spoonfeeder users`."
            ]
        for index, (name, password) in enumerate(pairs):
            # The existing passwords are kept as they are, however short.
            self._insert(clean_user_name(name), password, "admin" if index == 0 else "user")
        log.info(
            "Created users from SPOONFEEDER_AUTH (%s; %s is an admin). From now on the "
            "database decides who signs in: manage them with `python -m spoonfeeder users`.",
            ", ".join(name for name, _ in pairs),
            pairs[0][0],
        )
        return []

    def authenticate(self, name: object, password: object) -> UserView | None:
        """The user whose name and password these are, if enabled; else None. An
        unknown name costs the same hash as a wrong password."""
        if not isinstance(name, str) or not isinstance(password, str):
            return None
        if len(password) > MAX_PASSWORD or not NAME_RULE.fullmatch(name):
            self._verify(self._dummy_hash, "")
            return None
        remembered = self._recall(name, password)
        if remembered is not None:
            return remembered
        with self._sessions() as session:
            row = session.scalar(select(User).where(User.name == name))
            stored = row.password_hash if row is not None else self._dummy_hash
            if not self._verify(stored, password) or row is None or row.disabled:
                return None
            if self._hasher.check_needs_rehash(stored):
                self._rehash(row.id, password)
            user = _user_view(row)
        self._remember(name, password, user)
        return user

    def actor_named(self, name: str | None) -> Actor:
        """Who a signed-in page acts as (Gradio hands handlers the user's name); with
        no name (sign-in off) everyone. A name no longer enabled acts as no one's."""
        if not name:
            if self.sign_in_required:
                raise Forbidden("Sign in first: this app needs a user.")
            return EVERYONE
        with self._lock:
            found = self._actors.get(name)
        if found is not None and found[0] > self._clock():
            return found[1]
        with self._sessions() as session:
            row = session.scalar(select(User).where(User.name == name))
        if row is None or row.disabled:
            raise Forbidden(f"The user {name!r} no longer exists or is disabled: sign in again.")
        actor = _user_view(row).actor
        with self._lock:
            self._actors[name] = (self._clock() + REMEMBER_SECONDS, actor)
        return actor

    def owner_filter(self, actor: Actor, name: str | None) -> uuid.UUID | None:
        """The owner an admin narrows a list to, by user name (blank: everyone's)."""
        if not name or not name.strip():
            return None
        if not actor.admin:
            raise Forbidden("Only an admin can list another user's rows.")
        return self.get(name.strip()).id

    def sign_in(self, name: str, password: str) -> bool:
        """Gradio's login form asks for a yes or no."""
        return self.authenticate(name, password) is not None

    # -- tokens -------------------------------------------------------------------

    def create_token(
        self, user: UserView, name: str, expires_at: datetime | None = None
    ) -> NewToken:
        label = name.strip() if isinstance(name, str) else ""
        if not label or len(label) > TOKEN_NAME_MAX:
            raise ValidationError(
                f"Give the token a name of 1–{TOKEN_NAME_MAX} characters "
                "(what it is for: a script, a machine…).",
                field="name",
            )
        if expires_at is not None and expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)  # a bare date and time is UTC
        if expires_at is not None and expires_at <= self._now():
            raise ValidationError("The expiry date is in the past.", field="expires_at")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = ApiToken(
            user_id=user.id,
            name=label,
            token_hash=token_digest(secret),
            hint=secret[: len(TOKEN_PREFIX) + 4],
            created_at=self._now(),
            expires_at=expires_at,
        )
        with self._write() as session:
            session.add(row)
            session.flush()
            return NewToken(_token_view(row), secret)

    def list_tokens(self, user: UserView) -> list[TokenView]:
        with self._sessions() as session:
            rows = session.scalars(
                select(ApiToken)
                .where(ApiToken.user_id == user.id)
                .order_by(ApiToken.created_at.desc())
            ).all()
            return [_token_view(row) for row in rows]

    def revoke_token(self, user: UserView, token_id: uuid.UUID | str) -> TokenView:
        """Revoke one of `user`'s tokens; it stops working on the next request."""
        with self._write() as session:
            row = session.get(ApiToken, _as_uuid(token_id))
            if row is None or row.user_id != user.id:
                raise NotFoundError("No such token (it may belong to someone else).")
            if row.revoked_at is None:
                row.revoked_at = self._now()
            return _token_view(row)

    def user_for_token(self, secret: object) -> UserView | None:
        """The enabled user a live token belongs to, or None. Looked up on every call,
        so a revoked token stops at once."""
        if not isinstance(secret, str) or not secret.startswith(TOKEN_PREFIX):
            return None
        if len(secret) > 200:
            return None
        now = self._now()
        with self._sessions() as session:
            found = session.execute(
                select(ApiToken, User)
                .join(User, User.id == ApiToken.user_id)
                .where(ApiToken.token_hash == token_digest(secret))
            ).first()
            if found is None:
                return None
            token, user = found
            if token.revoked_at is not None or user.disabled:
                return None
            if token.expires_at is not None and token.expires_at <= now:
                return None
            if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
                session.execute(
                    update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now)
                )
                session.commit()
            return _user_view(user)

    # -- internals ----------------------------------------------------------------

    def _insert(self, name: str, password: str, role: str) -> UserView:
        password_hash = self._hasher.hash(password)
        with self._write() as session:
            if session.scalar(select(User.id).where(User.name == name)) is not None:
                raise ValidationError(f"A user named {name!r} exists already.", field="name")
            row = User(name=name, password_hash=password_hash, role=role)
            session.add(row)
            session.flush()
            return _user_view(row)

    @property
    def _dummy_hash(self) -> str:
        """A hash to verify against when the name is unknown: the answer takes as long."""
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_hex(16))
        return self._dummy

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def _rehash(self, user_id: uuid.UUID, password: str) -> None:
        with self._write() as session:
            session.execute(
                update(User)
                .where(User.id == user_id)
                .values(password_hash=self._hasher.hash(password))
            )

    def _refuse_last_admin(self, session: Session, row: User) -> None:
        admins = session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == "admin", User.disabled.is_(False), User.id != row.id)
        )
        if not admins:
            raise ValidationError(
                f"{row.name} is the last enabled admin: make someone else an admin first."
            )

    def _row(self, session: Session, name: str) -> User:
        row = session.scalar(select(User).where(User.name == name))
        if row is None:
            raise NotFoundError(f"No user named {name!r}.")
        return row

    def _digest(self, name: str, password: str) -> bytes:
        return hmac.digest(self._remember_key, f"{name}\0{password}".encode(), "sha256")

    def _recall(self, name: str, password: str) -> UserView | None:
        key = self._digest(name, password)
        with self._lock:
            entry = self._remembered.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._remembered[key]
                return None
            return entry[1]

    def _remember(self, name: str, password: str, user: UserView) -> None:
        with self._lock:
            if len(self._remembered) > 1000:  # wrong pairs are never kept; this bounds the rest
                self._remembered.clear()
            self._remembered[self._digest(name, password)] = (
                self._clock() + REMEMBER_SECONDS,
                user,
            )

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session
            session.commit()
        with self._lock:  # a changed password, role or state counts from now
            self._remembered.clear()
            self._actors.clear()


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFoundError("No such token.") from None


def _user_view(row: User) -> UserView:
    return UserView(row.id, row.name, row.role, row.disabled, row.created_at)


def _token_view(row: ApiToken) -> TokenView:
    return TokenView(
        row.id,
        row.name,
        row.hint,
        row.created_at,
        row.last_used_at,
        row.expires_at,
        row.revoked_at,
    )
