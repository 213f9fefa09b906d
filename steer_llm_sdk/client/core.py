"""SteerLLMClient: a synchronous client for the OpenAI chat-completions and Anthropic messages
wire protocols over ``requests``, measuring every call it makes.

The only module that wires providers, reliability, streaming and observability together;
the parts live beside it: :mod:`.options` (what one call asks for, built once per call
from the public methods' keywords), :mod:`.routing` (which provider, request pieces),
:mod:`.transport` (sessions and sending), :mod:`.attempts` (retries and the breaker, with
their records) and :mod:`.streams` (measured text streams).
"""

import os
import time
import weakref
from time import perf_counter
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import requests

from .._secrets import mask_key, redact
from ..errors import ContentFilterError, SteerLLMError
from ..observability import (
    MetricsCollector,
    MetricsConfig,
    ReliabilityMetrics,
    get_collector,
)
from ..observability._ids import new_request_id
from ..observability.conventions import server_attributes
from ..observability.measure.call import (
    end_call,
    join_usage,
    new_request,
    record_failure,
    start_clock,
)
from ..observability.measure.scope import SCOPE, owner
from ..observability.measure.stream import StreamOutcome, record_stream
from ..observability.sinks import InMemoryMetricsSink, MetricsSink
from ..providers import OPENAI_APIS, PROTOCOLS, azure_openai, azure_openai_responses
from ..providers.http import request_id_of
from ..reliability import CircuitBreaker, CircuitState, RetryPolicy
from ..types import GenerationResponse, Messages, StreamingResponseWithUsage
from .attempts import Attempts
from .options import CallOptions
from .routing import Routed, route_call
from .streams import StreamRun, TextStream, as_usage
from .transport import Transport


def _keep_billed(metrics: Any, joined: bool, usage: Any) -> None:
    """The usage of an answer the provider refused but billed, onto the call's record (or,
    for a call that joined another, handed to that one)."""
    if joined:
        join_usage(metrics, usage, None)
    else:
        metrics.set_usage(*usage)


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
        azure_endpoint: an Azure OpenAI resource (``https://<name>.openai.azure.com``);
            default ``AZURE_OPENAI_ENDPOINT``. Calls go to it with ``provider="azure"`` or
            ``"azure:<deployment>"`` (the model is the deployment name), and ``gpt-*``
            models go to it when no OpenAI key is configured.
        azure_api_key: its ``api-key``; default ``AZURE_OPENAI_API_KEY``.
        azure_ad_token_provider: instead of a key, a callable returning a Microsoft Entra
            token, called for each request.
        api_version: Azure's ``api-version``; default ``OPENAI_API_VERSION``, then
            ``2024-10-21``.
        openai_api: ``chat_completions`` (default) or ``responses``: the OpenAI API the
            client speaks to OpenAI and Azure OpenAI (same arguments, result types and
            records).

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
        azure_endpoint: Optional[str] = None,
        azure_api_key: Optional[str] = None,
        azure_ad_token_provider: Optional[Callable[[], str]] = None,
        api_version: Optional[str] = None,
        openai_api: str = "chat_completions",
    ) -> None:
        if openai_api not in OPENAI_APIS:
            raise ValueError(f"openai_api must be one of {sorted(OPENAI_APIS)}, got {openai_api!r}")
        self.openai_api = openai_api
        responses = openai_api == "responses"
        self._protocols = {
            **PROTOCOLS,
            "openai": OPENAI_APIS[openai_api],
            "azure.ai.openai": azure_openai_responses if responses else azure_openai,
        }
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
        azure = PROTOCOLS["azure.ai.openai"]
        endpoint = azure_endpoint or env.get("AZURE_OPENAI_ENDPOINT")
        keys: Dict[str, Any] = {
            "openai": openai_api_key or env.get("OPENAI_API_KEY"),
            "anthropic": anthropic_api_key or env.get("ANTHROPIC_API_KEY"),
            "azure.ai.openai": azure_ad_token_provider
            or azure_api_key
            or env.get("AZURE_OPENAI_API_KEY"),
        }
        base_urls = {
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
            "azure.ai.openai": (
                self._protocols["azure.ai.openai"].base_url(  # type: ignore[attr-defined]
                    endpoint,
                    api_version
                    or env.get("OPENAI_API_VERSION")
                    or azure_openai.DEFAULT_API_VERSION,
                )
                if endpoint
                else azure.DEFAULT_BASE_URL
            ),
        }
        # gpt-* models go to Azure for a client set up for Azure alone.
        self._openai_target = "azure.ai.openai" if endpoint and not keys["openai"] else "openai"
        self._transport = Transport(
            keys, base_urls, timeout, anthropic_version, pool_size, self._protocols
        )
        self._server_attributes = {
            name: server_attributes(url) if url else {} for name, url in base_urls.items()
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

    # ------------------------------------------------------------------ plumbing
    @property
    def metrics_collector(self) -> MetricsCollector:
        """The collector this client records into."""
        return self._collector or get_collector()

    def _attempts(self, call: Routed, metrics: Any, method: str) -> Attempts:
        return Attempts(
            self.retry_policy, self.circuit_breaker, self.metrics_collector, call, metrics, method
        )

    def _begin(self, call: Routed, method: str) -> Tuple[Any, bool]:
        """Start one call: ``(its RequestMetrics, joined)``. Inside an open measured call
        of the current context, a client without a collector of its own joins that call
        (its records are linked to it, its usage handed to it) instead of recording
        itself."""
        if self._collector is None:
            joined = owner(SCOPE.get())
            if joined is not None:
                return joined, True
        provider = call.provider
        metrics = new_request(
            provider,
            call.model,
            self._server_attributes[provider],
            method,
            call.options.format,
            "chat",
        )
        start_clock(metrics)
        return metrics, False

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

    def _route(self, options: CallOptions, stream: bool) -> Routed:
        return route_call(options, self._protocols, self._openai_target, stream)

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
        tools: Optional[Sequence[Dict[str, Any]]] = None,
        tool_choice: Any = None,
        **params: Any,
    ) -> GenerationResponse:
        """One blocking completion.

        Args:
            messages: a string (one user message) or messages in OpenAI's shape (see
                :data:`~steer_llm_sdk.types.Message`: content parts, images, assistant
                ``tool_calls``, ``role="tool"`` results); system messages go where each
                protocol wants them.
            model: routes to a provider (see :func:`route`).
            max_tokens, temperature: sampling limits.
            response_format: ``"json_object"``, ``{"type": "json_schema", ...}``, ... (OpenAI).
            provider: override the routing.
            retries: retries for this call (0 disables); default from the retry policy.
            tools: OpenAI-style function tools (``{"type": "function", "function": {"name",
                "description", "parameters"}}`` or the bare function), translated for
                Anthropic.
            tool_choice: ``"auto"``, ``"required"``, ``"none"``, or a tool's name.
            **params: sent as they are in the request body (``n=2`` for several choices).

        Raises:
            ContentFilterError: the provider withheld or refused the answer
                (``filter_results`` says why; ``text`` holds what came of the answer,
                ``usage`` what the provider billed); recorded with category
                ``content_filter`` and that usage.
            SteerLLMError: a subclass per failure (see :mod:`steer_llm_sdk.errors`);
                ``CircuitOpenError`` without a network call while the circuit is open.
        """
        options = CallOptions(
            messages=messages,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            response_format=response_format,
            provider=provider,
            retries=retries,
            tools=tools,
            tool_choice=tool_choice,
            params=params,
        )
        return self._generate(options)

    def _generate(self, options: CallOptions) -> GenerationResponse:
        call = self._route(options, stream=False)
        name, model, body = call.provider, call.model, call.body
        collector = self.metrics_collector
        metrics, joined = self._begin(call, "generate")
        try:
            attempts = self._attempts(call, metrics, "generate")
            response, data = attempts.run(
                lambda: self._transport.post_json(name, body, model=model)
            )
            choices, answered, usage = call.protocol.parse_response(data)
        except BaseException as exc:
            if isinstance(exc, ContentFilterError) and exc.usage is not None:
                _keep_billed(metrics, joined, exc.usage)
            if not joined:
                record_failure(collector, metrics, exc, perf_counter())
            raise
        if joined:
            join_usage(metrics, usage, answered)
        else:
            if usage is not None:
                metrics.set_usage(*usage)
            metrics.response_model = answered
            end_call(collector, metrics, perf_counter())
        first = choices[0]
        return GenerationResponse(
            text=first.text,
            model=answered or model,
            provider=name,
            usage=as_usage(usage),
            finish_reason=first.finish_reason,
            request_id=request_id_of(response.headers),
            raw=data,
            tool_calls=first.tool_calls,
            choices=choices,
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
        tools: Optional[Sequence[Dict[str, Any]]] = None,
        tool_choice: Any = None,
        **params: Any,
    ) -> "TextStream":
        """Start a streamed completion; iterate the returned :class:`TextStream` for text
        deltas (the first choice's text only: tool-call arguments are never text; the whole
        answer, tool calls and every choice included, is ``result()`` once it has ended).
        The request is sent now: an error status raises here, after retries; a
        stream that breaks off is retried only while no text has reached the caller.
        Closing the stream (or leaving its ``with`` block, or breaking out and dropping it)
        releases the connection. Arguments as for :meth:`generate`.
        """
        options = CallOptions(
            messages=messages,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            response_format=response_format,
            provider=provider,
            retries=retries,
            tools=tools,
            tool_choice=tool_choice,
            params=params,
        )
        return self._stream(options)

    def _stream(self, options: CallOptions) -> TextStream:
        call = self._route(options, stream=True)
        name, model, body = call.provider, call.model, call.body
        collector = self.metrics_collector
        metrics, joined = self._begin(call, "stream")
        attempts = self._attempts(call, metrics, "stream")
        try:
            response = attempts.run(
                lambda: self._transport.post(name, body, stream=True, model=model), final=False
            )
        except BaseException as exc:  # ours, or a foreign one (a soft time limit): recorded
            if not joined:
                outcome = StreamOutcome()
                outcome.status, outcome.error, outcome.end = "error", exc, perf_counter()
                record_stream(collector, metrics, outcome)
            attempts.record(success=False)
            raise

        def reconnect(exc: SteerLLMError) -> requests.Response:
            return attempts.resume(
                exc, lambda: self._transport.post(name, body, stream=True, model=model)
            )

        run = StreamRun(response, call, collector, metrics, reconnect, attempts, joined=joined)
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
        tools: Optional[Sequence[Dict[str, Any]]] = None,
        tool_choice: Any = None,
        **params: Any,
    ) -> StreamingResponseWithUsage:
        """Stream a completion to its end and return the whole of it with its usage.

        ``on_chunk(text)`` is called with each text delta as it arrives. Usage comes from the
        provider, or is counted locally when the provider sent none (see
        ``aggregation_method``). Arguments as for :meth:`generate`.
        """
        options = CallOptions(
            messages=messages,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            response_format=response_format,
            provider=provider,
            retries=retries,
            tools=tools,
            tool_choice=tool_choice,
            params=params,
        )
        with self._stream(options) as text_stream:
            for delta in text_stream:
                if on_chunk is not None:
                    on_chunk(delta)
        return text_stream.result()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the pooled connections (and flush and shut down an owned collector)."""
        self._transport.close()
        self.circuit_breaker.remove_listener(self._transition_listener)
        if self._owns_collector and self._collector is not None:
            self._collector.shutdown()

    def __enter__(self) -> "SteerLLMClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        transport = self._transport
        keys = ", ".join(
            f"{name}_api_key={'<token provider>' if callable(key) else mask_key(key)}"
            for name, key in transport.keys.items()
        )
        urls = {name: redact(url, transport.secrets()) for name, url in transport.base_urls.items()}
        return f"SteerLLMClient({keys}, base_urls={urls})"

    @property
    def timeout(self) -> float:
        """Seconds to connect and between bytes read."""
        return self._transport.timeout
