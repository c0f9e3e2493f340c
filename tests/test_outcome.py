"""How an attempt ended, from what its handler raised or returned (pure)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError, ProgrammingError

from spoonfeeder.errors import (
    PermanentTaskError,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderUnavailable,
    RetryableTaskError,
    RunAbandoned,
    SecretError,
    TaskCancelled,
    TaskInterrupted,
)
from spoonfeeder.tasks.outcome import completed, outcome_of


def test_stops_are_not_failures() -> None:
    assert outcome_of(TaskCancelled("x"), "t").kind == "cancelled"
    assert outcome_of(TaskInterrupted("x"), "t").kind == "interrupted"
    assert outcome_of(RunAbandoned("x"), "comfyui.generate").kind == "interrupted"


def test_a_lost_connection_requeues_without_counting_the_attempt() -> None:
    # SQLAlchemy marks an error its dialect recognises as a disconnect this way.
    lost = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    lost.connection_invalidated = True
    assert outcome_of(lost, "t").kind == "requeued"
    broken = OperationalError("SELECT 1", {}, Exception("deadlock detected"))
    assert outcome_of(broken, "t").kind == "failed"


@pytest.mark.parametrize(
    ("exc", "retryable", "retry_after"),
    [
        (RetryableTaskError("busy", retry_after=3.0), True, 3.0),
        (PermanentTaskError("not an image"), False, None),
        (ProviderRateLimited("slow down", provider="openai", retry_after=7.0), True, 7.0),
        (ProviderUnavailable("down", provider="ollama"), True, None),
        (ProviderAuthError("key rejected", provider="openai"), False, None),
        (SecretError("cannot decrypt"), False, None),
    ],
)
def test_the_retry_decision_comes_from_the_exception(
    exc: Exception, retryable: bool, retry_after: float | None
) -> None:
    ended = outcome_of(exc, "text.generate")
    assert (ended.kind, ended.error) == ("failed", str(exc))
    assert (ended.retryable, ended.retry_after) == (retryable, retry_after)
    assert not ended.unexpected


def test_an_unexpected_error_is_named_by_its_kind_only() -> None:
    ended = outcome_of(KeyError("db_password=hunter2"), "test.crash")
    assert ended.kind == "failed" and ended.retryable and ended.unexpected
    assert "KeyError" in (ended.error or "") and "hunter2" not in (ended.error or "")
    sql = outcome_of(ProgrammingError("SELECT secret", {}, Exception("x")), "t")
    assert sql.retryable and "SELECT" not in (sql.error or "")


def test_results_are_json_objects() -> None:
    assert completed("t", {"a": 1}).result == {"a": 1}
    assert completed("t", 3).result == {"value": 3}
    assert completed("t", None).result is None
    odd = completed("t", {"when": object()})
    assert odd.kind == "failed" and "not JSON" in (odd.error or "")
