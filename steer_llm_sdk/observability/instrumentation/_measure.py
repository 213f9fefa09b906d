"""What every instrumented entry point shares: admission through the collector's one
admission step, the request record, and streams measured behind transparent proxies.

The caller gets the SDK's own objects back: a blocking call's return value unchanged, a
stream as a ``wrapt.ObjectProxy`` (``isinstance`` and every attribute and method are the
SDK's), and a stream helper's own object whose raw stream is measured.
"""

import threading
from time import perf_counter
from typing import Any, Callable, Dict, Optional, Tuple
from urllib.parse import urlsplit

import wrapt

from ..context import _state
from ..conventions import server_attributes
from ..lifecycle import get_collector
from ..recording import new_request, record_failure
from ..streams import FinishOnce, StreamMeter, record_stream

#: The collector instrument() was given (None: the default one at the time of each call).
_target: Dict[str, Any] = {"collector": None}

#: OpenTelemetry GenAI ``gen_ai.provider.name`` values by host suffix.
_HOSTS = (
    ("api.openai.com", "openai"),
    (".openai.azure.com", "azure.ai.openai"),
    (".services.ai.azure.com", "azure.ai.inference"),
    ("api.anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    ("amazonaws.com", "aws.bedrock"),
    ("api.groq.com", "groq"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.deepseek.com", "deepseek"),
    ("api.x.ai", "x_ai"),
    ("api.cohere.com", "cohere"),
    ("api.perplexity.ai", "perplexity"),
    ("openrouter.ai", "openrouter"),
)


def provider_of(url: Any, default: str) -> str:
    """The GenAI provider name for a base URL (``default`` when the host is not known, as
    for a local or self-hosted server speaking the SDK's protocol)."""
    host = urlsplit(str(url)).hostname or ""
    for suffix, name in _HOSTS:
        if host == suffix or host.endswith(suffix):
            return name
    return default


#: (base URL as text, default provider) -> what :func:`endpoint` returns; bounded.
_ENDPOINTS: Dict[Tuple[str, str], Tuple[str, Dict[str, Any]]] = {}
_ENDPOINTS_MAX = 256


def endpoint(url: Any, default: str) -> Tuple[str, Dict[str, Any]]:
    """``(provider_of(url, default), server_attributes(url))``, remembered per URL: parsing
    a URL costs several µs a call, and a client's base URL seldom changes. The attributes
    dict is shared by every call to that URL (records copy it). Thread-safe."""
    key = (str(url), default)
    found = _ENDPOINTS.get(key)
    if found is None:
        found = (provider_of(key[0], default), server_attributes(key[0]))
        if len(_ENDPOINTS) < _ENDPOINTS_MAX:  # past it, a fleet of URLs is parsed each call
            _ENDPOINTS[key] = found
    return found


def base_url_of(client: Any) -> Any:
    """An openai/anthropic client's base URL: the attribute behind the ``base_url``
    property when it is there (the property costs ~1 µs a read; the attribute ~10 ns)."""
    base = getattr(client, "_base_url", None)
    return base if base is not None else getattr(client, "base_url", "")


def _collector() -> Any:
    return _target["collector"] or get_collector()


def measure(
    call: Callable[[], Any],
    provider: str,
    family: str,
    operation: str,
    model: Any,
    attributes: Dict[str, Any],
    stream: Optional[Callable[[Any, Callable[[Any], Any]], Any]] = None,
) -> Any:
    """Run ``call()`` measured, unless metrics are off or an active ``track_request`` of the
    same provider on this thread measures it already.

    Args:
        provider: the GenAI provider name recorded.
        family: the SDK's provider family (``openai``, ``anthropic``, ...), for "measured
            once".
        operation: ``chat``, ``text_completion``, ``embeddings``, ``generate_content``.
        model: the requested model (a non-str is recorded as None).
        attributes: ``server.address`` and the like.
        stream: for a streamed call, ``stream(result, wrap)`` returns what the caller gets,
            with ``wrap(raw_stream)`` giving the measured proxy of a raw stream.

    Returns what ``call()`` returns (for streams, as ``stream`` shapes it). Exceptions from
    ``call()`` are re-raised unchanged and recorded.
    """
    collector = _collector()
    if not collector._enabled:
        return call()
    ctx = _state.ctx
    stack = ctx.stack
    if stack and stack[-1].provider in (provider, family):
        return call()  # measured by the enclosing track_request already
    try:
        metrics = new_request(
            ctx,
            provider,
            model if type(model) is str else None,
            attributes,
            "stream" if stream is not None else "generate",
            "text",
            operation,
        )
    except Exception:  # measuring failed: run the call unmeasured
        return call()
    start = metrics._start = perf_counter()
    try:
        result = call()
    except BaseException as exc:
        record_failure(collector, metrics, exc, perf_counter())
        raise
    if stream is not None:
        try:
            return stream(result, lambda raw: MeasuredStream(raw, collector, metrics))
        except Exception:  # the shape was not the expected one: hand it back untouched
            return result
    metrics.duration_ms = (perf_counter() - start) * 1000.0
    metrics._response = result
    collector._admit(metrics)
    return result


#: How an entry point returns: ``plain`` (never a stream), ``create`` (a stream when called
#: with ``stream=True``), ``stream`` (always a stream), ``helper`` (a stream helper's context
#: manager).
PLAIN, CREATE, STREAM, HELPER = "plain", "create", "stream", "helper"


def _whole(result: Any, wrap: Callable[[Any], Any]) -> Any:
    return wrap(result)


def entry_point(
    client_info: Callable[[Any], Tuple[str, Dict[str, Any]]],
    family: str,
    operation: str,
    mode: str,
    model_of: Callable[[Any], Any] = lambda kwargs: kwargs.get("model"),
) -> Callable[..., Any]:
    """The ``wrapt`` wrapper of one SDK entry point: each call measured by :func:`measure`.

    Args:
        client_info: ``(resource instance) -> (provider, server attributes)``.
        family, operation: as for :func:`measure`.
        mode: :data:`PLAIN`, :data:`CREATE`, :data:`STREAM` or :data:`HELPER`.
        model_of: ``(call keyword arguments) -> requested model``.
    """

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        provider, attributes = client_info(instance)
        if mode == HELPER:
            stream: Any = measure_helper
        elif mode == STREAM or (mode == CREATE and kwargs.get("stream") is True):
            stream = _whole
        else:
            stream = None
        return measure(
            lambda: wrapped(*args, **kwargs),
            provider,
            family,
            operation,
            model_of(kwargs),
            attributes,
            stream,
        )

    return wrapper


class MeasuredStream(wrapt.ObjectProxy):
    """A stream as the SDK returned it, measured while it is iterated.

    Iterating it iterates a :class:`StreamMeter` over the wrapped stream; its records are
    emitted exactly once, when it is exhausted, fails, is closed (``close()``, ``with``) or
    is dropped. Everything else is the wrapped object's.
    """

    def __init__(self, wrapped: Any, collector: Any, metrics: Any) -> None:
        super().__init__(wrapped)
        self._self_meter = StreamMeter()
        self._self_gen: Any = None
        self._self_lock = threading.Lock()
        meter = self._self_meter

        def finish() -> None:
            record_stream(collector, metrics, meter.outcome())

        self._self_once = FinishOnce(self, finish)

    def _self_start(self) -> Any:
        once = self._self_once
        with self._self_lock:
            if self._self_gen is None:
                self._self_gen = self._self_meter.measure(
                    self.__wrapped__, _mark_started(once), _finisher(once)
                )
        return self._self_gen

    def __iter__(self) -> Any:
        return self._self_gen or self._self_start()

    def __next__(self) -> Any:
        return next(self._self_gen or self._self_start())

    def close(self) -> None:
        gen = self._self_gen
        if gen is not None:
            gen.close()
        try:
            closer = getattr(self.__wrapped__, "close", None)
            if closer is not None:
                closer()
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


def _finisher(once: FinishOnce) -> Callable[[], None]:
    def finish() -> None:
        once.finish()

    return finish


def _mark_started(once: FinishOnce) -> Callable[[], None]:
    def started() -> None:
        once.started = True

    return started


def measure_helper(manager: Any, wrap: Callable[[Any], Any]) -> Any:
    """A stream helper's context manager (openai's ``.stream()``, anthropic's
    ``messages.stream()``) whose helper stream reads a measured raw stream: every way of
    consuming it (iterating, ``text_stream``, ``get_final_*``, ``until_done``) is measured,
    and the caller keeps the SDK's own helper objects."""
    return _HelperManager(manager, wrap)


class _HelperManager(wrapt.ObjectProxy):
    def __init__(self, wrapped: Any, wrap: Callable[[Any], Any]) -> None:
        super().__init__(wrapped)
        self._self_wrap = wrap
        self._self_raw: Any = None

    def __enter__(self) -> Any:
        helper = self.__wrapped__.__enter__()
        raw = getattr(helper, "_raw_stream", None)
        if raw is not None:
            self._self_raw = self._self_wrap(raw)
            helper._raw_stream = self._self_raw
        return helper

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            if self._self_raw is not None:
                self._self_raw.close()
