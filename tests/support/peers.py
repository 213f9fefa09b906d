"""The peer instrumentations some tests run beside ours, and what they need to run."""

from typing import Any

import pytest


def openai_v2_instrumentor() -> Any:
    """OpenTelemetry's openai-v2 instrumentor module, or a skip where it cannot run: its
    2.3b0 release calls wrapt 1.x's ``wrap_function_wrapper(module=...)``, which wrapt 2
    removed (the ``wrapt2`` tox environment runs everything else on wrapt 2)."""
    module = pytest.importorskip("opentelemetry.instrumentation.openai_v2")
    import wrapt

    if int(wrapt.__version__.split(".")[0]) >= 2:
        pytest.skip("opentelemetry-instrumentation-openai-v2 2.3b0 needs wrapt 1.x")
    return module
