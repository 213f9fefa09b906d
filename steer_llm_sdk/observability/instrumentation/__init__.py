"""instrument(): measure every call of the official provider SDKs without touching call
sites.

``instrument()`` wraps the SDKs' sync entry points (see the README's table) with
``wrapt``; each call then yields the same records as ``@track_request``. It imports only SDKs
that are installed, is idempotent and thread-safe, and ``uninstrument()`` reverses it,
removing only our wrappers: one that another instrumentation has wrapped in turn since is
switched off instead of unwound, so the other keeps working.
"""

from ._registry import SDKS, instrument, instrumented, uninstrument

__all__ = ["SDKS", "instrument", "instrumented", "uninstrument"]
