"""The metrics context across threads: pool-served tracked generators, suspended generators,
``with track_request`` entered on one thread and left on another, propagation into thread
pools, nested explicit trackers (issue 19, see the "measured call" semantics).

Real threads throughout; every wait is bounded (futures' ``result(timeout)``, ``Event.wait``,
``Barrier(timeout=...)``), none is a bare sleep.
"""

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Tuple

import pytest

from steer_llm_sdk.observability import (
    bind_context,
    current_attributes,
    current_metrics,
    instrument,
    metrics_context,
    uninstrument,
)

openai = pytest.importorskip("openai")

WAIT = 10.0  # seconds: the bound of every wait
DONE = object()  # what next(generator, DONE) returns once the generator is exhausted
USER = [{"role": "user", "content": "hi"}]


# ---------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def collector(make_collector, sink):
    return make_collector([sink], enable_cost_tracking=False)


@pytest.fixture
def client(module_server, collector):
    """An official openai client pointed at the local server, its SDK instrumented into
    ``collector`` for the test."""
    instrument("openai", collector=collector)
    sdk = openai.OpenAI(base_url=module_server.openai_base_url, api_key="test", max_retries=0)
    try:
        yield sdk
    finally:
        uninstrument()
        sdk.close()


def delivered(collector, sink) -> List[Any]:
    assert collector.flush(WAIT)
    return list(sink.records)


def requests_of(records: List[Any], provider: str) -> List[Any]:
    return [r for r in records if r.metric_type == "request" and r.provider == provider]


def one(records: List[Any]) -> Any:
    assert len(records) == 1, records
    return records[0]


def attrs(record: Any) -> Dict[str, Any]:
    return dict(record.attributes)


def usage_of(record: Any) -> Tuple[Any, Any, Any]:
    return record.prompt_tokens, record.completion_tokens, record.total_tokens


def provider_usage(response: Any) -> Tuple[int, int, int]:
    u = response.usage
    return u.prompt_tokens, u.completion_tokens, u.total_tokens


def run_threads(*targets: Callable[[], None]) -> None:
    """Run each target on its own thread; re-raise the first failure."""
    errors: List[BaseException] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(t), daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads), "a thread did not finish in time"
    if errors:
        raise errors[0]


class SteeredPool:
    """A shared ``ThreadPoolExecutor(max_workers=2)`` whose tasks can be sent to one of its two
    threads: :meth:`run` submits two tasks that meet at a barrier (so they occupy both
    threads); the one that landed on the wanted thread runs the function. Tasks must be
    submitted one :meth:`run` at a time."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="web")
        gate = threading.Barrier(2, timeout=WAIT)

        def ident() -> int:
            gate.wait()
            return threading.get_ident()

        futures = [self.executor.submit(ident) for _ in range(2)]
        self.idents = sorted(f.result(WAIT) for f in futures)
        assert self.idents[0] != self.idents[1]

    def run(self, fn: Callable[[], Any], on: int) -> Any:
        target = self.idents[on]
        gate = threading.Barrier(2, timeout=WAIT)

        def task() -> Tuple[bool, Any]:
            gate.wait()
            if threading.get_ident() != target:
                return False, None
            return True, fn()

        futures = [self.executor.submit(task) for _ in range(2)]
        results = [f.result(WAIT) for f in futures]
        (value,) = [value for ran, value in results if ran]
        return value

    def close(self) -> None:
        self.executor.shutdown(wait=True)


# ---------------------------------------------------------------------- 1. pool-served generators


def _web_app(collector: Any, steps: int, seen: Dict[str, List[Any]]) -> Tuple[Any, Any, Any]:
    """(handler, probe, inner) of a web app streaming ``steps`` chunks per request.

    ``handler(tenant)`` runs inside ``metrics_context(tenant=...)`` and returns a tracked
    generator; its body wraps each yield in ``metrics_context(step=i)`` and makes a tracked
    ``inner`` call per step, noting what it sees in ``seen[tenant]``. ``probe(label)`` is a
    plain tracked call returning the attributes in effect on its thread.
    """

    @collector.track_request("inner")
    def inner(model: str) -> None:
        return None

    @collector.track_request("web", model="stream")
    def respond(tenant: str) -> Any:
        for i in range(steps):
            with metrics_context(step=i):
                own = current_metrics()
                seen[tenant].append(
                    (i, threading.get_ident(), current_attributes(), own and own.request_id)
                )
                inner(model=f"{tenant}/{i}")
                yield f"{tenant}:{i}"

    def handler(tenant: str) -> Any:
        with metrics_context(tenant=tenant):
            return respond(tenant)

    @collector.track_request("probe")
    def probe(model: str) -> Dict[str, Any]:
        return current_attributes()

    return handler, probe, inner


def _check_web_records(records: List[Any], tenants: List[str], steps: int) -> Dict[str, Any]:
    """Each request's records carry its own tenant (and the step, for inner calls) and
    nothing else; returns the web RequestMetrics by tenant."""
    web = {attrs(r).get("tenant"): r for r in requests_of(records, "web")}
    assert sorted(web, key=str) == sorted(tenants), requests_of(records, "web")
    for tenant, record in web.items():
        assert attrs(record) == {"tenant": tenant}, record
        assert record.success is True and record.method == "stream"
    streams = [r for r in records if r.metric_type == "streaming"]
    assert sorted(s.request_id for s in streams) == sorted(r.request_id for r in web.values())
    for s in streams:
        assert s.total_chunks == steps and s.status == "completed", s

    inners = requests_of(records, "inner")
    assert len(inners) == len(tenants) * steps, inners
    for r in inners:
        tenant, step = r.model.split("/")
        assert attrs(r) == {"tenant": tenant, "step": int(step)}, r
        # An explicit tracked call inside a tracked generator's body is nested in it.
        assert r.parent_request_id == web[tenant].request_id, r
    return web


def test_pool_served_generators_keep_their_own_tenant(collector, sink):
    """Starlette-style: each next() of a request's stream is a pool task, so consecutive steps
    of one generator run on different pool threads and steps of different requests
    interleave on one thread. Every step task runs inside the pool thread's own
    metrics_context(lane=...), which the generators must neither see nor wipe."""
    steps = 3
    tenants = ["t0", "t1", "t2", "t3"]
    seen: Dict[str, List[Any]] = {t: [] for t in tenants}
    handler, probe, _ = _web_app(collector, steps, seen)
    pool = SteeredPool()
    try:
        # The handlers run on the pool too (a sync endpoint), each in its tenant's context.
        streams = {t: pool.run(lambda t=t: handler(t), on=j % 2) for j, t in enumerate(tenants)}
        assert pool.run(current_attributes, on=0) == {}
        assert pool.run(current_attributes, on=1) == {}

        chunks: Dict[str, List[Any]] = {t: [] for t in tenants}
        lanes: List[Tuple[str, Dict[str, Any]]] = []
        for rnd in range(steps + 1):  # the last round exhausts every stream
            for j, tenant in enumerate(tenants):
                lane = f"w{(rnd + j) % 2}"

                def step(gen: Any = streams[tenant], lane: str = lane) -> Any:
                    with metrics_context(lane=lane):
                        value = next(gen, DONE)
                        lanes.append((lane, current_attributes()))
                        probe(model=f"lane/{lane}")
                    return value

                value = pool.run(step, on=(rnd + j) % 2)
                if value is not DONE:
                    chunks[tenant].append(value)
            # Between steps, a plain tracked call made directly on each pool thread.
            for on in (0, 1):
                assert pool.run(lambda on=on: probe(model=f"between/{on}"), on=on) == {}
    finally:
        pool.close()

    assert chunks == {t: [f"{t}:{i}" for i in range(steps)] for t in tenants}
    # Resuming or finishing a generator on a thread left that thread's own attributes intact.
    assert all(after == {"lane": lane} for lane, after in lanes), lanes

    # The scenario really happened: steps alternate threads, threads mix requests.
    by_thread: Dict[int, set] = {}
    for tenant, steps_seen in seen.items():
        threads = [ident for _, ident, _, _ in steps_seen]
        assert all(a != b for a, b in zip(threads, threads[1:])), (tenant, threads)
        for ident in threads:
            by_thread.setdefault(ident, set()).add(tenant)
    assert len(by_thread) == 2 and all(len(ts) >= 2 for ts in by_thread.values())

    records = delivered(collector, sink)
    web = _check_web_records(records, tenants, steps)
    for tenant, steps_seen in seen.items():
        for i, _, attributes, own_id in steps_seen:
            # The body sees its request's attributes plus its own, never the pool thread's.
            assert attributes == {"tenant": tenant, "step": i}, (tenant, attributes)
            assert own_id == web[tenant].request_id, (tenant, i)

    probes = requests_of(records, "probe")
    assert len(probes) == len(tenants) * (steps + 1) + 2 * (steps + 1)
    for r in probes:
        kind, _, lane = r.model.partition("/")
        expected = {"lane": lane} if kind == "lane" else {}
        assert attrs(r) == expected, r
        assert r.parent_request_id is None, r


def test_concurrent_requests_on_a_shared_pool(collector, sink):
    """The same app under real concurrency: four request threads start together and advance
    their streams with plain ``pool.submit(next, ...)`` on one ``ThreadPoolExecutor(2)``,
    interleaved with plain tracked calls on the same pool. Whatever the interleaving, no
    record carries another request's tenant and no pool-thread record carries any."""
    steps = 4
    tenants = ["a", "b", "c", "d"]
    seen: Dict[str, List[Any]] = {t: [] for t in tenants}
    handler, probe, _ = _web_app(collector, steps, seen)
    start = threading.Barrier(len(tenants), timeout=WAIT)
    chunks: Dict[str, List[Any]] = {}
    between: List[Dict[str, Any]] = []

    with ThreadPoolExecutor(max_workers=2) as pool:

        def serve(tenant: str) -> Callable[[], None]:
            def request() -> None:
                start.wait()
                gen = pool.submit(handler, tenant).result(WAIT)
                got = []
                while True:
                    value = pool.submit(next, gen, DONE).result(WAIT)
                    between.append(pool.submit(probe, model="between").result(WAIT))
                    if value is DONE:
                        break
                    got.append(value)
                chunks[tenant] = got

            return request

        run_threads(*[serve(t) for t in tenants])

    assert chunks == {t: [f"{t}:{i}" for i in range(steps)] for t in tenants}
    assert between == [{}] * (len(tenants) * (steps + 1)), between
    records = delivered(collector, sink)
    _check_web_records(records, tenants, steps)
    for tenant, steps_seen in seen.items():
        assert [a for _, _, a, _ in steps_seen] == [
            {"tenant": tenant, "step": i} for i in range(steps)
        ]
    probes = requests_of(records, "probe")
    assert len(probes) == len(tenants) * (steps + 1)
    assert all(attrs(r) == {} and r.parent_request_id is None for r in probes), probes


# ---------------------------------------------------------------------- 2. suspended generator


def test_suspended_generator_does_not_leak(collector, sink):
    inside: Dict[str, Any] = {}

    @collector.track_request("gen", model="g")
    def generate() -> Any:
        with metrics_context(tenant="a"):
            inside["attributes"] = current_attributes()
            inside["metrics"] = current_metrics()
            yield "one"  # suspended here, inside metrics_context(tenant="a")
            inside["resumed"] = current_metrics()
        inside["after"] = current_attributes()
        yield "two"

    @collector.track_request("plain", model="p")
    def plain() -> Dict[str, Any]:
        return current_attributes()

    with collector.track_request("consumer", model="c") as consumer:
        stream = generate()
        assert next(stream) == "one"
        # The generator is suspended inside its metrics_context: nothing of it shows here.
        assert current_attributes() == {}
        assert plain() == {}
        here = current_metrics()
        assert here is not None and here.request_id == consumer.request_id
        assert list(stream) == ["two"]
        assert current_attributes() == {}
        assert current_metrics().request_id == consumer.request_id
    assert current_attributes() == {}
    assert current_metrics() is None
    assert plain() == {}

    assert inside["attributes"] == {"tenant": "a"}
    assert inside["after"] == {}
    records = delivered(collector, sink)
    gen = one(requests_of(records, "gen"))
    streaming = one([r for r in records if r.metric_type == "streaming"])
    assert streaming.request_id == gen.request_id
    # Inside the body, current_metrics() is the generator's own record.
    assert inside["metrics"] is not None and inside["metrics"].request_id == gen.request_id
    assert inside["resumed"] is not None and inside["resumed"].request_id == gen.request_id
    assert attrs(gen) == {}  # called outside the metrics_context its body entered
    assert gen.parent_request_id == consumer.request_id

    outer = one(requests_of(records, "consumer"))
    plains = requests_of(records, "plain")
    assert len(plains) == 2
    assert all(attrs(r) == {} for r in plains), plains
    assert sorted(r.parent_request_id or "" for r in plains) == sorted(["", outer.request_id])


def test_generator_body_sees_the_attributes_of_its_call(collector, sink):
    """The body runs in the context of the call that made the generator, not in that of
    whoever advances it."""
    seen: List[Dict[str, Any]] = []

    @collector.track_request("gen", model="g")
    def generate() -> Any:
        for i in range(2):
            seen.append(current_attributes())
            yield i

    with metrics_context(route="/chat"):
        stream = generate()
    with metrics_context(user="u"):
        assert next(stream) == 0
        assert current_attributes() == {"user": "u"}
    with metrics_context(route="/other"):
        assert list(stream) == [1]
        assert current_attributes() == {"route": "/other"}
    assert current_attributes() == {}

    assert seen == [{"route": "/chat"}, {"route": "/chat"}]
    records = delivered(collector, sink)
    assert attrs(one(requests_of(records, "gen"))) == {"route": "/chat"}
    streaming = one([r for r in records if r.metric_type == "streaming"])
    assert streaming.total_chunks == 2 and streaming.status == "completed"


# ---------------------------------------------------------------------- 3. cross-thread exit


def test_track_request_entered_on_one_thread_left_on_another(collector, sink, client):
    """``with track_request`` entered on thread A and left on thread B: one record for it; later
    calls on both threads (tracked and instrumented SDK calls) are each recorded once."""

    @collector.track_request("plain")
    def plain(model: str) -> None:
        return None

    def later_calls(name: str) -> Any:
        plain(model=f"{name}/plain")
        return client.chat.completions.create(model=f"{name}/sdk", messages=USER)

    cm = collector.track_request("openai", model="crossing")
    with ThreadPoolExecutor(1, "thread-a") as a, ThreadPoolExecutor(1, "thread-b") as b:
        m = a.submit(cm.__enter__).result(WAIT)
        assert not b.submit(cm.__exit__, None, None, None).result(WAIT)  # nothing suppressed
        responses = {
            "a": a.submit(later_calls, "a").result(WAIT),
            "b": b.submit(later_calls, "b").result(WAIT),
        }
        assert b.submit(current_metrics).result(WAIT) is None

    records = delivered(collector, sink)
    crossing = [r for r in records if r.request_id == m.request_id]
    assert len(crossing) == 1, crossing
    assert crossing[0].metric_type == "request" and crossing[0].model == "crossing"
    assert crossing[0].success is True and crossing[0].duration_ms is not None

    plains = {r.model: r for r in requests_of(records, "plain")}
    assert sorted(plains) == ["a/plain", "b/plain"], requests_of(records, "plain")
    sdk = {r.model: r for r in requests_of(records, "openai") if r.model != "crossing"}
    assert sorted(sdk) == ["a/sdk", "b/sdk"], requests_of(records, "openai")
    for name, response in responses.items():
        assert usage_of(sdk[f"{name}/sdk"]) == provider_usage(response)
    # Thread A's later calls: measured on their own (the ended call may be named as parent).
    assert plains["a/plain"].parent_request_id in (None, m.request_id)
    assert sdk["a/sdk"].parent_request_id in (None, m.request_id)
    assert plains["b/plain"].parent_request_id is None
    assert sdk["b/sdk"].parent_request_id is None
    assert len(records) == 5, records

    stats = collector.stats()
    assert stats.pending == 0 and stats.queued == 0, stats
    assert stats.recorded == len(records) == stats.sinks["recording"].delivered, stats
    assert stats.unaccounted("recording") == 0, stats
    assert sum(stats.dropped.values()) == 0 and stats.internal_errors == 0, stats


# ---------------------------------------------------------------------- 4. propagation


def _carry(how: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    if how == "bind_context":
        return bind_context(fn)
    ctx = contextvars.copy_context()
    return lambda: ctx.run(fn)


@pytest.mark.parametrize("how", ["bind_context", "copy_context"])
def test_context_is_carried_into_a_thread_pool(collector, sink, client, how):
    """Attributes and the active call reach the pool: a tracked call there is nested in the
    active call; an instrumented SDK call joins it while it is open, and is its own record
    (the ended call as parent) once it has ended."""

    @collector.track_request("worker", model="w")
    def tracked() -> Dict[str, Any]:
        return current_attributes()

    def during() -> Tuple[Dict[str, Any], Dict[str, Any], Any]:
        seen = current_attributes()
        return seen, tracked(), client.chat.completions.create(model="joined", messages=USER)

    ended = threading.Event()

    def after() -> Any:
        assert ended.wait(WAIT)
        return client.chat.completions.create(model="late", messages=USER)

    with ThreadPoolExecutor(max_workers=2) as pool, metrics_context(tenant="acme"):
        with collector.track_request("openai", model="outer") as outer:
            late = pool.submit(_carry(how, after))
            seen, tracked_saw, joined = pool.submit(_carry(how, during)).result(WAIT)
        ended.set()
        late_response = late.result(WAIT)

    assert seen == {"tenant": "acme"}
    assert tracked_saw == {"tenant": "acme"}
    records = delivered(collector, sink)
    worker = one(requests_of(records, "worker"))
    assert attrs(worker) == {"tenant": "acme"}
    assert worker.parent_request_id == outer.request_id

    calls = {r.model: r for r in requests_of(records, "openai")}
    # The call made while the block was open joined it: no record of its own.
    assert sorted(calls) == ["late", "outer"], requests_of(records, "openai")
    owner = calls["outer"]
    assert owner.request_id == outer.request_id and owner.parent_request_id is None
    assert attrs(owner).get("tenant") == "acme"
    assert usage_of(owner) == provider_usage(joined)
    # The call made after the block ended is its own record, the ended call its parent.
    own = calls["late"]
    assert own.parent_request_id == outer.request_id
    assert attrs(own).get("tenant") == "acme"
    assert usage_of(own) == provider_usage(late_response)
    assert len(records) == 3, records


# ---------------------------------------------------------------------- 5. nested trackers


def _usage(prompt: int, completion: int) -> Dict[str, Any]:
    return {
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    }


@pytest.mark.parametrize("inner_provider", ["openai", "anthropic"])
def test_nested_decorated_functions_are_two_records(collector, sink, inner_provider):
    @collector.track_request(inner_provider, model="inner")
    def inner() -> Dict[str, Any]:
        return _usage(10, 5)

    @collector.track_request("openai", model="outer")
    def outer() -> Dict[str, Any]:
        inner()
        return _usage(1, 2)

    outer()
    records = delivered(collector, sink)
    assert len(records) == 2, records
    by_model = {r.model: r for r in records}
    assert by_model["inner"].parent_request_id == by_model["outer"].request_id
    assert by_model["outer"].parent_request_id is None
    assert by_model["inner"].request_id != by_model["outer"].request_id
    # Explicit trackers never join each other: each keeps its own usage.
    assert usage_of(by_model["outer"]) == (1, 2, 3)
    assert usage_of(by_model["inner"]) == (10, 5, 15)


def test_a_tracked_function_that_reads_a_stream_is_recorded_as_that_stream(collector, sink, client):
    """A plain tracked function that consumes an instrumented SDK stream and returns its
    text: one call, recorded as the stream it joined (its times, one StreamingMetrics)."""

    @collector.track_request("openai", model="gpt-4o-mini")
    def answer() -> str:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    text = answer()
    records = delivered(collector, sink)
    request = one([r for r in records if r.metric_type == "request"])
    streaming = one([r for r in records if r.metric_type == "streaming"])
    assert request.method == "stream" and request.completion_tokens
    assert request.time_to_first_chunk_ms <= request.time_to_first_token_ms
    assert streaming.request_id == request.request_id
    assert streaming.total_chars == len(text) and streaming.status == "completed"
