"""The exit drain and the registry of live collectors.

Collectors register here (:func:`register_collector`) for the exit drain (:func:`shutdown_all`
and the ``atexit`` handler), for :func:`reset_after_fork`, which pre-fork servers' hooks may
call, and for delivery when one is dropped without ``shutdown()``. Work that still makes
records at exit (ending streams left open) registers with :func:`at_exit_call` and runs
before the collectors deliver their last records. A collector takes part through the small
interface :class:`Drainable` (``collector.CollectorRuntime`` implements it); nothing here
imports the collector.
"""

import atexit
import os
import sys
import threading
import time
import weakref
from typing import Any, Callable, Iterator, List, Optional, Protocol

from .._log import rate_limited
from .._signals import run_each
from .forks import COLLECTORS, on_fork

#: Called by the exit drain before the collectors deliver their last records.
_exit_hooks: List[Callable[[], Any]] = []


def at_exit_call(function: Callable[[], Any]) -> None:
    """Call ``function()`` at exit, before the collectors' exit drain (held strongly); for
    work that still makes records, such as ending streams left open."""
    _exit_hooks.append(function)


# ---------------------------------------------------------------------- collectors
class Drainable(Protocol):
    """A collector's side of this registry. It lives exactly as long as its collector (the
    collector holds it; it holds the collector weakly), so registering it never keeps a
    collector alive. No method raises."""

    #: Seconds the exit drain may wait for this collector's last records.
    shutdown_timeout: float

    def collector(self) -> Any:
        """The collector, or None once it was dropped."""

    def forked(self) -> bool:
        """Whether the collector was made in another process (a fork not yet reset)."""

    def reset_after_fork(self) -> None:
        """Fresh locks, queues, threads and counters in a forked child."""

    def prepare_exit(self) -> None:
        """Start the background threads while threads may still start (early in exit)."""

    def drain_at_exit(self) -> None:
        """Deliver what is pending, within ``shutdown_timeout``."""


_live: "weakref.WeakSet[Drainable]" = weakref.WeakSet()


def register_collector(runtime: Drainable, pipeline: Any) -> None:
    """Include a collector (through its ``runtime`` side) in the exit drain,
    :func:`shutdown_all` and fork resets; and when it is dropped without ``shutdown()``,
    deliver what its ``pipeline`` holds and end its threads (the pipeline is kept until
    then, and drained at exit if the process ends first)."""
    _live.add(runtime)
    on_fork(runtime, "reset_after_fork", COLLECTORS)
    finalizer = weakref.finalize(runtime, _orphaned, pipeline, runtime.shutdown_timeout)
    finalizer.atexit = False  # at exit the drain handles live collectors itself


#: Pipelines of collectors dropped without shutdown(), still delivering, each with its
#: collector's shutdown timeout: the exit drain waits for them as it would for the
#: collector, which no longer exists to say how long.
_orphans: "dict[Any, float]" = {}


def _orphaned(pipeline: Any, timeout: float) -> None:
    if pipeline.closed and not pipeline.running:
        return
    _orphans[pipeline] = timeout
    pipeline.stop_soon()


def _orphans_timeout() -> float:
    return max(_orphans.values(), default=0.0)


def _drain_orphans(deadline: float) -> None:
    for pipeline in list(_orphans):
        pipeline.join(deadline)
        if not pipeline.running:
            _orphans.pop(pipeline, None)


def collectors() -> List[Any]:
    """The live collectors of this process."""
    found = (runtime.collector() for runtime in list(_live))
    return [collector for collector in found if collector is not None]


def shutdown_all(timeout: Optional[float] = None) -> bool:
    """End the streams still open (as the exit drain does), then flush and shut down every
    collector of this process (each within ``timeout``, or its own
    ``shutdown_timeout_seconds``). For exit hooks such as gunicorn's ``worker_exit``, which
    run before the interpreter's exit: a stream still open then is recorded, as cancelled,
    instead of being refused later as ``after_shutdown``. Call it only when the process is
    about to end: a stream some thread is still reading is ended (closed) too.

    Returns:
        True if every collector delivered everything in time.
    """
    _run_exit_hooks()
    complete = True
    for collector in collectors():
        if not collector.is_shutdown:
            complete = collector.shutdown(timeout) and complete
    return complete


def reset_after_fork() -> int:
    """Give every collector inherited from a parent process fresh locks, queues, threads and
    counters. Idempotent; ``os.fork()`` calls it already, hooks of pre-fork servers may too.

    Returns:
        How many collectors were reset.
    """
    reset = 0
    for runtime in list(_live):
        if runtime.forked():
            runtime.reset_after_fork()
            reset += 1
    return reset


def _prepare_exit() -> None:
    """Runs when threading starts its shutdown, before ``atexit`` handlers: threads may
    still start here (not later, on Python 3.12+)."""
    for runtime in list(_live):
        runtime.prepare_exit()


def _run_exit_hooks() -> None:
    """Every exit hook; a failing one is skipped silently (the drain that follows reports
    what was lost). A signal handler's exception is raised once all have run."""
    run_each(list(_exit_hooks))


def _drain_at_exit() -> None:
    """The exit drain: the exit hooks, then every live collector's last records, then the
    orphaned pipelines. Each collector is drained even when one fails or a signal handler's
    exception lands in one (raised once all are drained: :func:`.._signals.run_each`)."""
    run_each(_exit_steps(), _drain_failed)


def _exit_steps() -> Iterator[Callable[[], Any]]:
    yield _run_exit_hooks
    runtimes = list(_live)  # after the hooks: what they recorded is drained too
    longest = max([_orphans_timeout(), *(runtime.shutdown_timeout for runtime in runtimes)])
    for runtime in runtimes:
        yield runtime.drain_at_exit
    yield lambda: _drain_orphans(time.monotonic() + longest)


def _drain_failed(exc: Exception) -> None:
    rate_limited.warning(
        "exit", "steer_llm_sdk metrics exit flush failed", error=type(exc).__name__
    )


class _Token:
    """Held for the life of the process: multiprocessing keeps after-fork hooks weakly."""


_mp_token = _Token()
_mp_registered = False


def _before_fork() -> None:
    """In the parent, before a fork: if multiprocessing is in use, have each of its fork
    children register the exit drain as a multiprocessing finaliser. Its children end with
    ``os._exit()`` after running only those (``atexit`` never runs there), and they clear
    the finaliser registry first, so the registration must come from multiprocessing's own
    after-fork hooks."""
    global _mp_registered
    if _mp_registered or "multiprocessing" not in sys.modules:
        return
    try:
        from multiprocessing import util

        util.register_after_fork(_mp_token, _register_mp_finaliser)
        _mp_registered = True
    except Exception:
        pass


def _register_mp_finaliser(_: Any) -> None:
    from multiprocessing import util

    util.Finalize(None, _drain_at_exit, exitpriority=10)


atexit.register(_drain_at_exit)
_register_early = getattr(threading, "_register_atexit", None)
if _register_early is not None:  # private, 3.9+: runs before threads are refused
    _register_early(_prepare_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork)
