"""Provider settings and profiles: endpoints and API keys, encrypted at rest.

A *setting* is the default configuration of one provider kind (one row per kind).
A *profile* is an additional named endpoint of any kind: a second ComfyUI server,
an OpenAI-compatible host such as vLLM or LM Studio, …

API keys are encrypted with the SecretBox before they reach the database and are
only ever shown masked. Nothing here logs a key.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from spoonfeeder.config import Settings
from spoonfeeder.crypto import SecretBox, mask_secret
from spoonfeeder.db.engine import transaction
from spoonfeeder.db.models import Profile, ProviderSetting
from spoonfeeder.db.types import utcnow
from spoonfeeder.errors import NotFoundError, SecretError, ValidationError
from spoonfeeder.ids import parse_id, shown
from spoonfeeder.providers.base import Credentials, Provider
from spoonfeeder.providers.catalog import provider_kind, provider_kinds
from spoonfeeder.providers.health import ERROR, Health
from spoonfeeder.providers.options import check_options
from spoonfeeder.providers.registry import connect

MAX_NAME = 100
MAX_KEY = 1000
MAX_URL = 2048
# Bounds how long a write made by *another* process (a second app on the same database)
# can go unseen by cached_credentials(); this process's own writes invalidate at once.
CREDENTIALS_TTL = 60.0


@dataclass(frozen=True)
class KeyView:
    """What may be shown of a stored key: its mask, or why it cannot be read."""

    masked: str = ""
    error: str | None = None

    @property
    def is_set(self) -> bool:
        return bool(self.masked or self.error)


@dataclass(frozen=True)
class SettingView:
    provider: str
    label: str
    key: KeyView
    endpoint_url: str  # effective URL: stored, else environment, else built-in default
    stored_url: str | None
    default_model: str | None
    status: str
    status_message: str | None
    last_tested: datetime | None
    # Set by a save that moved the endpoint without a new key: the old key was removed,
    # since a stored key is only ever sent to the URL it was saved with.
    key_removed: bool = False


@dataclass(frozen=True)
class ProfileView:
    id: uuid.UUID
    name: str
    provider: str
    url: str  # effective URL
    stored_url: str | None
    key: KeyView
    options: dict[str, Any] = field(default_factory=dict)
    status: str = "untested"
    status_message: str | None = None
    last_tested: datetime | None = None
    key_removed: bool = False  # as SettingView.key_removed
    label: str = ""  # the kind's label ("OpenAI / compatible")


@dataclass(frozen=True)
class ConnectionCheck:
    """What a Test connection of the values in a form found. `saved` says they were the
    saved values, whose result is then recorded with the setting or profile."""

    status: str
    message: str
    tested_at: datetime
    saved: bool


# Said when a form's URL differs from the saved one and its key field is blank.
KEY_STAYS_HOME = "the saved API key was not sent: it only goes to the URL it was saved with"


def validate_url(text: str | None, *, what: str = "URL") -> str | None:
    """A clean http(s) base URL without trailing slash, None for blank, else
    ValidationError. No query string or fragment (a base URL has paths appended to it),
    and no credentials in it (a key goes in the API key field, stored encrypted)."""
    value = (text or "").strip()
    if not value:
        return None
    if len(value) > MAX_URL:
        raise ValidationError(f"{what} is longer than {MAX_URL} characters", field="url")
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() or ord(c) < 32 for c in value)
    ):
        raise ValidationError(
            f"{what} {shown(value)} is not valid: expected http://host:port or https://host/path",
            field="url",
        )
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise ValidationError(
            f"{what} {shown(value)} has a query string or fragment; a base URL is only "
            "scheme://host:port/path",
            field="url",
        )
    if parts.username or parts.password:
        raise ValidationError(
            f"{what} has a user name or password in it; put the key in the API key field, "
            "where it is stored encrypted",
            field="url",
        )
    try:
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        raise ValidationError(
            f"{what} {shown(value)} has an invalid port number", field="url"
        ) from None
    return value.rstrip("/")


def parse_options(text: str | dict[str, Any] | None) -> dict[str, Any]:
    """Profile options from JSON text: blank is {}, anything but an object is refused."""
    if isinstance(text, dict):
        return text
    if not (text or "").strip():
        return {}
    try:
        value = json.loads(text or "")
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"Options are not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            field="options",
        ) from None
    if not isinstance(value, dict):
        raise ValidationError(
            'Options must be a JSON object such as {"timeout": 30}, not a '
            f"{type(value).__name__}",
            field="options",
        )
    return value


def clean_api_key(text: str | None) -> str | None:
    value = (text or "").strip()
    if not value:
        return None
    if any(c.isspace() for c in value):
        raise ValidationError("The API key contains spaces or line breaks", field="api_key")
    if len(value) > MAX_KEY:
        raise ValidationError(f"The API key is longer than {MAX_KEY} characters", field="api_key")
    return value


def clean_profile_name(text: str | None) -> str:
    name = (text or "").strip()
    if not name:
        raise ValidationError("The profile name cannot be empty", field="name")
    if len(name) > MAX_NAME:
        raise ValidationError(
            f"The profile name is longer than {MAX_NAME} characters", field="name"
        )
    return name


class ProfileService:
    """Reads and writes provider settings and profiles; runs connection tests."""

    def __init__(
        self, sessions: sessionmaker[Session], secrets: SecretBox, settings: Settings
    ) -> None:
        self._sessions = sessions
        self._secrets = secrets
        self._settings = settings
        # (provider, profile id) -> (monotonic time read, credentials); see cached_credentials
        self._cache: dict[tuple[str, uuid.UUID | str | None], tuple[float, Credentials]] = {}
        self._cache_lock = threading.Lock()
        self._generation = 0  # bumped by every write; a read begun before it is not cached

    def unreadable_keys_notice(self) -> str | None:
        """A sentence for the operator when stored API keys cannot be decrypted with the
        current key (another ENCRYPTION_KEY, or a key file generated anew), else None.
        A key that is malformed is already a start-up notice of its own."""
        if not self._secrets.usable:
            return None
        places = [f"the {view.label} setting" for view in self.list_settings() if view.key.error]
        places += [f"profile '{view.name}'" for view in self.list_profiles() if view.key.error]
        if not places:
            return None
        count = f"{len(places)} stored API key" + ("s" if len(places) > 1 else "")
        return (
            f"{count} cannot be decrypted with {self._secrets.source} ({', '.join(places)}): "
            "they were saved with another key. Set the key they were saved with again, "
            "or re-enter these API keys in Settings."
        )

    # ----- provider settings -------------------------------------------------

    @staticmethod
    def kind_choices() -> list[tuple[str, str]]:
        """(label, name) of every provider kind, in the order the app lists them."""
        return [(kind.label, name) for name, kind in provider_kinds().items()]

    def default_url(self, kind: type[Provider]) -> str:
        """Environment first (OLLAMA_URL, COMFYUI_URL), then the built-in default."""
        env_urls = {"ollama": self._settings.ollama_url, "comfyui": self._settings.comfyui_url}
        return (env_urls.get(kind.name) or kind.default_url).rstrip("/")

    def list_settings(self) -> list[SettingView]:
        with self._sessions() as session:
            rows = {row.provider: row for row in session.scalars(select(ProviderSetting))}
        return [self._setting_view(kind, rows.get(name)) for name, kind in provider_kinds().items()]

    def get_setting(self, provider: str) -> SettingView:
        kind = provider_kind(provider)
        with self._sessions() as session:
            row = self._setting_row(session, kind.name)
        return self._setting_view(kind, row)

    def save_setting(
        self,
        provider: str,
        *,
        api_key: str | None = None,
        endpoint_url: str | None = None,
        default_model: str | None = None,
        clear_key: bool = False,
    ) -> SettingView:
        """Save one provider's setting.

        None leaves a field as it is; a blank URL or model resets it to the default;
        a blank `api_key` keeps the stored key (`clear_key` removes it) — unless the URL
        changes: a stored key goes only to the URL it was saved with, so a new URL needs
        the key entered again in the same save (`key_removed` says it was dropped).
        """
        kind = provider_kind(provider)
        url = validate_url(endpoint_url, what="Endpoint URL")
        key = clean_api_key(api_key)
        model = (default_model or "").strip() or None
        if model and len(model) > 255:
            raise ValidationError("The default model name is too long", field="default_model")
        encrypted = self._secrets.encrypt(key) if key else None
        with self._write() as session:
            row = self._setting_row(session, kind.name) or ProviderSetting(provider=kind.name)
            session.add(row)
            changed = clear_key or bool(encrypted)
            moved = False
            if endpoint_url is not None:
                before = row.endpoint_url or self.default_url(kind)
                moved = (url or self.default_url(kind)) != before
                changed = changed or row.endpoint_url != url
                row.endpoint_url = url
            if default_model is not None:
                row.default_model = model
            removed = bool(row.api_key) and moved and not encrypted and not clear_key
            if clear_key or removed:
                row.api_key = None
            if encrypted:
                row.api_key = encrypted
            if changed:  # an old test result says nothing about the new endpoint or key
                row.status, row.status_message, row.last_tested = "untested", None, None
        return replace(self.get_setting(kind.name), key_removed=removed)

    def test_setting(self, provider: str) -> SettingView:
        kind = provider_kind(provider)
        view = self.get_setting(kind.name)
        if view.key.error:
            status, message = "error", view.key.error
        else:
            result = _check(
                Credentials(kind.name, view.endpoint_url, self._decrypt_setting_key(kind.name))
            )
            status, message = result.status, result.message
        with self._write() as session:
            row = self._setting_row(session, kind.name) or ProviderSetting(provider=kind.name)
            session.add(row)
            row.status, row.status_message, row.last_tested = status, message, utcnow()
        return self.get_setting(kind.name)

    def check_setting_values(
        self, provider: str, *, endpoint_url: str | None, api_key: str | None
    ) -> ConnectionCheck:
        """Test connection with what a setting's form holds, saved or not: a blank URL is
        the default one (as saving it would be), a blank key the saved key — which is sent
        only to the URL it was saved with. The saved values' result is recorded."""
        kind = provider_kind(provider)
        url = validate_url(endpoint_url, what="Endpoint URL") or self.default_url(kind)
        typed_key = clean_api_key(api_key)
        saved = self.get_setting(kind.name)
        same_url = url == saved.endpoint_url
        if same_url and typed_key is None:  # exactly the saved values
            view = self.test_setting(kind.name)
            return _recorded(view.status, view.status_message, view.last_tested)
        # Another URL: the typed key, or none (a saved key is not sent there).
        return _unsaved(kind.name, url, typed_key, withheld=typed_key is None and saved.key.is_set)

    def check_profile_values(
        self,
        profile_id: uuid.UUID | str | None,
        provider: str,
        url: str | None,
        api_key: str | None,
    ) -> ConnectionCheck:
        """As `check_setting_values`, for a profile's form (a new one has no saved key)."""
        kind = provider_kind(provider)
        target = validate_url(url) or self.default_url(kind)
        typed_key = clean_api_key(api_key)
        if not profile_id:
            return _unsaved(kind.name, target, typed_key)
        view = self.get_profile(profile_id)
        same_endpoint = view.provider == kind.name and view.url == target
        if same_endpoint and typed_key is None:  # exactly the saved values
            tested = self.test_profile(view.id)
            return _recorded(tested.status, tested.status_message, tested.last_tested)
        # Another endpoint, or a typed key: the saved key stays with the saved URL.
        withheld = typed_key is None and view.key.is_set
        return _unsaved(kind.name, target, typed_key, withheld=withheld)

    def seed_from_environment(self) -> list[str]:
        """Store API keys given as environment variables where none is stored yet."""
        kinds = provider_kinds()
        # OPENAI_API_KEY -> Settings.openai_api_key: read from the environment and .env
        env_keys = {
            name: getattr(self._settings, kind.key_env.lower(), None)
            for name, kind in kinds.items()
            if kind.key_env
        }
        seeded = []
        with self._write() as session:
            for name in kinds:
                row = self._setting_row(session, name)
                if row is None:
                    row = ProviderSetting(provider=name)
                    session.add(row)
                key = clean_api_key(env_keys.get(name))
                if key and not row.api_key and self._secrets.usable:
                    row.api_key = self._secrets.encrypt(key)
                    seeded.append(name)
        return seeded

    # ----- profiles ----------------------------------------------------------

    def list_profiles(self) -> list[ProfileView]:
        with self._sessions() as session:
            rows = session.scalars(select(Profile).order_by(Profile.provider, Profile.name)).all()
        return [self._profile_view(row) for row in rows]

    def get_profile(self, profile_id: uuid.UUID | str) -> ProfileView:
        with self._sessions() as session:
            return self._profile_view(self._profile_row(session, profile_id))

    def create_profile(
        self,
        name: str,
        provider: str,
        url: str | None = None,
        api_key: str | None = None,
        options: str | dict[str, Any] | None = None,
    ) -> ProfileView:
        clean = self._clean_profile(name, provider, url, options)
        key = clean_api_key(api_key)
        row = Profile(**clean, api_key=self._secrets.encrypt(key) if key else None)
        with _name_must_be_unique(clean["name"]), self._write() as session:
            self._refuse_duplicate_name(session, clean["name"])
            session.add(row)
        return self.get_profile(row.id)

    def update_profile(
        self,
        profile_id: uuid.UUID | str,
        name: str,
        provider: str,
        url: str | None = None,
        api_key: str | None = None,
        options: str | dict[str, Any] | None = None,
        clear_key: bool = False,
    ) -> ProfileView:
        """Update a profile. A blank `api_key` keeps the stored key — unless the endpoint
        (URL or kind) changes: a stored key goes only to the URL it was saved with, so it
        is then removed unless entered again in the same save (`key_removed`)."""
        clean = self._clean_profile(name, provider, url, options)
        key = clean_api_key(api_key)
        encrypted = self._secrets.encrypt(key) if key else None
        with _name_must_be_unique(clean["name"]), self._write() as session:
            row = self._profile_row(session, profile_id)
            self._refuse_duplicate_name(session, clean["name"], exclude=row.id)
            endpoint_changed = row.url != clean["url"] or row.provider != clean["provider"]
            removed = bool(row.api_key) and endpoint_changed and not encrypted and not clear_key
            for attr, value in clean.items():
                setattr(row, attr, value)
            if clear_key or removed:
                row.api_key = None
            if encrypted:
                row.api_key = encrypted
            if endpoint_changed or clear_key or encrypted:
                row.status, row.status_message, row.last_tested = "untested", None, None
        return replace(self.get_profile(row.id), key_removed=removed)

    def delete_profile(self, profile_id: uuid.UUID | str) -> str:
        with self._write() as session:
            row = self._profile_row(session, profile_id)
            session.delete(row)
            return row.name

    def test_profile(self, profile_id: uuid.UUID | str) -> ProfileView:
        view = self.get_profile(profile_id)
        if view.key.error:
            status, message = "error", view.key.error
        else:
            creds = self.credentials(view.provider, profile_id=view.id)
            result = _check(creds)
            status, message = result.status, result.message
        with self._write() as session:
            row = self._profile_row(session, view.id)
            row.status, row.status_message, row.last_tested = status, message, utcnow()
        return self.get_profile(view.id)

    # ----- for the provider layer -------------------------------------------

    def credentials(self, provider: str, profile_id: uuid.UUID | str | None = None) -> Credentials:
        """URL and decrypted key for a provider's setting, or for one of its profiles."""
        kind = provider_kind(provider)
        if profile_id is None:
            view = self.get_setting(kind.name)
            return Credentials(kind.name, view.endpoint_url, self._decrypt_setting_key(kind.name))
        with self._sessions() as session:
            row = self._profile_row(session, profile_id)
            key = self._decrypt(row.api_key, f"API key of profile '{row.name}'")
            return Credentials(
                row.provider,
                row.url or self.default_url(provider_kind(row.provider)),
                key,
                dict(row.options or {}),
                row.id,
            )

    def cached_credentials(
        self, provider: str, profile_id: uuid.UUID | str | None = None
    ) -> Credentials:
        """credentials(), from memory when this process has read them before.

        For the chat path, where a database read and a decryption per message are time to
        first token. Every write below (save, delete, test, seeding: anything that goes
        through `_write`) empties the cache, so a key changed in Settings is used by the
        very next message.
        """
        key = (provider, _profile_key(profile_id))
        with self._cache_lock:
            hit = self._cache.get(key)
            generation = self._generation
        now = time.monotonic()
        if hit is not None and now - hit[0] < CREDENTIALS_TTL:
            return hit[1]
        creds = self.credentials(provider, profile_id=profile_id)  # errors are never cached
        with self._cache_lock:
            if self._generation == generation:  # no write since the read began
                self._cache[key] = (now, creds)
        return creds

    def invalidate_credentials(self) -> None:
        with self._cache_lock:
            self._generation += 1
            self._cache.clear()

    # ----- helpers ----------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """The one way this service writes: a transaction, then the cache emptied.

        Emptied after the commit (or rollback), and a read that began before is not cached
        (the generation check), so no old key can survive a save.
        """
        try:
            with transaction(self._sessions) as session:
                yield session
        finally:
            self.invalidate_credentials()

    def _setting_row(self, session: Session, provider: str) -> ProviderSetting | None:
        return session.scalar(select(ProviderSetting).where(ProviderSetting.provider == provider))

    def _profile_row(self, session: Session, profile_id: uuid.UUID | str) -> Profile:
        key = parse_id(profile_id, "profile")
        row = session.get(Profile, key)
        if row is None:
            raise NotFoundError(f"No profile with id {profile_id} (it may have been deleted)")
        return row

    def _decrypt_setting_key(self, provider: str) -> str | None:
        with self._sessions() as session:
            row = self._setting_row(session, provider)
            token = row.api_key if row else None
        return self._decrypt(token, f"API key of the {provider_kind(provider).label} setting")

    def _decrypt(self, token: str | None, what: str) -> str | None:
        return self._secrets.decrypt(token, what=what) if token else None

    def _key_view(self, token: str | None, what: str) -> KeyView:
        if not token:
            return KeyView()
        try:
            return KeyView(masked=mask_secret(self._secrets.decrypt(token, what=what)))
        except SecretError as exc:
            return KeyView(error=str(exc))

    def _setting_view(self, kind: type[Provider], row: ProviderSetting | None) -> SettingView:
        return SettingView(
            provider=kind.name,
            label=kind.label,
            key=self._key_view(
                row.api_key if row else None, f"API key of the {kind.label} setting"
            ),
            endpoint_url=(row.endpoint_url if row else None) or self.default_url(kind),
            stored_url=row.endpoint_url if row else None,
            default_model=row.default_model if row else None,
            status=row.status if row else "untested",
            status_message=row.status_message if row else None,
            last_tested=row.last_tested if row else None,
        )

    def _profile_view(self, row: Profile) -> ProfileView:
        return ProfileView(
            id=row.id,
            name=row.name,
            provider=row.provider,
            url=row.url or self.default_url(provider_kind(row.provider)),
            stored_url=row.url,
            key=self._key_view(row.api_key, f"API key of profile '{row.name}'"),
            options=dict(row.options or {}),
            status=row.status,
            status_message=row.status_message,
            last_tested=row.last_tested,
            label=provider_kind(row.provider).label,
        )

    def _clean_profile(
        self, name: str, provider: str, url: str | None, options: str | dict[str, Any] | None
    ) -> dict[str, Any]:
        kind = provider_kind(provider).name
        return {
            "name": clean_profile_name(name),
            "provider": kind,
            "url": validate_url(url),
            "options": check_options(kind, parse_options(options)),
        }

    @staticmethod
    def _refuse_duplicate_name(
        session: Session, name: str, exclude: uuid.UUID | None = None
    ) -> None:
        query = select(Profile.id).where(func.lower(Profile.name) == name.lower())
        if exclude is not None:
            query = query.where(Profile.id != exclude)
        if session.scalar(query) is not None:
            raise ValidationError(f"A profile named {shown(name)} already exists", field="name")


def _recorded(status: str, message: str | None, tested: datetime | None) -> ConnectionCheck:
    return ConnectionCheck(status, message or "", tested or utcnow(), saved=True)


def _unsaved(kind: str, url: str, key: str | None, *, withheld: bool = False) -> ConnectionCheck:
    """Check values that are not the saved ones; nothing is recorded. `withheld`: a key is
    saved, but for another URL, so none was sent."""
    result = _check(Credentials(kind, url, key))
    message = f"{result.message} ({KEY_STAYS_HOME})" if withheld else result.message
    return ConnectionCheck(result.status, message, utcnow(), saved=False)


def _check(creds: Credentials) -> Health:
    """Test connection: the provider's own check."""
    try:
        return connect(creds).check()
    except ValidationError as exc:  # a stored profile's options no longer pass
        return Health(ERROR, exc.message)


def _profile_key(profile_id: uuid.UUID | str | None) -> uuid.UUID | str | None:
    """One cache key for a profile given as a UUID or as its text."""
    if profile_id is None or isinstance(profile_id, uuid.UUID):
        return profile_id
    try:
        return uuid.UUID(str(profile_id))
    except ValueError:
        return profile_id  # credentials() refuses it; never cached


@contextmanager
def _name_must_be_unique(name: str) -> Iterator[None]:
    """Turns a unique-constraint race (two saves at once) into the same clear error."""
    try:
        yield
    except IntegrityError:
        raise ValidationError(
            f"A profile named {shown(name)} already exists", field="name"
        ) from None
