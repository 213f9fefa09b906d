"""Other instrumentations that record the same ``gen_ai.client.*`` metrics as the OTLP sink.

A call measured by two of them is counted twice. The sink warns once, naming them, when it
finds one active: at construction, then at most every :data:`CHECK_OTHERS_SECONDS` (one may
be switched on later). Looks only at modules already imported, never imports one.
"""

import time
from typing import List

from .._log import logger
from ..tracing import active_instrumentations

#: How often the sink looks again for another active GenAI instrumentation.
CHECK_OTHERS_SECONDS = 30.0

#: Modules of instrumentations that record GenAI client metrics themselves.
OTHER_GENAI_INSTRUMENTATIONS = {
    "opentelemetry.instrumentation.openai_v2": "OpenTelemetry openai-v2 instrumentor",
    "opentelemetry.instrumentation.openai": "OpenLLMetry openai instrumentor",
    "opentelemetry.instrumentation.anthropic": "OpenLLMetry anthropic instrumentor",
    "opentelemetry.instrumentation.google_genai": "OpenTelemetry google-genai instrumentor",
    "opentelemetry.instrumentation.google_generativeai": "OpenLLMetry google-generativeai",
    "opentelemetry.instrumentation.bedrock": "OpenLLMetry bedrock instrumentor",
    "opentelemetry.instrumentation.botocore": "OpenTelemetry botocore instrumentor",
}


def active_genai_instrumentations() -> List[str]:
    """Names of other GenAI instrumentations that are imported and active in this process
    (:func:`..tracing.active_instrumentations`: never imports one)."""
    return sorted(set(active_instrumentations(OTHER_GENAI_INSTRUMENTATIONS)))


class OthersWarning:
    """Warns once if another instrumentation records the sink's ``gen_ai.*`` metrics.

    Args:
        relevant: False when the sink records no ``gen_ai.*`` instrument (or is off): then
            there is nothing to warn about and nothing is looked for.

    Thread-safety: :meth:`check_due` runs on the sink's delivery thread only.
    """

    __slots__ = ("warned", "next_check")

    def __init__(self, relevant: bool) -> None:
        self.warned = not relevant
        self.next_check = 0.0
        self.check()

    def check_due(self) -> None:
        """Look again if :data:`CHECK_OTHERS_SECONDS` have passed (a clock reading else)."""
        if not self.warned and time.monotonic() >= self.next_check:
            self.check()

    def check(self) -> None:
        """Look now (it walks the instrumentor classes) and warn if one is found."""
        self.next_check = time.monotonic() + CHECK_OTHERS_SECONDS
        if self.warned:
            return
        others = active_genai_instrumentations()
        if others:
            self.warned = True
            logger.warning(
                "%s also records gen_ai.client.* metrics: calls it instruments are counted "
                "twice. Use OTelMetricsSink(genai_instruments=False) to leave gen_ai.* to it, "
                "or do not enable it for the same calls.",
                " and ".join(others),
            )
