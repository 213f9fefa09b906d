"""Benchmarks of the metrics core, with prometheus_client and the OpenTelemetry SDK measured in
the same run on the same machine.

Run with ``make bench``. Prints a table and writes ``benchmarks/results/latest.json`` (a run
limited with ``BENCH_ONLY`` updates its own figures there and keeps the others).
Each figure states what it measures; targets come from the project's issues.

The headline per-call figure is a *mean* over many batches of calls, with the background
threads running and draining into an in-memory sink, in CPU time of the whole process: it
includes the flush thread's work. Peers are measured in the same run, taking turns batch by
batch. The caller's median latency is a second line, not the cost.
"""

import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from time import perf_counter
from typing import Callable, Dict, List, Optional, Tuple

from steer_llm_sdk.observability import (
    MetricsCollector,
    MetricsConfig,
    RequestMetrics,
    StreamingMetrics,
)
from steer_llm_sdk.observability.models import ChunkGaps
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink

BATCH = 2000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "40"))


def latency_us(fn: Callable[[str], None], calls: int = 200_000) -> float:
    """Median over ``calls`` individually timed calls ``fn("hi")``, in microseconds: the
    latency the caller usually sees. A call during which the background thread holds the GIL
    is an outlier and does not move the median, so this is *not* what a call costs; see
    :func:`interleaved_means` for that.

    The warm-up (the same for every contender) runs past the in-memory sink's 10,000-record
    ring, so the figure is the steady state."""
    for _ in range(30_000):
        fn("hi")
    samples = [0.0] * calls
    for i in range(calls):
        start = perf_counter()
        fn("hi")
        samples[i] = perf_counter() - start
    return statistics.median(samples) * 1e6


def interleaved_means(
    contenders: Dict[str, Callable[[str], None]],
    rounds: int = ROUNDS,
    batch: int = BATCH,
    warmup: int = 30_000,
    hooks: Optional[Dict[str, Tuple[Callable[[], object], Callable[[], object]]]] = None,
) -> Dict[str, Dict[str, float]]:
    """Mean cost per call of each contender, over ``rounds`` batches of ``batch`` calls,
    the contenders taking turns batch by batch (their order rotating) so that the machine's
    drift hits all of them alike.

    Two measures per batch: wall time, and CPU time of the whole process
    (``time.process_time()``: every thread, so the flush thread's work is included whether
    or not it overlapped the caller). Means, never medians: the batches in which the
    background work ran are part of the cost. Returns per contender ``{"wall", "cpu",
    "wall_se", "cpu_se"}`` in microseconds per call (``*_se``: standard error of the mean).

    ``hooks`` maps a contender to ``(enter, leave)``, called around each of its batches
    (untimed): for a contender that is a process-wide state, such as ``instrument()``.
    """
    names = list(contenders)
    hooks = hooks or {}
    nothing = (lambda: None, lambda: None)
    for name, fn in contenders.items():  # warm up past the in-memory ring
        enter, leave = hooks.get(name, nothing)
        enter()
        for _ in range(warmup):
            fn("hi")
        leave()
    wall: Dict[str, List[float]] = {n: [] for n in names}
    cpu: Dict[str, List[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn = contenders[name]
            enter, leave = hooks.get(name, nothing)
            enter()
            start_wall, start_cpu = perf_counter(), time.process_time()
            for _ in range(batch):
                fn("hi")
            wall[name].append((perf_counter() - start_wall) / batch * 1e6)
            cpu[name].append((time.process_time() - start_cpu) / batch * 1e6)
            leave()
    out = {}
    for name in names:
        out[name] = {
            "wall": statistics.mean(wall[name]),
            "cpu": statistics.mean(cpu[name]),
            "wall_se": statistics.stdev(wall[name]) / len(wall[name]) ** 0.5,
            "cpu_se": statistics.stdev(cpu[name]) / len(cpu[name]) ** 0.5,
        }
    return out


def per_call_us(fn: Callable[[str], None], rounds: int = 100, batch: int = 1000) -> float:
    """Mean over ``rounds`` batches of the time per call ``fn("hi")``, in microseconds."""
    for _ in range(batch):  # warm up
        fn("hi")
    samples = []
    for _ in range(rounds):
        start = perf_counter()
        for _ in range(batch):
            fn("hi")
        samples.append((perf_counter() - start) / batch * 1e6)
    return statistics.mean(samples)


def bench_call_overhead() -> Dict[str, float]:
    """The headline: what a tracked call costs the process, background work included,
    against prometheus_client's ``Histogram.time()`` (two labels) and the OpenTelemetry SDK
    (a histogram record and a counter add), all measured in this run, interleaved."""

    def bare(prompt: str, model: str = "gpt-4o-mini") -> None:
        return None

    sink = InMemoryMetricsSink()
    collector = MetricsCollector(MetricsConfig(), [sink])
    tracked = collector.track_request("openai")(bare)

    from prometheus_client import CollectorRegistry, Histogram

    registry = CollectorRegistry()
    histogram = Histogram(
        "llm_request_seconds", "LLM request latency", ["provider", "model"], registry=registry
    )

    def prometheus_call(prompt: str) -> None:
        with histogram.labels("openai", "gpt-4o-mini").time():
            bare(prompt)

    from opentelemetry.sdk.metrics import MeterProvider

    provider = MeterProvider()
    meter = provider.get_meter("bench")
    otel_hist = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
    otel_counter = meter.create_counter("llm.requests")
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "server.address": "api.openai.com",
    }

    def otel_call(prompt: str) -> None:
        start = perf_counter()
        bare(prompt)
        otel_hist.record(perf_counter() - start, attrs)
        otel_counter.add(1, attrs)

    means = interleaved_means(
        {"bare": bare, "steer": tracked, "prometheus": prometheus_call, "otel": otel_call}
    )
    results: Dict[str, float] = {}
    for name in ("steer", "prometheus", "otel"):
        for measure in ("cpu", "wall"):
            results[f"{name}_{measure}_us"] = means[name][measure] - means["bare"][measure]
        results[f"{name}_cpu_se_us"] = means[name]["cpu_se"]
    results["steer_over_prometheus_cpu"] = results["steer_cpu_us"] / results["prometheus_cpu_us"]
    results["steer_over_otel_cpu"] = results["steer_cpu_us"] / results["otel_cpu_us"]
    base = latency_us(bare)
    results["steer_caller_median_us"] = latency_us(tracked) - base
    results["prometheus_caller_median_us"] = latency_us(prometheus_call) - base
    collector.flush(10)
    stats = collector.stats()
    results["steer_unaccounted"] = stats.unaccounted("in_memory")
    collector.shutdown(5)
    provider.shutdown()
    return results


def bench_stream_chunk() -> Dict[str, float]:
    """Added cost per chunk of a tracked generator of ``str`` chunks (2,000 per stream),
    interleaved with the bare generator, means of process CPU time."""
    collector = MetricsCollector(MetricsConfig(), [InMemoryMetricsSink()])
    chunks = 2000

    def tokens(n: int, model: str = "gpt-4o-mini"):  # type: ignore[no-untyped-def]
        for _ in range(n):
            yield "tok"

    tracked = collector.track_request("openai")(tokens)

    def consume(gen) -> None:  # type: ignore[no-untyped-def]
        for _ in gen:
            pass

    means = interleaved_means(
        {
            "bare": lambda _: consume(tokens(chunks)),
            "steer": lambda _: consume(tracked(chunks)),
        },
        rounds=ROUNDS,
        batch=10,
        warmup=20,
    )
    collector.shutdown(5)
    return {"steer_chunk_added_us": (means["steer"]["cpu"] - means["bare"]["cpu"]) / chunks}


def _sdk_chunks() -> Dict[str, List[object]]:
    """200 chunks of each SDK's own stream objects, built as the SDKs build them."""
    from anthropic.types import RawContentBlockDeltaEvent
    from google.genai import types as genai
    from openai.types.chat import ChatCompletionChunk
    from openai.types.responses import ResponseTextDeltaEvent

    n = 200
    return {
        "openai_chat": [
            ChatCompletionChunk.model_validate(
                {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "delta": {"content": " tok"}, "finish_reason": None}],
                }
            )
            for _ in range(n)
        ],
        "openai_responses": [
            ResponseTextDeltaEvent.model_validate(
                {
                    "type": "response.output_text.delta",
                    "delta": " tok",
                    "item_id": "i",
                    "output_index": 0,
                    "content_index": 0,
                    "sequence_number": i,
                    "logprobs": [],
                }
            )
            for i in range(n)
        ],
        "anthropic": [
            RawContentBlockDeltaEvent.model_validate(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": " tok"},
                }
            )
            for _ in range(n)
        ],
        "gemini": [
            genai.GenerateContentResponse.model_validate(
                {
                    "candidates": [{"content": {"role": "model", "parts": [{"text": " tok"}]}}],
                    "usage_metadata": {"prompt_token_count": 5, "candidates_token_count": i},
                    "model_version": "gemini-2.5-flash",
                }
            )
            for i in range(n)
        ],
    }


def bench_sdk_chunks() -> Dict[str, float]:
    """Added cost per chunk of a tracked stream of each SDK's own chunk objects (read by the
    reader chosen for their class), interleaved with the bare iteration, mean process CPU.

    The per-chunk figures include starting and ending the stream (its two records), spread
    over its 200 chunks; that share is measured on its own (an empty stream) and the
    marginal cost of a chunk reported beside each figure."""
    collector = MetricsCollector(MetricsConfig(), [InMemoryMetricsSink()])
    results: Dict[str, float] = {}
    sets = _sdk_chunks()
    sets["empty"] = []
    for name, chunks in sets.items():

        def replay(model: str = "gpt-4o-mini", _chunks: List[object] = chunks) -> object:
            return iter(_chunks)

        tracked = collector.track_request("openai")(replay)

        def consume(stream: object) -> None:
            for _ in stream:  # type: ignore[attr-defined]
                pass

        means = interleaved_means(
            {
                "bare": lambda _, r=replay: consume(r()),
                "steer": lambda _, t=tracked: consume(t()),
            },
            rounds=ROUNDS,
            batch=50,
            warmup=50,
        )
        added = means["steer"]["cpu"] - means["bare"]["cpu"]
        if chunks:
            results[f"chunk_{name}_us"] = added / len(chunks)
        else:
            results["stream_start_end_us"] = added
    per_stream = results["stream_start_end_us"]
    for name, chunks in sets.items():
        if chunks:
            marginal = results[f"chunk_{name}_us"] - per_stream / len(chunks)
            results[f"chunk_{name}_marginal_us"] = marginal
    collector.shutdown(5)
    return results


def bench_instrument() -> Dict[str, float]:
    """What instrument() adds to a non-streamed openai SDK call against the decorator, on
    the SDK's own client and response objects (an in-process HTTP transport answers, so the
    figures are the whole call)."""
    import openai

    try:  # the openai SDK's HTTP library: httpx, or its successor httpx2
        import httpx2 as httpx  # type: ignore[import-not-found]
    except ImportError:
        import httpx  # type: ignore[no-redef]

    from steer_llm_sdk.observability import instrument, uninstrument

    body = json.dumps(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        }
    ).encode()
    transport = httpx.MockTransport(
        lambda request: httpx.Response(
            200, content=body, headers={"content-type": "application/json"}
        )
    )
    client = openai.OpenAI(
        api_key="bench",
        base_url="http://127.0.0.1:9/v1",
        http_client=httpx.Client(transport=transport),
    )
    messages = [{"role": "user", "content": "hi"}]

    def plain(_: str) -> object:
        # Returned, so that the decorator too keeps the response for its usage to be read.
        return client.chat.completions.create(model="gpt-4o-mini", messages=messages)

    collector = MetricsCollector(MetricsConfig(), [InMemoryMetricsSink()])
    decorated = collector.track_request("openai")(plain)

    def instrumented(_: str) -> object:  # plain, in batches run with instrument() on
        return plain(_)

    def instrument_on() -> None:
        instrument("openai", collector=collector)

    try:
        means = interleaved_means(
            {"plain": plain, "decorated": decorated, "instrumented": instrumented},
            rounds=ROUNDS,
            batch=100,
            warmup=500,
            hooks={"instrumented": (instrument_on, uninstrument)},
        )
    finally:
        uninstrument()
        collector.shutdown(5)
    return {
        "openai_call_us": means["plain"]["cpu"],
        "decorator_added_us": means["decorated"]["cpu"] - means["plain"]["cpu"],
        "instrument_added_us": means["instrumented"]["cpu"] - means["plain"]["cpu"],
        "instrument_added_se_us": means["instrumented"]["cpu_se"],
    }


def bench_throughput() -> Dict[str, float]:
    sink = InMemoryMetricsSink(max_size=100_000)
    collector = MetricsCollector(MetricsConfig(), [sink])
    per_thread = 50_000
    threads = 4
    go = threading.Event()

    def produce() -> None:
        go.wait()
        record = collector.record
        now = time.time()
        for i in range(per_thread):
            record(RequestMetrics(now, f"r{i}", "openai", "gpt-4o-mini", None, 1.0, None, 12.5))

    workers = [threading.Thread(target=produce) for _ in range(threads)]
    for w in workers:
        w.start()
    start = perf_counter()
    go.set()
    for w in workers:
        w.join()
    delivered_ok = collector.flush(60)
    elapsed = perf_counter() - start
    stats = collector.stats()
    collector.shutdown(5)
    total = per_thread * threads
    return {
        "throughput_records_per_s": total / elapsed,
        "throughput_dropped": sum(stats.dropped.values()) + stats.sinks["in_memory"].dropped,
        "throughput_delivered": stats.sinks["in_memory"].delivered,
        "throughput_flush_ok": float(delivered_ok),
    }


def bench_memory() -> Dict[str, float]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    sink = InMemoryMetricsSink(max_size=10_000)
    now = time.time()
    batch: List[RequestMetrics] = []
    for i in range(10_000):
        m = RequestMetrics(
            now,
            f"{os.urandom(4).hex()}-{i:x}",
            "openai",
            "gpt-4o-mini",
            {"http.route": "/chat"},
            1.0,
            None,
            123.4,
        )
        m.set_usage(120, 350, None, 0)
        batch.append(m)
    sink.record_batch(batch)
    del batch
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()

    # Overload: a sink that is far too slow, 5 rounds of 20,000 records each; the process's
    # traced memory must not grow from round to round (queues are bounded).
    class SlowSink:
        name = "slow"

        def record(self, metrics: RequestMetrics) -> None:
            time.sleep(0.001)

        def flush(self) -> None:
            pass

    collector = MetricsCollector(MetricsConfig(max_queue_size=5_000), [SlowSink()])
    tracemalloc.start()
    rounds = []
    for _ in range(5):
        for i in range(20_000):
            collector.record(RequestMetrics(now, f"o{i}", "openai", "gpt-4o-mini"))
        gc.collect()
        rounds.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    collector.shutdown(0.5)
    return {
        "memory_10k_records_mb": held / 1e6,
        "overload_memory_growth_mb": (rounds[-1] - rounds[1]) / 1e6,
    }


def bench_summary() -> Dict[str, float]:
    sink = InMemoryMetricsSink(max_size=100_000)
    now = time.time()
    batch = []
    for i in range(100_000):
        m = RequestMetrics(
            now - (i % 250),
            f"s{i}",
            "openai",
            f"model-{i % 5}",
            None,
            1.0,
            None,
            float(i % 977),
            20.0 if i % 3 == 0 else None,
        )
        m.set_usage(100, 200, None, 10)
        m.success = i % 50 != 0
        batch.append(m)
    sink.record_batch(batch)
    samples = []
    for _ in range(7):
        start = perf_counter()
        summary = sink.get_summary(window_seconds=300)
        samples.append((perf_counter() - start) * 1000)
    assert summary.total_requests == 100_000
    return {"summary_100k_ms": statistics.median(samples)}


def _server_process(reply_words: int) -> "tuple[subprocess.Popen, str]":
    """The local LLM server in its own process (its threads must not share our GIL)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "steer_llm_sdk.testing.server",
            "--port",
            "0",
            "--ttft-ms",
            "0",
            "--tokens-per-second",
            "0",
            "--reply-words",
            str(reply_words),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    url = line.split("serving OpenAI at ", 1)[1].split()[0]
    return proc, url


def _paired_overhead(
    calls: Dict[str, Callable[[int], None]], pairs: int
) -> "tuple[float, float, float]":
    """Relative wall-time cost of ``calls["on"]`` over ``calls["off"]``, from ``pairs``
    back-to-back pairs of single calls whose order alternates, so that drift of the machine
    (large on a shared VM, at every time scale above a millisecond) hits both alike.

    Returns (mean of on - off over the mean of off, its standard error, mean wall time of an
    "off" call in seconds). A mean, not a median: rare slow calls are part of the cost."""
    diffs: List[float] = []
    offs: List[float] = []
    for i in range(pairs):
        spent: Dict[str, float] = {}
        for name in ("on", "off") if i % 2 else ("off", "on"):
            start = perf_counter()
            calls[name](i)
            spent[name] = perf_counter() - start
        diffs.append(spent["on"] - spent["off"])
        offs.append(spent["off"])
    off = statistics.mean(offs)
    se = statistics.stdev(diffs) / len(diffs) ** 0.5
    return statistics.mean(diffs) / off, se / off, off


def bench_client_overhead() -> Dict[str, float]:
    """SteerLLMClient against the local server (in another process), metrics on and off,
    called in interleaved blocks (paired, so drift cancels): the added wall time per call
    in percent with its standard error, for ``generate`` and for 200-chunk streams. The
    exact metrics code a call runs is also timed on its own (``*_metrics_path_us``)."""
    from steer_llm_sdk import SteerLLMClient
    from steer_llm_sdk.observability.measure.stream import StreamOutcome, record_stream
    from steer_llm_sdk.streaming.usage import TokenUsage

    # Single calls on this kind of VM vary by about 30% (generate) from one to the next, so
    # resolving 1% takes thousands of pairs: the standard error is printed beside the mean.
    pairs = int(os.environ.get("BENCH_CLIENT_PAIRS", "12000"))
    proc, base_url = _server_process(reply_words=200)
    results: Dict[str, float] = {}
    try:
        clients = {
            name: SteerLLMClient(
                MetricsConfig(enabled=enabled, flush_on_exit=False),
                openai_base_url=base_url,
                openai_api_key="bench",
            )
            for name, enabled in (("on", True), ("off", False))
        }
        for client in clients.values():  # warm pools and tokenizers
            for _ in range(20):
                client.generate("warm", model="gpt-4o-mini")
                "".join(client.stream("warm", model="gpt-4o-mini"))

        def generate(name: str) -> Callable[[int], None]:
            client = clients[name]
            return lambda i: client.generate(f"q{i}", model="gpt-4o-mini", max_tokens=8) and None

        def stream(name: str) -> Callable[[int], None]:
            client = clients[name]

            def run(i: int) -> None:
                for _ in client.stream(f"s{i}", model="gpt-4o-mini"):
                    pass

            return run

        for kind, make, share in (("generate", generate, 1), ("stream", stream, 2)):
            mean, se, off = _paired_overhead({"on": make("on"), "off": make("off")}, pairs // share)
            results[f"client_{kind}_added_pct"] = mean * 100
            results[f"client_{kind}_added_se_pct"] = se * 100
            results[f"client_{kind}_ms"] = off * 1000
        collector = clients["on"].metrics_collector
        tracker = collector.track_request(
            "openai", model="gpt-4o-mini", **{"server.address": "127.0.0.1", "server.port": 1}
        )
        usage = TokenUsage(9, 8, 17, 0)

        def generate_path() -> None:  # what generate() adds when metrics are on
            with tracker as metrics:
                metrics.set_usage(*usage)
                metrics.response_model = "gpt-4o-mini"

        def stream_path() -> None:  # what stream() adds: start, the outcome, two records
            metrics = tracker.start()
            outcome = StreamOutcome()
            outcome.status, outcome.chunks, outcome.chars = "completed", 202, 900
            outcome.first = outcome.first_token = outcome.end = perf_counter()
            outcome.usage, outcome.aggregation_method = usage, "provider"
            record_stream(collector, metrics, outcome)

        results["client_generate_metrics_path_us"] = per_call_us(
            lambda _: generate_path(), rounds=50, batch=200
        )
        results["client_stream_metrics_path_us"] = per_call_us(
            lambda _: stream_path(), rounds=50, batch=200
        )
        for client in clients.values():
            client.close()
    finally:
        proc.terminate()
        proc.wait(10)
    return results


def bench_sse() -> Dict[str, float]:
    """SSE decoding, JSON decoding and chunk accounting (what the client does per event),
    on one core, without HTTP."""
    import json

    from steer_llm_sdk.streaming import SSEDecoder, StreamUsage

    chunk = json.dumps(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": {"content": " token"}, "finish_reason": None}],
        }
    )
    events = 100_000
    body = f"data: {chunk}\n\n" * events
    pieces = [body[i : i + 4096] for i in range(0, len(body), 4096)]  # network-sized reads
    start = perf_counter()
    decoder, usage, chars, count = SSEDecoder(), StreamUsage(), 0, 0
    for piece in pieces:
        for event in decoder.feed(piece):
            chars += len(usage.observe(json.loads(event.data)))
            count += 1
    elapsed = perf_counter() - start
    assert count == events and chars == events * len(" token")
    return {"sse_events_per_s": events / elapsed}


def bench_otlp_sink() -> Dict[str, float]:
    """RequestMetrics processed by the OTLP sink per second (what its delivery thread does
    per record: attribute sets, cardinality check, instrument updates), one core."""
    from steer_llm_sdk.observability.sinks import OTelMetricsSink

    sink = OTelMetricsSink(endpoint="http://127.0.0.1:9", export_interval_seconds=3600)
    now = time.time()
    batch = []
    for i in range(50_000):
        m = RequestMetrics(
            now,
            f"o{i}",
            "openai",
            f"model-{i % 4}",
            {"http.route": f"/r{i % 8}", "server.address": "api.openai.com", "server.port": 443},
            1.0,
            None,
            120.0 + i % 50,
        )
        m.set_usage(100 + i % 7, 50, None, i % 3)
        m.response_model = f"model-{i % 4}-2025"
        m.cost_usd = 0.0001
        batch.append(m)
    start = perf_counter()
    for i in range(0, len(batch), 100):
        sink.record_batch(batch[i : i + 100])
    elapsed = perf_counter() - start
    # Streams of 200 chunks: the per-chunk instrument gets every gap (199 values a stream).
    streams = []
    for i in range(2_000):
        m = StreamingMetrics(now, f"s{i}", "openai", f"model-{i % 4}", total_chunks=200)
        m.first_chunk_latency_ms = 300.0
        gaps = ChunkGaps()
        for j in range(199):
            gaps.add(0.02 + ((j + 1) % 7 - j % 7) * 0.001)
        m._gaps = gaps
        streams.append(m)
    start = perf_counter()
    for i in range(0, len(streams), 100):
        sink.record_batch(streams[i : i + 100])
    stream_elapsed = perf_counter() - start
    sink._exporter_wrapper.disabled = True  # nothing listens; skip the final export
    sink.close()
    return {
        "otlp_sink_records_per_s": len(batch) / elapsed,
        "otlp_sink_stream_us": stream_elapsed / len(streams) * 1e6,
    }


def bench_dashboard() -> Dict[str, float]:
    """The debug summary (JSON) and dashboard (HTML) with 10,000 records in the sink."""
    from steer_llm_sdk.observability.integrations.dashboard import (
        render_dashboard,
        summary_payload,
    )

    sink = InMemoryMetricsSink(max_size=10_000)
    collector = MetricsCollector(MetricsConfig(flush_on_exit=False), [sink])
    now = time.time()
    batch = []
    for i in range(10_000):
        m = RequestMetrics(
            now - i % 280,
            f"d{i}",
            "openai",
            f"model-{i % 5}",
            None,
            1.0,
            None,
            float(50 + i % 900),
            30.0 if i % 2 else None,
        )
        m.set_usage(100, 40)
        m.success = i % 40 != 0
        batch.append(m)
    sink.record_batch(batch)
    json_ms = statistics.median(_timed(lambda: summary_payload(collector)) for _ in range(7))
    html_ms = statistics.median(_timed(lambda: render_dashboard(collector)) for _ in range(7))
    collector.shutdown(1)
    return {"debug_json_10k_ms": json_ms, "dashboard_html_10k_ms": html_ms}


def _timed(fn: Callable[[], object]) -> float:
    start = perf_counter()
    fn()
    return (perf_counter() - start) * 1000


TARGETS = [
    ("steer_cpu_us", "<=", 2.0, "tracked call: mean CPU incl. background work (us)"),
    ("steer_cpu_se_us", "info", None, "  its standard error (us)"),
    ("prometheus_cpu_us", "info", None, "  prometheus_client Histogram.time(), same measure"),
    ("otel_cpu_us", "info", None, "  OpenTelemetry SDK record+add, same measure (us)"),
    ("steer_over_prometheus_cpu", "<=", 0.8, "tracked call / prometheus_client, mean CPU"),
    ("steer_over_otel_cpu", "info", None, "tracked call / OpenTelemetry SDK, mean CPU"),
    ("steer_wall_us", "info", None, "tracked call: mean wall time per call (us)"),
    ("prometheus_wall_us", "info", None, "  prometheus_client, same measure (us)"),
    ("steer_caller_median_us", "<=", 1.2, "tracked call: caller's median latency (us)"),
    ("prometheus_caller_median_us", "info", None, "  prometheus_client, same measure (us)"),
    ("steer_chunk_added_us", "<=", 0.15, "added cost per streamed chunk (us)"),
    ("chunk_openai_chat_us", "<=", 0.3, "per chunk: openai ChatCompletionChunk (us)"),
    ("chunk_openai_chat_marginal_us", "info", None, "  of which the chunk itself (us)"),
    ("chunk_openai_responses_us", "<=", 0.3, "per chunk: openai Responses text delta (us)"),
    ("chunk_openai_responses_marginal_us", "info", None, "  of which the chunk itself (us)"),
    ("chunk_anthropic_us", "<=", 0.3, "per chunk: anthropic content_block_delta (us)"),
    ("chunk_anthropic_marginal_us", "info", None, "  of which the chunk itself (us)"),
    ("chunk_gemini_us", "<=", 0.3, "per chunk: Gemini GenerateContentResponse (us)"),
    ("chunk_gemini_marginal_us", "info", None, "  of which the chunk itself (us)"),
    ("stream_start_end_us", "info", None, "a stream's start and end, its two records (us)"),
    ("openai_call_us", "info", None, "openai SDK chat call, in-process transport (us)"),
    ("decorator_added_us", "info", None, "  @track_request around it adds (us)"),
    ("instrument_added_us", "info", None, "  instrument() adds (us)"),
    ("instrument_added_se_us", "info", None, "    standard error of the instrumented mean"),
    ("throughput_records_per_s", ">=", 200_000, "4 producers into the in-memory sink (rec/s)"),
    ("throughput_dropped", "<=", 0, "records dropped in the throughput run"),
    ("memory_10k_records_mb", "<=", 8.0, "10,000 RequestMetrics in the in-memory sink (MB)"),
    ("overload_memory_growth_mb", "<=", 1.0, "memory growth across overload rounds (MB)"),
    ("summary_100k_ms", "<=", 100.0, "get_summary() over 100,000 records (ms)"),
    ("client_generate_added_pct", "<=", 1.0, "client generate, metrics on vs off: wall (%)"),
    ("client_generate_added_se_pct", "info", None, "  standard error of that (%)"),
    ("client_stream_added_pct", "<=", 1.0, "client 200-chunk stream, on vs off: wall (%)"),
    ("client_stream_added_se_pct", "info", None, "  standard error of that (%)"),
    ("client_generate_metrics_path_us", "info", None, "  metrics code per generate (us)"),
    ("client_stream_metrics_path_us", "info", None, "  metrics code per stream (us)"),
    ("client_generate_ms", "info", None, "  client generate against the local server (ms)"),
    ("client_stream_ms", "info", None, "  client stream of 200 chunks (ms)"),
    ("sse_events_per_s", ">=", 100_000, "SSE decoding + chunk accounting, one core (events/s)"),
    ("otlp_sink_records_per_s", ">=", 20_000, "OTLP sink, RequestMetrics processed (rec/s)"),
    ("otlp_sink_stream_us", "<=", 50, "OTLP sink, one 200-chunk StreamingMetrics (us)"),
    ("debug_json_10k_ms", "<=", 50.0, "debug summary JSON, 10,000 records (ms)"),
    ("dashboard_html_10k_ms", "<=", 50.0, "dashboard HTML, 10,000 records (ms)"),
]


def bench_sdk_overhead() -> Dict[str, float]:
    """What ``instrument()`` adds to the official SDKs' own calls (benchmarks/sdk_overhead.py,
    which has its own rows: see :func:`main`)."""
    import sdk_overhead  # imports this module: loaded only when run

    return sdk_overhead.bench_sdk_overhead()


def main() -> int:
    """Run every benchmark, or those named in ``BENCH_ONLY`` (comma-separated, without the
    ``bench_`` prefix); print the table; exit 1 if a target was missed."""
    only = [name for name in os.environ.get("BENCH_ONLY", "").split(",") if name]
    results: Dict[str, float] = {}
    rows = list(TARGETS)
    for bench in (
        bench_call_overhead,
        bench_stream_chunk,
        bench_sdk_chunks,
        bench_instrument,
        bench_throughput,
        bench_memory,
        bench_summary,
        bench_client_overhead,
        bench_sse,
        bench_otlp_sink,
        bench_dashboard,
        bench_sdk_overhead,
    ):
        if only and bench.__name__.replace("bench_", "") not in only:
            continue
        results.update(bench())
        if bench is bench_sdk_overhead:
            import sdk_overhead

            rows += sdk_overhead.TARGETS
    failed = 0
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    for key, op, target, label in rows:
        if key not in results:
            continue
        value = results[key]
        if op == "info":
            verdict = ""
        else:
            ok = value <= target if op == "<=" else value >= target
            failed += not ok
            verdict = f"target {op} {target:g}: {'ok' if ok else 'MISSED'}"
        print(f"{label:<58} {value:>12.3f}  {verdict}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    latest = out / "latest.json"
    if only and latest.exists():  # a partial run updates its own figures, keeps the others
        try:
            results = {**json.loads(latest.read_text()), **results}
        except ValueError:
            pass
    latest.write_text(json.dumps(results, indent=2, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
