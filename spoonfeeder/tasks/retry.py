"""Retry policy as a value: from an attempt number and an error to a decision.

Pure and deterministic given a random source, so the schedule is unit-tested
without sleeping.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay: float = 0.0  # seconds until the task may run again


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: base·2^(attempt-1), ± jitter (a fraction), capped.

    Jitter spreads out tasks that failed together (a provider outage) so they do
    not all come back in the same second.
    """

    base: float = 2.0
    cap: float = 300.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        raw = self.base * 2 ** max(attempt - 1, 0)
        spread = (rng or random).uniform(-self.jitter, self.jitter) if self.jitter else 0.0
        return max(0.0, min(self.cap, raw * (1 + spread)))

    def decide(
        self,
        attempt: int,
        max_attempts: int,
        *,
        retryable: bool,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> RetryDecision:
        """Retry while attempts remain and the error allows it.

        A server's own `retry_after` hint wins when it asks for a longer wait,
        still within the cap.
        """
        if not retryable or attempt >= max_attempts:
            return RetryDecision(retry=False)
        wait = self.delay(attempt, rng)
        if retry_after is not None:
            wait = min(self.cap, max(wait, retry_after))
        return RetryDecision(retry=True, delay=wait)
