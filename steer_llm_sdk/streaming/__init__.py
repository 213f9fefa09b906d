"""Pure streaming helpers: usage extraction, chunk inspection, incremental JSON counting.

No I/O and no observability imports: providers, the client and the metrics layer share them.
"""

from .json_stream import JsonObjectCounter
from .sse import ServerSentEvent, SSEDecoder
from .usage import StreamUsage, TokenUsage, extract_model, extract_usage, usage_from_usage_object

__all__ = [
    "JsonObjectCounter",
    "SSEDecoder",
    "ServerSentEvent",
    "StreamUsage",
    "TokenUsage",
    "extract_model",
    "extract_usage",
    "usage_from_usage_object",
]
