"""Who owns the background threads of one pipeline, and how they are started and ended.

A pipeline has one flush thread and one delivery thread per channel (none for an inline
sink). They are started on the caller's thread, for the first record of a batch, where an
exception raised by a signal handler may interrupt ``Thread.start()`` anywhere: the thread
may then have started, died at once, or be about to run. So a thread is stored before it is
started, a later start replaces one that does not look alive (counted as an internal
restart), and a thread that finds itself replaced ends on its own, so that two never work
side by side for long.
"""

import threading
import time
from typing import Any, Callable, FrozenSet, List, Optional, Sequence

from .. import _native


class Threads:
    """The flush thread of one pipeline and the bookkeeping of its channels' threads.

    Args:
        run_worker: the flush thread's body. It must return once :attr:`worker` is no longer
            the thread running it (replaced after it looked dead).

    Not thread-safe: every method is called with the pipeline's lock held, except
    :attr:`running` and :meth:`join`, which only read.
    """

    __slots__ = ("run_worker", "worker", "idents", "internal_restarts", "refused")

    def __init__(self, run_worker: Callable[[], None]) -> None:
        self.run_worker = run_worker
        self.worker: Optional[Any] = None  # a threading.Thread or _native.NativeThread
        self.idents: FrozenSet[int] = frozenset()  # of every thread that ever ran here
        self.internal_restarts = 0  # threads found dead and started again
        self.refused = False  # starting a thread was refused (interpreter shutdown)

    @property
    def running(self) -> bool:
        """Whether the flush thread runs."""
        worker = self.worker
        return worker is not None and thread_alive(worker)

    def start_missing(self, channels: Sequence[Any], first: bool) -> None:
        """Start every thread that does not run: the channels' and the flush thread. One that
        ran before and died counts as an internal restart (unless ``first``).

        Raises:
            RuntimeError: at interpreter shutdown (Python 3.12+), where no thread may start;
                :attr:`refused` is then set and later calls are not made.
        """
        try:
            for channel in channels:
                if not channel.alive:
                    if not first and channel.thread is not None:
                        self.internal_restarts += 1
                    channel.start()
            worker = self.worker
            if worker is None or not thread_alive(worker):
                if not first and worker is not None:
                    self.internal_restarts += 1
                worker = _native.new_thread(self.run_worker, "steer-metrics-flush")
                self.worker = worker  # before start(): see the module docstring
                worker.start()
        except RuntimeError:
            self.refused = True
            raise
        finally:
            self.refresh(channels)

    def refresh(self, channels: Sequence[Any]) -> None:
        """Note the idents of the current threads (``flush()`` refuses to wait on them)."""
        idents = {c.thread.ident for c in channels if c.thread is not None}
        if self.worker is not None:
            idents.add(self.worker.ident)
        self.idents = frozenset(idents)

    def all(self, channels: Sequence[Any]) -> List[Any]:
        """The flush thread, then the channels' threads, that exist (alive or not)."""
        return [t for t in [self.worker] + [c.thread for c in channels] if t is not None]

    def join(self, channels: Sequence[Any], deadline: float) -> bool:
        """Wait for every thread but the calling one to end, until ``deadline``
        (``time.monotonic()``); returns whether none is left alive."""
        me = _native.current_thread()
        threads = self.all(channels)
        for thread in threads:
            if thread is not me:
                join_thread(thread, max(0.0, deadline - time.monotonic()))
        return not any(thread_alive(t) for t in threads)


def thread_alive(thread: threading.Thread) -> bool:
    """Whether ``thread`` runs.

    ``Thread.is_alive()`` alone misleads on the caller's thread: on Python 3.11 and 3.12 an
    exception raised by a signal handler inside it can mark a running thread as stopped for
    good (its clean-up for bpo-45274 releases the running thread's own lock), and the
    thread would be started a second time. A "no" is therefore checked against the table
    of running threads ``threading`` keeps (a private name, present in every version this
    package supports; without it, against ``threading.enumerate()``). A thread stuck in
    ``Thread.start()``'s handshake because an interrupted start left it locked is listed
    only as starting, never as running: it counts as dead and is replaced.
    """
    if thread.is_alive():
        return True
    if isinstance(thread, _native.NativeThread):  # keeps its own state, exactly
        return False
    ident = thread.ident
    if ident is None:  # never started
        return False
    running = getattr(threading, "_active", None)
    if isinstance(running, dict):
        return running.get(ident) is thread
    return any(t is thread for t in threading.enumerate())


def join_thread(thread: threading.Thread, timeout: float) -> bool:
    """Wait at most ``timeout`` seconds for ``thread`` to end; returns whether it did (or
    never started).

    ``Thread.join()`` returns at once for a thread that an interrupted ``is_alive()`` marked
    as stopped (see :func:`thread_alive`), and raises for one whose start was interrupted
    before it ran: after it, such a thread is waited for until Python no longer lists it.
    """
    deadline = time.monotonic() + timeout
    try:
        thread.join(timeout)
    except RuntimeError:  # not started (yet)
        pass
    pause = 0.001
    while thread_alive(thread):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.05)
    return True


__all__ = ["Threads", "join_thread", "thread_alive"]
