"""Retries, circuit breaking, and their metrics: pure policy logic with Hypothesis, the
breaker under 16 threads, and the client against the local server's scripted faults with an
injected sleep and clock."""

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.clocks import Clock

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.errors import (
    AuthenticationError,
    CircuitOpenError,
    ContentFilterError,
    InvalidRequestError,
    ProviderConnectionError,
    RateLimitError,
    ServerError,
    StreamError,
)
from steer_llm_sdk.observability import MetricsConfig
from steer_llm_sdk.reliability import CircuitBreaker, CircuitState, RetryPolicy, classify_error
from steer_llm_sdk.testing import Fault

pytestmark = pytest.mark.llm_server(reply_words=6)


class Sleeps(list):
    """An injected sleep that records what it was asked to wait."""

    def __call__(self, seconds):
        self.append(seconds)


# ---------------------------------------------------------------------------- RetryPolicy


@given(
    initial=st.floats(0, 5),
    multiplier=st.floats(1, 4),
    max_delay=st.floats(5, 60),
    retries=st.integers(1, 30),
    roll=st.floats(0, 0.999999),
)
def test_backoff_within_bounds_and_caps_monotonic(initial, multiplier, max_delay, retries, roll):
    policy = RetryPolicy(
        max_attempts=50,
        initial_delay=initial,
        max_delay=max_delay,
        multiplier=multiplier,
        random=lambda: roll,
    )
    caps = [policy.cap(n) for n in range(1, retries + 1)]
    assert caps == sorted(caps)
    assert all(0 <= cap <= max_delay for cap in caps)
    delay = policy.delay(retries)
    assert 0 <= delay <= caps[-1]
    exact = RetryPolicy(
        max_attempts=50,
        initial_delay=initial,
        max_delay=max_delay,
        multiplier=multiplier,
        jitter=False,
    )
    assert exact.delay(retries) == exact.cap(retries)


@given(hint=st.floats(0, 1000))
def test_retry_after_is_honoured_and_capped(hint):
    policy = RetryPolicy(max_delay=30)
    assert policy.delay(1, RateLimitError("x", retry_after=hint)) == min(30.0, hint)


def test_what_is_retried():
    policy = RetryPolicy(max_attempts=3)
    assert policy.should_retry(RateLimitError("x"), 1)
    assert policy.should_retry(ServerError("x"), 2)
    assert not policy.should_retry(ServerError("x"), 3)  # attempts used up
    for never in (
        AuthenticationError("x"),
        InvalidRequestError("x"),
        ContentFilterError("x"),
        CircuitOpenError("x"),
    ):
        assert not policy.should_retry(never, 1)
    assert not policy.should_retry(ProviderConnectionError("tls", retryable=False), 1)
    assert policy.should_retry(TimeoutError(), 1)  # foreign errors by category
    assert not RetryPolicy(retry_on=["server_error"]).should_retry(RateLimitError("x"), 1)
    with pytest.raises(ValueError, match="never retried"):
        RetryPolicy(retry_on=["authentication"])
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    assert classify_error(RateLimitError("x")) == "rate_limit"


# ---------------------------------------------------------------------------- CircuitBreaker


def test_breaker_lifecycle_with_injected_clock():
    clock = Clock()
    changes = []
    breaker = CircuitBreaker(failure_threshold=3, recovery_timeout=30, clock=clock)
    breaker.add_listener(lambda key, a, b: changes.append((key, a.value, b.value)))
    key = "openai:gpt-4o"
    for _ in range(2):
        breaker.before_call(key)
        breaker.record_failure(key)
    breaker.before_call(key)
    breaker.record_success(key)  # resets the consecutive count
    for _ in range(3):
        breaker.before_call(key)
        breaker.record_failure(key)
    assert breaker.state(key) is CircuitState.OPEN
    with pytest.raises(CircuitOpenError, match="retry in 30.0s"):
        breaker.before_call(key)
    clock.now += 30
    assert breaker.state(key) is CircuitState.HALF_OPEN
    assert breaker.before_call(key) is CircuitState.HALF_OPEN
    with pytest.raises(CircuitOpenError):  # one probe at a time
        breaker.before_call(key)
    breaker.record_failure(key)  # the probe failed: open again, timer restarted
    assert breaker.state(key) is CircuitState.OPEN
    clock.now += 29
    with pytest.raises(CircuitOpenError):
        breaker.before_call(key)
    clock.now += 1
    breaker.before_call(key)
    breaker.record_success(key)
    assert breaker.state(key) is CircuitState.CLOSED
    assert [c[1:] for c in changes] == [
        ("CLOSED", "OPEN"),
        ("OPEN", "HALF_OPEN"),
        ("HALF_OPEN", "OPEN"),
        ("OPEN", "HALF_OPEN"),
        ("HALF_OPEN", "CLOSED"),
    ]
    assert breaker.state("anthropic:claude") is CircuitState.CLOSED  # keys are independent


def test_sixteen_threads_exact_transitions_and_no_lost_failures():
    clock = Clock()
    changes = []
    lock = threading.Lock()
    threshold = 16 * 50 + 1  # one more failure than the threads make: stays closed
    breaker = CircuitBreaker(failure_threshold=threshold, recovery_timeout=5, clock=clock)

    def listen(key, before, after):
        with lock:
            changes.append((before, after))

    breaker.add_listener(listen)
    barrier = threading.Barrier(16)

    def hammer():
        barrier.wait(5)
        for _ in range(50):
            breaker.before_call("k")
            breaker.record_failure("k")

    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert breaker.state("k") is CircuitState.CLOSED and changes == []
    breaker.record_failure("k")  # exactly the threshold: every failure was counted
    assert breaker.state("k") is CircuitState.OPEN
    assert changes == [(CircuitState.CLOSED, CircuitState.OPEN)]
    # Half-open: of 16 racing probes exactly one gets through.
    clock.now += 5
    admitted, rejected = [], []
    barrier = threading.Barrier(16)

    def probe():
        barrier.wait(5)
        try:
            breaker.before_call("k")
            admitted.append(1)
        except CircuitOpenError:
            rejected.append(1)

    threads = [threading.Thread(target=probe) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert (len(admitted), len(rejected)) == (1, 15)
    breaker.record_success("k")
    assert changes == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


# ---------------------------------------------------------------------------- the client


@pytest.fixture
def setup(server):
    sleeps, clock = Sleeps(), Clock()
    breaker = CircuitBreaker(failure_threshold=3, recovery_timeout=10, clock=clock)
    client = SteerLLMClient(
        MetricsConfig(flush_on_exit=False, batch_timeout_seconds=0.02),
        openai_base_url=server.openai_base_url,
        anthropic_base_url=server.anthropic_base_url,
        openai_api_key="k",
        anthropic_api_key="k",
        retry_policy=RetryPolicy(
            max_attempts=3, initial_delay=0.5, sleep=sleeps, random=lambda: 0.5
        ),
        circuit_breaker=breaker,
    )
    yield client, sleeps, clock
    client.close()


def records(client, kind):
    assert client.metrics_collector.flush(5)
    return client.metrics_collector.sinks[0].get_metrics(metric_type=kind)


def reliability(client):
    return [r for r in records(client, "reliability") if r.event == "request"]


def test_429_retry_after_is_honoured_exactly(setup, server):
    client, sleeps, _ = setup
    server.script(Fault(status=429, retry_after=2))
    assert client.generate("hi", model="gpt-4o").text
    assert sleeps == [2.0] and len(server.requests) == 2
    (rel,) = reliability(client)
    assert (rel.retry_attempts, rel.retry_succeeded, rel.total_retry_delay_ms) == (1, True, 2000)
    assert rel.error_category == "rate_limit" and rel.final_success
    (err,) = records(client, "error")
    assert (err.error_category, err.status_code, err.retryable) == ("rate_limit", 429, True)
    assert records(client, "request")[0].success


def test_503_then_success(setup, server):
    client, sleeps, _ = setup
    server.script(Fault(status=503))
    client.generate("hi", model="claude-3-5-haiku-latest")
    assert sleeps == [0.25]  # full jitter: half of the 0.5 s cap
    (rel,) = reliability(client)
    assert rel.retry_attempts == 1 and rel.retry_succeeded and rel.method == "generate"


def test_exhausted_retries_raise_the_last_error(setup, server):
    client, sleeps, _ = setup
    server.script(*[Fault(status=500)] * 3)
    with pytest.raises(ServerError):
        client.generate("hi", model="gpt-4o")
    assert len(server.requests) == 3 and sleeps == [0.25, 0.5]
    (rel,) = reliability(client)
    assert (rel.retry_attempts, rel.retry_succeeded, rel.final_success) == (2, False, False)
    assert len(records(client, "error")) == 3  # two retried attempts and the final failure


def test_401_is_not_retried(setup, server):
    client, sleeps, _ = setup
    server.script(Fault(status=401))
    with pytest.raises(AuthenticationError):
        client.generate("hi", model="gpt-4o")
    assert sleeps == [] and len(server.requests) == 1
    (rel,) = reliability(client)
    assert rel.retry_attempts == 0 and rel.error_category == "authentication"


def test_retries_zero_disables_per_call(setup, server):
    client, sleeps, _ = setup
    server.script(Fault(status=503))
    with pytest.raises(ServerError):
        client.generate("hi", model="gpt-4o", retries=0)
    assert sleeps == [] and len(server.requests) == 1


def test_stream_dropped_before_first_chunk_is_retried(setup, server):
    client, sleeps, _ = setup
    server.script(Fault(drop_after=1))  # only the role-only chunk, then the connection drops
    result = client.stream_with_usage("hi", model="gpt-4o")
    assert result.text == "".join(server.reply_text("hi", 6))
    assert len(server.requests) == 2 and sleeps == [0.25]
    (rel,) = reliability(client)
    assert rel.retry_attempts == 1 and rel.retry_succeeded and rel.method == "stream"
    assert records(client, "streaming")[0].status == "completed"


def test_stream_dropped_after_first_chunk_is_not_retried(setup, server):
    client, sleeps, _ = setup
    server.script(Fault(drop_after=4))
    got = []
    with pytest.raises(StreamError):
        for delta in client.stream("hi", model="gpt-4o"):
            got.append(delta)
    assert got and len(server.requests) == 1 and sleeps == []
    (rel,) = reliability(client)
    assert rel.retry_attempts == 0 and not rel.final_success


def test_stream_error_status_is_retried_at_start(setup, server):
    client, sleeps, _ = setup
    server.script(Fault(status=529))
    assert client.stream_with_usage("hi", model="claude-3-5-haiku-latest").text
    assert len(server.requests) == 2


def test_breaker_opens_rejects_without_network_and_probe_closes_it(setup, server):
    client, sleeps, clock = setup
    server.script(*[Fault(status=503)] * 3)
    with pytest.raises(ServerError):
        client.generate("hi", model="gpt-4o")  # three failed attempts: the circuit opens
    assert client.circuit_breaker.state("openai:gpt-4o") is CircuitState.OPEN
    sent = len(server.requests)
    with pytest.raises(CircuitOpenError):
        client.generate("hi", model="gpt-4o")
    with pytest.raises(CircuitOpenError):
        client.stream("hi", model="gpt-4o")
    assert len(server.requests) == sent  # no network call while open
    assert client.generate("hi", model="gpt-4o-mini").text  # other keys unaffected
    clock.now += 10
    assert client.generate("hi", model="gpt-4o").text  # the half-open probe succeeds
    assert client.circuit_breaker.state("openai:gpt-4o") is CircuitState.CLOSED
    transitions = [r for r in records(client, "reliability") if r.event == "circuit_transition"]
    assert [(t.previous_circuit_state, t.circuit_breaker_state) for t in transitions] == [
        ("CLOSED", "OPEN"),
        ("OPEN", "HALF_OPEN"),
        ("HALF_OPEN", "CLOSED"),
    ]
    assert {(t.provider, t.model) for t in transitions} == {("openai", "gpt-4o")}
    rejected = [r for r in records(client, "request") if r.error_category == "circuit_open"]
    assert len(rejected) == 2
    summary = client.metrics_collector.sinks[0].get_summary()
    assert summary.circuit_breaker_transitions == 3
    assert summary.circuit_breaker_states["openai/gpt-4o"] == "CLOSED"
    assert summary.retry_attempts == 2


def test_reliability_metrics_can_be_switched_off(server):
    client = SteerLLMClient(
        MetricsConfig(flush_on_exit=False, enable_reliability_metrics=False),
        openai_base_url=server.openai_base_url,
        openai_api_key="k",
        retry_policy=RetryPolicy(sleep=Sleeps()),
    )
    server.script(Fault(status=503))
    client.generate("hi", model="gpt-4o")
    assert client.metrics_collector.flush(5)
    kinds = {r.metric_type for r in client.metrics_collector.sinks[0].get_metrics()}
    assert kinds == {"request"}
    client.close()
