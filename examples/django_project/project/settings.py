"""Settings of the Django example (a demo: DEBUG on, a throwaway secret key)."""

import os

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "project.urls"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "steer_llm_sdk.observability.integrations.django",
]
MIDDLEWARE = [
    "steer_llm_sdk.observability.integrations.django.MetricsMiddleware",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True

STEER_LLM_METRICS = {
    "config": {"batch_timeout_seconds": 0.2},
    "debug_endpoints": os.environ.get("STEER_DEBUG_ENDPOINTS") == "1",
    "authorize": (lambda request: True) if os.environ.get("STEER_DEBUG_ENDPOINTS") == "1" else None,
}
