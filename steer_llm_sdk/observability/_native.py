"""Real OS threads, locks and queues for the background work, also in a process that gevent
has monkey-patched.

Under ``gevent.monkey.patch_all()`` ``threading.Thread`` starts a greenlet, and its locks,
events and ``queue.SimpleQueue`` become greenlet primitives. A flush or delivery "thread"
that is a greenlet runs only when the application's code yields, and a sink blocking in C
(a socket without gevent, a native client library) freezes every greenlet of the process.
So the pipeline takes its threads and every primitive it shares with them from here: the
originals, which gevent keeps (``gevent.monkey.get_original``), or the ``_thread`` and
``_queue`` modules it never replaces. Without gevent these are the very objects
``threading`` and ``queue`` use.

A sink still runs its own code on a real thread: gevent-patched sockets work there (gevent
gives that thread its own hub), they just do not share the application's.

Waits on the caller's side (``flush()``, ``shutdown()``) would block the calling OS thread,
and with it every greenlet, so in a patched process they poll and sleep cooperatively
instead (:func:`wait_slices`): a flush never freezes the other requests of a gevent worker.
"""

import _thread
import os
import sys
import time
from typing import Any, Callable, Dict, Optional

try:
    from _queue import Empty, SimpleQueue
except ImportError:  # pragma: no cover - interpreters without the C queue
    from queue import Empty, SimpleQueue


def _original(module: str, name: str, fallback: Any) -> Any:
    """``module.name`` as it was before gevent patched it (``fallback`` if gevent was not
    imported: then nothing is patched yet, and what was read at import is original)."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return fallback
    try:
        return monkey.get_original(module, name)
    except Exception:
        return fallback


start_new_thread: Callable[..., int] = _original(
    "_thread", "start_new_thread", _thread.start_new_thread
)
allocate_lock: Callable[[], Any] = _original("_thread", "allocate_lock", _thread.allocate_lock)
get_ident: Callable[[], int] = _original("_thread", "get_ident", _thread.get_ident)
RLock: Callable[[], Any] = _thread.RLock  # gevent replaces threading's, never this one
TIMEOUT_MAX: float = _thread.TIMEOUT_MAX


def green() -> bool:
    """Whether gevent has patched ``threading`` in this process (the library then runs its
    background work on :class:`NativeThread`)."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return False
    try:
        return bool(monkey.is_module_patched("threading"))
    except Exception:
        return False


#: NativeThread objects by the ident of the OS thread running them.
_running: Dict[int, "NativeThread"] = {}


class NativeThread:
    """An OS thread started with the original ``_thread.start_new_thread``: the part of
    ``threading.Thread`` the pipeline uses (``start``, ``is_alive``, ``join``, ``ident``,
    ``name``, ``daemon``).

    It never keeps the interpreter alive (like a daemon thread). It counts as alive from
    the return of :meth:`start` until its target returns, and never in a forked child (the
    thread did not cross the fork).
    """

    def __init__(self, target: Callable[[], Any], name: str, daemon: bool = True) -> None:
        self._target = target
        self.name = name
        self.daemon = True
        self.ident: Optional[int] = None
        self._pid = os.getpid()
        self._started = False
        self._finished = allocate_lock()
        self._finished.acquire()  # released when the target returns

    def start(self) -> None:
        # The ident is known from here on, before the thread runs: the pipeline tells its
        # own threads apart by it.
        self.ident = start_new_thread(self._bootstrap, ())
        self._started = True

    def _bootstrap(self) -> None:
        ident = self.ident = get_ident()
        _running[ident] = self
        try:
            self._target()
        except BaseException:  # noqa: B036 - the target handles its own; nothing is left
            pass
        finally:
            _running.pop(ident, None)
            self._finished.release()

    def is_alive(self) -> bool:
        return self._started and self._pid == os.getpid() and self._finished.locked()

    def join(self, timeout: Optional[float] = None) -> None:
        if not self._started or self._pid != os.getpid():
            return
        wait_slices(
            lambda slice_: _released(self._finished, slice_),
            TIMEOUT_MAX if timeout is None else timeout,
        )

    def __repr__(self) -> str:
        state = "started" if self.is_alive() else "stopped"
        return f"<NativeThread({self.name}, {state} {self.ident})>"


def _released(lock: Any, timeout: float) -> bool:
    if lock.acquire(True, timeout):
        lock.release()
        return True
    return False


def new_thread(target: Callable[[], Any], name: str) -> Any:
    """A daemon thread running ``target``, not started: a ``threading.Thread``, or a
    :class:`NativeThread` where gevent has patched ``threading``."""
    if green():
        return NativeThread(target, name)
    import threading

    return threading.Thread(target=target, name=name, daemon=True)


def current_thread() -> Any:
    """The thread object running the caller: the :class:`NativeThread` when called from
    one, else ``threading.current_thread()``."""
    native = _running.get(get_ident())
    if native is not None:
        return native
    import threading

    return threading.current_thread()


def wait_slices(wait: Callable[[float], bool], timeout: float) -> bool:
    """Call ``wait(seconds)`` (a blocking wait that returns whether it succeeded) until it
    succeeds or ``timeout`` seconds have passed. In a gevent-patched process, on the
    application's side, it only polls (``wait(0)``) and sleeps with the patched
    ``time.sleep`` in between, so that the hub keeps running the other greenlets and their
    timers; elsewhere it is one blocking call."""
    if not green() or get_ident() in _running:
        return wait(min(max(timeout, 0.0), TIMEOUT_MAX))
    deadline = time.monotonic() + max(timeout, 0.0)
    while not wait(0.0):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, 0.002))  # patched: the hub runs meanwhile
    return True


__all__ = [
    "Empty",
    "NativeThread",
    "RLock",
    "SimpleQueue",
    "TIMEOUT_MAX",
    "allocate_lock",
    "current_thread",
    "get_ident",
    "green",
    "new_thread",
    "wait_slices",
]
