"""gunicorn hooks. In ``gunicorn.conf.py``::

    from steer_llm_sdk.observability.integrations.gunicorn import (
        child_exit, post_fork, worker_exit,
    )

``post_fork`` gives each worker fresh metrics state (Python's fork hooks already do this for
``os.fork()``; the hook makes it explicit and logs it), and ``worker_exit`` delivers every
pending record before a worker exits gracefully, so nothing queued in a worker is lost when
gunicorn stops or recycles it. Records queued in the master before the fork (with
``--preload``) are delivered by the master only.

``child_exit`` (runs in the master) tells prometheus_client's multiprocess mode that a worker
is gone, so live gauges (the circuit breaker's) stop counting it; its counters and histograms
stay, summed into every scrape. A no-op without ``PROMETHEUS_MULTIPROC_DIR``.

uWSGI forks from C: set ``enable-threads = true`` and ``py-call-uwsgi-fork-hooks = true``.
Without the fork hooks a worker still notices the fork on its first record and starts fresh,
counting what it inherited as ``dropped["fork"]``; without ``enable-threads`` no background
thread runs, and records are delivered only when the worker exits.
"""

import logging
from typing import Any

from .. import reset_after_fork, shutdown_all

_log = logging.getLogger("steer_llm_sdk")


def post_fork(server: Any, worker: Any) -> None:
    """gunicorn ``post_fork``: fresh locks, queues and threads in the worker (a no-op when
    Python's own fork hooks already did it)."""
    reset_after_fork()


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn ``worker_exit``: deliver what the worker still holds, within each collector's
    ``shutdown_timeout_seconds``."""
    try:
        shutdown_all()
    except Exception as exc:  # a hook must never stop the worker from exiting
        _log.warning("steer_llm_sdk metrics flush at worker exit failed: %s", type(exc).__name__)


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn ``child_exit`` (in the master): mark the worker dead for prometheus_client's
    multiprocess mode."""
    import os

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
    except Exception as exc:  # a hook must never stop the master
        _log.warning("marking worker %s dead for Prometheus failed: %s", worker.pid, exc)
