"""What every instrumented entry point shares: the provider and server of a client, and
the wrapper that hands each call to the one measured call (:mod:`..measure.sdk`).
"""

import copy
from time import perf_counter
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

import wrapt

from ..._secrets import url_secrets
from .._signals import signal_exception
from ..conventions import server_attributes
from ..measure.sdk import Wrap, measure, measure_helper
from ..runtime import get_collector

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

#: id(base URL object) -> (that object, default provider, what :func:`endpoint` returns).
#: An SDK client keeps one URL object until its base URL is set anew, so most calls find it
#: here without turning it into text (``str()`` of an httpx URL is not free). Each entry
#: holds its object, so its id cannot be reused by another while the entry exists; bounded.
_BY_OBJECT: Dict[int, Tuple[Any, str, Tuple[str, Dict[str, Any]]]] = {}


def endpoint(url: Any, default: str) -> Tuple[str, Dict[str, Any]]:
    """``(provider_of(url, default), server_attributes(url))``, remembered per URL: parsing
    a URL is costly, and a client's base URL seldom changes. ``url`` is taken
    to be immutable (a ``str``, an httpx ``URL``): the same object is known by its identity.
    The attributes dict is shared by every call to that URL (records copy it). Thread-safe.
    """
    known = _BY_OBJECT.get(id(url))
    if known is not None and known[0] is url and known[1] == default:
        return known[2]
    key = (str(url), default)
    found = _ENDPOINTS.get(key)
    if found is None:
        found = (provider_of(key[0], default), server_attributes(key[0]))
        if len(_ENDPOINTS) < _ENDPOINTS_MAX:  # past it, a fleet of URLs is parsed each call
            _ENDPOINTS[key] = found
    if len(_BY_OBJECT) < _ENDPOINTS_MAX:
        _BY_OBJECT[id(url)] = (url, default, found)
    return found


def base_url_of(client: Any) -> Any:
    """An openai/anthropic client's base URL: the attribute behind the ``base_url``
    property when it is there (the property runs an import and a function at each read)."""
    base = getattr(client, "_base_url", None)
    return base if base is not None else getattr(client, "base_url", "")


#: Header names whose values are credentials (lower case).
_AUTH_HEADERS = frozenset(
    {"authorization", "api-key", "x-api-key", "x-goog-api-key", "x-amz-security-token"}
)


def client_secrets(
    client: Any, attributes: Iterable[str], headers: Optional[Mapping[str, Any]] = None
) -> List[str]:
    """The credentials an SDK client holds, for redaction: the string values of its
    ``attributes``, the values of credential ``headers`` (a ``Bearer``/``Basic`` scheme
    dropped), and the userinfo of its base URL. Called on failures only."""
    found = [getattr(client, name, None) for name in attributes]
    for name, value in (headers or {}).items():
        if isinstance(name, str) and name.lower() in _AUTH_HEADERS and isinstance(value, str):
            found.append(value.split(" ", 1)[-1])
    found.extend(url_secrets(base_url_of(client)))
    return [value for value in found if isinstance(value, str) and value]


def target() -> Any:
    """The collector ``instrument()`` was given, or the default one now."""
    return _target["collector"] or get_collector()


#: How an entry point returns: ``plain`` (never a stream), ``create`` (a stream when called
#: with ``stream=True``), ``stream`` (always a stream), ``helper`` (a stream helper's context
#: manager).
PLAIN, CREATE, STREAM, HELPER = "plain", "create", "stream", "helper"


def _whole(result: Any, wrap: Callable[[Any], Any]) -> Any:
    return wrap(result)


#: The header the openai and anthropic SDKs' ``with_raw_response`` sends to have the call
#: return the raw response (``LegacyAPIResponse``) instead of the parsed object.
_RAW_HEADER = "X-Stainless-Raw-Response"


def _body_of(response: Any) -> Any:
    """The bytes of a raw response's body once read whole (its usage is read from them on
    the flush thread), else None: an unread body is not read here."""
    try:
        return response.http_response.content  # httpx raises while the body is unread
    except Exception as exc:
        timeout = signal_exception(exc)
        if timeout is not None:
            raise timeout
        return None


def _raw_answer(result: Any, wrap: Wrap) -> Any:
    """A blocking call's raw response, returned as it is; the call ends now, with the body
    the SDK has read already (:func:`_body_of`), so that nothing is parsed for a caller who
    wanted only the headers. A body not read is not read here: the call is then recorded
    without usage."""
    wrap.end(_body_of(result), perf_counter())
    return result


class _RawStream(wrapt.ObjectProxy):
    """The raw response of a streamed call: ``parse()`` returns the measured stream;
    everything else is the SDK's."""

    def __init__(self, raw: Any, stream: Any) -> None:
        super().__init__(raw)
        self._self_stream = stream

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # parsed as another type: not the stream measured
            return self.__wrapped__.parse(*args, **kwargs)
        return self._self_stream


def _raw_stream(result: Any, wrap: Wrap) -> Any:
    """A streamed call's raw response. Its stream is made and measured at once (``parse()``
    only builds it; the SDK caches it), so a stream never parsed is still recorded, as one
    never read."""
    return _RawStream(result, wrap(result.parse()))


class _StreamedBody(wrapt.ObjectProxy):
    """What ``with_streaming_response`` gives inside its ``with`` block (the SDK's
    ``APIResponse``, whose body the caller reads): everything is the SDK's.

    A blocking call ends when its body is read whole (``parse()``, ``json()``, ``read()``,
    ``text()``: usage from what was read, at the time it was read), fails when reading it
    fails (in pieces too: ``iter_bytes()`` and the like), or, unread or read in pieces, ends
    when the block closes it (usage unknown, the time its headers came). A streamed call's
    stream is made and measured at once, as for :func:`_raw_stream`: ``parse()`` gives it,
    and it ends as it is read or closed (a body read with ``iter_lines()`` instead is not
    counted as its chunks).
    """

    def __init__(self, response: Any, wrap: Wrap, stream: Any) -> None:
        super().__init__(response)
        self._self_wrap = wrap
        self._self_stream = stream
        self._self_returned = perf_counter()
        self._self_ended = stream is not None  # a stream ends through its proxy

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __copy__(self) -> Any:  # a copy is the SDK's object, not measured again
        return copy.copy(self.__wrapped__)

    def __deepcopy__(self, memo: Any) -> Any:
        return copy.deepcopy(self.__wrapped__, memo)

    def _self_end(self, body: Any, returned: float) -> None:
        if self._self_ended:
            return
        self._self_ended = True
        try:
            self._self_wrap.end(body, returned)
        except Exception as exc:  # never into user code
            timeout = signal_exception(exc)
            if timeout is not None:
                raise timeout

    def _self_failed(self, exc: BaseException) -> None:
        if self._self_ended:
            return
        self._self_ended = True
        self._self_wrap.fail(exc, perf_counter())  # never raises (but a signal's exception)

    def _self_read(self, read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``read(*args, **kwargs)`` of the SDK's response, which reads the body whole: the
        call ends with it (or fails with it)."""
        try:
            result = read(*args, **kwargs)
        except BaseException as exc:
            self._self_failed(exc)
            raise
        self._self_end(_body_of(self.__wrapped__), perf_counter())
        return result

    def _self_pieces(self, pieces: Any) -> Any:
        """The SDK's iterator over the body; the call fails if reading it fails."""
        try:
            yield from pieces
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                self._self_failed(exc)
            raise

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        if self._self_stream is not None and not args and not kwargs:
            return self._self_stream
        if self._self_stream is not None:  # another type asked of a stream: not measured
            return self.__wrapped__.parse(*args, **kwargs)
        return self._self_read(self.__wrapped__.parse, *args, **kwargs)

    def json(self) -> Any:
        return self._self_read(self.__wrapped__.json)

    def read(self) -> Any:
        return self._self_read(self.__wrapped__.read)

    def text(self) -> Any:
        return self._self_read(self.__wrapped__.text)

    def iter_bytes(self, *args: Any, **kwargs: Any) -> Any:
        return self._self_pieces(self.__wrapped__.iter_bytes(*args, **kwargs))

    def iter_text(self, *args: Any, **kwargs: Any) -> Any:
        return self._self_pieces(self.__wrapped__.iter_text(*args, **kwargs))

    def iter_lines(self) -> Any:
        return self._self_pieces(self.__wrapped__.iter_lines())

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            if self._self_stream is not None:
                self._self_stream.close()
            self._self_end(None, self._self_returned)


def _streamed_answer(result: Any, wrap: Wrap) -> Any:
    return _StreamedBody(result, wrap, None)


def _streamed_stream(result: Any, wrap: Wrap) -> Any:
    return _StreamedBody(result, wrap, wrap(result.parse()))


def _model_keyword(kwargs: Any) -> Any:
    return kwargs.get("model")


def entry_point(
    client_info: Callable[[Any], Tuple[str, Dict[str, Any]]],
    operation: str,
    mode: str,
    model_of: Callable[[Any], Any] = _model_keyword,
    secrets_of: Optional[Callable[[Any], Iterable[str]]] = None,
) -> Callable[..., Any]:
    """The ``wrapt`` wrapper of one SDK entry point: each call measured by
    :func:`..measure.sdk.measure`.

    Args:
        client_info: ``(resource instance) -> (provider, server attributes)``.
        operation: ``chat``, ``text_completion``, ``embeddings``, ``generate_content``.
        mode: :data:`PLAIN`, :data:`CREATE`, :data:`STREAM` or :data:`HELPER`.
        model_of: ``(call keyword arguments) -> requested model`` (default: the ``model``
            keyword argument).
        secrets_of: ``(resource instance) -> the SDK client's credentials``, called only
            when a call fails, to keep them (and the call's text) out of its error record.
    """
    # Decided once per entry point, not per call: what its calls return, and where their
    # model is named.
    shape: Optional[Callable[..., Any]] = (
        measure_helper if mode == HELPER else _whole if mode == STREAM else None
    )
    create = mode == CREATE
    by_keyword = model_of is _model_keyword
    chosen = _target

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        provider, attributes = client_info(instance)
        returns = _whole if create and kwargs.get("stream") is True else shape
        method = None
        headers = kwargs.get("extra_headers")
        # with_raw_response ("true") and with_streaming_response ("stream")
        raw = headers.get(_RAW_HEADER) if type(headers) is dict else None
        if raw is not None and shape is not measure_helper:
            if raw == "stream":
                answer, streamed = _streamed_answer, _streamed_stream
            else:
                answer, streamed = _raw_answer, _raw_stream
            returns, method = (answer, "generate") if returns is None else (streamed, None)
        return measure(
            chosen["collector"] or get_collector(),
            wrapped,
            provider,
            operation,
            kwargs.get("model") if by_keyword else model_of(kwargs),
            attributes,
            returns,
            None if secrets_of is None else (secrets_of, instance, kwargs),
            args,
            kwargs,
            method,
        )

    return wrapper
