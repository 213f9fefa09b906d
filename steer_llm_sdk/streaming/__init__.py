"""Pure streaming helpers: usage extraction, chunk inspection, incremental JSON counting.

No I/O and no observability imports: providers, the client and the metrics layer share them.
"""

from .json_stream import JsonObjectCounter
from .readers import Content, StreamReader
from .sse import ServerSentEvent, SSEDecoder
from .usage import TokenUsage, extract_model, extract_usage, usage_from_usage_object

#: The earlier name of :class:`StreamReader`.
StreamUsage = StreamReader

__all__ = [
    "Content",
    "JsonObjectCounter",
    "SSEDecoder",
    "ServerSentEvent",
    "StreamReader",
    "StreamUsage",
    "TokenUsage",
    "extract_model",
    "extract_usage",
    "usage_from_usage_object",
]
