"""One admission step: every way in (record(), decorator, context manager, generator,
iterator-returning function, client generate, client stream, instrument() around the official
openai SDK, blocking and streamed) is counted alike in every
collector state (sampling 0 and 1, disabled, after shutdown, queue full, after os.fork(), a
filter that drops).

Each entry makes exactly one call that yields one RequestMetrics (streaming and reliability
records are switched off), and the stats delta of that call is compared with the expected one
for the condition. Removing any check from the admission function makes a row fail.
"""

import json
import os
import threading
import time
from typing import Any, Callable, Dict

import pytest
from support.sdk_clients import closing
from support.sinks import RecordingSink
from support.waiting import Gate, wait_until

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.observability import (
    MetricsCollector,
    MetricsConfig,
    RequestMetrics,
    instrument,
    uninstrument,
)
from steer_llm_sdk.observability._ids import new_request_id


def _record(collector: MetricsCollector, server: Any) -> None:
    collector.record(RequestMetrics(time.time(), new_request_id(), "openai", "gpt-4o-mini"))


def _decorator(collector: MetricsCollector, server: Any) -> None:
    @collector.track_request("openai")
    def ask(prompt: str, model: str = "gpt-4o-mini") -> str:
        return "answer"

    ask("hi")


def _context_manager(collector: MetricsCollector, server: Any) -> None:
    with collector.track_request("openai", model="gpt-4o-mini"):
        pass


def _generator(collector: MetricsCollector, server: Any) -> None:
    @collector.track_request("openai")
    def words(model: str = "gpt-4o-mini"):
        yield "a"
        yield "b"

    assert list(words()) == ["a", "b"]


def _iterator_function(collector: MetricsCollector, server: Any) -> None:
    @collector.track_request("openai")
    def words(model: str = "gpt-4o-mini"):
        return iter(["a", "b"])

    assert list(words()) == ["a", "b"]


def _client_generate(collector: MetricsCollector, server: Any) -> None:
    with SteerLLMClient(
        metrics_collector=collector, openai_base_url=server.openai_base_url, openai_api_key="k"
    ) as client:
        client.generate("hi", "gpt-4o-mini", retries=0)


def _client_stream(collector: MetricsCollector, server: Any) -> None:
    with (
        SteerLLMClient(
            metrics_collector=collector, openai_base_url=server.openai_base_url, openai_api_key="k"
        ) as client,
        client.stream("hi", "gpt-4o-mini", retries=0) as stream,
    ):
        assert "".join(stream)


def _instrumented(collector: MetricsCollector, server: Any, stream: bool) -> None:
    openai = pytest.importorskip("openai")
    instrument("openai", collector=collector)
    try:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="k")
        with closing(client):
            create = client.chat.completions.create
            messages = [{"role": "user", "content": "hi"}]
            if stream:
                options = {"include_usage": True}
                chunks = create(
                    model="gpt-4o-mini", messages=messages, stream=True, stream_options=options
                )
                assert list(chunks)
            else:
                assert create(model="gpt-4o-mini", messages=messages).choices
    finally:
        uninstrument()


def _instrument_create(collector: MetricsCollector, server: Any) -> None:
    _instrumented(collector, server, stream=False)


def _instrument_stream(collector: MetricsCollector, server: Any) -> None:
    _instrumented(collector, server, stream=True)


ENTRIES: Dict[str, Callable[[MetricsCollector, Any], None]] = {
    "record": _record,
    "decorator": _decorator,
    "context_manager": _context_manager,
    "generator": _generator,
    "iterator_function": _iterator_function,
    "client_generate": _client_generate,
    "client_stream": _client_stream,
    "instrument_create": _instrument_create,
    "instrument_stream": _instrument_stream,
}

_QUIET = dict(
    enable_streaming_metrics=False,
    enable_reliability_metrics=False,
    enable_cost_tracking=False,
    batch_timeout_seconds=0.02,
    flush_on_exit=False,
)


def _delta(before: Dict[str, Any], after: Dict[str, Any]) -> Dict[str, Any]:
    """What one call changed: the counters that moved, flattened."""
    out: Dict[str, Any] = {}
    for key in ("recorded", "sampled_out", "filtered", "queued"):
        if after[key] != before[key]:
            out[key] = after[key] - before[key]
    for reason, n in after["dropped"].items():
        if n != before["dropped"][reason]:
            out[f"dropped.{reason}"] = n - before["dropped"][reason]
    for name, counters in after["sinks"].items():
        delivered = counters["delivered"] - before["sinks"][name]["delivered"]
        if delivered:
            out[f"{name}.delivered"] = delivered
    return out


def _settle(collector: MetricsCollector) -> Dict[str, Any]:
    if not collector.is_shutdown:
        assert collector.flush(5)
    return collector.stats().to_dict()


def _run(collector: MetricsCollector, entry: str, server: Any) -> Dict[str, Any]:
    before = _settle(collector)
    ENTRIES[entry](collector, server)
    return _delta(before, _settle(collector))


CONDITIONS = {
    "sampled_in": {"recorded": 1, "recording.delivered": 1},
    "sampled_out": {"recorded": 1, "sampled_out": 1},
    "disabled": {},
    "after_shutdown": {"recorded": 1, "dropped.after_shutdown": 1},
    "filter_drops": {"recorded": 1, "filtered": 1},
}


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("condition", list(CONDITIONS))
def test_every_entry_is_admitted_alike(entry, condition, module_server):
    config = dict(_QUIET)
    if condition == "sampled_out":
        config.update(request_sampling_rate=0.0, streaming_sampling_rate=0.0)
    if condition == "disabled":
        config.update(enabled=False)
    if condition == "filter_drops":
        config.update(filters=[lambda record: None])
    sink = RecordingSink()
    collector = MetricsCollector(MetricsConfig(**config), [sink])
    try:
        if condition == "after_shutdown":
            collector.shutdown(5)
        assert _run(collector, entry, module_server) == CONDITIONS[condition]
    finally:
        collector.shutdown(5)


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_every_entry_counts_a_full_queue(entry, module_server):
    plug = Gate()  # holds the flush thread while the queue fills
    sink = RecordingSink()
    collector = MetricsCollector(
        MetricsConfig(**{**_QUIET, "max_queue_size": 1, "filters": [plug]}), [sink]
    )
    try:
        _record(collector, module_server)  # taken by the flush thread, which then waits in plug
        assert plug.entered.wait(5)
        _record(collector, module_server)  # fills the queue (max 1)
        before = collector.stats().to_dict()
        ENTRIES[entry](collector, module_server)
        after = collector.stats().to_dict()
        assert _delta(before, after) == {"recorded": 1, "dropped.queue_full": 1}
    finally:
        plug.release.set()
        collector.shutdown(5)
    stats = collector.stats()
    assert stats.unaccounted("recording") == 0 and stats.pending == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.timeout(30)
@pytest.mark.parametrize("entry", list(ENTRIES))
def test_every_entry_is_admitted_alike_after_fork(entry, module_server):
    sink = RecordingSink()
    collector = MetricsCollector(MetricsConfig(**_QUIET), [sink])
    try:
        ENTRIES["record"](collector, module_server)  # the parent's threads are running
        assert collector.flush(5)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its own threads, queue and counters
            code = 1
            try:
                delta = _run(collector, entry, module_server)
                os.write(write, json.dumps(delta).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read) as pipe:
            child = json.loads(pipe.read() or "null")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert child == {"recorded": 1, "recording.delivered": 1}
        assert wait_until(lambda: collector.stats().sinks["recording"].delivered == 1)
    finally:
        collector.shutdown(5)


def test_user_built_records_are_validated_on_the_callers_thread():
    """Validation of a record built or touched by user code runs in admission, so the flush
    thread (whose time is taken from every thread under the GIL) does not repeat it."""
    threads = set()

    class Probe:
        def __str__(self) -> str:
            threads.add(threading.get_ident())
            return "probe-model"

    sink = RecordingSink()
    collector = MetricsCollector(MetricsConfig(**_QUIET), [sink])
    try:
        record = RequestMetrics(time.time(), new_request_id(), "openai")
        record.model = Probe()  # type: ignore[assignment]
        assert collector.record(record)
        assert collector.flush(5)
        assert threads == {threading.get_ident()}
        assert sink.records[0].model == "probe-model"
        assert collector.stats().sanitized == 1
    finally:
        collector.shutdown(5)


@pytest.mark.parametrize("kind", ["function", "generator"])
def test_explicit_none_model_means_not_given(kind):
    """``ask("hi", None)`` records the signature's default model, for plain and generator
    functions alike (one model lookup)."""
    sink = RecordingSink()
    collector = MetricsCollector(MetricsConfig(**_QUIET), [sink])
    try:
        if kind == "function":

            @collector.track_request("openai")
            def ask(prompt: str, model: str = "gpt-4o-mini") -> str:
                return "x"

            ask("hi", None)
            ask("hi", model=None)
        else:

            @collector.track_request("openai")
            def ask(prompt: str, model: str = "gpt-4o-mini"):  # type: ignore[no-redef]
                yield "x"

            list(ask("hi", None))
            list(ask("hi", model=None))
        assert collector.flush(5)
        assert [r.model for r in sink.records] == ["gpt-4o-mini", "gpt-4o-mini"]
    finally:
        collector.shutdown(5)


def test_state_changes_at_run_time_choose_a_new_admission(module_server):
    sink = RecordingSink()
    collector = MetricsCollector(MetricsConfig(**_QUIET), [sink])
    try:
        assert _run(collector, "decorator", module_server) == CONDITIONS["sampled_in"]
        collector.set_sampling(request_rate=0.0, streaming_rate=0.0)
        assert _run(collector, "decorator", module_server) == CONDITIONS["sampled_out"]
        assert _run(collector, "client_stream", module_server) == CONDITIONS["sampled_out"]
        collector.enabled = False
        assert _run(collector, "record", module_server) == CONDITIONS["disabled"]
        collector.enabled = True
        collector.set_sampling(request_rate=1.0, streaming_rate=1.0)
        assert _run(collector, "context_manager", module_server) == CONDITIONS["sampled_in"]
        with pytest.raises(ValueError, match="request_rate"):
            collector.set_sampling(request_rate=1.5)
    finally:
        collector.shutdown(5)


def test_the_operation_name_is_recorded_by_every_entry():
    sink = RecordingSink()
    collector = MetricsCollector(MetricsConfig(**_QUIET), [sink])
    try:
        tracker = collector.track_request("openai", model="m", operation="embeddings")
        tracker(lambda: "x")()
        with tracker:
            pass
        collector.track_request("openai", model="m")(lambda: "x")()
        assert collector.flush(5)
        assert [r.operation for r in sink.records] == ["embeddings", "embeddings", "chat"]
    finally:
        collector.shutdown(5)
