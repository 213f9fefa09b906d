"""Bounded waits: a condition polled with short pauses until it holds or a deadline passes
(never a bare sleep), and a child process waited for, or killed, within a bound."""

import os
import signal
import threading
import time
from typing import Any, Callable, List, Optional, Tuple, Type, TypeVar

T = TypeVar("T")


def _poll(
    predicate: Callable[[], T],
    timeout: float,
    interval: float,
    errors: Tuple[Type[BaseException], ...],
) -> Tuple[bool, Any]:
    """(True, the first true value ``predicate`` returns), or (False, the last value or
    error of ``errors`` it gave) once ``timeout`` seconds passed; it is asked once more at the
    deadline."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    last: Any = None
    while True:
        try:
            last = predicate()
            if last:
                return True, last
        except errors as exc:
            last = exc
        if time.monotonic() >= deadline:
            return False, last
        pause.wait(interval)


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.005) -> bool:
    """Whether ``predicate`` held within ``timeout`` seconds (polled every ``interval``)."""
    return _poll(predicate, timeout, interval, ())[0]


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.05,
    errors: Tuple[Type[BaseException], ...] = (),
) -> T:
    """The first true value ``predicate`` returns within ``timeout`` seconds; an error of
    ``errors`` counts as not yet.

    Raises:
        AssertionError: naming ``what`` and the last value (or error) seen, at the deadline.
    """
    done, last = _poll(predicate, timeout, interval, errors)
    if not done:
        raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
    return last  # type: ignore[no-any-return]


def reap(pid: int, timeout: float) -> Optional[int]:
    """The exit code of child ``pid``, waited for at most ``timeout`` seconds; past that the
    child is killed, reaped, and None returned (a hung child fails its test, not the run)."""
    statuses: List[int] = []

    def exited() -> bool:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            statuses.append(status)
        return bool(done)

    if _poll(exited, timeout, 0.01, ())[0]:
        return os.waitstatus_to_exitcode(statuses[0])
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


class Gate:
    """A callable that holds whoever calls it until :attr:`release` is set (at most 10 s,
    so that a failed test leaves no thread held for good): a filter holding the flush
    thread, a ``__str__`` holding a caller. :attr:`entered` is set once someone is held.
    Returns its argument (a filter keeps the record)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, value: Any = None) -> Any:
        self.entered.set()
        self.release.wait(10)
        return value
