"""The metrics context, kept in :mod:`contextvars`: ambient attributes and the active call.

Two context variables hold everything:

* the ambient attributes that :func:`metrics_context` adds to every record started inside
  it (web integrations put the route there), a read-only mapping replaced, never mutated;
* the scope: the innermost measured call (its :class:`~..models.RequestMetrics`) of the
  current context. A call that starts while another is in scope names it as its parent;
  an automatic measurement (``instrument()``, an SDK stream helper, the client) that starts
  while an unended call is in scope joins it instead of recording itself (:func:`owner`).

Each thread has its own context, and a tracked generator runs each of its steps in a
context of its own, so a suspended generator never lends its attributes or its call to
whatever else its thread runs. Thread pools do not carry the context by themselves:
:func:`bind_context` (or ``contextvars.copy_context().run``) does.
"""

from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from types import MappingProxyType
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, TypeVar

from ..models import RequestMetrics, trust

F = TypeVar("F", bound=Callable[..., Any])

#: The ambient attributes outside any metrics_context(): empty and read-only.
EMPTY: Mapping[str, Any] = MappingProxyType({})

ATTRIBUTES: "ContextVar[Mapping[str, Any]]" = ContextVar("steer_llm_sdk.attributes", default=EMPTY)
SCOPE: "ContextVar[Optional[RequestMetrics]]" = ContextVar("steer_llm_sdk.scope", default=None)


def owner(scope: Optional[RequestMetrics]) -> Optional[RequestMetrics]:
    """The call that a measurement starting in ``scope`` joins: the innermost call of the
    scope that has not ended, or None. A context can still name an ended call (a ``with``
    block left on another thread); that call, and any ended call around it, is passed
    over."""
    while scope is not None and scope._ended:
        scope = scope._outer
    return scope


def unscope(metrics: RequestMetrics) -> None:
    """Take ``metrics`` out of this context's scope without its token: a signal handler's
    exception can land after ``SCOPE.set()`` returned and before its token was stored."""
    if SCOPE.get() is metrics:
        SCOPE.set(metrics._outer)


def current_metrics() -> Optional[RequestMetrics]:
    """The innermost RequestMetrics being measured in this context, or None.

    Inside a tracked generator's body it is the generator's own record. The record may be
    filled in (token counts, attributes) until its call ends; it is then validated like any
    record handed to ``collector.record()``.
    """
    metrics = owner(SCOPE.get())
    if metrics is None:
        return None
    trust(metrics, False)  # user code may now set any value
    if type(metrics.attributes) is not dict:  # shared and read-only: give it its own
        metrics.attributes = dict(metrics.attributes)
    return metrics


def current_attributes() -> Dict[str, Any]:
    """A copy of the ambient attributes of this context."""
    return dict(ATTRIBUTES.get())


@contextmanager
def metrics_context(**attributes: Any) -> Iterator[Mapping[str, Any]]:
    """Add ``attributes`` to every record started in this context inside the block.

    Nested blocks merge, inner values winning; leaving a block restores the outer attributes,
    also when the block raises. Keys with dots (``http.route``) are passed as
    ``metrics_context(**{"http.route": "/chat"})``. A block inside a tracked generator
    affects only that generator's steps.

    Yields:
        The merged attributes now in effect (a read-only mapping).
    """
    previous = ATTRIBUTES.get()
    merged = MappingProxyType({**previous, **attributes})
    token = ATTRIBUTES.set(merged)
    try:
        yield merged
    finally:
        try:
            ATTRIBUTES.reset(token)
        except ValueError:  # left in another context (an untracked generator resumed
            ATTRIBUTES.set(previous)  # elsewhere): restore this context's view


def bind_context(fn: F) -> F:
    """Wrap ``fn`` so that it runs in a copy of the current metrics context.

    Use it when handing work to another thread (``executor.submit(bind_context(work))``):
    records started by ``fn`` get the ambient attributes and name the call in scope as their
    parent, and instrumented SDK calls made by ``fn`` while that call is still open join it.
    Each run gets its own copy, so the wrapper may run on several threads at once.
    """
    captured = copy_context()

    def run_in_context(*args: Any, **kwargs: Any) -> Any:
        return captured.copy().run(fn, *args, **kwargs)

    run_in_context.__wrapped__ = fn  # type: ignore[attr-defined]
    return run_in_context  # type: ignore[return-value]
