"""Where every record goes, counted in one place.

Reasons are an enum inside the pipeline; they become strings only in :meth:`Accounting.snapshot`
(the ``stats()`` boundary). One re-entrant lock guards the counters and the queue moves of the
pipeline (re-entrant because a garbage-collected stream wrapper may record from inside a
locked section on the same thread); it is held only for counting and moving, never while a
filter or sink runs.
"""

import enum
from typing import Any, Callable, Dict, Iterable

from .. import _native

#: Reports a failure of user code or of the pipeline: (log key, the component, the exception).
OnFailure = Callable[[str, Any, BaseException], None]


class Drop(enum.Enum):
    """Why an accepted or offered record did not reach the sinks."""

    QUEUE_FULL = "queue_full"  # the main queue was at max_queue_size
    AFTER_SHUTDOWN = "after_shutdown"  # recorded after shutdown()
    FILTER_ERROR = "filter_error"  # a filter raised or returned a non-record
    INVALID = "invalid"  # not a metrics record, or one whose values could not be checked
    FORK = "fork"  # inherited by a child forked without Python's fork hooks
    INTERNAL_ERROR = "internal_error"  # lost to a failure of the pipeline itself


class Accounting:
    """The pipeline's counters. Thread-safe: every change happens under :attr:`lock`."""

    def __init__(self) -> None:
        self.lock = _native.RLock()
        self.sampled_out = 0
        self.filtered = 0
        self.sanitized = 0
        self.internal_errors = 0
        self.taken = 0  # records the flush thread took from the queue
        self.in_flight = 0  # taken and not yet handed to the channels
        # Drops are kept apart by where they happen: refused before the queue (not counted
        # among the accepted), or lost after the flush thread took them (already counted).
        self.refused: Dict[Drop, int] = {reason: 0 for reason in Drop}
        self.lost_taken: Dict[Drop, int] = {reason: 0 for reason in Drop}

    def lost(self, reason: Drop, count: int = 1, taken: bool = False) -> None:
        """Count ``count`` records that will not reach the sinks, for ``reason``: the one
        way every loss is counted.

        Args:
            reason: why.
            count: how many.
            taken: the flush thread had taken them from the queue (already counted as
                accepted, so kept apart until :meth:`snapshot` adds them up); otherwise
                they were refused before entering it.
        """
        with self.lock:
            (self.lost_taken if taken else self.refused)[reason] += count

    def take(self, count: int) -> None:
        """The flush thread took ``count`` records (a batch, or roll-ups it made)."""
        with self.lock:
            self.taken += count
            self.in_flight = count

    def lost_queued(self, reason: Drop, count: int) -> None:
        """``count`` records taken from the queue by someone other than the flush thread,
        which will never deliver them, lost for ``reason``."""
        with self.lock:
            self.taken += count
            self.lost_taken[reason] += count

    def settle(self, sanitized: int, filtered: int, filter_errors: int, invalid: int) -> None:
        """The batch in flight was admitted: what sanitising and the filters did to it."""
        with self.lock:
            self.in_flight = 0
            self.sanitized += sanitized
            self.filtered += filtered
            self.lost_taken[Drop.FILTER_ERROR] += filter_errors
            self.lost_taken[Drop.INVALID] += invalid

    def lose_in_flight(self) -> None:
        """The batch in flight failed in the pipeline itself: its records not yet handed to
        the channels are lost."""
        with self.lock:
            lost, self.in_flight = self.in_flight, 0
            self.lost_taken[Drop.INTERNAL_ERROR] += lost

    def sample_out(self) -> None:
        with self.lock:
            self.sampled_out += 1

    def sanitize(self) -> None:
        with self.lock:
            self.sanitized += 1

    def internal_error(self, count: int = 1) -> None:
        with self.lock:
            self.internal_errors += count

    def snapshot(self, queued_items: int, markers: int, channels: Iterable[Any]) -> Dict[str, Any]:
        """A consistent copy of every counter as plain data (see ``CollectorStats``).

        Args:
            queued_items: length of the main queue (records and flush markers).
            markers: flush markers among them.
            channels: the sinks' channels, each with its own counters.
        """
        with self.lock:
            queued = queued_items - markers + self.in_flight
            accepted = self.taken + queued_items - markers
            lost = self.lost_taken
            dropped = {reason.value: n + lost[reason] for reason, n in self.refused.items()}
            # Records refused before the queue count towards "recorded" here; those lost
            # after it are among the accepted ones the flush thread took.
            refused = sum(self.refused.values())
            return {
                "recorded": self.sampled_out + accepted + refused,
                "sampled_out": self.sampled_out,
                "filtered": self.filtered,
                "dropped": dropped,
                "sanitized": self.sanitized,
                "queued": queued,
                "internal_errors": self.internal_errors,
                "sinks": {c.name: c.counters() for c in channels},
            }
