"""Who is calling: HTTP Basic with the SPOONFEEDER_AUTH users, checked on every /api
route by a dependency of the router (so no route can forget it) and by /api/ws."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence

from fastapi import Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from spoonfeeder.api.failures import Unauthorized, error_response

NEEDED = "This API needs credentials: HTTP Basic with a Spoon Feeder user (SPOONFEEDER_AUTH)."
WRONG = "Wrong user name or password."


class BasicAuth:
    """Checks an `Authorization: Basic …` header against `pairs`; with no pairs,
    everyone is let in (authentication is off) and the user is None."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = [(user.encode(), password.encode()) for user, password in pairs]

    @property
    def enabled(self) -> bool:
        return bool(self.pairs)

    def user(self, header: str | None) -> str | None:
        """The user the header names, if its password is right; raises Unauthorized."""
        if not self.enabled:
            return None
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic" or not value:
            raise Unauthorized(NEEDED)
        try:
            user, sep, password = base64.b64decode(value, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            raise Unauthorized(WRONG) from None
        if not sep:
            raise Unauthorized(WRONG)
        matched = None
        for known_user, known_password in self.pairs:  # compare all: no timing tells a user
            same_user = hmac.compare_digest(user, known_user)
            same_password = hmac.compare_digest(password, known_password)
            if same_user and same_password:
                matched = known_user.decode()
        if matched is None:
            raise Unauthorized(WRONG)
        return matched

    async def __call__(self, request: Request) -> str | None:
        user = self.user(request.headers.get("authorization"))
        request.state.user = user
        return user


class McpCredentials:
    """ASGI middleware: the MCP server (mounted with the UI, at /gradio_api/mcp) needs
    the same HTTP Basic credentials as /api — Gradio's login cookie does not cover an
    agent, and a hidden endpoint still runs when called directly."""

    PREFIX = "/gradio_api/mcp"

    def __init__(self, app: ASGIApp, auth: BasicAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.auth.enabled and scope["path"].startswith(self.PREFIX):
            try:
                self.auth.user(Headers(scope=scope).get("authorization"))
            except Unauthorized as refused:
                response = error_response(refused)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
