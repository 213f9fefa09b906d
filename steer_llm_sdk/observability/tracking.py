"""track_request: measure blocking calls and streams, as a decorator or a context manager.

The caller's thread does only cheap work per call: two clock readings, one record filled in,
one ``collector.record()``. Token usage is read from the return value later, on the flush
thread. Streams are wrapped in a :class:`TrackedStream` whose per-chunk work is a counter, a
length and, until the first token, a clock reading.

Nothing here raises into the caller: if measuring fails, the call runs unmeasured; the
tracked function's own exception is re-raised unchanged (the same object and traceback).
"""

import functools
import inspect
import weakref
from time import perf_counter
from time import time as _now
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .._secrets import redact
from ..errors import error_category, is_retryable, status_code_of
from ..streaming.json_stream import JsonObjectCounter
from ..streaming.usage import StreamUsage, TokenUsage
from ._ids import next_seq, resolve_ids
from .collector import MetricsCollector, get_collector
from .context import _state
from .models import ErrorMetrics, RequestMetrics, StreamingMetrics

_MESSAGE_LIMIT = 500


# Whether instances of a type are iterators (have __next__), cached per type.
_ITERATOR_TYPES: Dict[type, bool] = {
    str: False,
    bytes: False,
    dict: False,
    list: False,
    tuple: False,
    type(None): False,
}


def _is_iterator(value: Any) -> bool:
    cls = type(value)
    known = _ITERATOR_TYPES.get(cls)
    if known is None:
        known = callable(getattr(cls, "__next__", None))
        if len(_ITERATOR_TYPES) < 1024:
            _ITERATOR_TYPES[cls] = known
    return known


class Tracker:
    """What ``track_request(...)`` returns: a context manager and a decorator.

    Not for direct construction; see :func:`track_request`.
    """

    __slots__ = (
        "_collector",
        "provider",
        "model",
        "method",
        "response_format",
        "usage_extractor",
        "stream",
        "attributes",
    )

    def __init__(
        self,
        collector: Optional[MetricsCollector],
        provider: str,
        model: Optional[str] = None,
        method: str = "generate",
        response_format: str = "text",
        usage_extractor: Optional[Callable[[Any], Any]] = None,
        stream: Optional[bool] = None,
        **attributes: Any,
    ) -> None:
        if not isinstance(provider, str):
            raise TypeError(f"provider must be a str, got {type(provider).__name__}")
        if usage_extractor is not None and not callable(usage_extractor):
            raise TypeError("usage_extractor must be callable")
        self._collector = collector
        self.provider = provider
        self.model = model
        self.method = method
        self.response_format = response_format
        self.usage_extractor = usage_extractor
        self.stream = stream
        self.attributes = attributes

    def _begin(self, model: Optional[str]) -> RequestMetrics:
        """A new RequestMetrics carrying the thread's context (does not start the clock)."""
        state = _state.ctx
        ambient = state.attributes
        extra = self.attributes
        if ambient:
            attributes = {**ambient, **extra} if extra else dict(ambient)
        else:
            attributes = dict(extra) if extra else {}
        stack = state.stack
        return RequestMetrics(
            _now(),
            next_seq(),  # type: ignore[arg-type]  # counter until formatted: see _ids
            self.provider,
            model,
            attributes,
            1.0,
            stack[-1].request_id if stack else state.parent_id,
            None,
            None,
            None,
            None,
            None,
            None,
            self.method,
            self.response_format,
        )

    def start(self, model: Optional[str] = None) -> RequestMetrics:
        """Begin a request whose end the caller reports itself (with :func:`record_stream`
        or ``collector.record``): a RequestMetrics carrying the thread's context, its clock
        started. Not pushed on the thread's stack."""
        metrics = self._begin(model if model is not None else self.model)
        resolve_ids(metrics)
        metrics._trusted = True
        metrics._start = perf_counter()
        return metrics

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> RequestMetrics:
        metrics = self._begin(self.model)
        resolve_ids(metrics)  # the caller holds the record: give it its final id now
        _state.ctx.stack.append(metrics)
        metrics._start = perf_counter()
        return metrics

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        end = perf_counter()
        stack = _state.ctx.stack
        metrics = stack.pop() if stack else None
        if metrics is None:
            return
        try:
            collector = self._collector or get_collector()
            if not collector._enabled:
                return
            if exc is not None:
                _record_failure(collector, metrics, exc, end)
            else:
                if metrics.duration_ms is None:
                    metrics.duration_ms = (end - metrics._start) * 1000.0
                collector.record(metrics)
        except Exception:  # never into user code
            pass

    # ------------------------------------------------------------------ decorator
    def __call__(self, func: Any) -> Any:
        if isinstance(func, (classmethod, staticmethod)):
            return type(func)(self(func.__func__))
        if not callable(func):
            raise TypeError(f"track_request decorates callables, got {type(func).__name__}")
        if inspect.isgeneratorfunction(func):
            wrapper = self._wrap_generator_function(func)
        else:
            wrapper = self._wrap_function(func)
        return functools.update_wrapper(wrapper, func)

    def _model_argument(self, func: Callable[..., Any]) -> Tuple[str, Optional[int], Any]:
        """Where a call names its model: (keyword name, position or None, default or None),
        located once at decoration time."""
        name = self._collector.config.model_argument if self._collector else "model"
        try:
            params = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):
            return name, None, None
        for position, param in enumerate(params):
            if param.name == name:
                index = None
                if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                    index = position
                default = param.default if isinstance(param.default, str) else None
                return name, index, default
        return name, None, None

    def _find_model(self, func: Callable[..., Any]) -> Callable[[Any, Any], Optional[str]]:
        fixed_model = self.model
        name, index, default = self._model_argument(func)

        def find(args: Any, kwargs: Any) -> Optional[str]:
            if fixed_model is not None:
                return fixed_model
            model = kwargs.get(name) if kwargs else None
            if model is None and index is not None and index < len(args):
                model = args[index]
            return default if model is None else model

        return find

    def _wrap_function(self, func: Callable[..., Any]) -> Callable[..., Any]:
        # Every helper of the per-call path is inlined below: a Python call costs ~60 ns
        # and this function's own overhead is the product.
        tracker = self
        fixed = self._collector
        state = _state
        stream_mode = self.stream
        extractor = self.usage_extractor
        provider, method, response_format = self.provider, self.method, self.response_format
        extra = self.attributes
        fixed_model = self.model
        model_name, model_index, model_default = self._model_argument(func)
        iterator_types = _ITERATOR_TYPES

        def tracked(*args: Any, **kwargs: Any) -> Any:
            collector = fixed or get_collector()
            if not collector._enabled:
                return func(*args, **kwargs)
            try:
                ctx = state.ctx
                model = fixed_model
                if model is None:
                    if kwargs:
                        model = kwargs.get(model_name)
                    if model is None:
                        if model_index is not None and model_index < len(args):
                            model = args[model_index]
                        else:
                            model = model_default
                # The ambient mapping is read-only and replaced, never changed: share it.
                attributes = {**ctx.attributes, **extra} if extra else ctx.attributes
                stack = ctx.stack
                metrics = RequestMetrics(
                    _now(),
                    next_seq(),  # type: ignore[arg-type]  # counter until formatted: see _ids
                    provider,
                    model,
                    attributes,
                    1.0,
                    stack[-1].request_id if stack else ctx.parent_id,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    method,
                    response_format,
                )
                metrics._trusted = True
                stack.append(metrics)
            except Exception as exc:  # measuring failed: run the call unmeasured, say so
                collector._pipeline._internal_error("track_request", exc)
                return func(*args, **kwargs)
            start = perf_counter()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                end = perf_counter()
                metrics._start = start
                _pop(stack, metrics)
                _record_failure(collector, metrics, exc, end)
                raise
            end = perf_counter()
            if stack and stack[-1] is metrics:
                stack.pop()
            else:
                _pop(stack, metrics)
            if stream_mode is None:
                is_stream = iterator_types.get(type(result))
                if is_stream is None:
                    is_stream = _is_iterator(result)
            else:
                is_stream = stream_mode
            if is_stream:
                metrics._start = start
                return _tracked_stream(collector, metrics, result, restart_clock=False)
            metrics.duration_ms = (end - start) * 1000.0
            if result is not None:
                metrics._response = result
                metrics._extractor = extractor
            # collector.record() inlined, minus the checks that cannot fail here.
            queue = collector._queue
            if not (metrics._trusted and collector._fast_path) or (
                len(queue) >= collector._high_water
            ):
                collector.record(metrics)
                return result
            queue.append(metrics)
            size = len(queue)
            if size == 1 or size >= collector._batch_size:
                collector._first_or_full(size)
            return result

        tracked.__tracker__ = tracker  # type: ignore[attr-defined]
        return tracked

    def _wrap_generator_function(self, func: Callable[..., Any]) -> Callable[..., Any]:
        tracker = self
        fixed = self._collector
        find_model = self._find_model(func)

        def tracked_generator(*args: Any, **kwargs: Any) -> Any:
            collector = fixed or get_collector()
            if not collector._enabled:
                return func(*args, **kwargs)
            try:
                metrics = tracker._begin(find_model(args, kwargs))
                metrics._trusted = True
            except Exception as exc:  # measuring failed: run the call unmeasured, say so
                collector._pipeline._internal_error("track_request", exc)
                return func(*args, **kwargs)
            # Calling a generator function runs none of its body: the request starts at the
            # first next(), so the clock starts there.
            return _tracked_stream(collector, metrics, func(*args, **kwargs), restart_clock=True)

        return tracked_generator


def _pop(stack: List[RequestMetrics], metrics: RequestMetrics) -> None:
    if stack and stack[-1] is metrics:
        stack.pop()
    elif metrics in stack:  # a context was left out of order; keep the stack honest
        stack.remove(metrics)


def _record_failure(
    collector: MetricsCollector, metrics: RequestMetrics, exc: BaseException, end: float
) -> None:
    """Record a failed call: the RequestMetrics and an ErrorMetrics. Never raises."""
    try:
        metrics.duration_ms = (end - metrics._start) * 1000.0
        metrics.success = False
        metrics.error_class = type(exc).__name__
        metrics.error_category = error_category(exc)
        collector.record(metrics)
        collector.record(_error_record(metrics, exc))
    except Exception:
        pass


def _error_record(metrics: RequestMetrics, exc: BaseException) -> ErrorMetrics:
    try:
        message: Optional[str] = redact(str(exc))[:_MESSAGE_LIMIT]
    except Exception:
        message = None
    record = ErrorMetrics(
        **metrics.request_fields(),
        error_class=metrics.error_class or type(exc).__name__,
        error_category=metrics.error_category or "unknown",
        status_code=status_code_of(exc),
        retryable=is_retryable(exc),
        message=message,
    )
    record._trusted = True
    return record


# ---------------------------------------------------------------------- streams


class _StreamState:
    """Shared between a TrackedStream and its generator: emit exactly once."""

    __slots__ = ("started", "finished")

    def __init__(self) -> None:
        self.started = False
        self.finished = False


class TrackedStream:
    """An iterator wrapping a stream; records its metrics exactly once when it ends.

    It ends when the stream is exhausted (``completed``), raises (``error``), or is closed,
    left through ``with``, or abandoned and garbage-collected (``cancelled``, also when it
    was never iterated). Iterating it
    iterates an internal generator directly, so the per-chunk cost is one generator step.
    ``send``/``throw`` are delegated to the wrapped generator; other attributes (for example
    the ``openai`` SDK stream's ``response``) are read from the wrapped object.
    """

    __slots__ = ("_gen", "_inner", "_state", "_finish_unstarted", "__weakref__")

    def __init__(
        self, gen: Any, inner: Any, state: _StreamState, finish_unstarted: Callable[[], None]
    ) -> None:
        self._gen = gen
        self._inner = inner
        self._state = state
        self._finish_unstarted = finish_unstarted

    def __iter__(self) -> Iterator[Any]:
        return self._gen

    def __next__(self) -> Any:
        return self._gen.__next__()

    def send(self, value: Any) -> Any:
        return self._gen.send(value)

    def throw(self, *args: Any) -> Any:
        return self._gen.throw(*args)

    def close(self) -> None:
        """Stop the stream, release the wrapped one (its ``close()``), record ``cancelled``."""
        self._gen.close()
        if not self._state.started:
            self._finish_unstarted()

    def __enter__(self) -> "TrackedStream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"<TrackedStream of {self._inner!r}>"


def _tracked_stream(
    collector: MetricsCollector, metrics: RequestMetrics, inner: Any, restart_clock: bool
) -> TrackedStream:
    metrics.method = "stream"
    state = _StreamState()
    gen = _stream_body(collector, metrics, inner, restart_clock, state)

    def finish_unstarted() -> None:
        # A started generator records in its own finally, which CPython runs after the
        # weakref callbacks of a collected generator: stand aside for it.
        if state.started or state.finished:
            return
        state.finished = state.started = True
        _close_quietly(inner)
        _finish_stream(
            collector,
            metrics,
            StreamUsage(),
            None,
            "cancelled",
            None,
            0,
            0,
            None,
            None,
            perf_counter(),
        )

    # A started stream is finalised by its generator's ``finally``. One that is never started
    # (created, maybe iter()'d, then dropped) runs no generator code at all, so the generator's
    # collection is watched instead; for a started one the callback finds it finished.
    weakref.finalize(gen, finish_unstarted)
    return TrackedStream(gen, inner, state, finish_unstarted)


def _stream_body(
    collector: MetricsCollector,
    metrics: RequestMetrics,
    inner: Any,
    restart_clock: bool,
    state: _StreamState,
) -> Any:
    if state.finished:  # recorded as cancelled before it started; just pass through
        return (yield from inner)
    state.started = True
    if restart_clock:
        metrics._start = perf_counter()
    usage = StreamUsage()
    observe = usage.observe
    json_counter = JsonObjectCounter() if metrics.response_format.startswith("json") else None
    count = chars = 0
    first: Optional[float] = None
    first_token: Optional[float] = None
    status = "cancelled"
    error: Optional[BaseException] = None
    iterator = inner
    try:
        iterator = iter(inner)
        next_chunk = iterator.__next__
        send = getattr(iterator, "send", None)
        throw = getattr(iterator, "throw", None)
        pending: Any = None  # (callable, argument) forwarded by send()/throw()
        while True:
            try:
                chunk = next_chunk() if pending is None else pending[0](pending[1])
            except StopIteration as stop:
                status = "completed"
                return stop.value
            if count == 0:
                first = perf_counter()
            count += 1
            text = chunk if type(chunk) is str else observe(chunk)
            if text:
                chars += len(text)
                if first_token is None:
                    first_token = perf_counter()
                if json_counter is not None:
                    json_counter.feed(text)
            try:
                sent = yield chunk
            except GeneratorExit:
                raise
            except BaseException as thrown:
                if throw is None:
                    raise
                pending = (throw, thrown)
                continue
            pending = None if sent is None or send is None else (send, sent)
    except GeneratorExit:
        raise
    except BaseException as exc:
        status = "error"
        error = exc
        raise
    finally:
        end = perf_counter()
        if not state.finished:
            state.finished = True
            if status != "completed":
                _close_quietly(iterator)
            _finish_stream(
                collector,
                metrics,
                usage,
                json_counter,
                status,
                error,
                count,
                chars,
                first,
                first_token,
                end,
            )


def _close_quietly(obj: Any) -> None:
    closer = getattr(obj, "close", None)
    if closer is not None:
        try:
            closer()
        except Exception:
            pass


class StreamOutcome:
    """What a finished stream reports; filled by whoever consumed it (the tracked-stream
    wrapper or the client) and turned into records by :func:`record_stream`.

    Times are ``perf_counter()`` readings; ``usage`` is None when nothing counted tokens.
    """

    __slots__ = (
        "status",
        "error",
        "chunks",
        "chars",
        "first",
        "first_token",
        "end",
        "usage",
        "response_model",
        "json_objects",
        "aggregation_method",
        "aggregation_confidence",
    )

    def __init__(self) -> None:
        self.status = "cancelled"
        self.error: Optional[BaseException] = None
        self.chunks = 0
        self.chars = 0
        self.first: Optional[float] = None
        self.first_token: Optional[float] = None
        self.end = 0.0
        self.usage: Optional[TokenUsage] = None
        self.response_model: Optional[str] = None
        self.json_objects = 0
        self.aggregation_method = "none"
        self.aggregation_confidence = 0.0


def record_stream(
    collector: MetricsCollector, metrics: RequestMetrics, outcome: StreamOutcome
) -> None:
    """Emit a stream's RequestMetrics, its StreamingMetrics (if enabled) and, on error, an
    ErrorMetrics. Never raises."""
    try:
        start = metrics._start
        elapsed = outcome.end - start
        metrics.method = "stream"
        metrics.duration_ms = elapsed * 1000.0
        if outcome.first_token is not None:
            metrics.time_to_first_token_ms = (outcome.first_token - start) * 1000.0
        if outcome.usage is not None:
            metrics.set_usage(*outcome.usage)
        if outcome.response_model is not None:
            metrics.response_model = outcome.response_model
        if outcome.error is not None:
            _record_failure(collector, metrics, outcome.error, outcome.end)
        else:
            collector.record(metrics)
        if collector.config.enable_streaming_metrics:
            first = outcome.first
            streaming = StreamingMetrics(
                **metrics.request_fields(),
                total_chunks=outcome.chunks,
                total_chars=outcome.chars,
                chunks_per_second=outcome.chunks / elapsed if elapsed > 0 else None,
                first_chunk_latency_ms=None if first is None else (first - start) * 1000.0,
                json_objects_found=outcome.json_objects,
                aggregation_method=outcome.aggregation_method,
                aggregation_confidence=outcome.aggregation_confidence,
                status=outcome.status,
            )
            streaming._trusted = True
            collector.record(streaming)
    except Exception:  # never into user code
        pass


def _finish_stream(
    collector: MetricsCollector,
    metrics: RequestMetrics,
    usage: StreamUsage,
    json_counter: Optional[JsonObjectCounter],
    status: str,
    error: Optional[BaseException],
    count: int,
    chars: int,
    first: Optional[float],
    first_token: Optional[float],
    end: float,
) -> None:
    """The tracked-stream wrapper's end: usage only as the stream reported it."""
    outcome = StreamOutcome()
    outcome.status, outcome.error, outcome.chunks, outcome.chars = status, error, count, chars
    outcome.first, outcome.first_token, outcome.end = first, first_token, end
    outcome.usage = usage.usage()
    outcome.response_model = usage.model
    outcome.json_objects = 0 if json_counter is None else json_counter.count
    if outcome.usage is not None:
        outcome.aggregation_method, outcome.aggregation_confidence = "provider", 1.0
    record_stream(collector, metrics, outcome)


def track_request(
    provider: str,
    model: Optional[str] = None,
    method: str = "generate",
    response_format: str = "text",
    **options: Any,
) -> Tracker:
    """Measure an LLM call with the default collector (resolved at call time).

    Use as a decorator::

        @track_request("openai")
        def ask(prompt, model="gpt-4o-mini"): ...

    or as a context manager yielding the :class:`RequestMetrics` to fill in::

        with track_request("anthropic", model="claude-3-5-haiku") as metrics:
            response = client.messages.create(...)
            metrics.set_response(response)

    Args:
        provider: ``"openai"``, ``"anthropic"``, ...
        model: the model; when None, the call's ``model`` keyword argument (the name is
            ``MetricsConfig.model_argument``).
        method: ``"generate"``; streams are recorded as ``"stream"``.
        response_format: ``"text"``, ``"json_object"``, ...; JSON formats count complete
            JSON values in streamed text.
        usage_extractor: ``(result) -> TokenUsage | dict | None`` replacing the built-in
            OpenAI/Anthropic usage reading (runs on the background thread).
        stream: True/False forces treating the return value as a stream or not; by default
            generator functions and functions returning an iterator are streams.
        **attributes: added to every record of the call.

    A decorated function keeps its name, docstring, ``__wrapped__`` and signature; methods,
    classmethods and staticmethods work. Exceptions of the tracked call are re-raised
    unchanged and recorded (``success=False``, ``error_class``, ``error_category``, plus an
    ErrorMetrics). Inside a tracked generator's body :func:`current_metrics` returns the
    consumer's innermost request, not the stream's.
    """
    return Tracker(None, provider, model, method, response_format, **options)
