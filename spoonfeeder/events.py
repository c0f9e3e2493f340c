"""EventBus: publish(topic, data) / subscribe(topics) — in-process, and on PostgreSQL
across processes through LISTEN/NOTIFY.

    with bus.subscribe(["task:*"]) as events:
        for event in events:          # or events.get(timeout=1.0)
            print(event.topic, event.data)

Topics are short strings such as `task:progress`; a subscription names exact
topics or prefixes ending in `*`. Data is a small JSON-ready dict (ids as strings).

Across processes, events are best-effort notifications, not a log: whoever needs
the truth reads the database. Each bus marks what it sends with its own origin id
and ignores its own notifications, so local subscribers never see an event twice.
NOTIFY is sent from a background thread, in batches, so publishing never costs the
publisher a database round trip.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

log = logging.getLogger(__name__)

CHANNEL = "spoonfeeder_events"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; keep a margin.
MAX_NOTIFY_BYTES = 7900
# A subscriber that stops reading loses its oldest events rather than growing forever.
DEFAULT_BACKLOG = 1000
_CLOSED = object()


@dataclass(frozen=True)
class Event:
    topic: str
    data: dict[str, Any] = field(default_factory=dict)
    remote: bool = False  # True when it came from another process through NOTIFY


EventCallback = Callable[[Event], None]


def _topic_filter(topics: str | Iterable[str] | None) -> Callable[[str], bool]:
    if topics is None:
        return lambda topic: True
    names = [topics] if isinstance(topics, str) else list(topics)
    exact = {name for name in names if not name.endswith("*")}
    prefixes = tuple(name[:-1] for name in names if name.endswith("*"))
    return lambda topic: topic in exact or (bool(prefixes) and topic.startswith(prefixes))


class Subscription:
    """Events for some topics: iterate, or `get(timeout)`; `close()` ends the iteration.

    With a `callback`, events are handed to it on the publisher's thread instead of
    being queued; the callback must be quick and must not block.
    """

    def __init__(
        self,
        bus: EventBus,
        topics: str | Iterable[str] | None,
        callback: EventCallback | None = None,
        backlog: int = DEFAULT_BACKLOG,
    ) -> None:
        self._bus = bus
        self.matches = _topic_filter(topics)
        self._callback = callback
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=backlog)
        self.closed = False

    def deliver(self, event: Event) -> None:
        if self.closed:
            return
        if self._callback is not None:
            try:
                self._callback(event)
            except Exception:
                log.exception("Event callback failed for %s", event.topic)
            return
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()  # drop the oldest

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after `timeout` seconds or once closed."""
        if self.closed and self._queue.empty():
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # wake any other reader too
            return None
        return item

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._bus._unsubscribe(self)
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_CLOSED)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of events to subscribers; `pg_conninfo` adds LISTEN/NOTIFY across processes."""

    def __init__(self, pg_conninfo: str | None = None, channel: str = CHANNEL) -> None:
        self.origin = uuid.uuid4().hex[:12]
        self._conninfo = pg_conninfo
        self._channel = channel
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._outbox: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._sender: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._listening = threading.Event()

    @classmethod
    def for_engine(cls, engine: Engine) -> EventBus:
        """A bus for the app's database: cross-process on PostgreSQL, local on SQLite."""
        if engine.dialect.name != "postgresql":
            return cls()
        url = engine.url.set(drivername="postgresql")
        return cls(url.render_as_string(hide_password=False))

    # -- publishing ----------------------------------------------------------

    def publish(self, topic: str, data: dict[str, Any] | None = None) -> None:
        data = data or {}
        self._fan_out(Event(topic, data))
        if self._conninfo and not self._closing.is_set():
            self._ensure_thread("_sender", self._send_loop, "events-notify")
            self._outbox.put((topic, data))

    def _fan_out(self, event: Event) -> None:
        with self._lock:
            subs = [sub for sub in self._subs if sub.matches(event.topic)]
        for sub in subs:
            sub.deliver(event)

    # -- subscribing ---------------------------------------------------------

    def subscribe(
        self,
        topics: str | Iterable[str] | None = None,
        *,
        callback: EventCallback | None = None,
        backlog: int = DEFAULT_BACKLOG,
    ) -> Subscription:
        """Events whose topic matches (None: all). Close the subscription when done."""
        sub = Subscription(self, topics, callback, backlog)
        with self._lock:
            self._subs.append(sub)
        if self._conninfo and not self._closing.is_set():
            self._ensure_thread("_listener", self._listen_loop, "events-listen")
        return sub

    def wait_listening(self, timeout: float = 5.0) -> bool:
        """Block until the LISTEN connection is up (True), for callers that must not miss
        the next remote event. Always True without PostgreSQL."""
        return not self._conninfo or self._listening.wait(timeout)

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._subs.remove(sub)

    # -- lifecycle -----------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Flush pending notifications, stop the threads, end every subscription."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._outbox.put(None)
        for thread in (self._sender, self._listener):
            if thread is not None:
                thread.join(timeout)
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.close()

    def _ensure_thread(self, attr: str, target: Callable[[], None], name: str) -> None:
        if getattr(self, attr) is not None:
            return
        with self._lock:
            if getattr(self, attr) is None:
                thread = threading.Thread(target=target, name=name, daemon=True)
                setattr(self, attr, thread)
                thread.start()

    # -- PostgreSQL ----------------------------------------------------------

    def _connect(self) -> Any:
        import psycopg  # only needed on PostgreSQL

        return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)

    def _send_loop(self) -> None:
        conn = None
        while True:
            first = self._outbox.get()
            batch = [first] if first is not None else []
            while True:  # take whatever else piled up: one NOTIFY for many events
                try:
                    item = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    batch.append(item)
            try:
                if batch:
                    conn = conn or self._connect()
                    for payload in pack_notifications(self.origin, batch):
                        conn.execute("SELECT pg_notify(%s, %s)", (self._channel, payload))
            except Exception as exc:
                log.warning("Could not send %d event(s) to other processes: %s", len(batch), exc)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
            if self._closing.is_set() and self._outbox.empty():
                break
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _listen_loop(self) -> None:
        delay = 0.5
        while not self._closing.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {self._channel}")
                    self._listening.set()
                    delay = 0.5
                    while not self._closing.is_set():
                        for note in conn.notifies(timeout=0.25):
                            self._receive(note.payload)
            except Exception as exc:
                self._listening.clear()
                if self._closing.is_set():
                    break
                log.warning("Event listener lost its connection (%s); reconnecting", exc)
                self._closing.wait(delay)
                delay = min(delay * 2, 10.0)
        self._listening.clear()

    def _receive(self, payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("o") == self.origin:
            return
        for topic, data in message.get("e", []):
            self._fan_out(Event(topic, data, remote=True))


def pack_notifications(origin: str, events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """JSON payloads, each under PostgreSQL's NOTIFY limit, carrying the events in order."""
    payloads: list[str] = []
    head = '{"o":' + json.dumps(origin) + ',"e":['
    current: list[str] = []
    size = len(head) + 2
    for topic, data in events:
        item = json.dumps([topic, _shrink(data)], default=str, separators=(",", ":"))
        if current and size + len(item.encode()) + 1 > MAX_NOTIFY_BYTES:
            payloads.append(head + ",".join(current) + "]}")
            current, size = [], len(head) + 2
        current.append(item)
        size += len(item.encode()) + 1
    if current:
        payloads.append(head + ",".join(current) + "]}")
    return payloads


def _shrink(data: dict[str, Any]) -> dict[str, Any]:
    """Keep an event small enough to NOTIFY: long strings and nested values go first."""
    encoded = json.dumps(data, default=str)
    if len(encoded.encode()) <= MAX_NOTIFY_BYTES // 4:
        return data
    small = {
        key: (value[:200] if isinstance(value, str) else value)
        for key, value in data.items()
        if value is None or isinstance(value, str | int | float | bool)
    }
    small["truncated"] = True
    return small
