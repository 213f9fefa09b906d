"""Calls we did not make: an SDK entry point measured as one call, its streams behind
transparent proxies, its stream helpers measured once.

The caller gets the SDK's own objects back: a blocking call's return value unchanged, a
stream as a ``wrapt.ObjectProxy`` (``isinstance`` and every attribute and method are the
SDK's), and a stream helper's own object whose raw stream is measured.

A call made while another measured call is open in the current context (an SDK call inside
a tracked function or generator, the ``create`` a helper makes, an SDK a wrapper library
calls) joins it: it records nothing itself and hands the provider's usage to the owner.
"""

from time import perf_counter
from typing import Any, Callable, Dict, Optional

import wrapt

from .._signals import signal_exception
from ..models import RequestMetrics
from ..pipeline.enrich import complete_from_response
from .call import (
    Sensitive,
    end_call,
    join_failure,
    join_response,
    new_request,
    record_failure,
)
from .scope import SCOPE, owner, unscope
from .stream import close_quietly, open_stream

#: ``stream(result, wrap)``: what the caller gets for a streamed call's ``result``, with
#: ``wrap(raw_stream)`` giving the measured proxy of a raw stream.
Shape = Callable[[Any, Callable[[Any], Any]], Any]


#: The keyword arguments of a ``call`` given none (never changed).
_NO_KEYWORDS: Dict[str, Any] = {}


def measure(
    collector: Any,
    call: Callable[..., Any],
    provider: str,
    operation: str,
    model: Any,
    attributes: Dict[str, Any],
    stream: Optional[Shape] = None,
    sensitive: Optional[Sensitive] = None,
    args: Any = (),
    kwargs: Dict[str, Any] = _NO_KEYWORDS,
    method: Optional[str] = None,
) -> Any:
    """Run ``call(*args, **kwargs)`` as one measured call of ``collector`` (unless it is
    disabled), or as a part of the open call it joins.

    Args:
        provider: the GenAI provider name recorded.
        operation: ``chat``, ``text_completion``, ``embeddings``, ``generate_content``.
        model: the requested model (a non-str is recorded as None).
        attributes: ``server.address`` and the like.
        stream: for a streamed call, shapes what the caller gets (see :data:`Shape`).
        sensitive: what the error record of a failed call must not show (the SDK client's
            keys, the call's text): see :data:`.call.Sensitive`. Resolved on failure only.
        args, kwargs: the arguments ``call`` gets (none by default): given apart, so that
            no closure is made per call.
        method: the record's ``method``; by default ``stream`` when ``stream`` is given,
            else ``generate``. A blocking call given a shape only to end later (when its
            body is read) says ``generate``, which its record then has even if it fails.

    Returns what ``call`` returns (for streams, as ``stream`` shapes it). Exceptions from
    ``call`` are re-raised unchanged and recorded.
    """
    if not collector.enabled:
        return call(*args, **kwargs)
    scope = SCOPE.get()
    if scope is not None:
        joined = owner(scope)
        if joined is not None:
            return _join(joined, call, args, kwargs, stream, sensitive)
    try:
        metrics = new_request(
            provider,
            model if type(model) is str else None,
            attributes,
            method or ("generate" if stream is None else "stream"),
            "text",
            operation,
        )
    except Exception as exc:  # measuring failed: run the call unmeasured
        timeout = signal_exception(exc)
        if timeout is not None:
            raise timeout
        return call(*args, **kwargs)
    metrics._start = perf_counter()
    token = None
    try:
        token = SCOPE.set(metrics)  # inside the try: see measure/track.py
        result = call(*args, **kwargs)
    except BaseException as exc:
        if token is not None:
            SCOPE.reset(token)
        else:
            unscope(metrics)
        record_failure(collector, metrics, exc, perf_counter(), sensitive)
        raise
    SCOPE.reset(token)
    if stream is not None:
        # What returned the stream (the SDK's, or another instrumentation's wrapper around
        # it) tells the span stage whether that instrumentation spans this call.
        metrics._response_type = type(result)
        try:
            return stream(result, Wrap(collector, metrics, False, sensitive))
        except Exception as exc:  # the shape was not the expected one: hand it back untouched
            timeout = signal_exception(exc)
            if timeout is not None:
                raise timeout
            return result
    end = perf_counter()
    metrics._response = result
    if metrics._joined is None:
        _read_response(collector, metrics, result)
    end_call(collector, metrics, end)
    return result


def _read_response(collector: Any, metrics: RequestMetrics, response: Any) -> None:
    """Read a blocking call's usage and model from its response now, on the caller's
    thread, and let the response go (the enrichment step the flush thread would run on it,
    :func:`..pipeline.enrich.complete_from_response`, with the same limit).

    An SDK's response is a tree of a dozen or more objects the garbage collector tracks:
    held until the flush thread takes the record (up to a batch of them), they trigger
    collections the SDK alone would not, which cost more than the reading (the CHANGELOG
    has the figures). Only for a
    call nothing joined: a joined stream's outcome must still reach :func:`.call.end_call`.
    On failure the response is left for the flush thread, which reports it."""
    try:
        complete_from_response(metrics, collector.config.max_attribute_length)
        metrics._response_type = type(response)
    except Exception as exc:
        timeout = signal_exception(exc)
        if timeout is not None:
            raise timeout
        metrics._response = response


def _join(
    joined: RequestMetrics,
    call: Callable[..., Any],
    args: Any,
    kwargs: Dict[str, Any],
    stream: Optional[Shape],
    sensitive: Optional[Sensitive] = None,
) -> Any:
    """Run ``call(*args, **kwargs)`` as a part of the open call ``joined``: its response,
    or what its stream reports, goes to that call's record; what its failure must not show
    goes to that call's error record (:func:`.call.join_failure`)."""
    try:
        result = call(*args, **kwargs)
    except BaseException:
        if sensitive is not None:
            join_failure(joined, sensitive)
        raise
    try:
        if stream is None:
            join_response(joined, result)
            return result
        return stream(result, Wrap(None, joined, True, sensitive))
    except Exception as exc:  # never into user code
        timeout = signal_exception(exc)
        if timeout is not None:
            raise timeout
        return result


class Wrap:
    """``wrap(raw_stream)``: the measured proxy of a raw stream of the call ``metrics``
    (or, with ``joined``, of a call that joined it); ``sensitive`` as for :func:`measure`."""

    __slots__ = ("collector", "metrics", "joined", "sensitive")

    def __init__(
        self,
        collector: Any,
        metrics: RequestMetrics,
        joined: bool,
        sensitive: Optional[Sensitive] = None,
    ) -> None:
        self.collector = collector
        self.metrics = metrics
        self.joined = joined
        self.sensitive = sensitive

    def __call__(self, raw: Any) -> "MeasuredStream":
        return MeasuredStream(raw, self.collector, self.metrics, self.joined, self.sensitive)

    def end(self, response: Any, returned: float) -> None:
        """End the call, which returned at ``returned`` (a ``perf_counter()`` reading), as
        the blocking call it is, its usage read from ``response`` on the flush thread (None:
        no usage known); or, with ``joined``, hand ``response`` to the call it joined. For a
        shape that ends its call itself instead of wrapping a stream."""
        metrics = self.metrics
        if self.joined:
            join_response(metrics, response)
            return
        if response is not None:
            metrics.set_response(response)
        end_call(self.collector, metrics, returned)

    def fail(self, exc: BaseException, at: float) -> None:
        """End the call as failed with ``exc`` at ``at`` (a ``perf_counter()`` reading); or,
        with ``joined``, hand what its error record must not show to the call it joined.
        For a shape whose call fails after it returned (its body failing while read)."""
        if self.joined:
            if self.sensitive is not None:
                join_failure(self.metrics, self.sensitive)
            return
        record_failure(self.collector, self.metrics, exc, at, self.sensitive)


class MeasuredStream(wrapt.ObjectProxy):
    """A stream as the SDK returned it, measured while it is iterated.

    Iterating it iterates the meter's generator over the wrapped stream; the call ends
    exactly once, when that generator is exhausted, fails, is closed (``close()``,
    ``with``) or can no longer be iterated by anyone (see :class:`.stream.FinishOnce`).
    With ``joined``, what the stream reports goes to the call ``metrics`` it joined instead.
    ``sensitive`` (as for :func:`measure`) applies to the error record of a stream that
    fails. Everything else is the wrapped object's.
    """

    def __init__(
        self,
        wrapped: Any,
        collector: Any,
        metrics: Any,
        joined: bool = False,
        sensitive: Optional[Sensitive] = None,
    ):
        super().__init__(wrapped)
        if joined:
            gen, once = open_stream(None, metrics, wrapped, owner=metrics, sensitive=sensitive)
        else:
            gen, once = open_stream(collector, metrics, wrapped, sensitive=sensitive)
        self._self_gen = gen
        self._self_once = once

    def __iter__(self) -> Any:
        return self._self_gen

    def __next__(self) -> Any:
        return self._self_gen.__next__()

    def close(self) -> None:
        try:
            self._self_gen.close()
            close_quietly(self.__wrapped__)
        finally:
            self._self_once.finish_unstarted()

    def __enter__(self) -> Any:
        enter = getattr(self.__wrapped__, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        self.close()
        return None


def measure_helper(manager: Any, wrap: Wrap) -> Any:
    """A stream helper's context manager (openai's ``.stream()``, anthropic's
    ``messages.stream()``) whose helper stream reads a measured raw stream: every way of
    consuming it (iterating, ``text_stream``, ``get_final_*``, ``until_done``) is measured,
    and the caller keeps the SDK's own helper objects. The ``create`` call the helper makes
    when entered joins the helper's call."""
    return _HelperManager(manager, wrap)


class _HelperManager(wrapt.ObjectProxy):
    def __init__(self, wrapped: Any, wrap: Wrap) -> None:
        super().__init__(wrapped)
        self._self_wrap = wrap
        self._self_raw: Any = None

    def __enter__(self) -> Any:
        wrap = self._self_wrap
        # The helper sends its request now, through the SDK's create(): in this call's
        # scope, so that create() joins it instead of measuring itself.
        token = SCOPE.set(wrap.metrics)
        try:
            helper = self.__wrapped__.__enter__()
        except BaseException as exc:
            SCOPE.reset(token)
            if not wrap.joined:
                record_failure(wrap.collector, wrap.metrics, exc, perf_counter(), wrap.sensitive)
            elif wrap.sensitive is not None:
                join_failure(wrap.metrics, wrap.sensitive)
            raise
        SCOPE.reset(token)
        raw = getattr(helper, "_raw_stream", None)
        if raw is not None:
            if type(raw) is MeasuredStream:
                # create() joined this call: its stream is measured once, as this call's.
                raw._self_once.forget()
                raw = raw.__wrapped__
            self._self_raw = wrap(raw)
            helper._raw_stream = self._self_raw
        return helper

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            if self._self_raw is not None:
                self._self_raw.close()
