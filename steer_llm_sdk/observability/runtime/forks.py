"""The one at-fork registry of the process, and how a fork is noticed.

Every component that holds threads, locks, sockets or per-process identity registers here
with :func:`on_fork` (collectors, the request-id prefix, the rate-limited log, sinks, client
sessions, the default collector's lock). In a forked child each registered reset runs once,
in order of their ``order`` (process identity first, then sinks, then collectors, then
clients), so a collector restarting in the child already sees fresh sinks.

A fork is noticed by Python's at-fork hook (``os.fork()``), by uWSGI's post-fork hook (its
workers, with or without ``py-call-uwsgi-fork-hooks``), or by a collector whose record
finds the pid changed (:func:`fork_noticed`); the resets run once whichever comes first.

A uWSGI master that forks without Python's fork hooks must run no thread of ours
(:func:`threads_stall_forks`): the pipeline and the sinks ask before starting one.
"""

import os
import threading
import weakref
from functools import partial
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import _ids
from .._log import rate_limited
from .._signals import run_each

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
#: Set while the uWSGI hook runs the interpreter's after-fork work (which calls
#: run_fork_hooks through os.register_at_fork): the reset is named after the uWSGI hook.
_resetting_as: Optional[str] = None
_uwsgi_hook_installed = False
#: uWSGI's embedded module, where this process runs inside uWSGI.
_uwsgi: Optional[ModuleType] = None


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


def run_fork_hooks(how: str = "python-hook") -> None:
    """In the child, right after ``os.fork()``: every registered reset, in order. A failing
    reset is logged and the rest still run (a broken sink must not break the child); so do
    they when a signal handler's exception lands in one, which is raised once all have run
    (:func:`.._signals.run_each`). Runs once per process, whichever way the fork was
    noticed first (Python's at-fork hook, uWSGI's post-fork hook, or a collector seeing a
    changed pid)."""
    global _registry_lock, _reset_for_pid, _reset_by
    pid = os.getpid()
    if pid == _reset_for_pid:
        return
    _reset_for_pid = pid
    _reset_by = _resetting_as or how
    # Another thread may have held these at the fork: a held lock stays held in the child.
    _registry_lock = threading.Lock()
    run_each([partial(_call_hook, ref, target) for _, _, ref, target in _fork_hooks], _reset_failed)


def _call_hook(ref: Any, target: Any) -> None:
    """Make a registered hook's call: ``target()``, or ``owner.<target>()`` while its owner
    lives (nothing once it was dropped)."""
    if ref is None:
        target()
        return
    owner = ref()
    if owner is not None:
        getattr(owner, target)()


def _reset_failed(exc: Exception) -> None:
    rate_limited.warning(
        "fork_reset", "steer_llm_sdk could not reset after fork", error=type(exc).__name__
    )


def fork_noticed() -> None:
    """A collector found itself in a process forked without Python's at-fork hooks (uWSGI
    without ``py-call-uwsgi-fork-hooks``, a fork made from C): reset every registered
    part now, as the hook would have, and say once how to avoid the records this loses."""
    if os.getpid() == _reset_for_pid:
        return
    run_fork_hooks("pid-check")
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
    return not (_option_on(options.get("enable-threads")) or options.get("threads"))


def _option_on(value: Any) -> bool:
    """A uWSGI flag's value in ``uwsgi.opt`` read as uWSGI reads it: ``True`` from the
    command line, bytes from a configuration file, where "false", "off", "no" and "0" turn
    it off; a list when given more than once (the last wins)."""
    if isinstance(value, list):
        value = value[-1] if value else None
    if isinstance(value, bytes):
        return value.decode(errors="replace").lower() not in ("false", "off", "no", "0")
    return bool(value)


def uwsgi_forks_stall(options: Dict[str, Any], pid: int, master_pid: int) -> bool:
    """Whether a thread of the process ``pid`` can stall what it forks, for a uWSGI started
    with ``options`` (``uwsgi.opt``) whose master is ``master_pid`` (``uwsgi.masterpid()``,
    0 without a master): only in that master, and only without
    ``py-call-uwsgi-fork-hooks``. See :func:`threads_stall_forks`."""
    return (
        bool(master_pid)
        and pid == master_pid
        and not _option_on(options.get("py-call-uwsgi-fork-hooks"))
    )


def threads_stall_forks() -> bool:
    """Whether a thread of ours running in this process could stall the processes it forks.

    True only in a uWSGI master that forks its workers (mules, spoolers) without Python's
    fork hooks, uWSGI's default. Such a master releases the GIL once the app is loaded and
    lets its Python threads run; every child it forks then takes the GIL back in uWSGI's
    own C code (the Python plugin's ``master_fixup``), before any Python code or at-fork
    callback runs there. A child forked while another thread of the master held the GIL
    waits for a holder that does not exist in it: the worker never serves a request, and
    the master kills it only after ``worker-reload-mercy`` (60 s by default). Nothing in
    the child can undo that, so in such a master nothing of ours may run on a thread of its
    own: the pipeline delivers on the caller's thread and the OTLP sink exports without a
    reader thread. ``py-call-uwsgi-fork-hooks`` makes uWSGI take the GIL before it forks;
    with ``lazy-apps`` the app, and the library with it, loads in the workers.

    Returns:
        True in such a master; False in its workers, in a master forking with the hooks,
        under any other server and outside uWSGI. Asked again after a fork (the answer
        changes in the child). Thread-safe.
    """
    uwsgi = _uwsgi
    if uwsgi is None:
        return False
    try:
        master_pid = int(uwsgi.masterpid())
        options = dict(getattr(uwsgi, "opt", {}))
    except Exception:
        return False
    return uwsgi_forks_stall(options, os.getpid(), master_pid)


def _interpreter_after_fork() -> None:
    """In a worker forked without Python's fork hooks: do what ``os.fork()`` does in its
    child, ``PyOS_AfterFork_Child()``: the interpreter renews its own locks and thread
    state and runs every ``os.register_at_fork`` callback (``logging``'s, ``threading``'s,
    the SDKs', ours), so that no lock another thread of the master held at the fork stays
    held here. Called through ``ctypes.pythonapi``, which keeps the GIL, from the worker's
    only thread, exactly where ``os.fork()`` calls it. Where that is not possible, at least
    ``logging``'s locks are renewed."""
    global _resetting_as
    _resetting_as = "uwsgi-hook"
    try:
        import ctypes

        after_fork = ctypes.pythonapi.PyOS_AfterFork_Child
        after_fork.argtypes, after_fork.restype = [], None
        after_fork()
    except Exception:
        _renew_logging_locks()
    finally:
        _resetting_as = None


def _renew_logging_locks() -> None:
    """What ``logging``'s own after-fork hook does, for a worker forked without Python's
    hooks: a lock that another thread of the parent held at the fork (the module's lock,
    a handler's) would stay held in the child, and the first log line there would block
    for good. Private to CPython's ``logging`` (3.9+); skipped where it is missing."""
    import logging

    renew = getattr(logging, "_after_at_fork_child_reinit_locks", None)
    if renew is not None:
        try:
            renew()
        except Exception:
            pass


def _chain_uwsgi_post_fork() -> None:
    """Under uWSGI, run the resets from its own post-fork hook, which it calls in every
    worker with or without ``py-call-uwsgi-fork-hooks``; an existing hook (such as
    ``uwsgidecorators.postfork``'s chain) still runs first."""
    global _uwsgi_hook_installed, _uwsgi
    try:
        import uwsgi  # only importable inside uWSGI
    except Exception:
        return
    _uwsgi = uwsgi
    previous = getattr(uwsgi, "post_fork_hook", None)
    if getattr(previous, "_steer_llm_sdk", False):
        return

    def post_fork() -> None:
        if previous is not None:
            previous()
        if os.getpid() != _reset_for_pid:  # Python's own fork hooks did not run
            _interpreter_after_fork()
        run_fork_hooks("uwsgi-hook")  # a no-op if the interpreter's work ran ours

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


on_fork_call(_ids.renew_prefix, IDENTITY)
on_fork_call(rate_limited.reset, IDENTITY)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=run_fork_hooks)
_chain_uwsgi_post_fork()
