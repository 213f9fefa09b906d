"""The library's own diagnostics: the standard ``logging`` module, logger
``steer_llm_sdk``, rate-limited.

A library logs through ``logging`` and lets the application decide where messages go: the
package logger has a ``NullHandler`` (no "no handler" warning, nothing printed by the
library itself), and ``logging.getLogger("steer_llm_sdk").setLevel(...)`` silences it.
Structured logs of the metrics are the structlog sink's job, not this module's.

Never raises: a broken logging setup must not turn a metrics problem into an application
error, and describing an exception whose ``__str__`` raises cannot fail. The one exception
let through is one a signal handler raised meanwhile, which belongs to the caller.
"""

import logging
import time
from typing import Any, Callable, Dict

from ._native import allocate_lock
from ._signals import signal_exception

logger = logging.getLogger("steer_llm_sdk")
logger.addHandler(logging.NullHandler())


def describe(exc: BaseException, limit: int = 200) -> str:
    """``str(exc)`` cut to ``limit`` characters, or a placeholder when ``str()`` itself
    raises (any exception, including ``SystemExit``)."""
    try:
        text = str(exc)
    except BaseException as failure:  # noqa: B036 - an exception's __str__ is user code
        timeout = signal_exception(failure)
        if timeout is not None:  # the caller's (see the module docstring)
            raise timeout from None
        return f"<unprintable {_type_name(exc)}>"
    return text[:limit] if isinstance(text, str) else f"<unprintable {_type_name(exc)}>"


def _type_name(obj: Any) -> str:
    try:
        return type(obj).__name__
    except BaseException:  # noqa: B036
        return "object"


class RateLimitedLog:
    """Logs each distinct ``key`` at most once per ``interval`` seconds.

    The next message for a key says how many were suppressed in between. Thread-safe.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._clock = clock
        self._lock = allocate_lock()
        self._last: Dict[str, float] = {}
        self._suppressed: Dict[str, int] = {}

    def warning(self, key: str, event: str, **fields: Any) -> bool:
        """Log ``event`` at warning level unless ``key`` was logged recently; ``fields`` are
        appended as ``name=value`` pairs and passed as ``extra={"steer": fields}``.

        Returns:
            True if a line was written.

        Raises:
            Only an exception a signal handler raised while the line was written (a Celery
            soft time limit in a logging handler, say): it is the caller's. Anything else a
            logging handler raises is swallowed.
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
            details = " ".join(f"{name}={value!r}" for name, value in fields.items())
            logger.warning("%s %s", event, details, extra={"steer": fields})
        except BaseException as exc:  # noqa: B036 - logging must never fail the caller ...
            timeout = signal_exception(exc)
            if timeout is not None:  # ... but a signal handler's exception is the caller's
                raise timeout
            return False
        return True

    def reset(self) -> None:
        """Forget what was logged (used after fork)."""
        self._lock = allocate_lock()
        self._last = {}
        self._suppressed = {}


rate_limited = RateLimitedLog()
