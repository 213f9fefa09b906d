"""SteerLLMClient: a synchronous client for the OpenAI chat-completions and Anthropic messages
wire protocols over ``requests``, measuring every call it makes.

The only module that wires providers, streaming and observability together.
"""

import json
import os
import threading
import time
import weakref
from time import perf_counter
from typing import Any, Callable, Dict, Generator, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from ._secrets import mask_key
from .errors import (
    CircuitOpenError,
    InvalidRequestError,
    ProviderError,
    SteerLLMError,
    StreamError,
)
from .observability import (
    ErrorMetrics,
    MetricsCollector,
    MetricsConfig,
    ReliabilityMetrics,
    get_collector,
)
from .observability._ids import new_request_id
from .observability.sinks import InMemoryMetricsSink, MetricsSink
from .observability.tracking import StreamOutcome, Tracker, record_stream
from .providers import PROTOCOLS
from .providers._http import (
    error_from_response,
    iter_events,
    read_body,
    request_id_of,
    translate_requests_error,
)
from .reliability import CircuitBreaker, CircuitState, RetryPolicy
from .streaming.json_stream import JsonObjectCounter
from .streaming.tokens import count_messages, count_text
from .streaming.usage import StreamUsage, TokenUsage
from .types import GenerationResponse, Messages, StreamingResponseWithUsage, Usage

_ROUTES: Tuple[Tuple[Tuple[str, ...], str], ...] = (
    (("gpt-", "o1", "o3", "o4", "chatgpt-"), "openai"),
    (("claude-",), "anthropic"),
)

_clients: "weakref.WeakSet[SteerLLMClient]" = weakref.WeakSet()


def route(model: str, provider: Optional[str] = None) -> Tuple[str, str]:
    """(provider, model) for a model name: ``gpt-*``, ``o1*``/``o3*``/``o4*``, ``chatgpt-*``
    go to OpenAI, ``claude-*`` to Anthropic; ``"provider:model"`` or ``provider=`` override.

    Raises:
        InvalidRequestError: the provider cannot be told, or is not supported.
    """
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model must be a non-empty string")
    if provider is None and ":" in model:
        prefix, rest = model.split(":", 1)
        if prefix in PROTOCOLS:
            provider, model = prefix, rest
    if provider is None:
        for prefixes, name in _ROUTES:
            if model.startswith(prefixes):
                provider = name
                break
    if provider is None:
        raise InvalidRequestError(
            f"cannot tell the provider of model {model!r}: pass provider='openai' (any "
            "OpenAI-compatible server) or provider='anthropic', or 'provider:model'"
        )
    if provider not in PROTOCOLS:
        raise InvalidRequestError(f"unknown provider {provider!r}; known: {sorted(PROTOCOLS)}")
    return provider, model


def normalize_messages(messages: Messages) -> List[Dict[str, Any]]:
    """A list of ``{"role", "content"}`` dicts; a string is one user message."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    out = []
    for message in messages:
        if not isinstance(message, Mapping) or "role" not in message:
            raise InvalidRequestError("each message must be a mapping with 'role' and 'content'")
        out.append(dict(message))
    if not out:
        raise InvalidRequestError("messages must not be empty")
    return out


def _format_name(response_format: Any) -> str:
    if response_format is None:
        return "text"
    if isinstance(response_format, str):
        return response_format
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    return str(kind or "custom")


class SteerLLMClient:
    """Synchronous LLM client that records metrics for every call.

    Args:
        metrics_config: a config for a collector owned by this client.
        metrics_sinks: sinks for that collector (default: one in-memory sink).
        metrics_collector: use this collector instead (not owned: not shut down on close).
            With none of the three, the process default collector is used.
        openai_api_key, anthropic_api_key: default ``OPENAI_API_KEY``/``ANTHROPIC_API_KEY``.
        openai_base_url: default ``OPENAI_BASE_URL`` or the OpenAI API; includes ``/v1``.
        anthropic_base_url: default ``ANTHROPIC_BASE_URL`` or the Anthropic API; without
            ``/v1``.
        timeout: seconds to connect and between bytes read (``requests`` semantics).
        anthropic_version: the ``anthropic-version`` header.
        pool_size: pooled connections per provider (size it to your thread count).
        environ: where to read the variables (default ``os.environ``).

        retry_policy: how failed attempts are retried (default ``RetryPolicy()``: 3
            attempts, exponential backoff with full jitter, Retry-After honoured).
        circuit_breaker: circuits per provider+model (default ``CircuitBreaker()``); may be
            shared between clients.

    Thread-safe: one client is meant to be shared by all threads of a process. A context
    manager; ``close()`` releases the pooled connections. After ``os.fork()`` the child gets
    fresh connection pools. Keys never appear in reprs, errors or metrics.
    """

    def __init__(
        self,
        metrics_config: Optional[MetricsConfig] = None,
        metrics_sinks: Optional[Sequence[MetricsSink]] = None,
        metrics_collector: Optional[MetricsCollector] = None,
        *,
        openai_api_key: Optional[str] = None,
        anthropic_api_key: Optional[str] = None,
        openai_base_url: Optional[str] = None,
        anthropic_base_url: Optional[str] = None,
        timeout: float = 60.0,
        anthropic_version: str = "2023-06-01",
        pool_size: int = 32,
        retry_policy: Optional[RetryPolicy] = None,
        circuit_breaker: Optional[CircuitBreaker] = None,
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        env = os.environ if environ is None else environ
        if metrics_collector is not None and (metrics_config or metrics_sinks):
            raise TypeError("pass metrics_collector, or metrics_config/metrics_sinks, not both")
        self._owns_collector = metrics_collector is None and bool(metrics_config or metrics_sinks)
        if self._owns_collector:
            metrics_collector = MetricsCollector(
                metrics_config or MetricsConfig(),
                list(metrics_sinks) if metrics_sinks else [InMemoryMetricsSink()],
            )
        self._collector = metrics_collector
        self._keys = {
            "openai": openai_api_key or env.get("OPENAI_API_KEY"),
            "anthropic": anthropic_api_key or env.get("ANTHROPIC_API_KEY"),
        }
        self._base_urls = {
            "openai": (
                openai_base_url
                or env.get("OPENAI_BASE_URL")
                or PROTOCOLS["openai"].DEFAULT_BASE_URL
            ),
            "anthropic": (
                anthropic_base_url
                or env.get("ANTHROPIC_BASE_URL")
                or PROTOCOLS["anthropic"].DEFAULT_BASE_URL
            ),
        }
        self.timeout = timeout
        self._version = anthropic_version
        self._pool_size = pool_size
        self._lock = threading.Lock()
        self._sessions: Dict[str, requests.Session] = {}
        self._closed = False
        self._server_attributes = {
            name: _server_attributes(url) for name, url in self._base_urls.items()
        }
        self.retry_policy = retry_policy if retry_policy is not None else RetryPolicy()
        self.circuit_breaker = circuit_breaker if circuit_breaker is not None else CircuitBreaker()
        # A weak listener: a breaker shared between clients must not keep this one alive.
        self_ref = weakref.WeakMethod(self._on_transition)

        def on_transition(key: str, before: CircuitState, after: CircuitState) -> None:
            method = self_ref()
            if method is not None:
                method(key, before, after)

        self._transition_listener = on_transition
        self.circuit_breaker.add_listener(on_transition)
        _clients.add(self)

    # ------------------------------------------------------------------ plumbing
    @property
    def metrics_collector(self) -> MetricsCollector:
        """The collector this client records into."""
        return self._collector or get_collector()

    def _session(self, provider: str) -> requests.Session:
        session = self._sessions.get(provider)
        if session is None:
            with self._lock:
                if self._closed:
                    raise ProviderError("client is closed", provider=provider)
                session = self._sessions.get(provider)
                if session is None:
                    session = requests.Session()
                    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self._pool_size)
                    session.mount("http://", adapter)
                    session.mount("https://", adapter)
                    self._sessions[provider] = session
        return session

    def _secrets(self) -> Tuple[str, ...]:
        return tuple(k for k in self._keys.values() if k)

    def _tracker(self, provider: str, model: str, method: str, fmt: str) -> Tracker:
        return self.metrics_collector.track_request(
            provider,
            model=model,
            method=method,
            response_format=fmt,
            **self._server_attributes[provider],
        )

    def _post(self, provider: str, body: Dict[str, Any], stream: bool) -> requests.Response:
        """POST to the provider; a response with an error status raises the mapped error."""
        protocol = PROTOCOLS[provider]
        try:
            response = self._session(provider).post(
                protocol.url(self._base_urls[provider]),
                data=json.dumps(body).encode("utf-8"),
                headers=protocol.headers(self._keys[provider], self._version),
                timeout=self.timeout,
                stream=stream,
            )
        except requests.RequestException as exc:
            raise translate_requests_error(exc, provider) from exc
        if response.status_code >= 400:
            try:
                text = read_body(response)
            finally:
                response.close()
            raise error_from_response(
                response.status_code,
                text,
                response.headers,
                provider,
                protocol.describe_error,
                self._secrets(),
            )
        return response

    def _post_json(self, provider: str, body: Dict[str, Any]) -> Tuple[requests.Response, Any]:
        response = self._post(provider, body, stream=False)
        try:
            return response, response.json()
        except ValueError as exc:
            raise ProviderError(
                f"{provider} returned a body that is not JSON",
                provider=provider,
                status_code=response.status_code,
            ) from exc
        finally:
            response.close()

    def _on_transition(self, key: str, before: CircuitState, after: CircuitState) -> None:
        """Record a circuit breaker state change (one ReliabilityMetrics per change)."""
        collector = self.metrics_collector
        if not collector.config.enable_reliability_metrics:
            return
        provider, _, model = key.partition(":")
        record = ReliabilityMetrics(
            timestamp=time.time(),
            request_id=new_request_id(),
            provider=provider,
            model=model,
            circuit_breaker_state=after.value,
            previous_circuit_state=before.value,
            event="circuit_transition",
        )
        collector.record(record)

    def _request(
        self,
        messages: Messages,
        model: str,
        provider: Optional[str],
        max_tokens: Optional[int],
        temperature: Optional[float],
        response_format: Any,
        stream: bool,
        params: Dict[str, Any],
    ) -> Tuple[str, str, List[Dict[str, Any]], Dict[str, Any]]:
        name, model = route(model, provider)
        msgs = normalize_messages(messages)
        body = PROTOCOLS[name].request_body(
            msgs,
            model,
            max_tokens=max_tokens,
            temperature=temperature,
            response_format=response_format,
            stream=stream,
            params=params,
        )
        return name, model, msgs, body

    # ------------------------------------------------------------------ API
    def generate(
        self,
        messages: Messages,
        model: str,
        *,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        response_format: Any = None,
        provider: Optional[str] = None,
        retries: Optional[int] = None,
        **params: Any,
    ) -> GenerationResponse:
        """One blocking completion.

        Args:
            messages: a string (one user message) or ``{"role", "content"}`` dicts; system
                messages go where each protocol wants them.
            model: routes to a provider (see :func:`route`).
            max_tokens, temperature: sampling limits.
            response_format: ``"json_object"``, ``{"type": "json_schema", ...}``, ... (OpenAI).
            provider: override the routing.
            retries: retries for this call (0 disables); default from the retry policy.
            **params: sent as they are in the request body.

        Raises:
            SteerLLMError: a subclass per failure (see :mod:`steer_llm_sdk.errors`);
                ``CircuitOpenError`` without a network call while the circuit is open.
        """
        fmt = _format_name(response_format)
        name, model, _, body = self._request(
            messages, model, provider, max_tokens, temperature, response_format, False, params
        )
        protocol = PROTOCOLS[name]
        with self._tracker(name, model, "generate", fmt) as metrics:
            attempts = _Attempts(self, name, model, retries, metrics, "generate")
            response, data = attempts.run(lambda: self._post_json(name, body))
            text, answered, finish, usage = protocol.parse_response(data)
            if usage is not None:
                metrics.set_usage(*usage)
            metrics.response_model = answered
        return GenerationResponse(
            text=text,
            model=answered or model,
            provider=name,
            usage=_usage(usage),
            finish_reason=finish,
            request_id=request_id_of(response.headers),
            raw=data,
        )

    def stream(
        self,
        messages: Messages,
        model: str,
        *,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        response_format: Any = None,
        provider: Optional[str] = None,
        retries: Optional[int] = None,
        **params: Any,
    ) -> "TextStream":
        """Start a streamed completion; iterate the returned :class:`TextStream` for text
        deltas. The request is sent now: an error status raises here, after retries; a
        stream that breaks off is retried only while no text has reached the caller.
        Closing the stream (or leaving its ``with`` block, or breaking out and dropping it)
        releases the connection. Arguments as for :meth:`generate`.
        """
        fmt = _format_name(response_format)
        name, model, msgs, body = self._request(
            messages, model, provider, max_tokens, temperature, response_format, True, params
        )
        collector = self.metrics_collector
        metrics = self._tracker(name, model, "stream", fmt).start(model)
        attempts = _Attempts(self, name, model, retries, metrics, "stream")
        try:
            response = attempts.run(lambda: self._post(name, body, stream=True), final=False)
        except SteerLLMError as exc:
            outcome = StreamOutcome()
            outcome.status, outcome.error, outcome.end = "error", exc, perf_counter()
            record_stream(collector, metrics, outcome)
            attempts.record(success=False)
            raise

        def reconnect(exc: SteerLLMError) -> requests.Response:
            return attempts.resume(exc, lambda: self._post(name, body, stream=True))

        run = _StreamRun(response, name, model, msgs, fmt, collector, metrics, reconnect, attempts)
        return TextStream(run)

    def stream_with_usage(
        self,
        messages: Messages,
        model: str,
        *,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        response_format: Any = None,
        provider: Optional[str] = None,
        on_chunk: Optional[Callable[[str], None]] = None,
        retries: Optional[int] = None,
        **params: Any,
    ) -> StreamingResponseWithUsage:
        """Stream a completion to its end and return the whole of it with its usage.

        ``on_chunk(text)`` is called with each text delta as it arrives. Usage comes from the
        provider, or is counted locally when the provider sent none (see
        ``aggregation_method``). Arguments as for :meth:`generate`.
        """
        with self.stream(
            messages,
            model,
            max_tokens=max_tokens,
            temperature=temperature,
            response_format=response_format,
            provider=provider,
            retries=retries,
            **params,
        ) as text_stream:
            for delta in text_stream:
                if on_chunk is not None:
                    on_chunk(delta)
        return text_stream.result()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the pooled connections (and flush and shut down an owned collector)."""
        with self._lock:
            self._closed = True
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()
        self.circuit_breaker.remove_listener(self._transition_listener)
        if self._owns_collector and self._collector is not None:
            self._collector.shutdown()

    def __enter__(self) -> "SteerLLMClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _after_fork(self) -> None:
        # The parent's pooled sockets must not be shared: start with empty pools.
        self._lock = threading.Lock()
        self._sessions = {}

    def __repr__(self) -> str:
        keys = ", ".join(f"{name}_api_key={mask_key(key)}" for name, key in self._keys.items())
        return f"SteerLLMClient({keys}, base_urls={self._base_urls})"


class _Attempts:
    """The attempts of one request: circuit breaker admission, retries with backoff, an
    ErrorMetrics per retried attempt, and the request's ReliabilityMetrics (once)."""

    def __init__(
        self,
        client: "SteerLLMClient",
        provider: str,
        model: str,
        retries: Optional[int],
        metrics: Any,
        method: str,
    ) -> None:
        policy = client.retry_policy
        self.policy = policy if retries is None else policy.with_attempts(max(0, retries) + 1)
        self.breaker = client.circuit_breaker
        self.key = f"{provider}:{model}"
        self.collector = client.metrics_collector
        self.metrics = metrics
        self.method = method
        self.attempt = 0
        self.retries = 0
        self.waited = 0.0
        self.last_category: Optional[str] = None
        self.recorded = False

    def run(self, call: Callable[[], Any], final: bool = True) -> Any:
        """``call()`` until it succeeds or the policy gives up; ``final`` records the
        request's ReliabilityMetrics when done."""
        try:
            while True:
                try:
                    result = self._once(call)
                    break
                except SteerLLMError as exc:
                    if not self._back_off(exc):
                        raise
        except BaseException:
            if final:
                self.record(success=False)
            raise
        if final:
            self.record(success=True)
        return result

    def can_resume(self, exc: BaseException) -> bool:
        """Whether a stream that failed with ``exc`` (before any text reached the caller)
        may be tried again."""
        return (
            isinstance(exc, SteerLLMError)
            and not isinstance(exc, CircuitOpenError)
            and self.policy.should_retry(exc, self.attempt)
        )

    def resume(self, exc: SteerLLMError, call: Callable[[], Any]) -> Any:
        """After a stream broke off: count the failure, wait, and call again."""
        self._failed(exc)
        self._back_off(exc)
        return self.run(call, final=False)

    def _once(self, call: Callable[[], Any]) -> Any:
        self.attempt += 1
        try:
            self.breaker.before_call(self.key)
        except CircuitOpenError as exc:
            self.last_category = exc.category
            raise
        try:
            result = call()
        except SteerLLMError as exc:
            self._failed(exc)
            raise
        self.breaker.record_success(self.key)
        return result

    def _failed(self, exc: SteerLLMError) -> None:
        self.last_category = exc.category
        if exc.retryable:
            self.breaker.record_failure(self.key)
        else:  # the provider answered: the circuit has no reason to open
            self.breaker.record_success(self.key)

    def _back_off(self, exc: SteerLLMError) -> bool:
        if isinstance(exc, CircuitOpenError) or not self.policy.should_retry(exc, self.attempt):
            return False
        delay = self.policy.delay(self.retries + 1, exc)
        self._attempt_error(exc)
        self.policy.sleep(delay)
        self.waited += delay
        self.retries += 1
        return True

    def _attempt_error(self, exc: SteerLLMError) -> None:
        if not self.collector.config.enable_reliability_metrics:
            return
        m = self.metrics
        self.collector.record(
            ErrorMetrics(
                **{**m.request_fields(), "timestamp": time.time()},
                error_class=type(exc).__name__,
                error_category=exc.category,
                status_code=exc.status_code,
                retryable=exc.retryable,
                message=exc.message[:500],
            )
        )

    def record(self, success: bool) -> None:
        """The request's ReliabilityMetrics; once."""
        if self.recorded or not self.collector.config.enable_reliability_metrics:
            return
        self.recorded = True
        m = self.metrics
        self.collector.record(
            ReliabilityMetrics(
                **m.request_fields(),
                retry_attempts=self.retries,
                retry_succeeded=success and self.retries > 0,
                total_retry_delay_ms=self.waited * 1000.0,
                circuit_breaker_state=self.breaker.state(self.key).value,
                error_category=self.last_category,
                final_success=success,
                method=self.method,
            )
        )


class TextStream:
    """Text deltas of a streamed completion, measured as they arrive.

    An iterator and a context manager. The stream's metrics are recorded exactly once: when it
    ends (``completed``), fails (``error``), or is closed, left, abandoned after ``break`` or
    never iterated (``cancelled``); the HTTP connection is released in every case.
    :meth:`result` gives the whole response once the stream has ended. Not thread-safe:
    consume it on one thread. Made by :meth:`SteerLLMClient.stream`.
    """

    def __init__(self, run: "_StreamRun") -> None:
        self._run = run
        self._gen = run.events()
        self.provider = run.provider
        self.model = run.model
        self.request_id = run.request_id
        # Dropped without being iterated: no generator code ever runs, so watch this object.
        weakref.finalize(self, run.finish_unstarted)

    def __iter__(self) -> "TextStream":
        return self

    def __next__(self) -> str:
        self._run.started = True
        return next(self._gen)

    def close(self) -> None:
        """Stop reading and release the connection; records ``cancelled`` if not ended."""
        if self._run.started:
            self._gen.close()
        else:
            self._run.finish_unstarted()

    def __enter__(self) -> "TextStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def result(self) -> StreamingResponseWithUsage:
        """The whole response. Raises ``StreamError`` if the stream has not completed."""
        if self._run.result is None:
            raise StreamError(
                "the stream has not completed", provider=self.provider, retryable=False
            )
        return self._run.result


class _StreamRun:
    """The state and work of one TextStream (kept apart so that finalizers can hold it)."""

    def __init__(
        self,
        response: requests.Response,
        provider: str,
        model: str,
        messages: List[Dict[str, Any]],
        response_format: str,
        collector: MetricsCollector,
        metrics: Any,
        reconnect: Optional[Callable[[SteerLLMError], requests.Response]] = None,
        attempts: Optional[_Attempts] = None,
    ) -> None:
        self.response = response
        self.provider = provider
        self.model = model
        self.messages = messages
        self.format = response_format
        self.collector = collector
        self.metrics = metrics
        self.reconnect = reconnect
        self.attempts = attempts
        self.request_id = request_id_of(response.headers)
        self.deltas: List[str] = []
        self.result: Optional[StreamingResponseWithUsage] = None
        self.started = False
        self.finished = False

    def events(self) -> Generator[str, None, None]:
        protocol = PROTOCOLS[self.provider]
        usage = StreamUsage()
        outcome = StreamOutcome()
        counter = JsonObjectCounter() if self.format.startswith("json") else None
        try:
            while True:
                try:
                    yield from self._read(protocol, usage, outcome, counter)
                    break
                except SteerLLMError as exc:
                    # Broke off before any text reached the caller: safe to ask again.
                    if (
                        self.deltas
                        or self.reconnect is None
                        or self.attempts is None
                        or (not self.attempts.can_resume(exc))
                    ):
                        raise
                    self.response.close()
                    self.response = self.reconnect(exc)
                    usage = StreamUsage()
                    outcome.chunks = outcome.chars = 0
                    outcome.first = outcome.first_token = None
            outcome.status = "completed"
        except GeneratorExit:
            outcome.status = "cancelled"
            raise
        except Exception as exc:  # SDK errors, and a decoding bug must still end cleanly
            outcome.status, outcome.error = "error", exc
            raise
        finally:
            outcome.end = perf_counter()
            self.response.close()
            self.finish(usage, outcome, counter)

    def _read(
        self,
        protocol: Any,
        usage: StreamUsage,
        outcome: StreamOutcome,
        counter: Optional[JsonObjectCounter],
    ) -> Generator[str, None, None]:
        """One response's events up to the protocol's end marker."""
        done, skip = getattr(protocol, "DONE", None), getattr(protocol, "SKIP", None)
        for event in iter_events(self.response, self.provider):
            if outcome.first is None:
                outcome.first = perf_counter()
            chunk = protocol.decode_event(event)
            if chunk is done:
                return
            outcome.chunks += 1
            if chunk is skip:
                continue
            text = usage.observe(chunk)
            if protocol.is_end(chunk):
                return
            if text:
                if outcome.first_token is None:
                    outcome.first_token = perf_counter()
                outcome.chars += len(text)
                if counter is not None:
                    counter.feed(text)
                self.deltas.append(text)
                yield text
        raise StreamError(
            f"{self.provider} stream ended before its end marker", provider=self.provider
        )

    def finish(
        self, usage: StreamUsage, outcome: StreamOutcome, counter: Optional[JsonObjectCounter]
    ) -> None:
        if self.finished:
            return
        self.finished = True
        text = "".join(self.deltas)
        reported = usage.usage()
        if reported is not None and reported.completion_tokens is not None:
            outcome.usage = reported
            outcome.aggregation_method, outcome.aggregation_confidence = "provider", 1.0
        else:
            outcome.usage, outcome.aggregation_method, outcome.aggregation_confidence = (
                self.count_locally(text, reported)
            )
        outcome.response_model = usage.model
        outcome.json_objects = counter.count if counter is not None else 0
        record_stream(self.collector, self.metrics, outcome)
        if self.attempts is not None:
            self.attempts.record(success=outcome.status != "error")
        if outcome.status == "completed":
            self.result = StreamingResponseWithUsage(
                text=text,
                usage=_usage(outcome.usage),
                chunks=list(self.deltas),
                finish_reason=usage.finish_reason,
                model=usage.model or self.model,
                provider=self.provider,
                request_id=self.request_id,
                json_objects=_json_values(text) if counter is not None else [],
                aggregation_method=outcome.aggregation_method,
                aggregation_confidence=outcome.aggregation_confidence,
            )

    def count_locally(
        self, text: str, reported: Optional[TokenUsage]
    ) -> Tuple[TokenUsage, str, float]:
        """Usage when the provider reported none (or only the prompt side)."""
        completion = count_text(text, self.model)
        if reported is not None and reported.prompt_tokens is not None:
            prompt, cached = reported.prompt_tokens, reported.cached_tokens
        else:
            prompt, cached = count_messages(self.messages, self.model).tokens, None
        usage = TokenUsage(prompt, completion.tokens, prompt + completion.tokens, cached)
        return usage, completion.method, completion.confidence

    def finish_unstarted(self) -> None:
        """End a stream that was never iterated: release it, record ``cancelled``."""
        if self.started or self.finished:
            return
        self.started = True
        self.response.close()
        outcome = StreamOutcome()
        outcome.end = perf_counter()
        self.finish(StreamUsage(), outcome, None)


def _usage(usage: Optional[TokenUsage]) -> Usage:
    if usage is None:
        return Usage()
    prompt = usage.prompt_tokens or 0
    completion = usage.completion_tokens or 0
    total = usage.total_tokens if usage.total_tokens is not None else prompt + completion
    return Usage(prompt, completion, total, usage.cached_tokens or 0)


def _json_values(text: str) -> List[Any]:
    """Every complete top-level JSON value in ``text``, in order."""
    decoder = json.JSONDecoder()
    values: List[Any] = []
    position = 0
    while True:
        start = text.find("{", position)
        bracket = text.find("[", position)
        if start < 0 or (0 <= bracket < start):
            start = bracket
        if start < 0:
            return values
        try:
            value, position = decoder.raw_decode(text, start)
        except ValueError:
            position = start + 1
            continue
        values.append(value)


def _server_attributes(url: str) -> Dict[str, Any]:
    parts = urlsplit(url)
    attrs: Dict[str, Any] = {}
    if parts.hostname:
        attrs["server.address"] = parts.hostname
        attrs["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    return attrs


def _reset_clients_after_fork() -> None:
    for client in list(_clients):
        client._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_clients_after_fork)
