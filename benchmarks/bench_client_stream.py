"""Per-chunk cost of the client's stream path, without HTTP.

A client stream of 200 chunks from the local server costs milliseconds of HTTP, which hides
the microseconds each chunk costs the client. So the bytes the local server sends for a
200-word answer are recorded once per wire shape (one real request each), and replayed
in-process through a ``requests.Response``: what runs is exactly the client's path from
bytes to text (SSE decoding, each event's JSON decoded, each chunk read once by the
assembler for the answer and the measures, the stream meter, the stream's end and records).

Two figures per shape, in microseconds of process CPU time per chunk (CPU time, not wall
time: on a shared machine another process's turn on the core would land in a wall-clock
figure; the process's own background threads are counted). Means over rounds, the
contenders' streams interleaved so that drift hits all alike, with their standard errors:

* ``decode``: SSE decoding and each event's JSON decoded (``iter_events`` +
  ``decode_event``): the floor of any reading;
* ``stream``: a whole :class:`~steer_llm_sdk.client.TextStream` consumed, its result taken:
  all the client does per chunk (the stream's start and end, its two records, shared out
  over its chunks).

Run with ``python benchmarks/bench_client_stream.py`` (``BENCH_ROUNDS`` rounds, default 30).
"""

import gc
import json
import os
import statistics
import sys
from functools import partial
from time import process_time
from typing import Any, Callable, Dict, Iterator, List, Tuple

import requests

from steer_llm_sdk.client.options import CallOptions
from steer_llm_sdk.client.routing import route_call
from steer_llm_sdk.client.streams import StreamRun, TextStream
from steer_llm_sdk.observability import MetricsCollector, MetricsConfig
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink
from steer_llm_sdk.providers import PROTOCOLS, SKIP, openai_responses
from steer_llm_sdk.providers.http import iter_events
from steer_llm_sdk.testing import LocalLLMServer

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "30"))
WORDS = 200
#: Streams of each contender per round.
BATCH = 10

#: case -> (the local server's path, request body, wire protocol, response format)
CASES: Dict[str, Tuple[str, Dict[str, Any], Any, str]] = {
    "chat": (
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True}},
        PROTOCOLS["openai"],
        "text",
    ),
    "chat_json": (
        "/v1/chat/completions",
        {
            "model": "gpt-4o-mini",
            "stream": True,
            "stream_options": {"include_usage": True},
            "response_format": {"type": "json_object"},
        },
        PROTOCOLS["openai"],
        "json_object",
    ),
    "anthropic": (
        "/v1/messages",
        {"model": "claude-haiku-4-5", "stream": True, "max_tokens": 1024},
        PROTOCOLS["anthropic"],
        "text",
    ),
    "responses": (
        "/v1/responses",
        {"model": "gpt-4o-mini", "stream": True},
        openai_responses,
        "text",
    ),
}


def record(words: int = WORDS) -> Dict[str, List[bytes]]:
    """The bytes the local server streams for each case, one piece per event (as they
    arrive from a server that writes one event at a time)."""
    recorded: Dict[str, List[bytes]] = {}
    with LocalLLMServer(reply_words=words) as server:
        for case, (path, body, _, _) in CASES.items():
            request = {**body, "messages": [{"role": "user", "content": f"bench {case}"}]}
            if path == "/v1/responses":
                request = {**body, "input": f"bench {case}"}
            response = requests.post(
                server.url + path,
                data=json.dumps(request),
                headers={"content-type": "application/json", "x-api-key": "bench"},
                timeout=30,
            )
            response.raise_for_status()
            events = response.content.replace(b"\r\n", b"\n").split(b"\n\n")
            recorded[case] = [event + b"\n\n" for event in events if event.strip()]
    return recorded


class _Replayed:
    """The raw body of a replayed response: ``requests`` reads it through ``stream()``."""

    def __init__(self, pieces: List[bytes]) -> None:
        self._pieces = pieces

    def stream(self, chunk_size: Any = None, decode_content: bool = True) -> Iterator[bytes]:
        return iter(self._pieces)

    def close(self) -> None:
        pass


def replayed(pieces: List[bytes]) -> requests.Response:
    """A streamed ``requests.Response`` whose body is ``pieces``."""
    response = requests.Response()
    response.status_code = 200
    response.raw = _Replayed(pieces)
    return response


def decode_only(protocol: Any, pieces: List[bytes]) -> int:
    """The floor: SSE decoding and each event's JSON decoded. Returns the chunks."""
    decode = protocol.decode_event
    chunks = 0
    for event in iter_events(replayed(pieces), protocol.NAME):
        chunk = decode(event)
        if chunk is not SKIP:
            chunks += 1
    return chunks


def client_stream(collector: MetricsCollector, case: str, pieces: List[bytes]) -> int:
    """One client stream over ``pieces``, consumed, its result taken. Returns the chunks."""
    _, body, protocol, response_format = CASES[case]
    options = CallOptions(
        "bench", body["model"], None, None, response_format, None, None, None, None, {}
    )
    protocols = {**PROTOCOLS, "openai": protocol} if protocol is openai_responses else PROTOCOLS
    call = route_call(options, protocols, "openai", stream=True)
    metrics = collector.track_request(call.provider, model=call.model).start()
    stream = TextStream(StreamRun(replayed(pieces), call, collector, metrics))
    for _ in stream:
        pass
    stream.result()
    return len(pieces)


def per_chunk_us(
    contenders: Dict[str, Callable[[], int]], rounds: int = ROUNDS, batch: int = BATCH
) -> Dict[str, Tuple[float, float]]:
    """Mean microseconds of process CPU time per chunk of each contender (a callable
    running one stream and returning its chunks) and its standard error, over ``rounds``
    rounds of ``batch`` streams each, the contenders taking turns round by round (their
    order rotating)."""
    names = list(contenders)
    for name in names:  # warm up: caches, tokenizers, first-sight choices
        for _ in range(batch):
            contenders[name]()
    samples: Dict[str, List[float]] = {name: [] for name in names}
    for index in range(rounds):
        gc.collect()
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            run = contenders[name]
            chunks = 0
            start = process_time()
            for _ in range(batch):
                chunks += run()
            samples[name].append((process_time() - start) / chunks * 1e6)
    return {
        name: (statistics.mean(values), statistics.stdev(values) / len(values) ** 0.5)
        for name, values in samples.items()
    }


def main() -> int:
    recorded = record()
    collector = MetricsCollector(MetricsConfig(flush_on_exit=False), [InMemoryMetricsSink()])
    try:
        contenders: Dict[str, Callable[[], int]] = {}
        for case, pieces in recorded.items():
            protocol = CASES[case][2]
            contenders[f"{case}_decode"] = partial(decode_only, protocol, pieces)
            contenders[f"{case}_stream"] = partial(client_stream, collector, case, pieces)
        results = per_chunk_us(contenders)
    finally:
        collector.shutdown()
    print(f"Python {sys.version.split()[0]}; {WORDS}-word answers; CPU us per chunk (mean +- se)")
    for case, pieces in recorded.items():
        decode, stream = results[f"{case}_decode"], results[f"{case}_stream"]
        print(
            f"  {case:<10} {len(pieces):>4} events  decode {decode[0]:6.2f} +- {decode[1]:.2f}"
            f"  stream {stream[0]:6.2f} +- {stream[1]:.2f}"
            f"  (beyond decoding: {stream[0] - decode[0]:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
