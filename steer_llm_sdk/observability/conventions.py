"""The metric families every exporting sink writes, in one table.

Names, units and bucket boundaries of the GenAI instruments are those of the OpenTelemetry
GenAI semantic conventions; the SDK's own families carry a configurable prefix (``llm`` by
default). The OTLP sink creates its instruments from this table and the Prometheus sink its
families, so the two cannot drift apart.

Beside the families fed by records, :data:`HEALTH_FAMILIES` are the pipeline's own health
(records not delivered, sinks' failed exports), read from the collectors' accounting.

Attribute keys are OpenTelemetry's (dotted); the Prometheus sink turns each into a label
name by replacing every character that is not a letter or digit with ``_``.

Two first-arrival times of a stream, each exported once: ``{ns}.time_to_first_token`` is
TTFT, the time to the first content (text, a tool call or reasoning), the one dashboards
should show; ``gen_ai.client.operation.time_to_first_chunk`` is the conventions' time to
the first chunk of any kind (a role-only or metadata chunk counts), never later than TTFT.

A leaf: imports nothing from the package.
"""

from typing import Any, Dict, NamedTuple, Tuple
from urllib.parse import urlsplit

#: Seconds: the boundaries the conventions give for operation duration, time to first chunk
#: and time per output chunk.
DURATION_BUCKETS: Tuple[float, ...] = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
#: Tokens: the boundaries the conventions give for ``gen_ai.client.token.usage``.
TOKEN_BUCKETS: Tuple[int, ...] = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)

DURATION = "gen_ai.client.operation.duration"
TOKEN_USAGE = "gen_ai.client.token.usage"
#: Time to the first chunk of any kind (``RequestMetrics.time_to_first_chunk_ms``).
TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
#: Time to first content, TTFT (``RequestMetrics.time_to_first_token_ms``): the SDK's own
#: family (the conventions define no client instrument for it); ``{ns}`` is the prefix.
TIME_TO_FIRST_TOKEN = "{ns}.time_to_first_token"
TIME_PER_OUTPUT_CHUNK = "gen_ai.client.operation.time_per_output_chunk"


class Family(NamedTuple):
    """One instrument.

    Attributes:
        key: how the sinks refer to it (stable, prefix-free).
        name: the OpenTelemetry instrument name; ``{ns}`` stands for the prefix.
        kind: ``histogram``, ``counter`` or ``gauge``.
        unit: UCUM unit.
        description: one line.
        buckets: explicit boundaries for a histogram, else ``()``.
        genai: True for the conventions' ``gen_ai.*`` instruments (which
            ``OTelMetricsSink(genai_instruments=False)`` leaves to another instrumentation).
        process: True for process-level state (no request-scoped attributes).
    """

    key: str
    name: str
    kind: str
    unit: str
    description: str
    buckets: Tuple[float, ...] = ()
    genai: bool = False
    process: bool = False


FAMILIES: Tuple[Family, ...] = (
    Family(
        "duration",
        DURATION,
        "histogram",
        "s",
        "GenAI operation duration.",
        DURATION_BUCKETS,
        genai=True,
    ),
    Family(
        "token_usage",
        TOKEN_USAGE,
        "histogram",
        "{token}",
        "Number of input and output tokens used.",
        tuple(float(b) for b in TOKEN_BUCKETS),
        genai=True,
    ),
    Family(
        "time_to_first_chunk",
        TIME_TO_FIRST_CHUNK,
        "histogram",
        "s",
        "Time to receive the first chunk in a streaming operation.",
        DURATION_BUCKETS,
        genai=True,
    ),
    Family(
        "time_to_first_token",
        TIME_TO_FIRST_TOKEN,
        "histogram",
        "s",
        "Time to the first content (text, tool call or reasoning) in a streaming operation.",
        DURATION_BUCKETS,
    ),
    Family(
        "time_per_output_chunk",
        TIME_PER_OUTPUT_CHUNK,
        "histogram",
        "s",
        "Time per output chunk, recorded for each chunk received after the first one.",
        DURATION_BUCKETS,
        genai=True,
    ),
    Family("requests", "{ns}.requests", "counter", "{request}", "LLM requests."),
    Family("errors", "{ns}.errors", "counter", "{error}", "Failed LLM calls by category."),
    Family(
        "cached_tokens", "{ns}.tokens.cached", "counter", "{token}", "Input tokens read from cache."
    ),
    Family("cost", "{ns}.cost", "counter", "USD", "Cost of LLM calls (provider-reported tokens)."),
    Family("chunks", "{ns}.stream.chunks", "counter", "{chunk}", "Chunks received in streams."),
    Family("retries", "{ns}.retry.attempts", "counter", "{attempt}", "Retries made."),
    Family(
        "breaker",
        "{ns}.circuit_breaker.state",
        "gauge",
        "1",
        "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
        process=True,
    ),
    Family(
        "usage_requests", "{ns}.usage.requests", "counter", "{request}", "Requests per roll-up."
    ),
    Family("usage_errors", "{ns}.usage.errors", "counter", "{error}", "Failures per roll-up."),
    Family("usage_tokens", "{ns}.usage.tokens", "counter", "{token}", "Tokens per roll-up."),
    Family("usage_cost", "{ns}.usage.cost", "counter", "USD", "Cost per roll-up."),
)

#: The pipeline's own health: cumulative counters of each process, read from the
#: accounting of the collectors a sink belongs to (``collector.stats()``), never from
#: records. ``records_dropped`` carries :data:`REASON` (and :data:`SINK` for losses at one
#: sink); ``export_failures`` carries :data:`SINK`.
HEALTH_FAMILIES: Tuple[Family, ...] = (
    Family(
        "records_dropped",
        "{ns}.records.dropped",
        "counter",
        "{record}",
        "Metric records not delivered, by reason (sampled_out and filtered by choice).",
        process=True,
    ),
    Family(
        "export_failures",
        "{ns}.sink.export_failures",
        "counter",
        "{failure}",
        "Failed exports of each metrics sink (calls that raised, failed OTLP exports).",
        process=True,
    ),
)

# Attribute keys.
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
TOKEN_TYPE = "gen_ai.token.type"
ERROR_CATEGORY = "error.category"
#: Marks token counts (and their cost) the library estimated, when they are exported.
ESTIMATED = "llm.usage.estimated"
#: Why records were not delivered: ``sampled_out``, ``filtered``, each reason of
#: ``CollectorStats.dropped``, or a loss at one sink (:data:`SINK_ERROR`,
#: :data:`SINK_QUEUE_FULL`).
REASON = "reason"
#: The sink, as ``collector.stats().sinks`` names it.
SINK = "sink"
#: Records in calls to a sink that raised (``SinkStats.failed``).
SINK_ERROR = "sink_error"
#: Records a sink's full backlog refused (``SinkStats.dropped``).
SINK_QUEUE_FULL = "sink_queue_full"

#: Custom attribute keys exported as metric attributes (labels) unless told otherwise.
DEFAULT_ALLOWLIST = ("http.route", "deployment.environment", "service.version")

#: Breaker state as the gauge's value.
BREAKER_VALUES = {"CLOSED": 0, "HALF_OPEN": 1, "OPEN": 2}


class GapHistogram(NamedTuple):
    """Gaps between consecutive chunks of one stream, bucketed.

    Attributes:
        boundaries: :data:`DURATION_BUCKETS` (seconds; a gap equal to a boundary falls in
            the bucket it closes, as in OpenTelemetry and Prometheus).
        counts: ``len(boundaries) + 1`` counts; the last is above the last boundary.
        sums: the sum of the gaps in each bucket (seconds).
        gap_count: gaps in all (the stream's chunks minus one).
        gap_sum: their sum (seconds).
        minimum, maximum: the shortest and longest gap (``inf``/``-inf`` without gaps).
    """

    boundaries: Tuple[float, ...]
    counts: Tuple[int, ...]
    sums: Tuple[float, ...]
    gap_count: int
    gap_sum: float
    minimum: float
    maximum: float


def server_attributes(url: str) -> Dict[str, Any]:
    """``server.address`` and ``server.port`` of a base URL (the scheme's port when it
    names none); empty when the URL has no host."""
    parts = urlsplit(url)
    if not parts.hostname:
        return {}
    return {
        SERVER_ADDRESS: parts.hostname,
        SERVER_PORT: parts.port or (443 if parts.scheme == "https" else 80),
    }
