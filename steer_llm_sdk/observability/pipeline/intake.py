"""Intake: the one admission step, the bounded queue, the fork check and the wake-up.

:meth:`Intake.admission` returns the function every entry point calls to hand over a record
(``collector.record()``, the decorator, the context manager, tracked streams, the client).
It is chosen once, for the collector's current state, and chosen again only when that state
changes (construction, sampling or enablement changes, shutdown, fork), so the function
itself tests nothing that cannot change between two records. In the accepting case it costs
a ``_trusted`` test, one ``deque.append`` (atomic, no lock), a length check and, rarely, a
wake-up.

Everything here runs on the caller's thread, where an exception raised by a signal handler
(a Celery soft time limit, ``signal.alarm``) can land between any two bytecodes. Nothing
here may be left half-done by one: the wake-up is a C call (see :class:`Wake`), the
counters sit behind a C lock taken with ``with``, and such an exception is let through to
the caller instead of being counted as a failure (see :mod:`.._signals`).
"""

import functools
import os
import time
from collections import deque
from typing import Any, Callable, Deque, Optional

from .._log import rate_limited
from .._native import TIMEOUT_MAX, Empty, SimpleQueue
from .._sanitize import sanitize
from .._signals import signal_exception
from ..models import BaseMetrics, trust
from .accounting import Accounting, Drop

Admit = Callable[[Any], bool]
_getpid = os.getpid


def refuse(record: Any) -> bool:
    """The admission function of a disabled collector: refuses without counting."""
    return False


class Wake:
    """The flush thread's wake-up call, safe to give on a thread a signal handler interrupts.

    ``threading.Event.set()`` is Python code around a lock: an exception raised by a signal
    handler can land just after the lock was taken and leave it held, and then the next
    ``set()`` on that thread and the flush thread's ``wait()`` block forever. Here a wake-up
    is a token put in a ``queue.SimpleQueue``: :meth:`set` is a ``functools.partial`` of its
    ``put``, C code from the call to the return, which no Python-level handler can
    interrupt. Only the flush thread waits and clears.

    ``set()`` and ``is_set()`` may be called from any thread; ``wait()`` and ``clear()``
    from one thread at a time.
    """

    __slots__ = ("_tokens", "set")

    def __init__(self) -> None:
        self._tokens: SimpleQueue[None] = SimpleQueue()
        #: Wakes the waiting thread (or the next wait). Never blocks, never raises.
        self.set: Callable[[], None] = functools.partial(self._tokens.put, None)

    def wait(self, timeout: float) -> bool:
        """Wait until woken or ``timeout`` seconds passed; returns whether woken. The token
        that woke it is consumed; others stay until :meth:`clear`."""
        try:
            self._tokens.get(True, min(max(timeout, 0.0), TIMEOUT_MAX))
        except Empty:
            return False
        return True

    def is_set(self) -> bool:
        """Whether a wake-up is waiting to be taken."""
        return not self._tokens.empty()

    def clear(self) -> None:
        """Take every waiting wake-up (they all asked for the pass that follows)."""
        take = self._tokens.get_nowait
        try:
            while True:
                take()
        except Empty:
            pass


class Intake:
    """The caller-facing end of a pipeline. Thread-safe.

    Args:
        accounting: where refusals are counted.
        batch_size: a queue this long wakes the flush thread.
        max_queue_size: records beyond this are refused as ``queue_full``.
        max_attributes, max_attribute_length: limits for validating user-built records.
        start: starts the background threads (called when the first record arrives).
        fork_reset: called with the records inherited through a fork made without Python's
            fork hooks (noticed by a changed pid); it must give the pipeline fresh state.
    """

    def __init__(
        self,
        accounting: Accounting,
        batch_size: int,
        max_queue_size: int,
        max_attributes: int,
        max_attribute_length: int,
        start: Callable[[], bool],
        fork_reset: Callable[[int], None],
    ) -> None:
        self.accounting = accounting
        self.batch_size = batch_size
        self.max_queue_size = max_queue_size
        # Above this many queued records, submitting yields the GIL once (see _slow).
        self.high_water = max(1, max_queue_size // 2)
        self.max_attributes = max_attributes
        self.max_attribute_length = max_attribute_length
        self._start = start
        self._fork_reset = fork_reset
        self.reset()

    def reset(self) -> None:
        """Fresh queue, wake-up and flags (at construction and in a forked child, where the
        parent's could be in any state)."""
        self.queue: Deque[Any] = deque()
        self.wake = Wake()
        self.wake_pending = False
        self.started = False
        self.closed = False
        self.pid = _getpid()

    # ------------------------------------------------------------------ admission
    def admission(self, enabled: bool, sample: Optional[Callable[[BaseMetrics], bool]]) -> Admit:
        """The admission function for the given state.

        Args:
            enabled: False gives :func:`refuse` (nothing measured, nothing counted).
            sample: the sampling decision, or None when every rate is 1.0.

        The returned function takes any object and never blocks; it returns whether the
        record was accepted, counting every refusal. It raises nothing of its own: only an
        exception raised by a signal handler while it runs (see :mod:`.._signals`) reaches
        the caller, whose timeout it is.
        """
        if not enabled:
            return refuse
        if self.closed:
            return self._after_shutdown
        intake, accounting = self, self.accounting
        queue = self.queue
        append = queue.append
        high_water, batch_size = self.high_water, self.batch_size
        validate, slow, first_or_full = self._validate, self._slow, self._first_or_full
        refused, failed = self._refused, self._failed

        # Two try blocks, split where the record enters the queue, so that a failure is
        # counted once: before, as a refusal; after, the queue holds it. (A try costs
        # nothing on 3.11+ until something raises.)
        def admit(record: Any) -> bool:
            try:
                if not record._trusted and not validate(record):
                    return False
                if sample is not None and not sample(record):
                    accounting.sample_out()
                    return False
            except Exception as exc:  # never into user code ...
                timeout = signal_exception(exc)
                if timeout is not None:  # ... unless it is the caller's own timeout
                    raise timeout
                return refused(record, exc)
            try:
                if len(queue) >= high_water:
                    return slow(record)
                append(record)
                size = len(queue)
                if size == 1:
                    return first_or_full(size)
                if size >= batch_size and not intake.wake_pending:
                    intake.wake_pending = True
                    intake.wake.set()
                return True
            except Exception as exc:
                timeout = signal_exception(exc)
                if timeout is not None:
                    raise timeout
                return failed(exc)

        return admit

    def _after_shutdown(self, record: Any) -> bool:
        self.accounting.lost(Drop.AFTER_SHUTDOWN)
        return False

    def _invalid(self, record: Any) -> bool:
        self.accounting.lost(Drop.INVALID)
        return False

    def _refused(self, record: Any, exc: BaseException) -> bool:
        """Checking a record before it was queued raised: it is refused and counted as
        ``invalid``; for a record (whose subclass or sampler misbehaved) that is an internal
        error too."""
        self._invalid(record)
        if isinstance(record, BaseMetrics):
            self._failed(exc)
        return False

    def _failed(self, exc: BaseException) -> bool:
        """Admission raised after the record was queued (the queue counts it): an internal
        error."""
        self.accounting.internal_error()
        rate_limited.warning(
            "internal:admission",
            "steer_llm_sdk metrics internal error",
            where="admission",
            error=type(exc).__name__,
        )
        return False

    def _validate(self, record: Any) -> bool:
        """Check a record built or touched by user code, on the caller's thread, so the flush
        thread's per-record work stays small (under the GIL its time is taken from every
        other thread). Returns False (counted as ``invalid``) for a non-record."""
        if not isinstance(record, BaseMetrics):
            return self._invalid(record)
        if sanitize(record, self.max_attributes, self.max_attribute_length):
            self.accounting.sanitize()
        trust(record)
        return True

    def _slow(self, record: BaseMetrics) -> bool:
        """Enqueue above the high-water mark (half the queue): yield the GIL once, then
        accept or refuse as ``queue_full``.

        It never waits: ``time.sleep(0)`` gives the flush thread, which otherwise queues
        behind every busy thread for the GIL, a chance to run, so that a burst from many
        threads is delivered instead of dropped.
        """
        queue = self.queue
        if not self.wake_pending:  # one wake-up per pass of the flush thread is enough
            self.wake_pending = True
            self.wake.set()
        time.sleep(0)
        if len(queue) >= self.max_queue_size:
            self.accounting.lost(Drop.QUEUE_FULL)
            rate_limited.warning(
                "queue_full",
                "steer_llm_sdk metrics queue full; dropping records",
                max_queue_size=self.max_queue_size,
            )
            return False
        queue.append(record)
        return self._first_or_full(len(queue))

    def _first_or_full(self, size: int) -> bool:
        """The record just queued is the first of a batch or fills one: check for a fork,
        start (or restart) the threads if needed, wake the flush thread when the batch is
        full.

        The pid check lives here rather than on every record (a getpid() system call costs
        about as much as the rest of admission). ``os.fork()`` is handled exactly by the
        at-fork hook, and under uWSGI by its post-fork hook (see ``lifecycle``) with or
        without ``py-call-uwsgi-fork-hooks``; this check catches other forks made from C.
        Such a child inherits the parent's queue; what it holds when the fork is noticed,
        except the record that noticed it, is dropped and counted as ``dropped["fork"]``,
        because the parent delivers its own copy of those records. The check runs when a
        record is the first of a batch, which is the worker's first record unless the
        parent had records queued at the fork: then it runs when the batch fills, and the
        worker's own records before it are counted with the parent's.
        """
        if self.pid != _getpid():
            return self._forked(self.queue)
        self._start()  # starts the threads once; restarts one that died (once per batch)
        if size >= self.batch_size and not self.wake_pending:
            self.wake_pending = True
            self.wake.set()
        return True

    def _forked(self, inherited: Deque[Any]) -> bool:
        """First record seen in a process forked without Python's hooks: the record just
        queued (the newest; the child has one thread until it starts more) is this
        process's own and is queued again after the reset; the rest were the parent's."""
        own = inherited.pop() if inherited else None
        self._fork_reset(len(inherited))
        if own is None:
            return False
        self.queue.append(own)
        return self._first_or_full(len(self.queue))

    def forked(self) -> bool:
        """Whether this process is not the one that made the queue (a fork not seen by
        Python's hooks)."""
        return self.pid != _getpid()
