"""Who is calling: one gate for every face that is not the browser's login form.

`Authorization: Basic` (a user's name and password) and `Authorization: Bearer` (a
personal API token) are the only forms read; a key in another header (`x-api-key`) or
in the query string is no credential at all. The same gate is a dependency of the /api
router (so no route can forget it), checks /api/ws before the socket is accepted, the
MCP endpoint, and Gradio's own routes when a script (gradio_client) sends a header.
Sign-in is on when users exist at start (`python -m spoonfeeder users`, or
SPOONFEEDER_AUTH on the first start); otherwise everyone is let in as nobody (None).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Receive, Scope, Send

from spoonfeeder.access import EVERYONE, Actor
from spoonfeeder.api.failures import Unauthorized, error_response
from spoonfeeder.users import UserService, UserView

NEEDED = (
    "This API needs credentials: `Authorization: Bearer <token>` with a personal API "
    "token (Settings → API tokens), or HTTP Basic with a Spoon Feeder user."
)
WRONG = "Wrong user name or password."
BAD_TOKEN = "This API token is unknown, revoked or expired."


class Gate:
    def __init__(self, users: UserService) -> None:
        self.users = users

    @property
    def required(self) -> bool:
        """Sign-in is on: decided at start, when users existed (UserService)."""
        return self.users.sign_in_required

    def identify(self, header: str | None) -> UserView | None:
        """The user an Authorization header proves; None when sign-in is off. Raises
        Unauthorized for a missing, malformed or wrong credential."""
        if not self.required:
            return None
        scheme, _, value = (header or "").strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and value:
            user = self.users.user_for_token(value)
            if user is None:
                raise Unauthorized(BAD_TOKEN)
            return user
        if scheme == "basic" and value:
            name, password = _basic_pair(value)
            user = self.users.authenticate(name, password)
            if user is None:
                raise Unauthorized(WRONG)
            return user
        raise Unauthorized(NEEDED)

    async def check(self, header: str | None) -> UserView | None:
        """`identify` off the event loop: it reads the database, and Argon2 takes its
        time on purpose."""
        if not self.required:
            return None
        return await anyio.to_thread.run_sync(self.identify, header)

    async def __call__(self, request: Request) -> UserView | None:
        user = await self.check(request.headers.get("authorization"))
        request.state.user = user
        return user


def _basic_pair(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise Unauthorized(WRONG) from None
    name, sep, password = decoded.partition(":")
    if not sep:
        raise Unauthorized(WRONG)
    return name, password


class HeaderCredentials:
    """ASGI middleware for what is mounted beside /api: the MCP endpoint needs a
    credential header (Gradio's login cookie does not cover an agent, and a hidden
    endpoint still runs when called directly); any other Gradio route called with one
    (gradio_client with `headers=`) is let in as that user, as if it had signed in on
    the login form. A wrong header is refused, whatever cookie comes with it."""

    MCP = "/gradio_api/mcp"

    def __init__(self, app: ASGIApp, gate: Gate, gradio: Any) -> None:
        self.app = app
        self.gate = gate
        self.gradio = gradio  # the mounted Gradio App: its login tokens and cookie name
        self._cookies: dict[str, str] = {}  # user name -> the login token stood in for them

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.gate.required:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        header = Headers(scope=scope).get("authorization")
        if path.startswith("/api") or (header is None and not path.startswith(self.MCP)):
            await self.app(scope, receive, send)  # /api checks itself; the rest: the cookie
            return
        try:
            user = await self.gate.check(header)
        except Unauthorized as refused:
            if scope["type"] == "http":
                await error_response(refused)(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        if user is not None:
            self._sign_in(scope, user.name)
        await self.app(scope, receive, send)

    def _sign_in(self, scope: Scope, name: str) -> None:
        """Hand Gradio the login cookie it would have set for this user."""
        gradio = self.gradio
        token = self._cookies.get(name)
        if token is None or gradio.tokens.get(token) != name:
            token = self._cookies[name] = secrets.token_urlsafe(16)
            gradio.tokens[token] = name
        headers = MutableHeaders(scope=scope)
        del headers["cookie"]
        headers["cookie"] = f"access-token-unsecure-{gradio.cookie_id}={token}"


def acting_user(request: Request) -> UserView | None:
    """The user the gate let in (None when sign-in is off)."""
    return getattr(request.state, "user", None)


def acting(request: Request) -> Actor:
    """Who a route acts for: the signed-in user, or everyone when sign-in is off."""
    user = acting_user(request)
    return user.actor if user is not None else EVERYONE


ActingUser = Annotated[UserView | None, Depends(acting_user)]
Acting = Annotated[Actor, Depends(acting)]
OWNER = "Admins only: just this user's (a user name). Everyone else sees their own."
