"""Retries of 503/429 (and of lost connections, for idempotent calls) honouring `Retry-After`.

A few lines instead of a retry library, to keep the SDK's dependencies to httpx and msgspec.
The wait before attempt n+1 is the larger of the server's `Retry-After` (already jittered by
the server) and a full-jitter exponential backoff, so a fleet that failed together does not
come back together; the whole call gives up at `deadline` seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 8  # tries in all, the first included
    base: float = 0.5  # first backoff ceiling (seconds)
    cap: float = 30.0  # largest backoff ceiling
    deadline: float = 60.0  # give up once this much time has passed since the first try

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.cap, self.base * (2 ** (attempt - 1)))
        jittered = random.uniform(0.0, ceiling)
        if retry_after is None:
            return jittered
        return max(retry_after, jittered)


NO_RETRY = RetryPolicy(attempts=1)
