"""Records built for a test."""

import time
from typing import Any, Optional, Sequence, Union

from steer_llm_sdk.observability import RequestMetrics


def request_record(
    number: Union[int, str] = 0,
    model: Optional[str] = "gpt-4o-mini",
    *,
    timestamp: Optional[float] = None,
    provider: str = "openai",
    usage: Sequence[Optional[int]] = (),
    **fields: Any,
) -> RequestMetrics:
    """A ``RequestMetrics`` of one call.

    Args:
        number: the request id is ``r<number>``; a str is the id itself.
        model: the model asked for.
        timestamp: when the call started (now when None).
        provider: the provider named.
        usage: the token counts, as :meth:`RequestMetrics.set_usage` takes them (prompt,
            completion, total, cached, ...); none when empty.
        fields: any other field of the record (``attributes``, ``duration_ms``, ``success``,
            ...); a name that is no field raises ``TypeError``.
    """
    request_id = number if isinstance(number, str) else f"r{number}"
    started = time.time() if timestamp is None else timestamp
    record = RequestMetrics(started, request_id, provider, model, **fields)
    if usage:
        record.set_usage(*usage)
    return record
