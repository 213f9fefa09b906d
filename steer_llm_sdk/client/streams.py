"""Text streams of the client: SSE events decoded by the wire protocol, each chunk read once
by the stream's :class:`~steer_llm_sdk.streaming.assemble.Assembler` (the answer, and what
the stream reports, noted on the meter's reader), measured by the measured call's
:class:`~steer_llm_sdk.observability.measure.stream.StreamMeter`, ended exactly once by its
:class:`~steer_llm_sdk.observability.measure.stream.FinishOnce`."""

import json
import re
from typing import Any, Callable, Generator, List, Optional, Tuple

import requests

from ..errors import SteerLLMError, StreamError
from ..observability import MetricsCollector
from ..observability.measure.call import join_stream
from ..observability.measure.stream import FinishOnce, StreamMeter, StreamOutcome, record_stream
from ..providers import END, SKIP
from ..providers.http import iter_events, request_id_of
from ..streaming.assemble import Assembler
from ..streaming.tokens import count_messages, count_text
from ..streaming.usage import TokenUsage
from ..types import StreamingResponseWithUsage, Usage
from .attempts import Attempts
from .routing import Routed


class TextStream:
    """Text deltas of a streamed completion, measured as they arrive.

    An iterator and a context manager. The stream's metrics are recorded exactly once: when it
    ends (``completed``), fails (``error``), or is closed, left, abandoned after ``break`` or
    never iterated (``cancelled``); the HTTP connection is released in every case.
    :meth:`result` gives the whole response once the stream has ended. Not thread-safe:
    consume it on one thread. Made by :meth:`SteerLLMClient.stream`.
    """

    def __init__(self, run: "StreamRun") -> None:
        self._run = run
        self._gen = run.events()
        self.provider = run.provider
        self.model = run.model
        self.request_id = run.request_id
        run.once = FinishOnce(self, run.finish, run.capture)

    def __iter__(self) -> "TextStream":
        return self

    def __next__(self) -> str:
        self._run.once.started = True
        return next(self._gen)

    def close(self) -> None:
        """Stop reading and release the connection; records ``cancelled`` if not ended."""
        if self._run.once.started:
            self._gen.close()
        else:
            self._run.once.finish_unstarted()

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


class StreamRun:
    """The state and work of one TextStream (kept apart so that its finalizer can hold it).

    Args:
        response: the streamed HTTP response.
        call: the routed call (provider, model, protocol, messages for local token
            counting, options).
        collector: where the stream's records go.
        metrics: the call's RequestMetrics.
        reconnect: asks again after a stream broke off before any text (or None).
        attempts: the request's attempts (retries, breaker, reliability record).
        joined: ``metrics`` is an open call this stream joined: what the stream reports
            goes to it, and the stream records nothing itself.
    """

    def __init__(
        self,
        response: requests.Response,
        call: Routed,
        collector: MetricsCollector,
        metrics: Any,
        reconnect: Optional[Callable[[SteerLLMError], requests.Response]] = None,
        attempts: Optional[Attempts] = None,
        joined: bool = False,
    ) -> None:
        self.protocol = call.protocol
        self.response = response
        self.provider = call.provider
        self.model = call.model
        self.messages = call.messages
        self.collector = collector
        self.metrics = metrics
        self.reconnect = reconnect
        self.attempts = attempts
        self.request_id = request_id_of(response.headers)
        # JSON values are parsed once, when the stream ends (they are part of the result):
        # the meter is not asked to count them on the way as well.
        self.json_format = call.options.format.startswith("json")
        self.meter = StreamMeter()
        self.assembler = Assembler(self.protocol.STREAM_SHAPE, self.protocol.raise_for_chunk)
        self.deltas: List[str] = []
        self.result: Optional[StreamingResponseWithUsage] = None
        self.joined = joined
        self.current: Any = None  # the meter's generator of the attempt being read
        self.once: FinishOnce  # set by the TextStream that owns this run

    def events(self) -> Generator[str, None, None]:
        """The text deltas; retries a stream that broke off before any text."""
        meter = self.meter
        try:
            while True:
                gen = self.current = meter.measure(self._chunks(), text_only=True)
                try:
                    for text in gen:
                        self.deltas.append(text)
                        yield text
                    return
                except SteerLLMError as exc:
                    if not self._resumable(exc):
                        raise
                    self.response.close()
                    self.response = self.reconnect(exc)  # type: ignore[misc]
                    meter.reset()
                    self.assembler.reset()
                finally:
                    gen.close()
        finally:
            self.response.close()
            self.once.finish()

    def _resumable(self, exc: SteerLLMError) -> bool:
        # Broke off before any text reached the caller: safe to ask again.
        return (
            not self.deltas
            and self.reconnect is not None
            and self.attempts is not None
            and self.attempts.can_resume(exc)
        )

    def _chunks(self) -> Generator[str, None, None]:
        """The content of each of one response's chunks up to its end (``""`` for a chunk
        without any): each event decoded once and its chunk read once, by the assembler,
        which notes what the chunk reports on the meter's reader (the meter itself then
        reads nothing: these are strings).

        Raises:
            StreamError: the stream ended before its end marker.
            SteerLLMError: the provider's error an event carries; that of an answer the
                provider ended early (a content filter, a refusal) once the stream has
                ended, its usage read (see :meth:`Assembler.finish`).
        """
        decode = self.protocol.decode_event
        assembler = self.assembler
        read = assembler.read
        reader = self.meter.reader  # this attempt's: the meter renews it for each
        try:
            for event in iter_events(self.response, self.provider):
                chunk = decode(event)
                if chunk is END:
                    break
                if chunk is SKIP:
                    yield ""  # counted, carries nothing
                    continue
                try:
                    content = read(reader, chunk)
                except SteerLLMError:
                    raise
                except Exception:  # an odd chunk passes through, counted, not read
                    reader.errors += 1
                    content = ""
                yield content
                if assembler.ended:
                    break
            else:
                raise StreamError(
                    f"{self.provider} stream ended before its end marker", provider=self.provider
                )
        except SteerLLMError:
            # After an answer ended early (a content filter, a refusal), the error held for
            # it says more than a connection lost or an error event that followed.
            assembler.finish(reader)
            raise
        assembler.finish(reader)

    def finish(self) -> None:
        """Record the stream's end (once, through :class:`FinishOnce`) and, if it completed,
        assemble the result."""
        meter = self.meter
        if meter.end == 0.0:  # never started
            self.response.close()
        outcome = meter.outcome()
        text = "".join(self.deltas)
        values = json_values(text) if self.json_format else []
        outcome.json_objects = len(values)
        reported = outcome.usage
        if reported is None or reported.completion_tokens is None:
            outcome.usage, outcome.aggregation_method, outcome.aggregation_confidence = (
                self.count_locally(text, reported)
            )
        if self.joined:
            join_stream(self.metrics, outcome, reported)
        else:
            record_stream(self.collector, self.metrics, outcome)
        if self.attempts is not None:
            self.attempts.record(success=outcome.status != "error")
        if outcome.status == "completed":
            self.result = self._result(text, outcome, values)

    def capture(self, _: Any) -> None:
        """Take the measures of the attempt being read while its thread cannot be
        interrupted (see :meth:`StreamMeter.capture`)."""
        if self.current is not None:
            self.meter.capture(self.current)

    def _result(
        self, text: str, outcome: StreamOutcome, values: List[Any]
    ) -> StreamingResponseWithUsage:
        reader = self.meter.reader
        choices = self.assembler.choices()
        first = choices[0]
        return StreamingResponseWithUsage(
            text=text,
            usage=as_usage(outcome.usage),
            chunks=list(self.deltas),
            finish_reason=first.finish_reason or reader.finish_reason,
            tool_calls=first.tool_calls,
            choices=choices,
            model=reader.model or self.model,
            provider=self.provider,
            request_id=self.request_id,
            json_objects=values,
            aggregation_method=outcome.aggregation_method,
            aggregation_confidence=outcome.aggregation_confidence,
        )

    def count_locally(
        self, text: str, reported: Optional[TokenUsage]
    ) -> Tuple[TokenUsage, str, float]:
        """Usage when the provider reported none (or only the prompt side), counted with
        the tokenizer of the model the stream says answered (an Azure deployment's name says
        nothing of its model), else of the model asked for."""
        model = self.meter.reader.model or self.model
        completion = count_text(text, model)
        if reported is not None and reported.prompt_tokens is not None:
            prompt, cached = reported.prompt_tokens, reported.cached_tokens
        else:
            prompt, cached = count_messages(self.messages, model).tokens, None
        usage = TokenUsage(prompt, completion.tokens, prompt + completion.tokens, cached)
        return usage, completion.method, completion.confidence


def as_usage(usage: Optional[TokenUsage]) -> Usage:
    """The public ``Usage`` of token counts (zeros where unknown)."""
    if usage is None:
        return Usage()
    prompt = usage.prompt_tokens or 0
    completion = usage.completion_tokens or 0
    total = usage.total_tokens if usage.total_tokens is not None else prompt + completion
    return Usage(
        prompt,
        completion,
        total,
        usage.cached_tokens or 0,
        usage.reasoning_tokens,
        usage.cache_creation_tokens or 0,
    )


#: Where a top-level JSON object or array may start.
_VALUE_START = re.compile(r"[\[{]")


def json_values(text: str) -> List[Any]:
    """Every complete top-level JSON object or array in ``text``, in order, each parsed
    once: a value that does not parse is passed over from where it stopped parsing, so the
    text is read once however much of it is not JSON (a stream cut off inside a value)."""
    decoder = json.JSONDecoder()
    values: List[Any] = []
    position = 0
    while True:
        found = _VALUE_START.search(text, position)
        if found is None:
            return values
        start = found.start()
        try:
            value, position = decoder.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            position = max(exc.pos, start + 1)
            continue
        values.append(value)
