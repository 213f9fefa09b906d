"""gunicorn settings for the Flask example: pre-fork workers with the SDK's hooks."""

import os

from steer_llm_sdk.observability.integrations.gunicorn import (  # noqa: F401
    child_exit,
    post_fork,
    worker_exit,
)

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "4"))
preload_app = True
graceful_timeout = 10
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))  # 0: never recycle
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")  # or gthread
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
