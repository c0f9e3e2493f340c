"""/api/ws: the seed's live events over a WebSocket, fed by the event bus (across
processes on PostgreSQL). The protocol is in `spoonfeeder.api.live`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from spoonfeeder.api.auth import Gate
from spoonfeeder.api.failures import Unauthorized
from spoonfeeder.api.live import TOPICS, LiveFeed, Message
from spoonfeeder.context import AppContext
from spoonfeeder.events import Event

BACKLOG = 1000  # events waiting for a slow client; the oldest go first
END_CHECK_SECONDS = 2.0  # how often ends are read from the database when the bus is quiet
POLICY_VIOLATION = 1008  # WebSocket close code for refused credentials


def install(app: FastAPI, ctx: AppContext, gate: Gate, path: str = "/api/ws") -> None:
    @app.websocket(path)
    async def live(websocket: WebSocket) -> None:
        """Subscribe with `{"event": "subscribe:task", "data": "<id>"}` (or
        subscribe:session / subscribe:generation); receive the seed's events."""
        try:
            await gate.check(websocket.headers.get("authorization"))  # before anything is accepted
        except Unauthorized as refused:
            await websocket.close(code=POLICY_VIOLATION, reason=refused.message)
            return
        await websocket.accept()
        await Connection(ctx, websocket).run()


class Connection:
    """One client: bus events in on the publisher's thread, the seed's messages out."""

    def __init__(self, ctx: AppContext, websocket: WebSocket) -> None:
        self.ctx = ctx
        self.websocket = websocket
        self.feed = LiveFeed(ctx)
        self.inbox: asyncio.Queue[Event] = asyncio.Queue(maxsize=BACKLOG)
        self.sending = asyncio.Lock()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()

        def deliver(event: Event) -> None:  # on the publisher's thread: hand over, quickly
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self._enqueue, event)

        subscription = self.ctx.events.subscribe(TOPICS, callback=deliver)
        try:
            await self.send(await run_in_threadpool(self.feed.greeting))
            reading = asyncio.create_task(self.read())
            writing = asyncio.create_task(self.write())
            done, pending = await asyncio.wait(
                {reading, writing}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            for task in done:
                if not isinstance(task.exception(), WebSocketDisconnect | None):
                    raise task.exception()  # type: ignore[misc]
        except WebSocketDisconnect:
            pass
        finally:
            subscription.close()

    def _enqueue(self, event: Event) -> None:
        if self.inbox.full():
            self.inbox.get_nowait()
        self.inbox.put_nowait(event)

    async def send(self, messages: list[Message]) -> None:
        async with self.sending:
            for outgoing in messages:
                await self.websocket.send_json(outgoing)

    async def read(self) -> None:
        while True:
            text = await self.websocket.receive_text()
            incoming: Any
            try:
                incoming = json.loads(text)
            except ValueError:
                incoming = None
            await self.send(await run_in_threadpool(self.feed.handle, incoming))

    async def write(self) -> None:
        while True:
            try:
                event = await asyncio.wait_for(self.inbox.get(), END_CHECK_SECONDS)
            except TimeoutError:
                await self.send(await run_in_threadpool(self.feed.check_ends))
                continue
            await self.send(await run_in_threadpool(self.feed.translate, event))
