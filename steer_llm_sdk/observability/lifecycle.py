"""The process-wide default collector (:func:`configure`, :func:`get_collector`,
:func:`flush`, :func:`shutdown`), and the names of :mod:`.runtime` applications and server
hooks use (fork resets, the exit drain, the live collectors), in one importable place.

The state itself lives in :mod:`.runtime`, which imports no collector; this module decides
what the default collector is made of and installs that as the runtime's factory.
"""

from typing import TYPE_CHECKING, Optional, Sequence

from .collector import MetricsCollector
from .config import MetricsConfig
from .runtime import (
    CLIENTS,
    COLLECTORS,
    IDENTITY,
    SINKS,
    at_exit_call,
    collectors,
    current,
    fork_noticed,
    fork_state,
    get_collector,
    on_fork,
    on_fork_call,
    reset_after_fork,
    set_factory,
    shutdown_all,
    swap_default,
    uwsgi_threads_off,
)
from .sinks.in_memory import InMemoryMetricsSink

if TYPE_CHECKING:
    from .sink import MetricsSink


def configure(
    config: Optional[MetricsConfig] = None, sinks: Sequence["MetricsSink"] = ()
) -> MetricsCollector:
    """Set the process-wide default collector and return it.

    Args:
        config: default ``MetricsConfig.from_env()`` (``STEER_METRICS_*`` variables).
        sinks: default one :class:`InMemoryMetricsSink`.

    A previous default collector is shut down (its pending records delivered first).
    Module-level ``track_request`` resolves the default at call time, so calling this after
    decorating functions applies to them.
    """
    collector = new_default(config, sinks)
    previous = swap_default(collector)
    if previous is not None:
        previous.shutdown()
    return collector


def new_default(
    config: Optional[MetricsConfig] = None, sinks: Sequence["MetricsSink"] = ()
) -> MetricsCollector:
    """A collector made as the default one is: ``config`` or ``MetricsConfig.from_env()``,
    ``sinks`` or one in-memory sink. Raises what MetricsConfig.from_env raises for invalid
    ``STEER_METRICS_*`` variables. Does not install it (see :func:`configure`)."""
    return MetricsCollector(
        config if config is not None else MetricsConfig.from_env(),
        list(sinks) if sinks else [InMemoryMetricsSink()],
    )


def flush(timeout: Optional[float] = None) -> bool:
    """Flush the default collector (see :meth:`MetricsCollector.flush`)."""
    return get_collector().flush(timeout)


def shutdown(timeout: Optional[float] = None) -> bool:
    """Shut the default collector down, if one exists."""
    collector = current()
    return collector.shutdown(timeout) if collector is not None else True


set_factory(new_default)

__all__ = [
    "CLIENTS",
    "COLLECTORS",
    "IDENTITY",
    "SINKS",
    "at_exit_call",
    "collectors",
    "configure",
    "flush",
    "fork_noticed",
    "fork_state",
    "get_collector",
    "on_fork",
    "on_fork_call",
    "reset_after_fork",
    "shutdown",
    "shutdown_all",
    "swap_default",
    "uwsgi_threads_off",
]
