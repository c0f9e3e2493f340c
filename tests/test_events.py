"""EventBus: in-process fan-out, and across processes through PostgreSQL LISTEN/NOTIFY."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from spoonfeeder.events import MAX_NOTIFY_BYTES, Event, EventBus, pack_notifications


def test_subscribers_get_the_topics_they_asked_for() -> None:
    bus = EventBus()
    tasks = bus.subscribe("task:*")
    progress = bus.subscribe(["task:progress"])
    everything = bus.subscribe()
    bus.publish("task:created", {"id": "1"})
    bus.publish("task:progress", {"id": "1", "progress": 0.5})
    bus.publish("comfyui:progress", {"step": 3})
    assert [e.topic for e in iter_now(tasks)] == ["task:created", "task:progress"]
    assert [e.data for e in iter_now(progress)] == [{"id": "1", "progress": 0.5}]
    assert len(list(iter_now(everything))) == 3
    assert tasks.get(timeout=0.01) is None  # nothing more: a timeout, not a hang
    bus.close()


def test_closing_a_subscription_ends_its_iteration_and_stops_delivery() -> None:
    bus = EventBus()
    sub = bus.subscribe("x")
    seen: list[Event] = []
    reader = threading.Thread(target=lambda: seen.extend(sub))
    reader.start()
    bus.publish("x", {"n": 1})
    sub.close()
    reader.join(2)
    assert not reader.is_alive()
    assert [e.data["n"] for e in seen] == [1]
    bus.publish("x", {"n": 2})
    assert sub.get(timeout=0.01) is None
    bus.close()


def test_a_slow_subscriber_loses_its_oldest_events_not_the_newest() -> None:
    bus = EventBus()
    sub = bus.subscribe("n", backlog=3)
    for n in range(10):
        bus.publish("n", {"n": n})
    assert [e.data["n"] for e in iter_now(sub)] == [7, 8, 9]
    bus.close()


def test_a_failing_callback_does_not_break_publishing() -> None:
    bus = EventBus()
    got: list[str] = []
    bus.subscribe("t", callback=lambda e: 1 / 0)
    bus.subscribe("t", callback=lambda e: got.append(e.topic))
    bus.publish("t")
    assert got == ["t"]
    bus.close()


def test_notifications_are_packed_under_the_postgres_limit_in_order() -> None:
    events = [("task:progress", {"id": str(n), "message": "m" * 50}) for n in range(500)]
    events.append(("task:completed", {"id": "big", "text": "x" * 20_000}))
    payloads = pack_notifications("origin", events)
    assert len(payloads) > 1
    assert all(len(p.encode()) < MAX_NOTIFY_BYTES for p in payloads)
    decoded = [item for p in payloads for item in json.loads(p)["e"]]
    assert [d["id"] for _, d in decoded] == [str(n) for n in range(500)] + ["big"]
    assert decoded[-1][1]["truncated"] is True and len(decoded[-1][1]["text"]) == 200


# -- across processes ---------------------------------------------------------


@pytest.fixture
def pg_conninfo(postgres: Any) -> Iterator[str]:
    url = postgres.create()
    yield make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    postgres.drop(url)


def test_events_cross_to_another_bus_once_through_listen_notify(pg_conninfo: str) -> None:
    # Two buses with their own connections stand for two processes; the worker tests
    # check the same with real worker processes.
    here, there = EventBus(pg_conninfo), EventBus(pg_conninfo)
    try:
        local = here.subscribe("task:*")
        remote = there.subscribe("task:*")
        assert here.wait_listening() and there.wait_listening()
        for n in range(200):
            here.publish("task:progress", {"id": "t1", "progress": n / 200})
        here.publish("task:completed", {"id": "t1", "text": "y" * 10_000})
        received = [remote.get(timeout=5) for _ in range(201)]
        assert all(e is not None and e.remote for e in received)
        assert [e.data.get("progress") for e in received[:200]] == [n / 200 for n in range(200)]
        assert received[-1].data["truncated"] is True
        # The publisher's own subscriber saw each event once, locally, not again via NOTIFY.
        mine = list(iter_now(local, wait=0.5))
        assert len(mine) == 201 and not any(e.remote for e in mine)
    finally:
        here.close()
        there.close()
    threads = [t for bus in (here, there) for t in (bus._sender, bus._listener) if t]
    assert threads and not any(t.is_alive() for t in threads)  # closed cleanly


def iter_now(sub: Any, wait: float = 0.05) -> Iterator[Event]:
    while (event := sub.get(timeout=wait)) is not None:
        yield event
