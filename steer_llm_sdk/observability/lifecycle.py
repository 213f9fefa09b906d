"""Process-wide state, in one place: the default collector, the exit drain, and the one
at-fork registry.

Every component that holds threads, locks, sockets or per-process identity registers here
with :func:`on_fork` (collectors, the request-id prefix, the rate-limited log, sinks, client
sessions). After ``os.fork()`` the child runs each registered reset once, in order of their
``order`` (process identity first, then sinks, then collectors, then clients), so a
collector restarting in the child already sees fresh sinks.

Collectors are also registered for the exit drain (:func:`shutdown_all` and the ``atexit``
handler) and for :func:`reset_after_fork`, which pre-fork servers' hooks may call. Work that
still makes records at exit (ending streams left open) registers with :func:`at_exit_call`
and runs before the collectors deliver their last records.
"""

import atexit
import os
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import _ids, _native
from ._log import rate_limited

if TYPE_CHECKING:
    from .collector import MetricsCollector
    from .config import MetricsConfig
    from .sinks.base import MetricsSink

#: Reset order after a fork: lower first.
IDENTITY, SINKS, COLLECTORS, CLIENTS = 0, 10, 20, 30

_registry_lock = threading.Lock()
# (order, sequence, a weak reference to the owner or None for a plain function, the
# method name or the function)
_fork_hooks: List[Tuple[int, int, Any, Any]] = []
_sequence = 0


def on_fork(owner: Any, method: str = "_after_fork", order: int = SINKS) -> None:
    """Call ``owner.<method>()`` in every forked child, for as long as ``owner`` lives.

    Args:
        owner: held weakly (a dropped sink or client is simply skipped).
        method: the name of its reset method.
        order: :data:`IDENTITY`, :data:`SINKS`, :data:`COLLECTORS` or :data:`CLIENTS`.
    """
    _add_hook(order, weakref.ref(owner), method)


def on_fork_call(function: Callable[[], None], order: int = IDENTITY) -> None:
    """Call a module-level ``function()`` in every forked child (held strongly)."""
    _add_hook(order, None, function)


#: Called by the exit drain before the collectors deliver their last records.
_exit_hooks: List[Callable[[], Any]] = []


def at_exit_call(function: Callable[[], Any]) -> None:
    """Call ``function()`` at exit, before the collectors' exit drain (held strongly); for
    work that still makes records, such as ending streams left open."""
    _exit_hooks.append(function)


def _add_hook(order: int, ref: Any, target: Any) -> None:
    global _sequence
    with _registry_lock:
        _sequence += 1
        _fork_hooks.append((order, _sequence, ref, target))
        _fork_hooks.sort(key=lambda hook: hook[:2])
        if len(_fork_hooks) > 64 and _sequence % 64 == 0:  # forget dead owners now and then
            _fork_hooks[:] = [h for h in _fork_hooks if h[2] is None or h[2]() is not None]


#: The process the registered parts were made or last reset for.
_reset_for_pid = os.getpid()
#: How this process's fork was noticed ("python-hook", "uwsgi-hook", "pid-check"), or None.
_reset_by: Optional[str] = None
_uwsgi_hook_installed = False


def fork_state() -> Dict[str, Any]:
    """What this process knows of its fork, for diagnostics (``doctor``).

    Returns:
        ``{"pid", "reset_by", "uwsgi_hook"}``: ``reset_by`` is how the last fork was
        noticed ("python-hook": Python's at-fork hook; "uwsgi-hook": uWSGI's post-fork
        hook; "pid-check": a record found the pid changed, no hook ran), or None in a
        process that was not forked after the library loaded; ``uwsgi_hook`` whether the
        reset is chained into uWSGI's post-fork hook.
    """
    return {"pid": os.getpid(), "reset_by": _reset_by, "uwsgi_hook": _uwsgi_hook_installed}


def _run_fork_hooks(how: str = "python-hook") -> None:
    """In the child, right after ``os.fork()``: every registered reset, in order. A failing
    reset is logged and the rest still run (a broken sink must not break the child). Runs
    once per process, whichever way the fork was noticed first (Python's at-fork hook,
    uWSGI's post-fork hook, or a collector seeing a changed pid)."""
    global _registry_lock, _default_lock, _reset_for_pid, _reset_by
    pid = os.getpid()
    if pid == _reset_for_pid:
        return
    _reset_for_pid = pid
    _reset_by = how
    # Another thread may have held these at the fork: a held lock stays held in the child.
    _registry_lock = threading.Lock()
    _default_lock = threading.Lock()
    for _, _, ref, target in list(_fork_hooks):
        try:
            if ref is None:
                target()
                continue
            owner = ref()
            if owner is not None:
                getattr(owner, target)()
        except Exception as exc:
            rate_limited.warning(
                "fork_reset", "steer_llm_sdk could not reset after fork", error=type(exc).__name__
            )


def fork_noticed() -> None:
    """A collector found itself in a process forked without Python's at-fork hooks (uWSGI
    without ``py-call-uwsgi-fork-hooks``, a fork made from C): reset every registered
    part now, as the hook would have, and say once how to avoid the records this loses."""
    if os.getpid() == _reset_for_pid:
        return
    _run_fork_hooks("pid-check")
    rate_limited.warning(
        "fork_without_hooks",
        "steer_llm_sdk noticed a fork made without Python's fork hooks at its first record; "
        "records the parent had queued are counted as dropped['fork']. Under uWSGI set "
        "py-call-uwsgi-fork-hooks (or lazy-apps)",
        pid=os.getpid(),
    )


def uwsgi_threads_off(version: bytes, options: Dict[str, Any]) -> bool:
    """Whether a uWSGI of ``version`` (``uwsgi.version``) started with ``options``
    (``uwsgi.opt``) gives Python threads no time while a worker is idle: before 2.0.27
    threads are off unless ``enable-threads`` (or ``threads``) is set; from 2.0.27 on they
    are always on."""
    try:
        parts = tuple(int(p) for p in version.decode().split("-")[0].split(".")[:3])
    except (AttributeError, ValueError):
        return False
    if parts >= (2, 0, 27):
        return False
    return not (options.get("enable-threads") or options.get("threads"))


def _chain_uwsgi_post_fork() -> None:
    """Under uWSGI, run the resets from its own post-fork hook, which it calls in every
    worker with or without ``py-call-uwsgi-fork-hooks``; an existing hook (such as
    ``uwsgidecorators.postfork``'s chain) still runs first."""
    global _uwsgi_hook_installed
    try:
        import uwsgi  # only importable inside uWSGI
    except Exception:
        return
    previous = getattr(uwsgi, "post_fork_hook", None)
    if getattr(previous, "_steer_llm_sdk", False):
        return

    def post_fork() -> None:
        if previous is not None:
            previous()
        _run_fork_hooks("uwsgi-hook")

    post_fork._steer_llm_sdk = True  # type: ignore[attr-defined]
    uwsgi.post_fork_hook = post_fork
    _uwsgi_hook_installed = True
    if uwsgi_threads_off(getattr(uwsgi, "version", b""), dict(getattr(uwsgi, "opt", {}))):
        rate_limited.warning(
            "uwsgi_threads_off",
            "steer_llm_sdk's background threads get no time under this uWSGI without "
            "enable-threads: records are delivered only when a request runs or at exit. "
            "Set enable-threads = true",
            version=getattr(uwsgi, "version", b"").decode(errors="replace"),
        )


# ---------------------------------------------------------------------- collectors
_live: "weakref.WeakSet[MetricsCollector]" = weakref.WeakSet()


def register_collector(collector: "MetricsCollector") -> None:
    """Include ``collector`` in the exit drain, :func:`shutdown_all` and fork resets; and
    when it is dropped without ``shutdown()``, deliver what it holds and end its threads
    (its pipeline is kept until then, and drained at exit if the process ends first)."""
    _live.add(collector)
    on_fork(collector, "_after_fork", COLLECTORS)
    finalizer = weakref.finalize(
        collector, _orphaned, collector._pipeline, collector.config.shutdown_timeout_seconds
    )
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
        for thread in pipeline.threads():
            if thread is not _native.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        if not pipeline.running:
            _orphans.pop(pipeline, None)


def collectors() -> List["MetricsCollector"]:
    """The live collectors of this process."""
    return list(_live)


def shutdown_all(timeout: Optional[float] = None) -> bool:
    """Flush and shut down every collector of this process (each within ``timeout``, or its
    own ``shutdown_timeout_seconds``). For exit hooks such as gunicorn's ``worker_exit``.

    Returns:
        True if every collector delivered everything in time.
    """
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
    for collector in collectors():
        if collector._forked():
            collector._after_fork()
            reset += 1
    return reset


def _prepare_exit() -> None:
    """Runs when threading starts its shutdown, before ``atexit`` handlers: threads may
    still start here (not later, on Python 3.12+)."""
    for collector in collectors():
        try:
            collector._prepare_exit()
        except Exception:
            pass


def _drain_at_exit() -> None:
    for hook in list(_exit_hooks):
        try:
            hook()
        except Exception:
            pass
    longest = _orphans_timeout()
    for collector in collectors():
        longest = max(longest, collector.config.shutdown_timeout_seconds)
        try:
            collector._at_exit()
        except Exception as exc:
            rate_limited.warning(
                "exit", "steer_llm_sdk metrics exit flush failed", error=type(exc).__name__
            )
    _drain_orphans(time.monotonic() + longest)


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


# ---------------------------------------------------------------------- default collector
_default: Optional["MetricsCollector"] = None
_default_lock = threading.Lock()


def configure(
    config: Optional["MetricsConfig"] = None, sinks: Sequence["MetricsSink"] = ()
) -> "MetricsCollector":
    """Set the process-wide default collector and return it.

    Args:
        config: default ``MetricsConfig.from_env()`` (``STEER_METRICS_*`` variables).
        sinks: default one :class:`InMemoryMetricsSink`.

    A previous default collector is shut down (its pending records delivered first).
    Module-level ``track_request`` resolves the default at call time, so calling this after
    decorating functions applies to them.
    """
    global _default
    collector = _new_default(config, sinks)
    with _default_lock:
        previous, _default = _default, collector
    if previous is not None:
        previous.shutdown()
    return collector


def _new_default(
    config: Optional["MetricsConfig"], sinks: Sequence["MetricsSink"] = ()
) -> "MetricsCollector":
    from .collector import MetricsCollector
    from .config import MetricsConfig
    from .sinks.in_memory import InMemoryMetricsSink

    return MetricsCollector(
        config if config is not None else MetricsConfig.from_env(),
        list(sinks) if sinks else [InMemoryMetricsSink()],
    )


def swap_default(collector: Optional["MetricsCollector"]) -> Optional["MetricsCollector"]:
    """Install ``collector`` as the default without shutting the previous one down; return
    the previous one (for test helpers that restore it)."""
    global _default
    with _default_lock:
        previous, _default = _default, collector
    return previous


def get_collector() -> "MetricsCollector":
    """The default collector, created from the environment on first use."""
    global _default
    collector = _default
    if collector is not None:
        return collector
    with _default_lock:
        if _default is None:
            _default = _new_default(None)
        return _default


def flush(timeout: Optional[float] = None) -> bool:
    """Flush the default collector (see :meth:`MetricsCollector.flush`)."""
    return get_collector().flush(timeout)


def shutdown(timeout: Optional[float] = None) -> bool:
    """Shut the default collector down, if one exists."""
    collector = _default
    return collector.shutdown(timeout) if collector is not None else True


on_fork_call(_ids.renew_prefix, IDENTITY)
on_fork_call(rate_limited.reset, IDENTITY)
atexit.register(_drain_at_exit)
_register_early = getattr(threading, "_register_atexit", None)
if _register_early is not None:  # private, 3.9+: runs before threads are refused
    _register_early(_prepare_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_run_fork_hooks)
_chain_uwsgi_post_fork()
