"""``boto3``'s ``bedrock-runtime``: ``converse``, ``converse_stream``, ``invoke_model`` and
``invoke_model_with_response_stream``.

botocore builds client classes at run time, so their methods are not patched: every API call
of every client passes through ``BaseClient._make_api_call`` (the hook OpenTelemetry's
botocore instrumentation uses too), which is wrapped once and measures only these four
Bedrock operations, for clients made before and after ``instrument()``.

InvokeModel takes and returns the model's own body format (Anthropic, Amazon Nova and Titan,
Meta Llama, Mistral, Cohere, AI21, ...). What the caller gets is what botocore returned,
read exactly as without us:

* ``invoke_model``: the usage comes from the ``X-Amzn-Bedrock-Input-Token-Count`` /
  ``-Output-Token-Count`` (and cache) response headers, read on the flush thread; the body
  is not touched and the call is recorded when it returns. A response without those
  headers (a proxy or gateway that drops them) is recorded once the caller is done with the
  body: the bytes the caller reads pass through an observer (:class:`_ObservedRaw`, nothing
  is read ahead), and the call is recorded when they reach the body's end or the caller
  closes the body, with the usage the body reports (:func:`...streaming.usage.extract_usage`;
  Mistral's and Cohere's bodies report none). A body never read is recorded, without
  usage, when it is garbage collected or at process exit. Its duration is the call's, until
  ``invoke_model`` returned, either way.
* ``invoke_model_with_response_stream``: ``response["body"]`` (the event stream) is measured
  as any stream; usage from the last chunk's ``amazon-bedrock-invocationMetrics``.
"""

import json
from functools import partial
from time import perf_counter
from typing import Any, Callable, Dict, List, Optional, Tuple

import wrapt

from ...streaming.usage import bedrock_header_usage
from .._signals import signal_exception
from ..measure.sdk import Wrap, measure
from ..measure.stream import FinishOnce
from ._measure import endpoint, target

#: Where botocore's credentials keep their values: ``Credentials`` in plain attributes,
#: ``RefreshableCredentials`` behind properties (read without refreshing).
_CREDENTIALS = ("access_key", "secret_key", "token", "_access_key", "_secret_key", "_token")


def _converse_stream(result: Any, wrap: Wrap) -> Any:
    if isinstance(result, dict) and "stream" in result:
        result["stream"] = wrap(result["stream"])
    return result


def _invoke_stream(result: Any, wrap: Wrap) -> Any:
    if isinstance(result, dict) and "body" in result:
        result["body"] = wrap(result["body"])
    return result


def _ended(wrap: Wrap, returned: float, response: Any) -> None:
    wrap.end(response, returned)


def _invoke(result: Any, wrap: Wrap) -> Any:
    """InvokeModel's response as the caller gets it (unchanged but for the observer of its
    body's raw stream, when one is needed), its call ended now or once the body is read.

    It is handed to :func:`..measure.sdk.measure` as a stream's shape only so that the
    call is not ended when it returns: it is a blocking call, recorded as one
    (``method="generate"``, failed or not)."""
    returned = perf_counter()
    done = partial(_ended, wrap, returned)
    try:
        metadata = result.get("ResponseMetadata") if isinstance(result, dict) else None
        headers = metadata.get("HTTPHeaders") if isinstance(metadata, dict) else None
        if bedrock_header_usage(headers) is not None:
            # Only what the headers say is kept, not the body the caller may never read.
            done({"ResponseMetadata": metadata})
        elif not _observe(result.get("body") if isinstance(result, dict) else None, headers, done):
            done(None)
    except Exception as exc:  # a response of another shape: the call ends now, without usage
        done(None)
        timeout = signal_exception(exc)
        if timeout is not None:
            raise timeout
    return result


#: The most of a body kept to read its usage from; a longer one (a large embedding) is
#: recorded without usage.
_BODY_LIMIT = 4 * 1024 * 1024


class _Seen:
    """The bytes read so far of one body (kept up to :data:`_BODY_LIMIT`), and whether the
    body is read to its end. Used by the thread reading the body."""

    __slots__ = ("parts", "size", "length", "complete")

    def __init__(self, length: Optional[int]) -> None:
        self.parts: List[bytes] = []
        self.size = 0
        self.length = length
        self.complete = False

    def take(self, data: Any, at_end: bool) -> bool:
        """Note ``data`` read; returns whether the body is now read to its end (``at_end``:
        the read that returned it reached the end, or the body's length is reached)."""
        if data:
            self.size += len(data)
            if self.size <= _BODY_LIMIT:
                self.parts.append(bytes(data))
            else:
                self.parts.clear()
        if at_end or (self.length is not None and self.size >= self.length):
            self.complete = True
        return self.complete

    def body(self) -> Optional[bytes]:
        """What was read of the body, if it was all kept; else None. A body not read to its
        end is no whole JSON object (a strict prefix of one never is), so it gives no
        usage: nothing has to know where the body ends for that (a gateway's chunked body
        has no length)."""
        if not self.parts or self.size > _BODY_LIMIT:
            return None
        return b"".join(self.parts)


def _observe(body: Any, headers: Any, done: Callable[[Any], None]) -> bool:
    """Observe what the caller reads of ``body``, a botocore ``StreamingBody``: the raw
    stream it reads from is replaced by :class:`_ObservedRaw`, and ``done(bytes or None)``
    runs once: when the body is read to its end or closed, or when nothing can read it any
    more (collected), or at process exit. Returns False, changing nothing, when ``body`` is
    not such a body.

    Reads botocore's private ``StreamingBody._raw_stream`` (every way of reading the body
    reads it, and ``with body as raw`` hands it out): tests/instrument/test_bedrock_invoke.py fails
    when a release removes it.
    """
    raw = getattr(body, "_raw_stream", None)
    if raw is None:
        return False
    length = headers.get("content-length") if isinstance(headers, dict) else None
    seen = _Seen(int(length) if isinstance(length, str) and length.isdigit() else None)
    observed = _ObservedRaw(raw, seen)
    # The end holds the bytes seen, never the proxy: the proxy's collection is watched.
    observed._self_once = FinishOnce(observed, lambda: done(seen.body()))
    body._raw_stream = observed
    return True


class _ObservedRaw(wrapt.ObjectProxy):
    """A body's raw HTTP response (urllib3's) whose reads are observed: each reading method
    calls the wrapped one and returns what it returned, unchanged, after noting it. Once
    the body is read to its end, or on ``close()``, the call ends. Everything else is the
    wrapped object's. Used by the thread reading the body."""

    def __init__(self, wrapped: Any, seen: _Seen) -> None:
        super().__init__(wrapped)
        self._self_seen = seen
        self._self_once: Any = None

    def _self_note(self, data: Any, at_end: bool) -> None:
        if self._self_seen.take(data, at_end):
            self._self_once.finish()

    def read(self, amt: Any = None, *args: Any, **kwargs: Any) -> Any:
        data = self.__wrapped__.read(amt, *args, **kwargs)
        self._self_note(data, amt is None or (not data and amt != 0))
        return data

    def read1(self, amt: Any = None, *args: Any, **kwargs: Any) -> Any:
        data = self.__wrapped__.read1(amt, *args, **kwargs)
        self._self_note(data, not data and amt != 0)
        return data

    def readinto(self, buffer: Any) -> Any:
        count = self.__wrapped__.readinto(buffer)
        self._self_note(memoryview(buffer)[:count].tobytes(), count == 0 and len(buffer) > 0)
        return count

    def readline(self, size: Any = -1) -> Any:
        line = self.__wrapped__.readline(size)
        self._self_note(line, not line and size != 0)
        return line

    def readlines(self, hint: Any = -1) -> Any:
        lines = self.__wrapped__.readlines(hint)
        self._self_note(b"".join(lines), hint is None or hint <= 0 or not lines)
        return lines

    @property
    def data(self) -> Any:
        data = self.__wrapped__.data
        self._self_note(data, True)
        return data

    def __iter__(self) -> Any:
        return self._self_each(iter(self.__wrapped__))

    def __next__(self) -> Any:
        try:
            line = next(self.__wrapped__)
        except StopIteration:
            self._self_note(b"", True)
            raise
        self._self_note(line, False)
        return line

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        return self._self_each(self.__wrapped__.stream(*args, **kwargs))

    def read_chunked(self, *args: Any, **kwargs: Any) -> Any:
        return self._self_each(self.__wrapped__.read_chunked(*args, **kwargs))

    def _self_each(self, pieces: Any) -> Any:
        for piece in pieces:
            self._self_note(piece, False)
            yield piece
        self._self_note(b"", True)

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_once.finish()

    def __enter__(self) -> Any:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_once.finish()


class _InvokeText(Dict[str, Any]):
    """The text of an InvokeModel request, for keeping it out of a failed call's error
    record: its JSON body (any family's format) is decoded only when read, on failures.
    It answers as a request whose ``input`` is every string the body holds."""

    def __init__(self, body: Any) -> None:
        super().__init__()
        self._body = body

    def __contains__(self, name: object) -> bool:
        return name == "input"

    def __getitem__(self, name: Any) -> Any:
        body = self._body
        if not isinstance(body, (str, bytes, bytearray)):
            return []  # a file the caller passed: never read here
        try:
            decoded = json.loads(body)
        except ValueError:
            return []
        found: List[str] = []
        _strings(decoded, found, 0)
        return found


def _strings(value: Any, found: List[str], depth: int) -> None:
    if depth > 16 or len(found) >= 4096:
        return
    if isinstance(value, str):
        found.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, found, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _strings(item, found, depth + 1)


_BLOCKING: Any = None
#: Bedrock's operations measured: name -> (the shape of what the caller gets, see
#: :data:`..measure.sdk.Shape`, or ``_BLOCKING``; whether its request is a model's body).
_OPERATIONS: Dict[str, Tuple[Any, bool]] = {
    "Converse": (_BLOCKING, False),
    "ConverseStream": (_converse_stream, False),
    "InvokeModel": (_invoke, True),
    "InvokeModelWithResponseStream": (_invoke_stream, True),
}


def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    operation = args[0] if args else kwargs.get("operation_name")
    found = _OPERATIONS.get(operation)
    meta = getattr(instance, "meta", None)
    service = getattr(getattr(meta, "service_model", None), "service_name", None)
    if found is None or service != "bedrock-runtime":
        return wrapped(*args, **kwargs)
    shape, invoke = found
    params = args[1] if len(args) > 1 else kwargs.get("api_params") or {}
    model = params.get("modelId") if isinstance(params, dict) else None
    kind = "chat"
    request: Any = params
    if invoke:
        if isinstance(model, str) and "embed" in model:
            kind = "embeddings"
        request = _InvokeText(params.get("body") if isinstance(params, dict) else None)
    return measure(
        target(),
        wrapped,
        "aws.bedrock",
        kind,
        model,
        endpoint(getattr(meta, "endpoint_url", ""), "aws.bedrock")[1],
        shape,
        (secrets, instance, request),
        args,
        kwargs,
        "generate" if shape is _invoke else None,
    )


def secrets(client: Any) -> List[str]:
    """The credentials a botocore client signs with (read when a call fails): access key,
    secret key and session token (sent as ``x-amz-security-token``), and a bearer token
    (``AWS_BEARER_TOKEN_BEDROCK``), read as stored, never refreshed.

    Reads botocore's privates ``_request_signer``, its ``_credentials`` and
    ``_auth_token``: tests/instrument/test_leaks.py fails when a release removes them.
    """
    signer = client._request_signer
    values = vars(signer._credentials) if signer._credentials is not None else {}
    found = [values.get(name) for name in _CREDENTIALS]
    token = signer._auth_token
    found.append(getattr(token, "token", None) if token is not None else None)
    return [value for value in found if isinstance(value, str) and value]


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    return [("botocore.client", "BaseClient._make_api_call", wrapper)]
