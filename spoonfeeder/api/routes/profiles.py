"""/api/profiles: named extra endpoints of any provider kind (a second ComfyUI server, a
vLLM or LM Studio host, …), as the Settings tab's profiles. API keys go in, never out:
an answer shows a key only as its mask."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from spoonfeeder.api.envelope import Ok, Paged, PageQuery, ok, page_query, page_slice
from spoonfeeder.context import AppContext
from spoonfeeder.profiles import ProfileView
from spoonfeeder.providers.catalog import KINDS

KEY_RULE = (
    "Write-only: never in an answer (`key.masked` shows its mask). A stored key is only "
    "ever sent to the URL it was saved with."
)


class ProfileBody(BaseModel):
    """A new profile."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Unique name, any case (at most 100 characters)")
    provider: str = Field(description=f"Provider kind: one of {', '.join(KINDS)}")
    url: str | None = Field(
        None, description="http(s) base URL; blank or null: the kind's default URL"
    )
    api_key: str | None = Field(None, description=KEY_RULE)
    options: dict[str, Any] | None = Field(
        None, description='Provider options, e.g. {"timeout": 30}'
    )


class ProfileUpdate(BaseModel):
    """Changes to a profile: what is left out keeps its stored value."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="Unique name, any case")
    provider: str | None = Field(None, description=f"Provider kind: one of {', '.join(KINDS)}")
    url: str | None = Field(
        None,
        description='http(s) base URL; "" or null: the kind\'s default. A new URL (or '
        "kind) without `api_key` removes the stored key, and `key_removed` says so.",
    )
    api_key: str | None = Field(None, description=f"Blank or left out: keep it. {KEY_RULE}")
    options: dict[str, Any] | None = Field(None, description="Provider options (replaced whole)")
    clear_key: bool = Field(False, description="Remove the stored API key")


def routes(ctx: AppContext) -> APIRouter:
    router = APIRouter(prefix="/profiles", tags=["profiles"])
    profiles = ctx.profiles

    @router.get("", summary="List all profiles")
    def list_profiles(pages: Annotated[PageQuery, Depends(page_query)]) -> Paged[ProfileView]:
        """Every profile, by provider kind then name, with its last Test connection."""
        return page_slice(profiles.list_profiles(), pages)

    @router.post("", status_code=201, summary="Create profile")
    def create_profile(body: ProfileBody) -> Ok[ProfileView]:
        """Store a new profile; its API key is encrypted before it is stored."""
        return ok(
            profiles.create_profile(body.name, body.provider, body.url, body.api_key, body.options)
        )

    @router.get("/{profile_id}", summary="Get profile details")
    def get_profile(profile_id: str) -> Ok[ProfileView]:
        return ok(profiles.get_profile(profile_id))

    @router.put("/{profile_id}", summary="Update profile")
    def update_profile(profile_id: str, body: ProfileUpdate) -> Ok[ProfileView]:
        """Change some fields of a profile, as the Settings tab's form does (it starts
        from the stored values). `key_removed` in the answer: the URL changed without
        the key, so the stored key was dropped — enter it again if the endpoint needs one."""
        current = profiles.get_profile(profile_id)
        given = body.model_dump(exclude_unset=True)
        return ok(
            profiles.update_profile(
                current.id,
                given.get("name", current.name),
                given.get("provider", current.provider),
                given.get("url", current.stored_url),
                body.api_key,
                given.get("options", current.options),
                clear_key=body.clear_key,
            )
        )

    @router.delete("/{profile_id}", summary="Delete profile")
    def delete_profile(profile_id: str) -> Ok[ProfileView]:
        """Delete a profile and its stored key; the answer is the profile as it was."""
        gone = profiles.get_profile(profile_id)
        profiles.delete_profile(gone.id)
        return ok(gone)

    @router.post("/{profile_id}/test", summary="Test a profile's connection")
    def test_profile(profile_id: str) -> Ok[ProfileView]:
        """Test connection with the saved values (a real request to the endpoint, the
        stored key sent only there) and record the result: `status`, `status_message`,
        `last_tested`."""
        return ok(profiles.test_profile(profile_id))

    return router
