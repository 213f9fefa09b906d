"""Intake: the one admission step, the bounded queue, the fork check and the wake-up.

:meth:`Intake.admission` returns the function every entry point calls to hand over a record
(``collector.record()``, the decorator, the context manager, tracked streams, the client).
It is chosen once, for the collector's current state, and chosen again only when that state
changes (construction, sampling or enablement changes, shutdown, fork), so the function
itself tests nothing that cannot change between two records. In the accepting case it costs
a ``_trusted`` test, one ``deque.append`` (atomic, no lock), a length check and, rarely, an
``Event.set()``.
"""

import os
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Optional

from .._log import rate_limited
from .._sanitize import sanitize
from ..models import BaseMetrics
from .accounting import Accounting, Drop

Admit = Callable[[Any], bool]
_getpid = os.getpid


def refuse(record: Any) -> bool:
    """The admission function of a disabled collector: refuses without counting."""
    return False


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
        """Fresh queue, wake-up event and flags (at construction and in a forked child)."""
        self.queue: Deque[Any] = deque()
        self.wake = threading.Event()
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

        The returned function takes any object, never blocks and never raises; it returns
        whether the record was accepted, counting every refusal.
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

        def admit(record: Any) -> bool:
            try:
                if not record._trusted and not validate(record):
                    return False
                if sample is not None and not sample(record):
                    accounting.sample_out()
                    return False
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
            except Exception as exc:  # never into user code
                return self._failed(record, exc)

        return admit

    def _after_shutdown(self, record: Any) -> bool:
        self.accounting.drop(Drop.AFTER_SHUTDOWN)
        return False

    def _invalid(self, record: Any) -> bool:
        self.accounting.drop(Drop.INVALID)
        return False

    def _failed(self, record: Any, exc: BaseException) -> bool:
        """Admission itself raised: a foreign object counts as ``invalid``; a record (whose
        subclass or sampler misbehaved) as an internal error."""
        if not isinstance(record, BaseMetrics):
            return self._invalid(record)
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
        record._trusted = True
        return True

    def _slow(self, record: BaseMetrics) -> bool:
        """Enqueue above the high-water mark (half the queue): yield the GIL once, then
        accept or refuse as ``queue_full``.

        It never waits: ``time.sleep(0)`` gives the flush thread, which otherwise queues
        behind every busy thread for the GIL, a chance to run, so that a burst from many
        threads is delivered instead of dropped.
        """
        queue = self.queue
        self.wake.set()
        time.sleep(0)
        if len(queue) >= self.max_queue_size:
            self.accounting.drop(Drop.QUEUE_FULL)
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
        at-fork hook; this check catches forks made from C without Python's hooks (uWSGI
        without ``py-call-uwsgi-fork-hooks``). Such a child inherits the parent's queue; what
        it holds when the fork is noticed is dropped and counted as ``dropped["fork"]``,
        because the parent delivers its own copy of those records.
        """
        if self.pid != _getpid():
            self._fork_reset(len(self.queue))
            return False
        self._start()  # starts the threads once; restarts one that died (once per batch)
        if size >= self.batch_size and not self.wake_pending:
            self.wake_pending = True
            self.wake.set()
        return True

    def forked(self) -> bool:
        """Whether this process is not the one that made the queue (a fork not seen by
        Python's hooks)."""
        return self.pid != _getpid()
