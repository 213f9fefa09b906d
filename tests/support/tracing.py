"""Installing a global OpenTelemetry TracerProvider for a test, and removing it.

OpenTelemetry lets a process set its global provider once; tests need one per test (or
none), so :func:`install_provider` resets the API's set-once guard (a private name of
``opentelemetry.trace``: the only way to replace the provider) and makes the library notice
the change at once (``tracing.refresh()``).
"""

from typing import Any

from opentelemetry import trace
from opentelemetry.util._once import Once

from steer_llm_sdk.observability import tracing


def install_provider(provider: Any) -> None:
    """Make ``provider`` the global TracerProvider (None: none), and have it noticed."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    if provider is not None:
        trace.set_tracer_provider(provider)
    tracing.refresh()
