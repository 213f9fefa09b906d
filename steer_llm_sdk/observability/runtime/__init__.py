"""Process-wide state, in one place: the at-fork registry (:mod:`.forks`), the exit drain
and the registry of live collectors (:mod:`.exits`), and the default collector's slot
(:mod:`.default`). This layer imports no collector, pipeline or sink: they register here."""

from .default import current, get_collector, set_factory, swap_default
from .exits import (
    Drainable,
    at_exit_call,
    collectors,
    register_collector,
    reset_after_fork,
    shutdown_all,
)
from .forks import (
    CLIENTS,
    COLLECTORS,
    IDENTITY,
    SINKS,
    fork_noticed,
    fork_state,
    on_fork,
    on_fork_call,
    run_fork_hooks,
    uwsgi_threads_off,
)

__all__ = [
    "CLIENTS",
    "COLLECTORS",
    "IDENTITY",
    "SINKS",
    "Drainable",
    "at_exit_call",
    "collectors",
    "current",
    "fork_noticed",
    "fork_state",
    "get_collector",
    "on_fork",
    "on_fork_call",
    "register_collector",
    "reset_after_fork",
    "run_fork_hooks",
    "set_factory",
    "shutdown_all",
    "swap_default",
    "uwsgi_threads_off",
]
