"""/api/settings: each provider kind's default endpoint, API key and model, as the
Settings tab's provider settings. API keys go in, never out: an answer shows a key only
as its mask."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from spoonfeeder.api.envelope import Ok, ok
from spoonfeeder.context import AppContext
from spoonfeeder.errors import NotFoundError, ValidationError
from spoonfeeder.profiles import SettingView


class SettingBody(BaseModel):
    """Changes to a provider's setting: a field left out (or null) stays as it is."""

    model_config = ConfigDict(extra="forbid")

    api_key: str | None = Field(
        None,
        description="Write-only: never in an answer (`key.masked` shows its mask). Blank: "
        "keep the stored key. A stored key is only ever sent to the URL it was saved with.",
    )
    endpoint_url: str | None = Field(
        None,
        description='http(s) base URL; "" resets it to the default (environment, else '
        "built in). A new URL without `api_key` removes the stored key, and "
        "`key_removed` says so.",
    )
    default_model: str | None = Field(None, description='Model to preselect; "" clears it')
    clear_key: bool = Field(False, description="Remove the stored API key")


@contextmanager
def _provider_is_a_path() -> Iterator[None]:
    """An unknown provider in the path is a missing resource (404), with the service's
    sentence naming the known ones."""
    try:
        yield
    except ValidationError as exc:
        if exc.field != "provider":
            raise
        raise NotFoundError(exc.message) from None


def routes(ctx: AppContext) -> APIRouter:
    router = APIRouter(prefix="/settings", tags=["settings"])
    profiles = ctx.profiles

    @router.get("", summary="Get provider settings")
    def list_settings() -> Ok[list[SettingView]]:
        """Every provider kind's setting, in the order the app lists them, with the
        effective URL (`endpoint_url`: stored, else environment, else built in) and the
        last Test connection."""
        return ok(profiles.list_settings())

    @router.get("/{provider}", summary="Get one provider's setting")
    def get_setting(provider: str) -> Ok[SettingView]:
        with _provider_is_a_path():
            return ok(profiles.get_setting(provider))

    @router.put("/{provider}", summary="Update provider settings")
    def save_setting(provider: str, body: SettingBody) -> Ok[SettingView]:
        """Save a provider's setting, as the Settings tab's Save. `key_removed` in the
        answer: the URL changed without the key, so the stored key was dropped."""
        with _provider_is_a_path():
            return ok(
                profiles.save_setting(
                    provider,
                    api_key=body.api_key,
                    endpoint_url=body.endpoint_url,
                    default_model=body.default_model,
                    clear_key=body.clear_key,
                )
            )

    @router.post("/{provider}/test", summary="Test a provider's connection")
    def test_setting(provider: str) -> Ok[SettingView]:
        """Test connection with the saved setting (a real request to its endpoint, the
        stored key sent only there) and record the result: `status`, `status_message`,
        `last_tested`."""
        with _provider_is_a_path():
            return ok(profiles.test_setting(provider))

    return router
