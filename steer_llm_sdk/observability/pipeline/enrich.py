"""Enrichment, on the flush thread: usage read from a stored response, and price; and
whether another instrumentation makes a call's span (see :mod:`..tracing`), decided here
while the call's response is still stored.

(Request ids need no step here: a record formats its id when it is first read.)

A tracked blocking call stores its return value on the record (``RequestMetrics._response``);
token counts and the response model are read from it here, so a user's ``usage_extractor``
never runs on the caller's thread. (A call ``instrument()`` measures alone is read with
:func:`complete_from_response` when it returns, on its thread: see ``measure/sdk.py``.)
Calls that joined it (an instrumented SDK call inside a tracked function) left their
responses, or what their streams reported, in ``RequestMetrics._joined``: their usage,
summed, is the call's.
"""

from typing import Any, List, Mapping, Optional

from ...pricing import Pricer
from ...streaming.usage import TokenUsage, extract_model, extract_usage
from .._log import rate_limited
from ..models import BaseMetrics, Reported, RequestMetrics
from ..tracing import spanned_elsewhere
from .accounting import OnFailure

#: Called with (component, exception) when user code (a usage extractor) fails.


class Enricher:
    """Completes records before they are sanitised and filtered. Used by one thread.

    Args:
        prices: the pricer, or None when cost tracking is off.
        max_length: bound for text read from a response (the response model).
        on_failure: reports a failing user ``usage_extractor``; the record is kept.
    """

    def __init__(self, prices: Optional[Pricer], max_length: int, on_failure: OnFailure):
        self.prices = prices
        self.max_length = max_length
        self.on_failure = on_failure
        self._unpriced: set = set()  # models already warned about

    def pending(self, records: List[BaseMetrics]) -> List[BaseMetrics]:
        """The records :meth:`enrich` may have work for, in order: every one while cost
        tracking is on, else the requests carrying a response, joined calls or a tracing
        context. One pass of attribute tests, so that most records cost no call."""
        if self.prices is not None:
            return records
        return [
            record
            for record in records
            if record.metric_type == "request"
            and (
                record._response is not None  # type: ignore[attr-defined]
                or record._joined  # type: ignore[attr-defined]
                or record._trace is not None  # type: ignore[attr-defined]
            )
        ]

    def enrich(self, record: BaseMetrics) -> None:
        """Complete ``record`` (see the module docstring); a failing user extractor goes to
        ``on_failure``, other failures raise."""
        if record.metric_type != "request":
            return
        if record._trace is not None and spanned_elsewhere(record):  # type: ignore[attr-defined]
            record._trace = None  # type: ignore[attr-defined]  # no span of ours
        if record._response is not None or record._joined:  # type: ignore[attr-defined]
            try:
                complete_from_response(record, self.max_length)  # type: ignore[arg-type]
            except BaseException as exc:  # noqa: B036 - a user usage_extractor failed
                self.on_failure("usage_extractor", record, exc)
        if (
            self.prices is not None
            and record.cost_usd is None  # type: ignore[attr-defined]
            and record.completion_tokens is not None  # type: ignore[attr-defined]
        ):
            self._price(record)

    def _price(self, record: Any) -> None:
        """Fill ``cost_usd`` and ``price_source`` (the model that answered first, then the
        one asked for); warn once per model without a price."""
        prices = self.prices
        if prices is None or record.prompt_tokens is None:
            return
        counts = (
            record.prompt_tokens,
            record.completion_tokens,
            record.cached_tokens,
            record.cache_creation_tokens,
            record.reasoning_tokens,
        )
        priced = None
        model = record.response_model or record.model
        if record.response_model:
            priced = prices.cost(record.provider, record.response_model, *counts)
        if priced is None and record.model and record.model != record.response_model:
            model = record.model
            priced = prices.cost(record.provider, model, *counts)
        if priced is not None:
            record.cost_usd, record.price_source = priced
        elif model not in self._unpriced and len(self._unpriced) < 1000:
            self._unpriced.add(model)
            rate_limited.warning(
                f"unpriced:{model}",
                "steer_llm_sdk has no price for this model; cost_usd is None",
                model=model,
                provider=record.provider,
            )


def complete_from_response(record: RequestMetrics, max_length: int) -> None:
    """Fill token counts and ``response_model`` from the stored response, then drop it.

    Counts set explicitly on the record win. Values from the wire are checked like the rest
    of a trusted record: counts must be non-negative ints, the model a str of at most
    ``max_length`` characters. Raises whatever a user extractor raises.
    """
    response = record._response
    extractor = record._extractor
    joined = record._joined
    record._response = record._extractor = record._joined = None
    usage: Any = None
    if joined:
        usage, model = joined_usage(joined)
        if record.response_model is None and model is not None:
            record.response_model = model[:max_length]
    if usage is None and response is not None:
        usage = extractor(response) if extractor is not None else extract_usage(response)
    if usage is not None and record.prompt_tokens is None and record.completion_tokens is None:
        if type(usage) is not TokenUsage:  # what a user extractor may return instead
            if isinstance(usage, Mapping):
                usage = TokenUsage(*(usage.get(name) for name in TokenUsage._fields))
            elif not isinstance(usage, tuple):
                usage = TokenUsage(*(getattr(usage, name, None) for name in TokenUsage._fields))
            usage = usage[:6]
        record.set_usage(*_counts(usage))
    if record.response_model is None and response is not None:
        model = extract_model(response)
        record.response_model = None if model is None else model[:max_length]


def joined_usage(joined: Any) -> "tuple[Optional[TokenUsage], Optional[str]]":
    """The usage of the calls that joined one, summed field by field (a field none of them
    reported stays None), and the first answering model any of them named."""
    total: Optional[List[Optional[int]]] = None
    model: Optional[str] = None
    for item in joined:
        if type(item) is Reported:
            usage, named = item.usage, item.model
        else:
            usage, named = extract_usage(item), extract_model(item)
        if model is None and isinstance(named, str):
            model = named
        if usage is None:
            continue
        counts = [_count(value) for value in usage[:6]]
        if total is None:
            total = counts
        else:
            total = [b if a is None else a if b is None else a + b for a, b in zip(total, counts)]
    return (None if total is None else TokenUsage(*total)), model


_COUNT_MAX = 2**63 - 1  # what every exporter can carry (OTLP and JSON int64)


def _counts(usage: Any) -> Any:
    """``usage``'s counts as exporters can carry them (see :func:`_count`): ``usage`` itself
    when every one is None or such an int already (the usual case, checked in one pass)."""
    for value in usage:
        if value is not None and (type(value) is not int or not 0 <= value <= _COUNT_MAX):
            return tuple(map(_count, usage))
    return usage


def _count(value: Any) -> Optional[int]:
    if type(value) is not int:
        return None
    if 0 <= value <= _COUNT_MAX:  # the usual case first, without calling min()
        return value
    return 0 if value < 0 else _COUNT_MAX
