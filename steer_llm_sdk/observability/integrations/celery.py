"""Celery workers: ``setup_celery()``, called once where the Celery app is defined::

    app = Celery("tasks", broker=...)
    setup_celery()

Celery's prefork pool (billiard) forks its worker children and ends them with ``os._exit``,
like ``multiprocessing``: ``atexit`` never runs there, so whatever a child still holds when
it ends (records waiting for their batch, a slow sink's backlog) would be lost. The hooks
connect to Celery's own signals: after a child's fork (``worker_process_init``) its metrics
state starts fresh, and when it ends (``worker_process_shutdown``) every collector delivers
what it holds within its ``shutdown_timeout_seconds``. ``worker_shutdown`` does the same for
the main process (solo and thread pools run tasks there).

Install with the ``celery`` extra: ``pip install 'steer-llm-sdk[celery]'``.
"""

import logging
from typing import Any, Optional

try:
    from celery import signals
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "steer_llm_sdk.observability.integrations.celery needs Celery: "
        "pip install 'steer-llm-sdk[celery]'"
    ) from exc

from .. import reset_after_fork, shutdown_all

_log = logging.getLogger("steer_llm_sdk")
_timeout: Optional[float] = None


def setup_celery(timeout: Optional[float] = None) -> None:
    """Connect the metrics hooks to Celery's worker signals. Idempotent.

    Args:
        timeout: seconds each collector may take to deliver at a child's end; None means
            each collector's own ``shutdown_timeout_seconds``.
    """
    global _timeout
    _timeout = timeout
    # dispatch_uid makes a second call a no-op; weak=False keeps module functions connected
    signals.worker_process_init.connect(
        _after_fork, weak=False, dispatch_uid="steer_llm_sdk.process_init"
    )
    signals.worker_process_shutdown.connect(
        _drain, weak=False, dispatch_uid="steer_llm_sdk.process_shutdown"
    )
    signals.worker_shutdown.connect(_drain, weak=False, dispatch_uid="steer_llm_sdk.shutdown")


def _after_fork(**_: Any) -> None:
    try:
        reset_after_fork()
    except Exception as exc:  # a hook must never stop a worker from starting
        _log.warning("steer_llm_sdk metrics reset in a Celery child failed: %s", type(exc).__name__)


def _drain(**_: Any) -> None:
    try:
        shutdown_all(_timeout)
    except Exception as exc:  # a hook must never stop a worker from ending
        _log.warning("steer_llm_sdk metrics drain at Celery exit failed: %s", type(exc).__name__)


__all__ = ["setup_celery"]
