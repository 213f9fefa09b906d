"""Thread-local metrics context: ambient attributes and the stack of active requests.

Each thread sees only its own context. :func:`metrics_context` adds attributes to every record
started in this thread while it is active (web integrations put the route there);
:func:`current_metrics` returns the innermost request being tracked. :func:`bind_context`
carries the current context into work run on another thread.
"""

import threading
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, TypeVar

from .models import RequestMetrics

F = TypeVar("F", bound=Callable[..., Any])


#: The ambient attributes outside any metrics_context(): empty and read-only.
EMPTY: Mapping[str, Any] = MappingProxyType({})


class Context:
    """One thread's metrics context. A plain slotted object behind a single thread-local
    lookup: reading a thread-local attribute costs about three plain attribute reads, and the
    tracked call reads several fields."""

    __slots__ = ("stack", "attributes", "parent_id")

    def __init__(self) -> None:
        # Active RequestMetrics, innermost last.
        self.stack: List[RequestMetrics] = []
        # Ambient attributes, merged across nested metrics_context() blocks. A read-only
        # mapping, replaced and never mutated, so tracked calls share it instead of copying.
        self.attributes: Mapping[str, Any] = EMPTY
        # Parent request id inherited from another thread through bind_context().
        self.parent_id: Optional[str] = None


class _State(threading.local):
    def __init__(self) -> None:
        self.ctx = Context()


_state = _State()


def current_metrics() -> Optional[RequestMetrics]:
    """The innermost RequestMetrics being tracked in this thread, or None.

    The record may be filled in (token counts, attributes) until its call ends; it is then
    validated like any record handed to ``collector.record()``.
    """
    stack = _state.ctx.stack
    if not stack:
        return None
    metrics = stack[-1]
    metrics._trusted = False  # user code may now set any value
    if type(metrics.attributes) is not dict:  # shared and read-only: give it its own
        metrics.attributes = dict(metrics.attributes)
    return metrics


def current_attributes() -> Dict[str, Any]:
    """A copy of this thread's ambient attributes."""
    return dict(_state.ctx.attributes)


@contextmanager
def metrics_context(**attributes: Any) -> Iterator[Mapping[str, Any]]:
    """Add ``attributes`` to every record started in this thread inside the block.

    Nested blocks merge, inner values winning; leaving a block restores the outer attributes,
    also when the block raises. Keys with dots (``http.route``) are passed as
    ``metrics_context(**{"http.route": "/chat"})``.

    Yields:
        The merged attributes now in effect (a read-only mapping).
    """
    state = _state.ctx
    previous = state.attributes
    state.attributes = MappingProxyType({**previous, **attributes})
    try:
        yield state.attributes
    finally:
        state.attributes = previous


def bind_context(fn: F) -> F:
    """Wrap ``fn`` so that it runs with this thread's current metrics context.

    Use it when handing work to another thread (``executor.submit(bind_context(work))``):
    records started by ``fn`` get the ambient attributes and name the currently active
    request as their parent.
    """
    ctx = _state.ctx
    attributes = dict(ctx.attributes)
    parent_id = ctx.stack[-1].request_id if ctx.stack else ctx.parent_id

    def run_in_context(*args: Any, **kwargs: Any) -> Any:
        state = _state.ctx
        saved = state.attributes, state.parent_id
        state.attributes = MappingProxyType({**saved[0], **attributes})
        state.parent_id = parent_id
        try:
            return fn(*args, **kwargs)
        finally:
            state.attributes, state.parent_id = saved

    run_in_context.__wrapped__ = fn  # type: ignore[attr-defined]
    return run_in_context  # type: ignore[return-value]
