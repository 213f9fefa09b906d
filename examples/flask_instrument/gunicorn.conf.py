"""gunicorn settings for the instrument() example: pre-forked workers with the SDK's hooks.

``child_exit`` tells prometheus_client that a worker is gone; ``post_fork`` and
``worker_exit`` reset each worker's metrics state and deliver what it holds when it stops.
"""

import os

from steer_llm_sdk.observability.integrations.gunicorn import (  # noqa: F401
    child_exit,
    post_fork,
    worker_exit,
)

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8001")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
preload_app = True
graceful_timeout = 10
