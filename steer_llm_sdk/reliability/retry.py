"""RetryPolicy: which failures to retry, and how long to wait before each retry.

Exponential backoff with full jitter: before retry ``n`` (1-based) the cap is
``min(max_delay, initial_delay * multiplier ** (n - 1))`` and the wait is uniform in
``[0, cap]`` (exactly ``cap`` without jitter). A server's ``Retry-After`` wins over the
computed wait, capped by ``max_delay``. Only retryable categories are retried; never
authentication, invalid-request or content-filter errors, nor errors that say they are not
retryable, nor an exception that is not an ``Exception`` (``KeyboardInterrupt``,
``SystemExit``, ``gevent.Timeout``, whose class name reads as a timeout): those stop the
caller, not the provider. Sleep and randomness are injectable, so tests are exact.
"""

import random
import time
from typing import Callable, FrozenSet, Iterable, Optional

from ..errors import (
    AUTHENTICATION,
    CONTENT_FILTER,
    INVALID_REQUEST,
    RETRYABLE_CATEGORIES,
    SteerLLMError,
    error_category,
)

NEVER_RETRIED = frozenset({AUTHENTICATION, INVALID_REQUEST, CONTENT_FILTER})


class RetryPolicy:
    """How a call is retried.

    Args:
        max_attempts: attempts in all, the first included (1 disables retries).
        initial_delay: cap of the first backoff, seconds.
        max_delay: largest wait, also for ``Retry-After``.
        multiplier: growth of the cap per retry (>= 1).
        jitter: full jitter (uniform in [0, cap]); False waits the cap exactly.
        retry_on: categories worth retrying (default: rate_limit, server_error, timeout,
            connection); authentication, invalid_request and content_filter are refused.
        sleep: called with the wait in seconds (default ``time.sleep``).
        random: returns a float in [0, 1) (default ``random.random``).

    Raises:
        ValueError: a bound out of range, or a never-retried category in ``retry_on``.

    Immutable and thread-safe (given a thread-safe ``sleep`` and ``random``).
    """

    def __init__(
        self,
        max_attempts: int = 3,
        initial_delay: float = 0.5,
        max_delay: float = 30.0,
        multiplier: float = 2.0,
        jitter: bool = True,
        retry_on: Optional[Iterable[str]] = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = random.random,
    ) -> None:
        if (
            isinstance(max_attempts, bool)
            or not isinstance(max_attempts, int)
            or not (1 <= max_attempts <= 100)
        ):
            raise ValueError(f"max_attempts must be an int in [1, 100], got {max_attempts!r}")
        if not 0 <= initial_delay <= max_delay:
            raise ValueError("delays must satisfy 0 <= initial_delay <= max_delay")
        if multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {multiplier!r}")
        categories: FrozenSet[str] = (
            RETRYABLE_CATEGORIES if retry_on is None else frozenset(retry_on)
        )
        refused = categories & NEVER_RETRIED
        if refused:
            raise ValueError(f"retry_on must not include {sorted(refused)}: never retried")
        self.max_attempts = max_attempts
        self.initial_delay = float(initial_delay)
        self.max_delay = float(max_delay)
        self.multiplier = float(multiplier)
        self.jitter = jitter
        self.retry_on = categories
        self.sleep = sleep
        self.random = random

    def with_attempts(self, max_attempts: int) -> "RetryPolicy":
        """The same policy with another number of attempts."""
        return RetryPolicy(
            max_attempts,
            self.initial_delay,
            self.max_delay,
            self.multiplier,
            self.jitter,
            self.retry_on,
            self.sleep,
            self.random,
        )

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether to retry after ``attempt`` (1-based) failed with ``exc``; never for an
        exception that is not an ``Exception`` (an interrupt, an exit, ``gevent.Timeout``)."""
        if attempt >= self.max_attempts or not isinstance(exc, Exception):
            return False
        if isinstance(exc, SteerLLMError) and not exc.retryable:
            return False
        return error_category(exc) in self.retry_on

    def cap(self, retry: int) -> float:
        """The backoff cap before retry ``retry`` (1-based)."""
        return min(self.max_delay, self.initial_delay * self.multiplier ** (retry - 1))

    def delay(self, retry: int, exc: Optional[BaseException] = None) -> float:
        """Seconds to wait before retry ``retry``: the server's Retry-After if it sent one
        (capped by ``max_delay``), otherwise the jittered backoff."""
        hint = getattr(exc, "retry_after", None)
        if isinstance(hint, (int, float)) and not isinstance(hint, bool) and hint >= 0:
            return min(self.max_delay, float(hint))
        cap = self.cap(retry)
        return cap * self.random() if self.jitter else cap

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self.max_attempts}, initial_delay="
            f"{self.initial_delay}, max_delay={self.max_delay}, multiplier="
            f"{self.multiplier}, jitter={self.jitter}, retry_on={sorted(self.retry_on)})"
        )
