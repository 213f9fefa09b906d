"""The ``cohere`` SDK: v2 chat, sync, blocking (``chat``) and streamed (``chat_stream``),
of ``ClientV2`` and of ``Client().v2``; the v1 API and the async clients are left untouched.

Both are measured where every v2 chat passes, the raw client (``RawV2Client.chat`` and
``.chat_stream``, which ``V2Client`` calls and ``with_raw_response`` hands out): a
``ClientV2`` binds its own ``chat`` and ``chat_stream`` to the instance when it is made,
so patching ``V2Client`` would miss every client made before ``instrument()``.

* ``chat``: the raw call returns an ``HttpResponse``; the call ends when it returns, its
  usage read (on the flush thread) from the ``V2ChatResponse`` in its ``data``: the billed
  counts (:func:`...streaming.usage.cohere_usage`).
* ``chat_stream``: the raw call returns a context manager that sends the request when
  entered and gives an ``HttpResponse`` whose ``data`` iterates the stream's events; that
  iterator is measured (:mod:`...streaming.readers.cohere` reads the events). The caller
  (``V2Client.chat_stream``, a generator, or a ``with_raw_response`` user) gets the SDK's
  response behind a transparent proxy whose ``data`` is the measured iterator. The stream
  ends when it is read to its end, fails, or the ``with`` block is left.
"""

from time import perf_counter
from typing import Any, Callable, Dict, List, Optional, Tuple

import wrapt

from ..measure.call import join_failure, record_failure
from ..measure.sdk import Wrap, measure
from ._measure import client_secrets, endpoint, target


def _client_info(instance: Any) -> Tuple[str, Dict[str, Any]]:
    wrapper = getattr(instance, "_client_wrapper", None)
    base = wrapper.get_base_url() if wrapper is not None else ""
    return endpoint(base, "cohere")


def secrets(instance: Any) -> List[str]:
    """The credentials of the client behind a ``RawV2Client`` (read when a call fails): its
    token (sent as ``Authorization: Bearer``), credential headers among its custom
    headers, and its base URL's userinfo. A token given as a function is not called: it is
    found by pattern only.

    Reads the SDK's privates ``_client_wrapper`` (the raw client's), its ``_token`` and
    ``_base_url``: tests/instrument/test_instrument_sdks.py fails when a release removes them.
    """
    wrapper = instance._client_wrapper
    return client_secrets(wrapper, ("_token",), wrapper.get_custom_headers())


def _answered(response: Any, wrap: Wrap) -> Any:
    """A blocking chat's ``HttpResponse``, returned unchanged; the call ends now with the
    ``V2ChatResponse`` in ``data``, whose billed usage is read on the flush thread (or
    handed to the call this one joined).

    It is handed to :func:`..measure.sdk.measure` as a stream's shape only so that the
    call ends with ``data`` instead of the response around it: a blocking call, recorded
    as one (``method="generate"``, failed or not)."""
    wrap.end(response.data, perf_counter())
    return response


class _StreamAnswer(wrapt.ObjectProxy):
    """The ``HttpResponse`` of a streamed chat, with the measured iterator as its ``data``;
    everything else is the SDK's."""

    def __init__(self, wrapped: Any, events: Any) -> None:
        super().__init__(wrapped)
        self._self_events = events

    @property
    def data(self) -> Any:
        return self._self_events


class _StreamManager(wrapt.ObjectProxy):
    """The raw ``chat_stream`` context manager, measured: entering sends the request (a
    failure there ends the call as failed), leaving ends the stream if it is still open
    (recorded as cancelled). Used by the thread that entered it."""

    def __init__(self, wrapped: Any, wrap: Wrap) -> None:
        super().__init__(wrapped)
        self._self_wrap = wrap
        self._self_events: Optional[Any] = None

    def __enter__(self) -> Any:
        wrap = self._self_wrap
        try:
            response = self.__wrapped__.__enter__()
        except BaseException as exc:
            if not wrap.joined:
                record_failure(wrap.collector, wrap.metrics, exc, perf_counter(), wrap.sensitive)
            elif wrap.sensitive is not None:
                join_failure(wrap.metrics, wrap.sensitive)
            raise
        events = wrap(response.data)
        self._self_events = events
        return _StreamAnswer(response, events)

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            if self._self_events is not None:
                self._self_events.close()  # a stream left unfinished ends now
        finally:
            exited = self.__wrapped__.__exit__(*exc_info)
        return exited


def _streamed(manager: Any, wrap: Any) -> Any:
    return _StreamManager(manager, wrap)


def _entry(shape: Any, method: Optional[str]) -> Callable[..., Any]:
    """The wrapper of a chat entry point whose result ``shape`` hands to the measured call
    (see :func:`..measure.sdk.measure`), recorded with ``method`` (None: as its shape says)."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        provider, attributes = _client_info(instance)
        return measure(
            target(),
            wrapped,
            provider,
            "chat",
            kwargs.get("model"),
            attributes,
            shape,
            (secrets, instance, kwargs),
            args,
            kwargs,
            method,
        )

    return wrapper


#: A blocking chat, given a shape only so that it ends with its data (see _answered).
_chat = _entry(_answered, "generate")
_chat_stream = _entry(_streamed, None)


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    module = "cohere.v2.raw_client"
    return [(module, "RawV2Client.chat", _chat), (module, "RawV2Client.chat_stream", _chat_stream)]
