"""instrument(): measure every call of the official provider SDKs without touching call
sites.

``instrument()`` wraps the SDKs' sync entry points (see the README's table) with
``wrapt``; each call then yields the same records as ``@track_request``. It imports no SDK
(and the measuring code only once one is imported): an SDK already imported is patched at
once, any other when the application imports it (a post-import hook, :mod:`._hooks`). It
is idempotent and thread-safe, and ``uninstrument()`` reverses it, removing the hook and
only our wrappers: one that another instrumentation has wrapped in turn since is switched
off instead of unwound, so the other keeps working.
"""

from ._registry import SDKS, instrument, instrumented, uninstrument

__all__ = ["SDKS", "instrument", "instrumented", "uninstrument"]
