"""The measured call: one model of a call for every entry.

* :mod:`.scope`: the context (ambient attributes, the call in scope) in ``contextvars``.
* :mod:`.call`: a call's record, its single end, joining an open call.
* :mod:`.stream`: the stream meter, the end-once guard, recording a stream's end.
* :mod:`.track`: ``track_request`` (decorator and context manager).
* :mod:`.sdk`: SDK calls (``instrument()``), their stream proxies and helpers.
"""

from .scope import bind_context, current_attributes, current_metrics, metrics_context
from .track import TrackedStream, Tracker, track_request

__all__ = [
    "TrackedStream",
    "Tracker",
    "bind_context",
    "current_attributes",
    "current_metrics",
    "metrics_context",
    "track_request",
]
