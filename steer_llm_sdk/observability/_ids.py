"""Request ids: a random per-process prefix and a counter.

A tracked call takes only the counter value (``next_seq()``, one C call, atomic under the
GIL). Records keep it as an int; the string ``'<8 hex>-<counter hex>'`` is formatted the
first time anyone reads the record's ``request_id`` (a sink, a filter, user code) and then
kept. Most records are never read that way before they are dropped, so most ids are never
formatted. The prefix is renewed in a forked child so ids stay unique (lifecycle.py calls
:func:`renew_prefix`).

A leaf module: no imports from the rest of the package.
"""

import itertools
import os
from typing import Any

_seq = itertools.count(1)
next_seq = _seq.__next__
_prefix = os.urandom(4).hex() + "-"


def format_id(value: Any) -> Any:
    """The id string for a counter value; anything else (already a string) unchanged."""
    return f"{_prefix}{value:x}" if type(value) is int else value


def new_request_id() -> str:
    """A process-unique request id."""
    return format_id(next_seq())


def renew_prefix() -> None:
    """Give this process a new random prefix (in a forked child)."""
    global _prefix
    _prefix = os.urandom(4).hex() + "-"
