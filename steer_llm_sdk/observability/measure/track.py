"""track_request: measure blocking calls and streams, as a decorator or a context manager.

The caller's thread does only cheap work per call: two clock readings, one record built
(:func:`.call.new_request`), the call put in scope and taken out again, and the collector's
admission step. Token usage is read from the return value later, on the flush thread.
Streams are measured by :func:`.stream.open_stream` behind a :class:`TrackedStream`; a
generator's steps run in a context of their own (:class:`.stream.Steps`).

Nothing here raises into the caller: if measuring fails, the call runs unmeasured; the
tracked function's own exception is re-raised unchanged (the same object and traceback).
"""

import functools
import inspect
from contextvars import copy_context
from time import perf_counter
from types import GeneratorType
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional, Tuple

from .._signals import signal_exception
from ..runtime import get_collector

if TYPE_CHECKING:
    from ..collector import MetricsCollector
from ..models import RequestMetrics, trust
from .call import end_call, new_request, record_failure
from .scope import SCOPE, unscope
from .stream import FinishOnce, Steps, StreamOutcome, open_stream, record_stream

__all__ = ["StreamOutcome", "TrackedStream", "Tracker", "record_stream", "track_request"]

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


#: Reads the model of one call from its arguments: ``(args, kwargs) -> model or None``.
ModelLookup = Callable[[Any, Any], Optional[str]]


class Tracker:
    """What ``track_request(...)`` returns: a context manager and a decorator.

    Not for direct construction; see :func:`track_request`.

    Raises:
        TypeError: ``provider``, ``model``, ``method`` or ``response_format`` is not a str
            (``model`` may be None), ``usage_extractor`` is not callable or ``stream`` is
            not a bool or None.
    """

    __slots__ = (
        "_collector",
        "provider",
        "model",
        "method",
        "response_format",
        "usage_extractor",
        "stream",
        "operation",
        "attributes",
        "_open",
    )

    def __init__(
        self,
        collector: Optional["MetricsCollector"],
        provider: str,
        model: Optional[str] = None,
        method: str = "generate",
        response_format: str = "text",
        usage_extractor: Optional[Callable[[Any], Any]] = None,
        stream: Optional[bool] = None,
        operation: str = "chat",
        **attributes: Any,
    ) -> None:
        for name, value in (
            ("provider", provider),
            ("method", method),
            ("response_format", response_format),
            ("operation", operation),
        ):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__}")
        if model is not None and not isinstance(model, str):
            raise TypeError(f"model must be a str or None, got {type(model).__name__}")
        if usage_extractor is not None and not callable(usage_extractor):
            raise TypeError("usage_extractor must be callable")
        if stream is not None and not isinstance(stream, bool):
            raise TypeError(f"stream must be True, False or None, got {stream!r}")
        self._collector = collector
        self.provider = provider
        self.model = model
        self.method = method
        self.response_format = response_format
        self.usage_extractor = usage_extractor
        self.stream = stream
        self.operation = operation
        self.attributes = attributes
        # Calls entered as a context manager and not yet left, with the scope token of
        # each, by id() of the record: a ``with`` block may be left on another thread than
        # the one that entered it. Only atomic dict operations: no lock that a signal
        # handler's exception could leave held.
        self._open: Dict[int, Tuple[RequestMetrics, Any]] = {}

    def _new(self, model: Optional[str]) -> RequestMetrics:
        return new_request(
            self.provider,
            model,
            self.attributes,
            self.method,
            self.response_format,
            self.operation,
        )

    def start(self, model: Optional[str] = None) -> RequestMetrics:
        """Begin a request whose end the caller reports itself (with :func:`record_stream`
        or ``collector.record``): a RequestMetrics carrying the current context, its clock
        started. Not put in scope. ``model=None`` means the tracker's."""
        metrics = self._new(model if model is not None else self.model)
        metrics._start = perf_counter()
        return metrics

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> RequestMetrics:
        metrics = self._new(self.model)
        trust(metrics, False)  # the caller may set any value: validated at admission
        metrics._start = perf_counter()
        try:
            self._open[id(metrics)] = (metrics, SCOPE.set(metrics))
        except BaseException:  # a signal handler's: the block is never entered
            self._open.pop(id(metrics), None)
            unscope(metrics)
            raise
        return metrics

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        # An exception a signal handler raises anywhere in here must not leave the call
        # open and in scope: the finally leaves it (once) whatever happened before.
        left = False
        entry: Optional[Tuple[RequestMetrics, Any]] = None
        try:
            end = perf_counter()
            entry, left = self._leave(), True
            if entry is None:
                return
            collector = self._collector or get_collector()
            if exc is not None:
                record_failure(collector, entry[0], exc, end)
            else:
                end_call(collector, entry[0], end)
        except Exception as internal:  # never into user code
            timeout = signal_exception(internal)
            if timeout is not None:
                raise timeout
        finally:
            if not left:
                entry = self._leave()
            if entry is not None:
                metrics, token = entry
                metrics._ended = True
                try:
                    SCOPE.reset(token)
                except ValueError:  # entered in another context (another thread): nothing
                    pass  # to undo here; that context's scope passes over the ended call

    def _leave(self) -> Optional[Tuple[RequestMetrics, Any]]:
        """The open call a ``with`` block leaves: the one in this context's scope if this
        tracker entered it, else the one this tracker entered last (left on another
        thread)."""
        entries = self._open
        entry = entries.pop(id(SCOPE.get()), None)
        if entry is not None:
            return entry
        try:
            return entries.popitem()[1]
        except KeyError:  # never entered, or left already
            return None

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
        wrapper.__tracker__ = self  # type: ignore[attr-defined]
        return functools.update_wrapper(wrapper, func)

    def model_lookup(self, func: Optional[Callable[..., Any]]) -> ModelLookup:
        """The model of a call to ``func``, located once at decoration time.

        The tracker's fixed ``model`` wins; otherwise the keyword argument named
        ``MetricsConfig.model_argument`` (default ``model``), then the same parameter given
        positionally, then its default in ``func``'s signature when that is a str. An explicit
        None means "not given", in every path.
        """
        fixed = self.model
        if fixed is not None or func is None:
            return lambda args, kwargs: fixed
        name = self._collector.config.model_argument if self._collector else "model"
        index: Optional[int] = None
        default: Optional[str] = None
        try:
            params = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):
            params = []
        for position, param in enumerate(params):
            if param.name == name:
                if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                    index = position
                default = param.default if isinstance(param.default, str) else None
                break

        def lookup(args: Any, kwargs: Any) -> Optional[str]:
            model = kwargs.get(name) if kwargs else None
            if model is None and index is not None and index < len(args):
                model = args[index]
            return default if model is None else model

        return lookup

    def _wrap_function(self, func: Callable[..., Any]) -> Callable[..., Any]:
        fixed = self._collector
        stream_mode = self.stream
        extractor = self.usage_extractor
        lookup = self.model_lookup(func)
        provider, method, fmt, extra = (
            self.provider,
            self.method,
            self.response_format,
            self.attributes,
        )
        operation = self.operation
        iterator_types = _ITERATOR_TYPES
        scope_set, scope_reset = SCOPE.set, SCOPE.reset

        def tracked(*args: Any, **kwargs: Any) -> Any:
            collector = fixed or get_collector()
            if not collector.enabled:
                return func(*args, **kwargs)
            try:
                metrics = new_request(provider, lookup(args, kwargs), extra, method, fmt, operation)
            except Exception as exc:  # measuring failed: run the call unmeasured
                timeout = signal_exception(exc)
                if timeout is not None:
                    raise timeout
                return func(*args, **kwargs)
            metrics._start = perf_counter()
            token = None
            try:
                # Set inside the try: an exception a signal handler raises right after it is
                # still followed by the reset, so no ended call stays in scope.
                token = scope_set(metrics)
                result = func(*args, **kwargs)
            except BaseException as exc:
                if token is not None:
                    scope_reset(token)
                else:
                    unscope(metrics)
                record_failure(collector, metrics, exc, perf_counter())
                raise
            end = perf_counter()
            scope_reset(token)
            if stream_mode is None:
                is_stream = iterator_types.get(type(result))
                if is_stream is None:
                    is_stream = _is_iterator(result)
            else:
                is_stream = stream_mode
            if is_stream:
                return _stream_of(collector, metrics, result, False)
            if result is not None:
                metrics._response = result
                metrics._extractor = extractor
            end_call(collector, metrics, end)
            return result

        return tracked

    def _wrap_generator_function(self, func: Callable[..., Any]) -> Callable[..., Any]:
        fixed = self._collector
        lookup = self.model_lookup(func)

        def tracked_generator(*args: Any, **kwargs: Any) -> Any:
            collector = fixed or get_collector()
            if not collector.enabled:
                return func(*args, **kwargs)
            try:
                metrics = self._new(lookup(args, kwargs))
                metrics._start = perf_counter()
            except Exception as exc:  # measuring failed: run the call unmeasured
                timeout = signal_exception(exc)
                if timeout is not None:
                    raise timeout
                return func(*args, **kwargs)
            # Calling a generator function runs none of its body: the request starts at the
            # first next(), so the clock starts again there.
            return _stream_of(collector, metrics, func(*args, **kwargs), True)

        return tracked_generator


# ---------------------------------------------------------------------- streams


class TrackedStream:
    """An iterator wrapping a stream; records its metrics exactly once when it ends.

    It ends when the stream is exhausted (``completed``), raises (``error``), or is closed,
    left through ``with``, or abandoned and garbage-collected (``cancelled``, also when it
    was never iterated). Iterating it iterates the meter's generator directly, so the
    per-chunk cost is one generator step. ``send``/``throw`` are delegated to the wrapped
    generator; other attributes (for example the ``openai`` SDK stream's ``response``) are
    read from the wrapped object.
    """

    __slots__ = ("_gen", "_inner", "_once", "__weakref__")

    def __init__(self, gen: Any, inner: Any, once: FinishOnce) -> None:
        self._gen = gen
        self._inner = inner
        self._once = once

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
        self._once.finish_unstarted()

    def __enter__(self) -> "TrackedStream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"<TrackedStream of {self._inner!r}>"


def _stream_of(
    collector: "MetricsCollector", metrics: RequestMetrics, inner: Any, restart_clock: bool
) -> Any:
    """The TrackedStream of a call whose result ``inner`` is a stream (``inner`` itself,
    unmeasured, if measuring fails). A generator (the body of a tracked generator function,
    or one a tracked function returned) runs each step in a context of its own, copied from
    the caller's, with this call in scope: calls it makes join or nest under this one,
    wherever it is advanced."""
    try:
        metrics.method = "stream"
        if type(inner) is GeneratorType:
            context = copy_context()
            context.run(SCOPE.set, metrics)
            gen, once = open_stream(collector, metrics, Steps(inner, context), restart_clock)
        else:
            gen, once = open_stream(collector, metrics, inner, restart_clock)
        return TrackedStream(gen, inner, once)
    except Exception as exc:
        timeout = signal_exception(exc)
        if timeout is not None:
            raise timeout
        return inner


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
        model: the model; when None, the call's ``model`` argument (the name is
            ``MetricsConfig.model_argument``), or that parameter's default.
        method: ``"generate"``; streams are recorded as ``"stream"``.
        response_format: ``"text"``, ``"json_object"``, ...; JSON formats count complete
            JSON values in streamed text.
        usage_extractor: ``(result) -> TokenUsage | dict | None`` replacing the built-in
            OpenAI/Anthropic usage reading (runs on the background thread).
        stream: True/False forces treating the return value as a stream or not; by default
            generator functions and functions returning an iterator are streams.
        operation: the GenAI operation name recorded (``chat``, ``text_completion``,
            ``embeddings``, ``generate_content``, ...).
        **attributes: added to every record of the call.

    Raises:
        TypeError: an argument of the wrong type (at decoration time, never at call time).

    A decorated function keeps its name, docstring, ``__wrapped__`` and signature; methods,
    classmethods and staticmethods work. Exceptions of the tracked call are re-raised
    unchanged and recorded (``success=False``, ``error_class``, ``error_category``, plus an
    ErrorMetrics). A tracked generator's body runs in a context of its own:
    :func:`current_metrics` there returns the generator's own record, and what it sets with
    ``metrics_context`` stays inside it.
    """
    return Tracker(None, provider, model, method, response_format, **options)
