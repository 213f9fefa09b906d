"""The slot of the process-wide default collector.

What the default collector is made of (its class, configuration and sinks) is decided above
this layer: :mod:`..lifecycle` installs the factory that :func:`get_collector` calls on first
use, so the measuring code can find the default collector without importing the collector.
"""

import threading
from typing import Any, Callable, Optional

from .forks import IDENTITY, on_fork_call

_default: Optional[Any] = None
_lock = threading.Lock()
_factory: Optional[Callable[[], Any]] = None


def set_factory(factory: Callable[[], Any]) -> None:
    """Install what :func:`get_collector` calls to make the default collector."""
    global _factory
    _factory = factory


def get_collector() -> Any:
    """The default collector, created on first use by the installed factory.

    Raises:
        RuntimeError: no factory is installed (``steer_llm_sdk.observability`` installs
            it on import, so this is a bug of the library).
    """
    global _default
    collector = _default
    if collector is not None:
        return collector
    with _lock:
        if _default is None:
            if _factory is None:
                raise RuntimeError("steer_llm_sdk: no default collector factory installed")
            _default = _factory()
        return _default


def current() -> Optional[Any]:
    """The default collector if one was made, else None (never makes one)."""
    return _default


def swap_default(collector: Optional[Any]) -> Optional[Any]:
    """Install ``collector`` as the default without shutting the previous one down; return
    the previous one."""
    global _default
    with _lock:
        previous, _default = _default, collector
    return previous


def _renew_lock() -> None:
    # Another thread may have held it at the fork: a held lock stays held in the child.
    global _lock
    _lock = threading.Lock()


on_fork_call(_renew_lock, IDENTITY)
