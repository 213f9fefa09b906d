"""The library's own diagnostics: structlog under the ``steer_llm_sdk`` name, rate-limited.

Never configures logging globally, and never raises: a broken logging setup must not turn a
metrics problem into an application error.
"""

import threading
import time
from typing import Any, Callable, Dict

import structlog

logger = structlog.get_logger("steer_llm_sdk")


class RateLimitedLog:
    """Logs each distinct ``key`` at most once per ``interval`` seconds.

    The next message for a key says how many were suppressed in between. Thread-safe.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: Dict[str, float] = {}
        self._suppressed: Dict[str, int] = {}

    def warning(self, key: str, event: str, **fields: Any) -> bool:
        """Log ``event`` at warning level unless ``key`` was logged recently.

        Returns:
            True if a line was written.
        """
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            fields["suppressed"] = suppressed
        try:
            logger.warning(event, **fields)
        except Exception:
            return False
        return True

    def reset(self) -> None:
        """Forget what was logged (used after fork)."""
        self._lock = threading.Lock()
        self._last = {}
        self._suppressed = {}


rate_limited = RateLimitedLog()
