"""/api/me and /api/tokens: who the credentials belong to, and their personal API
tokens (created here or in Settings; a token's secret is in the answer that creates
it and nowhere else, ever)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from spoonfeeder.api.auth import ActingUser
from spoonfeeder.api.envelope import Ok, ok
from spoonfeeder.context import AppContext
from spoonfeeder.errors import ValidationError
from spoonfeeder.users import TokenView, UserView

NO_USERS = (
    "Sign-in is off (there are no users), so there is no one to own a token: add a user "
    "with `python -m spoonfeeder users add NAME --role admin` and restart the app."
)


class Me(BaseModel):
    signed_in: bool = Field(description="False when sign-in is off: everyone is let in")
    name: str | None = None
    role: str | None = Field(None, description='"admin" or "user"')


class TokenInfo(BaseModel):
    id: uuid.UUID
    name: str
    hint: str = Field(description="The token's first characters, to tell tokens apart")
    state: str = Field(description='"active", "revoked" or "expired"')
    created_at: datetime
    last_used_at: datetime | None = Field(None, description="Updated at most once a minute")
    expires_at: datetime | None
    revoked_at: datetime | None


class CreatedToken(TokenInfo):
    token: str = Field(description="The secret: shown this once, stored only as a hash")


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="What it is for (a script, a machine), 1–100 characters")
    expires_at: datetime | None = Field(None, description="When it stops working; null: never")


def signed_in(user: ActingUser) -> UserView:
    if user is None:
        raise ValidationError(NO_USERS)
    return user


SignedIn = Annotated[UserView, Depends(signed_in)]


def routes(ctx: AppContext) -> APIRouter:
    router = APIRouter(tags=["account"])
    users = ctx.users

    def info(token: TokenView) -> TokenInfo:
        return TokenInfo(**vars(token), state=token.state(users.now()))

    @router.get("/me", summary="Who am I")
    def me(user: ActingUser) -> Ok[Me]:
        """The user these credentials belong to, and their role."""
        if user is None:
            return ok(Me(signed_in=False))
        return ok(Me(signed_in=True, name=user.name, role=user.role))

    @router.get("/tokens", summary="List my API tokens")
    def list_tokens(user: SignedIn) -> Ok[list[TokenInfo]]:
        """Your tokens, newest first, revoked and expired ones included (never a secret)."""
        return ok([info(token) for token in users.list_tokens(user)])

    @router.post("/tokens", status_code=201, summary="Create an API token")
    def create_token(user: SignedIn, body: TokenBody) -> Ok[CreatedToken]:
        """A new personal token for `Authorization: Bearer …` on /api, /api/ws, MCP and
        gradio_client. Keep the `token` from this answer: it is never shown again."""
        created = users.create_token(user, body.name, body.expires_at)
        return ok(CreatedToken(**info(created.token).model_dump(), token=created.secret))

    @router.delete("/tokens/{token_id}", summary="Revoke an API token")
    def revoke_token(user: SignedIn, token_id: str) -> Ok[TokenInfo]:
        """Stops the token at once: the next request that carries it is refused."""
        return ok(info(users.revoke_token(user, token_id)))

    return router
