"""Request ids: a random per-process prefix and a counter.

A tracked call takes only the counter value (``next_seq()``, one C call, atomic under the
GIL); the string ``'<8 hex>-<counter hex>'`` is formatted later, on the flush thread, or at
once when user code can see the record (``current_metrics()``, ``bind_context``, the context
manager, sampling). The prefix is renewed in a forked child so ids stay unique.
"""

import itertools
import os
from typing import Any

from .lifecycle import IDENTITY, on_fork_call

_seq = itertools.count(1)
next_seq = _seq.__next__
_prefix = os.urandom(4).hex() + "-"


def format_id(value: Any) -> Any:
    """The id string for a counter value; anything else (already a string) unchanged."""
    return f"{_prefix}{value:x}" if type(value) is int else value


def new_request_id() -> str:
    """A process-unique request id."""
    return format_id(next_seq())


def resolve_ids(record: Any) -> None:
    """Replace counter values in ``request_id``/``parent_request_id`` with id strings."""
    if type(record.request_id) is int:
        record.request_id = f"{_prefix}{record.request_id:x}"
    if type(record.parent_request_id) is int:
        record.parent_request_id = f"{_prefix}{record.parent_request_id:x}"


def _renew_prefix() -> None:
    global _prefix
    _prefix = os.urandom(4).hex() + "-"


on_fork_call(_renew_prefix, IDENTITY)
