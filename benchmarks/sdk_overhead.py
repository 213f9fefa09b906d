"""What ``instrument()`` adds to the official ``openai`` and ``anthropic`` SDKs' own calls.

Each SDK client talks to an in-process ``httpx.MockTransport`` that answers with bodies
built from the recorded provider traffic (``tests/fixtures/recorded`` and the wider
``../shared/fixtures/recorded`` corpus): non-streamed chat answers, and streams of exactly
``CHUNKS`` items (openai chat completions, the openai Responses API, anthropic messages),
SSE bytes as the providers send them, their middle repeated from the recorded deltas.

Three contenders per case, identical closures, taking turns batch by batch in one run
(:func:`run.interleaved_means`): ``plain`` (the SDK alone), ``control`` (the SDK alone
again: an A/A control that must read zero within its error, or the machine's drift is
larger than the figures) and ``instrumented`` (the same calls with
``instrument(collector=...)`` switched on around its batches; the collector has an
in-memory sink, as users get by default, whose ring is filled first so that every record
evicts an old one, as in a process that has run for a while). The measure is process CPU
(``time.process_time()``), so the flush thread's work counts; each batch ends with a
``collector.flush()`` inside the timed region (in every contender alike), so the background
work a batch caused is charged to that batch and not to the next one.

The run is cut into slices of three interleaved rounds; each slice gives a difference
(instrumented minus plain, control minus plain), and the figures are the mean of those
differences and its standard error. Paired so, a drift of the machine over seconds (large on
a shared VM) hits both sides of a difference alike.

Bars (issue 22): added <= 5 µs per non-streamed call and <= 0.6 µs per streamed chunk
(the stream's start and end included, spread over its chunks), each resolved: its
standard error below the bar.

A flush at the end of every batch of 100 calls also hands the flush thread the GIL at once,
as a real call does: its thread waits on the network for most of the call, GIL released.
Here no call waits at all, so the steady state is measured apart (``openai_chat_steady``,
information only): batches of 1,000 calls, the flush thread waking by itself at each full
batch of records while the caller keeps the GIL. It then waits for the GIL behind a
thread that releases it only for an instant in each call (the SDK's idempotency key reads
``os.urandom``): CPython hands the GIL over on such a release only if the waiter wins the
race, and asks the holder to drop it only after 5 ms without any release, so the flush
thread wakes and sleeps again about once per call until it wins. The run prints those
context switches per call beside the cost.

Run alone with ``python benchmarks/sdk_overhead.py`` (``BENCH_SDK_SLICES`` sets the number of
slices, default 100; ``BENCH_SDK_STEADY_SLICES`` those of the steady state, default 10);
``make bench`` runs it among the others.
"""

import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import yaml
from run import interleaved_means

ROOT = Path(__file__).resolve().parent.parent
RECORDED = ROOT / "tests" / "fixtures" / "recorded"
SHARED = ROOT.parent / "shared" / "fixtures" / "recorded"

#: Recorded exchanges of the wider corpus the bodies come from.
RESPONSES_STREAM = "test_background_mode_streaming_vcr.yaml"
ANTHROPIC_ANSWER = "test_anthropic_model_instructions.yaml"

#: Items in every benchmarked stream.
CHUNKS = 200
SLICES = int(os.environ.get("BENCH_SDK_SLICES", "100"))
STEADY_SLICES = int(os.environ.get("BENCH_SDK_STEADY_SLICES", "10"))
#: Calls per batch of the steady state: ten full batches of records each.
STEADY_BATCH = 1000

#: case -> (per what: "call" or "chunk", the bar in µs, batch size).
CASES: Dict[str, Tuple[str, float, int]] = {
    "openai_chat": ("call", 5.0, 100),
    "anthropic": ("call", 5.0, 100),
    "openai_chat_stream": ("chunk", 0.6, 5),
    "openai_responses_stream": ("chunk", 0.6, 5),
    "anthropic_stream": ("chunk", 0.6, 5),
}


def _interaction(path: Path) -> Dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["interactions"][0]  # type: ignore[no-any-return]


def _body(path: Path) -> bytes:
    """A recorded JSON answer as bytes (stored as text or decoded as ``parsed_body``)."""
    response = _interaction(path)["response"]
    if "parsed_body" in response:
        return json.dumps(response["parsed_body"]).encode()
    return response["body"]["string"].encode()  # type: ignore[no-any-return]


def _events(path: Path) -> List[Tuple[str, Any]]:
    """The SSE events of a recorded stream as ``(event name or "", decoded data)``; a
    ``[DONE]`` is left out."""
    text = _interaction(path)["response"]["body"]["string"]
    found = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data and data != ["[DONE]"]:
            found.append((name, json.loads("\n".join(data))))
    return found


def _stretched(events: List[Tuple[str, Any]], is_delta: Callable[[Any], bool]) -> List[Any]:
    """``events`` made ``CHUNKS`` long: what comes before the first delta, the recorded
    deltas repeated in turn, what comes after the last one."""
    deltas = [i for i, (_, data) in enumerate(events) if is_delta(data)]
    head, tail = events[: deltas[0]], events[deltas[-1] + 1 :]
    middle = [events[deltas[i % len(deltas)]] for i in range(CHUNKS - len(head) - len(tail))]
    return head + middle + tail


def _sse(events: List[Tuple[str, Any]], done: bool = False) -> bytes:
    lines = []
    for name, data in events:
        if name:
            lines.append(f"event: {name}\n")
        lines.append(f"data: {json.dumps(data, separators=(',', ':'))}\n\n")
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def bodies() -> Dict[str, Tuple[bytes, str]]:
    """Every case's answer: ``(body, content type)``."""
    chat = _stretched(
        _events(RECORDED / "openai_chat_stream_include_usage.yaml"),
        lambda data: bool(data["choices"] and data["choices"][0]["delta"].get("content")),
    )
    responses = _stretched(
        _events(SHARED / "pydantic-ai" / "test_openai_responses" / RESPONSES_STREAM),
        lambda data: data["type"] == "response.output_text.delta",
    )
    for number, (_, data) in enumerate(responses):  # renumbered, as the API numbers them
        data = dict(data)
        data["sequence_number"] = number
        responses[number] = (responses[number][0], data)
    messages = _stretched(
        _events(RECORDED / "anthropic_messages_stream.yaml"),
        lambda data: data["type"] == "content_block_delta",
    )
    json_type, sse_type = "application/json", "text/event-stream; charset=utf-8"
    return {
        "openai_chat": (_body(RECORDED / "openai_chat_nonstream.yaml"), json_type),
        "anthropic": (
            _body(SHARED / "pydantic-ai" / "test_anthropic" / ANTHROPIC_ANSWER),
            json_type,
        ),
        "openai_chat_stream": (_sse(chat, done=True), sse_type),
        "openai_responses_stream": (_sse(responses), sse_type),
        "anthropic_stream": (_sse(messages), sse_type),
    }


def _clients(answers: Dict[str, Tuple[bytes, str]]) -> Tuple[Any, Any, List[Any]]:
    """An openai and an anthropic client whose transport answers each request with the
    body its case names (the case travels in a header set per call)."""
    import anthropic
    import openai

    try:  # the SDKs' HTTP library: httpx, or its successor httpx2
        import httpx2 as httpx  # type: ignore[import-not-found]
    except ImportError:
        import httpx  # type: ignore[no-redef]

    def answer(request: Any) -> Any:
        body, content_type = answers[request.headers["x-bench-case"]]
        return httpx.Response(200, content=body, headers={"content-type": content_type})

    transports = [httpx.Client(transport=httpx.MockTransport(answer)) for _ in range(2)]
    oai = openai.OpenAI(api_key="bench", max_retries=0, http_client=transports[0])
    ant = anthropic.Anthropic(api_key="bench", max_retries=0, http_client=transports[1])
    return oai, ant, [oai, ant, *transports]


def _calls(oai: Any, ant: Any) -> Dict[str, Callable[[], Any]]:
    """Each case's SDK call, consumed as users do (a stream by an inline ``for`` loop)."""
    user = [{"role": "user", "content": "Say this is a test"}]

    def header(case: str) -> Dict[str, str]:
        return {"x-bench-case": case}

    def openai_chat() -> Any:
        return oai.chat.completions.create(
            model="gpt-4o-mini", messages=user, extra_headers=header("openai_chat")
        )

    def anthropic_call() -> Any:
        return ant.messages.create(
            model="claude-3-opus-latest",
            max_tokens=64,
            messages=user,
            extra_headers=header("anthropic"),
        )

    def openai_chat_stream() -> None:
        for _ in oai.chat.completions.create(
            model="gpt-4",
            messages=user,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=header("openai_chat_stream"),
        ):
            pass

    def openai_responses_stream() -> None:
        for _ in oai.responses.create(
            model="gpt-4o",
            input="What is 2 + 2?",
            stream=True,
            extra_headers=header("openai_responses_stream"),
        ):
            pass

    def anthropic_stream() -> None:
        for _ in ant.messages.create(
            model="claude-3-5-haiku-20241022",
            max_tokens=64,
            messages=user,
            stream=True,
            extra_headers=header("anthropic_stream"),
        ):
            pass

    return {
        "openai_chat": openai_chat,
        "anthropic": anthropic_call,
        "openai_chat_stream": openai_chat_stream,
        "openai_responses_stream": openai_responses_stream,
        "anthropic_stream": anthropic_stream,
    }


def _load() -> float:
    return os.getloadavg()[0]


def _settled(call: Callable[[], Any], collector: Any, batch: int) -> Callable[[str], None]:
    """A contender: ``call()``, and after every ``batch`` calls ``collector.flush()`` (the
    background work of the batch, charged to it)."""
    done = [0]

    def run(_: str) -> None:
        call()
        done[0] += 1
        if done[0] % batch == 0:
            collector.flush(10)

    return run


def _case(
    case: str,
    call: Callable[[], Any],
    collector: Any,
    instrumented: Tuple[Callable[[], object], Callable[[], object]],
    slices: int = SLICES,
    batch: int = 0,
) -> Dict[str, float]:
    """The figures of one case (see :func:`bench_sdk_overhead`): ``slices`` slices of
    three interleaved rounds each (so that each contender takes each place in the order
    once: a batch right after an instrumented one would otherwise pay more often for what
    that one left behind), a difference per slice (paired: the machine's drift over seconds,
    large here, hits both sides of a slice alike), their mean and standard error. ``batch``
    overrides the case's batch size (the calls between two flushes)."""
    unit, _, size = CASES[case]
    batch = batch or size
    per = CHUNKS if unit == "chunk" else 1
    contenders = {
        name: _settled(call, collector, batch) for name in ("plain", "control", "instrumented")
    }
    hooks = {"instrumented": instrumented}
    rounds = len(contenders)
    interleaved_means(contenders, rounds=rounds, batch=batch, warmup=batch * 3, hooks=hooks)
    plain: List[float] = []
    diffs: Dict[str, List[float]] = {"instrumented": [], "control": []}
    for _ in range(slices):
        means = interleaved_means(contenders, rounds=rounds, batch=batch, warmup=0, hooks=hooks)
        plain.append(means["plain"]["cpu"] / per)
        for name, found in diffs.items():
            found.append((means[name]["cpu"] - means["plain"]["cpu"]) / per)
    out = {f"sdk_{case}_plain_us": statistics.mean(plain)}
    for name, key in (("instrumented", "added"), ("control", "control")):
        out[f"sdk_{case}_{key}_us"] = statistics.mean(diffs[name])
        out[f"sdk_{case}_{key}_se_us"] = statistics.stdev(diffs[name]) / slices**0.5
    out[f"sdk_{case}_control_z"] = abs(out[f"sdk_{case}_control_us"]) / (
        out[f"sdk_{case}_control_se_us"] or 1.0
    )
    return out


def bench_sdk_overhead() -> Dict[str, float]:
    """Per case ``sdk_<case>_added_us`` (instrumented minus plain, per call or per chunk),
    its standard error ``sdk_<case>_added_se_us``, the A/A control ``sdk_<case>_control_us``
    (control minus plain, same unit) with ``sdk_<case>_control_z`` (its size in its own
    standard errors: it reads zero within its error when below 2), and the SDK's own cost
    ``sdk_<case>_plain_us``; ``sdk_load_start``/``sdk_load_end``: the 1-minute load average
    around the run. Means and standard errors are over the run's slices (see :func:`_case`)."""
    from steer_llm_sdk.observability import (
        MetricsCollector,
        MetricsConfig,
        instrument,
        uninstrument,
    )
    from steer_llm_sdk.observability.sinks import InMemoryMetricsSink

    oai, ant, closables = _clients(bodies())
    calls = _calls(oai, ant)
    sink = InMemoryMetricsSink()
    collector = MetricsCollector(MetricsConfig(), [sink])
    results: Dict[str, float] = {"sdk_load_start": _load()}

    def instrument_on() -> None:
        instrument("openai", "anthropic", collector=collector)

    try:
        # The steady state: the sink's ring full, so that each record evicts an old one.
        instrument_on()
        while len(sink) < sink.max_size:
            for _ in range(100):
                calls["openai_chat"]()
            collector.flush(10)
        uninstrument()
        for case in CASES:
            results.update(_case(case, calls[case], collector, (instrument_on, uninstrument)))
        results.update(_steady(calls["openai_chat"], collector, instrument_on, uninstrument))
        results.update(_measure_cost(collector, oai))
    finally:
        uninstrument()
        collector.shutdown(5)
        for closable in closables:
            closable.close()
    results["sdk_load_end"] = _load()
    return results


def _switches() -> int:
    """Context switches so far of every thread of this process but the main one (Linux;
    0 elsewhere)."""
    total = 0
    main = str(threading.main_thread().native_id)
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0
    for task in tasks:
        if task == main:
            continue
        try:
            with open(f"/proc/self/task/{task}/status", encoding="ascii") as status:
                for line in status:
                    if "ctxt_switches" in line:  # voluntary and not
                        total += int(line.split()[1])
        except (OSError, ValueError):
            continue  # a thread that ended meanwhile
    return total


def _steady(
    call: Callable[[], Any],
    collector: Any,
    instrument_on: Callable[[], object],
    uninstrument: Callable[[], object],
) -> Dict[str, float]:
    """The openai chat case in the steady state (see the module docstring): what
    ``instrument()`` adds per call when the flush thread wakes by itself, and the context
    switches of the background threads per instrumented call
    (``sdk_openai_chat_steady_switches``)."""
    made = [0]  # calls made so far, by every contender
    counted = {"switches": 0, "calls": 0, "switches_at": 0, "calls_at": 0}

    def counting() -> Any:
        made[0] += 1
        return call()

    def enter() -> None:
        instrument_on()
        counted["switches_at"], counted["calls_at"] = _switches(), made[0]

    def leave() -> None:  # the instrumented batches (and their warm-up) only
        counted["switches"] += _switches() - counted["switches_at"]
        counted["calls"] += made[0] - counted["calls_at"]
        uninstrument()

    found = _case("openai_chat", counting, collector, (enter, leave), STEADY_SLICES, STEADY_BATCH)
    out = {key.replace("openai_chat", "openai_chat_steady"): v for key, v in found.items()}
    out["sdk_openai_chat_steady_switches"] = counted["switches"] / max(counted["calls"], 1)
    return out


def _measure_cost(collector: Any, oai: Any, calls: int = 3000) -> Dict[str, float]:
    """Where the added time of a blocking call goes, on the caller's thread: the time
    ``measure()`` (what ``instrument()``'s wrapper runs) spends around an openai chat call,
    the SDK call itself left out. ``sdk_measure_in_situ_us``: each measured call amid the
    SDK's own work, as users run it; ``sdk_measure_hot_us``: the same path run back to back
    around a call that returns a recorded response at once. Medians of per-call times (the
    wrapper's own lines before ``measure()`` are in neither)."""
    from steer_llm_sdk.observability.measure.sdk import measure

    create = oai.chat.completions.create  # not instrumented here: the SDK's own method
    keywords = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say this is a test"}],
        "extra_headers": {"x-bench-case": "openai_chat"},
    }
    inner = [0.0]

    def timed(call: Callable[..., Any]) -> Callable[..., Any]:
        def run(**kwargs: Any) -> Any:
            start = time.perf_counter()
            result = call(**kwargs)
            inner[0] = time.perf_counter() - start
            return result

        return run

    response = create(**keywords)
    out: Dict[str, float] = {}
    for key, call in (("in_situ", timed(create)), ("hot", timed(lambda **_: response))):
        found = []
        for i in range(calls):
            start = time.perf_counter()
            measure(collector, call, "openai", "chat", "gpt-4o-mini", {}, kwargs=keywords)
            found.append(time.perf_counter() - start - inner[0])
            if i % 100 == 99:
                collector.flush(10)
        out[f"sdk_measure_{key}_us"] = statistics.median(found[calls // 10 :]) * 1e6
    return out


#: Rows for ``run.py``'s table: (key, op, target, label).
TARGETS = [
    ("sdk_load_start", "info", None, "SDK overhead: 1-minute load average at the start"),
    ("sdk_openai_chat_plain_us", "info", None, "openai chat call alone, process CPU (us)"),
    ("sdk_openai_chat_added_us", "<=", 5.0, "  instrument() adds per call (us)"),
    ("sdk_openai_chat_added_se_us", "<=", 5.0, "    its standard error (us)"),
    ("sdk_openai_chat_control_us", "info", None, "    A/A control, plain vs plain (us)"),
    ("sdk_openai_chat_control_z", "<=", 2.0, "    A/A control in standard errors"),
    ("sdk_measure_in_situ_us", "info", None, "    measure() around it, caller, median (us)"),
    ("sdk_measure_hot_us", "info", None, "    the same run back to back, median (us)"),
    (
        "sdk_openai_chat_steady_added_us",
        "info",
        None,
        "  steady state, flush thread on its own (us)",
    ),
    ("sdk_openai_chat_steady_added_se_us", "info", None, "    its standard error (us)"),
    ("sdk_openai_chat_steady_control_z", "info", None, "    A/A control in standard errors"),
    (
        "sdk_openai_chat_steady_switches",
        "info",
        None,
        "    background threads' context switches per call",
    ),
    ("sdk_anthropic_plain_us", "info", None, "anthropic messages call alone (us)"),
    ("sdk_anthropic_added_us", "<=", 5.0, "  instrument() adds per call (us)"),
    ("sdk_anthropic_added_se_us", "<=", 5.0, "    its standard error (us)"),
    ("sdk_anthropic_control_us", "info", None, "    A/A control, plain vs plain (us)"),
    ("sdk_anthropic_control_z", "<=", 2.0, "    A/A control in standard errors"),
    ("sdk_openai_chat_stream_plain_us", "info", None, "openai chat stream alone, per chunk (us)"),
    ("sdk_openai_chat_stream_added_us", "<=", 0.6, "  instrument() adds per chunk (us)"),
    ("sdk_openai_chat_stream_added_se_us", "<=", 0.6, "    its standard error (us)"),
    ("sdk_openai_chat_stream_control_us", "info", None, "    A/A control, per chunk (us)"),
    ("sdk_openai_chat_stream_control_z", "<=", 2.0, "    A/A control in standard errors"),
    ("sdk_openai_responses_stream_plain_us", "info", None, "openai Responses stream, per chunk"),
    ("sdk_openai_responses_stream_added_us", "<=", 0.6, "  instrument() adds per chunk (us)"),
    ("sdk_openai_responses_stream_added_se_us", "<=", 0.6, "    its standard error (us)"),
    ("sdk_openai_responses_stream_control_us", "info", None, "    A/A control, per chunk (us)"),
    ("sdk_openai_responses_stream_control_z", "<=", 2.0, "    A/A control in standard errors"),
    ("sdk_anthropic_stream_plain_us", "info", None, "anthropic stream alone, per chunk (us)"),
    ("sdk_anthropic_stream_added_us", "<=", 0.6, "  instrument() adds per chunk (us)"),
    ("sdk_anthropic_stream_added_se_us", "<=", 0.6, "    its standard error (us)"),
    ("sdk_anthropic_stream_control_us", "info", None, "    A/A control, per chunk (us)"),
    ("sdk_anthropic_stream_control_z", "<=", 2.0, "    A/A control in standard errors"),
    ("sdk_load_end", "info", None, "SDK overhead: 1-minute load average at the end"),
]


def main() -> int:
    """Run the benchmark, print its table; exit 1 if a bar was missed or not resolved, or
    a control did not read zero."""
    start = time.monotonic()
    results = bench_sdk_overhead()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {SLICES} slices, ", end="")
    print(f"{time.monotonic() - start:.0f} s")
    failed = 0
    for key, op, target, label in TARGETS:
        value = results[key]
        verdict = ""
        if op != "info":
            ok = value <= target
            failed += not ok
            verdict = f"target {op} {target:g}: {'ok' if ok else 'MISSED'}"
        print(f"{label:<58} {value:>10.3f}  {verdict}")
    print("raw:", json.dumps({k: round(v, 4) for k, v in sorted(results.items())}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
