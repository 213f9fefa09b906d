"""Reading usage out of a tracked call's return value, on the background thread.

A tracked blocking call stores its return value on the record (``RequestMetrics._response``);
the flush thread reads token counts and the response model from it here, so neither the
attribute walking nor a user's ``usage_extractor`` runs on the caller's thread.
"""

from typing import Any, Mapping, Optional

from ..streaming.usage import TokenUsage, extract_model, extract_usage
from .models import RequestMetrics


def complete_from_response(record: RequestMetrics, max_length: int) -> None:
    """Fill token counts and ``response_model`` from the stored response, then drop it.

    Counts set explicitly on the record win. Values from the wire are checked like the rest
    of a trusted record: counts must be non-negative ints, the model a str of at most
    ``max_length`` characters. Raises whatever a user extractor raises; the pipeline logs it
    and keeps the record.
    """
    response = record._response
    extractor = record._extractor
    record._response = record._extractor = None
    usage: Any = extractor(response) if extractor is not None else extract_usage(response)
    if usage is not None and record.prompt_tokens is None and record.completion_tokens is None:
        if isinstance(usage, Mapping):
            usage = TokenUsage(*(usage.get(name) for name in TokenUsage._fields))
        elif not isinstance(usage, tuple):
            usage = TokenUsage(*(getattr(usage, name, None) for name in TokenUsage._fields))
        record.set_usage(*(_count(value) for value in usage[:4]))
    if record.response_model is None:
        model = extract_model(response)
        record.response_model = None if model is None else model[:max_length]


def _count(value: Any) -> Optional[int]:
    if type(value) is not int:
        return None
    return value if value >= 0 else 0
