"""Forgets the Gradio sessions that no open page holds, so their memory comes back.

Gradio keeps each session's state — its own copy of every component's config (about
0.4 MB in this app) and whatever values its calls left there — until 10,000 sessions
exist; it never forgets one for being idle. Every raw API call is a session of its own,
so a burst of calls kept gigabytes for good. Here a page the browser has open (its load
event ran and its unload has not) is kept however long it idles; any other session — an
API caller, a page that was closed — is forgotten once idle for `idle_seconds`. The next
call of a forgotten session starts from the components' initial values, as a new page
would.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable

import gradio as gr
from apscheduler.job import Job
from apscheduler.schedulers.base import BaseScheduler

from spoonfeeder.memory import return_freed_memory

log = logging.getLogger(__name__)

# Short: an API caller's session (a copy of every component's config) is worth nothing
# once its call has ended — an API call cannot read or set gr.State — and the fewer are
# alive at once, the less the allocator keeps fragmented after a burst (at 5 s the
# bench's sweep left the app 1.2x its size, at 1 s 1.12x). A page the browser has open
# is kept however long it idles; a session with an event queued or running is in use.
IDLE_SECONDS = 1.0
SWEEP_SECONDS = 1.0
MAX_OPEN_PAGES = 2000  # a caller that fakes page loads cannot pin sessions without end

Now = Callable[[], datetime.datetime]


class SessionReaper:
    """Tracks open pages (`opened`/`closed`, wired to the page's load and unload
    events) and drops idle sessions of everyone else from Gradio's state holder."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS, now: Now = datetime.datetime.now):
        self.idle = datetime.timedelta(seconds=idle_seconds)
        self._now = now  # Gradio stamps sessions' last use with datetime.now()
        self._open_pages: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        # The server's event loop, where Gradio's queue lives: found on demo.server when
        # demo.launch() serves the app, set at start-up when uvicorn serves it mounted.
        self.loop: asyncio.AbstractEventLoop | None = None

    def opened(self, request: gr.Request) -> None:
        if request.session_hash:
            with self._lock:
                self._open_pages[request.session_hash] = None
                self._open_pages.move_to_end(request.session_hash)
                while len(self._open_pages) > MAX_OPEN_PAGES:
                    self._open_pages.popitem(last=False)

    def closed(self, request: gr.Request) -> None:
        with self._lock:
            self._open_pages.pop(request.session_hash or "", None)

    def sweep(self, demo: gr.Blocks) -> int:
        """Forget every session idle longer than `idle` that no open page holds; returns
        how many were forgotten."""
        holder = getattr(demo, "state_holder", None)
        if holder is None:  # not launched yet
            return 0
        cutoff = self._now() - self.idle
        # A session with an event still queued or running (a long stream) is in use.
        busy = getattr(getattr(demo, "_queue", None), "pending_event_ids_session", {})
        with self._lock:
            open_pages = set(self._open_pages)
        with holder.lock:
            idle = [
                session
                for session, used in list(holder.time_last_used.items())
                if used < cutoff and session not in open_pages and not busy.get(session)
            ]
            for session in idle:
                holder.delete_state(session)  # runs gr.State delete callbacks
                holder.session_data.pop(session, None)
                holder.time_last_used.pop(session, None)
        if idle:
            _forget_messages(demo, idle)
            return_freed_memory()
        return len(idle)

    def watch(self, demo: gr.Blocks, scheduler: BaseScheduler, every: float = SWEEP_SECONDS) -> Job:
        """Sweep `demo` every `every` seconds, a job on the app's scheduler, until the
        demo is closed (or gone)."""
        demo_ref = weakref.ref(demo)
        launched = False

        def run() -> None:
            nonlocal launched
            current = demo_ref()
            if current is None or (launched and not current.is_running):
                job.remove()
                return
            launched = launched or current.is_running
            try:
                self.sweep(current)
            except Exception:  # never let housekeeping take the server down
                log.exception("Could not forget idle sessions")

        job = scheduler.add_job(run, "interval", seconds=every)
        return job


def _forget_messages(demo: gr.Blocks, sessions: list[str]) -> None:
    """Drop Gradio's message queue and event-id set of forgotten sessions: the queues
    are kept in an LRU of 2,000, the sets for good. Done on the server's event loop,
    where the queue adds them, so an event arriving meanwhile is never left without."""
    queue = getattr(demo, "_queue", None)
    servers = getattr(getattr(demo, "server", None), "servers", None)
    reaper = getattr(demo, "session_reaper", None)
    loop = getattr(reaper, "loop", None) or (servers[0].get_loop() if servers else None)
    if queue is None or loop is None:
        return

    def forget() -> None:
        for session in sessions:
            if not queue.pending_event_ids_session.get(session):  # no event came since
                queue.pending_event_ids_session.pop(session, None)
                queue.pending_messages_per_session.pop(session, None)

    with contextlib.suppress(RuntimeError):  # the loop has closed: the server is stopping
        loop.call_soon_threadsafe(forget)
