"""Exceptions raised by signal handlers on the caller's thread (issue 19, item 5).

A Celery soft time limit (``SoftTimeLimitExceeded``, an ``Exception``) or a ``signal.alarm``
handler raises between any two bytecodes of the main thread, inside the library too. What
must hold: every such exception reaches the caller (none is eaten as an internal failure),
and none leaves a lock held (a wake-up, a flush, a thread start interrupted halfway), so
that the calls and the shutdown after the storm complete and the accounting adds up.

The storms are real: ``setitimer(ITIMER_REAL)`` delivers SIGALRM every few hundred
microseconds while the main thread makes tracked calls. pytest-timeout uses SIGALRM too:
:func:`alarm` hands its handler and remaining time back afterwards.
"""

import contextlib
import contextvars
import functools
import gc
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Set

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from support.collectors import Collectors
from support.sinks import RecordingSink
from support.waiting import reap

from steer_llm_sdk.observability import MetricsCollector, RequestMetrics
from steer_llm_sdk.observability._log import RateLimitedLog, describe
from steer_llm_sdk.observability._signals import raised_by_signal, run_each, signal_exception
from steer_llm_sdk.observability.pipeline.intake import Wake
from steer_llm_sdk.observability.runtime.exits import _drain_at_exit, register_collector
from steer_llm_sdk.observability.runtime.forks import CLIENTS, on_fork
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "setitimer"), reason="needs signal.setitimer (POSIX)"
)


# ---------------------------------------------------------------------- raised_by_signal
def _raise_via(signum: int) -> BaseException:
    """The exception a handler installed for ``signum`` raises when the signal arrives."""
    try:
        signal.raise_signal(signum)
        time.sleep(1)  # not reached: the handler runs before raise_signal returns
    except BaseException as exc:  # noqa: B036
        return exc
    raise AssertionError("the handler did not raise")


@contextlib.contextmanager
def handler_for(signum: int, handler: Any) -> Iterator[None]:
    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, previous)


def _soft_limit(signum: int, frame: Any) -> None:
    raise SoftTimeLimitExceeded()


class _Handlers:
    def method(self, signum: int, frame: Any) -> None:
        raise SoftTimeLimitExceeded()

    def __call__(self, signum: int, frame: Any) -> None:
        self.deeper()

    def deeper(self) -> None:  # raised in code the handler calls
        raise SoftTimeLimitExceeded()

    def __getattr__(self, name: str) -> Any:  # must never be consulted
        raise AssertionError(f"instance attribute {name} looked up")


def _with_argument(tag: str, signum: int, frame: Any) -> None:
    raise SoftTimeLimitExceeded(tag)


HANDLERS = {
    "function": lambda: _soft_limit,
    "bound method": lambda: _Handlers().method,
    "callable object": lambda: _Handlers(),
    "partial": lambda: functools.partial(_with_argument, "tag"),
}


@pytest.mark.parametrize("kind", sorted(HANDLERS))
def test_an_exception_from_an_installed_handler_is_recognised(kind):
    with handler_for(signal.SIGUSR1, HANDLERS[kind]()):
        exc = _raise_via(signal.SIGUSR1)
        assert isinstance(exc, SoftTimeLimitExceeded)
        assert raised_by_signal(exc)


def test_an_ordinary_exception_is_not():
    with handler_for(signal.SIGUSR1, _soft_limit):
        try:
            raise SoftTimeLimitExceeded()  # the same class, raised by ordinary code
        except SoftTimeLimitExceeded as exc:
            assert not raised_by_signal(exc)
        assert not raised_by_signal(ValueError("never raised"))  # no traceback at all


def test_nothing_is_remembered_once_the_handler_is_gone():
    with handler_for(signal.SIGUSR1, _soft_limit):
        exc = _raise_via(signal.SIGUSR1)
        assert raised_by_signal(exc)
    assert not raised_by_signal(exc)  # uninstalled
    with handler_for(signal.SIGUSR1, lambda signum, frame: None):
        assert not raised_by_signal(exc)  # another handler installed in its place
    with handler_for(signal.SIGUSR2, _soft_limit):
        assert raised_by_signal(exc)  # the same code installed for another signal


def test_the_signal_s_exception_is_found_behind_one_raised_while_handling_it():
    """Clean-up interrupted by the signal may fail in turn (Python 3.13's Thread.start()
    raises KeyError from its own except block): the caller's timeout is the one behind."""
    with handler_for(signal.SIGUSR1, _soft_limit):
        try:
            try:
                signal.raise_signal(signal.SIGUSR1)
            except SoftTimeLimitExceeded:
                {}["gone"]  # the clean-up's own failure
        except KeyError as exc:
            secondary = exc
    timeout = secondary.__context__
    assert isinstance(timeout, SoftTimeLimitExceeded)
    with handler_for(signal.SIGUSR1, _soft_limit):
        assert raised_by_signal(secondary)
        assert signal_exception(secondary) is timeout
        assert signal_exception(timeout) is timeout
    assert signal_exception(secondary) is None  # uninstalled


def test_it_is_answered_on_any_thread():
    with handler_for(signal.SIGUSR1, _soft_limit):
        exc = _raise_via(signal.SIGUSR1)
        answers: List[bool] = []
        thread = threading.Thread(target=lambda: answers.append(raised_by_signal(exc)))
        thread.start()
        thread.join(5)
    assert answers == [True]


# ---------------------------------------------------------------------- the wake-up
def test_the_wake_up_is_a_c_call_that_wakes_the_waiter_once_per_pass():
    wake = Wake()
    # set() is a partial of SimpleQueue.put: no Python frame for a handler to land in.
    assert isinstance(wake.set, functools.partial) and wake.set.args == (None,)
    assert not wake.wait(0.01) and not wake.is_set()
    woken = threading.Event()
    waiter = threading.Thread(target=lambda: wake.wait(5) and woken.set())
    waiter.start()
    wake.set()
    waiter.join(5)
    assert woken.is_set()
    for _ in range(3):
        wake.set()
    assert wake.is_set()
    wake.clear()  # every wake-up given before the pass is taken by it
    assert not wake.is_set() and not wake.wait(0)


def test_a_forked_child_gets_a_fresh_wake_up(make_collector):
    collector = make_collector([InMemoryMetricsSink()])
    parent = collector._pipeline.intake.wake
    collector._pipeline.reset_after_fork()  # what the at-fork hook runs in the child
    assert collector._pipeline.intake.wake is not parent


# ---------------------------------------------------------------------- storms
#: Python 3.9 may run a signal handler between the end of a ``with`` block's body and the
#: call of its ``__exit__`` (bpo-29988, fixed in 3.10), so any lock taken with ``with`` on
#: the interrupted thread, the standard library's included, can be left held there.
atomic_with = pytest.mark.skipif(
    sys.version_info < (3, 10), reason="a `with` block can lose its __exit__ (bpo-29988)"
)


class Wedged(Exception):
    """The watchdog fired: something blocked after the storm."""


def _frames(frame: Any, depth: int = 24) -> List[str]:
    """``file:line function`` of ``frame`` and its callers, innermost first."""
    found = []
    while frame is not None and len(found) < depth:
        code = frame.f_code
        found.append(f"{code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return found


class Storm:
    """SIGALRM every ``interval`` seconds; the handler raises SoftTimeLimitExceeded only
    while armed, and disarms itself when it does, so that the test's own bookkeeping runs
    between two arming points and every raised exception can be matched with a catch.

    One place loses such an exception whatever a library does: a weak-reference callback
    or finalizer that happens to run (garbage of earlier tests, a ``WeakSet`` entry dying)
    when the signal arrives; Python reports it to ``sys.unraisablehook`` and goes on.
    Those are collected in :attr:`unraisable` (by the callback's name) and must not be the
    package's own.
    """

    #: Seconds after the end of the storm at which a caller still inside a step is taken
    #: for blocked (a lock left held): the handler then raises :class:`Wedged` into it,
    #: once (a blocked ``Lock.acquire()`` runs signal handlers).
    GRACE = 5.0

    def __init__(self) -> None:
        self.armed = False
        self.fired = 0
        self.caught = 0
        self.unraisable: List[str] = []
        self.deadline = float("inf")
        self.wedged = False
        # Where each raised exception landed (by its number), and the numbers seen again:
        # a lost one is named with the frames it was raised in.
        self.where: Dict[int, List[str]] = {}
        self.seen: Set[int] = set()

    def check(self) -> None:
        """Every exception raised reached the caller, or was lost by Python itself."""
        assert self.fired >= 100, self.fired  # the storm did land
        lost = {n: self.where[n] for n in sorted(set(self.where) - self.seen)}
        # A text, which pytest shows whole (a tuple's repr is cut in the middle).
        assert self.caught + len(self.unraisable) == self.fired, "\n".join(
            [f"caught {self.caught}, unraisable {len(self.unraisable)}, fired {self.fired}"]
            + [f"lost {n}, raised in: {' < '.join(frames)}" for n, frames in lost.items()]
            + [f"unraisable in {where}" for where in self.unraisable]
        )
        assert not [where for where in self.unraisable if "steer_llm_sdk" in where]

    def handler(self, signum: int, frame: Any) -> None:
        if self.armed:
            self.armed = False
            self.fired += 1
            self.where[self.fired] = _frames(frame)
            raise SoftTimeLimitExceeded(self.fired)
        if not self.wedged and time.monotonic() > self.deadline + self.GRACE:
            self.wedged = True
            signal.setitimer(signal.ITIMER_REAL, 0)
            raise Wedged("the caller's thread is blocked: a lock was left held")

    def run(self, step: Callable[[int], None], seconds: float) -> int:
        """Call ``step(i)`` armed, again and again for ``seconds``, in a context of its own
        (a call a storm leaves in scope must not reach the tests that follow: a known
        residual, see the note in the changelog); returns the steps that completed."""
        return contextvars.copy_context().run(self._run, step, seconds)

    def _run(self, step: Callable[[int], None], seconds: float) -> int:
        completed = 0
        deadline = self.deadline = time.monotonic() + seconds
        i = 0
        previous = sys.unraisablehook

        def hook(unraisable: Any) -> None:
            if not isinstance(unraisable.exc_value, SoftTimeLimitExceeded):
                previous(unraisable)
                return
            self.seen.update(unraisable.exc_value.args[:1])
            where = unraisable.object
            module = getattr(where, "__module__", None) or type(where).__module__
            self.unraisable.append(f"{module}.{getattr(where, '__qualname__', where)}")

        sys.unraisablehook = hook
        try:
            while time.monotonic() < deadline:
                i += 1
                try:
                    self.armed = True
                    step(i)
                    self.armed = False
                    completed += 1
                except SoftTimeLimitExceeded as exc:
                    self.caught += 1
                    self.seen.update(exc.args[:1])
        finally:
            self.armed = False
            sys.unraisablehook = previous
        return completed


@contextlib.contextmanager
def alarm() -> Iterator[Callable[[Any, float], None]]:
    """Own SIGALRM and ITIMER_REAL for a while: yields ``arm(handler, interval)`` (interval
    0 disarms; a one-shot watchdog is ``arm(handler, -seconds)``). pytest-timeout's handler
    and remaining time are restored afterwards."""
    previous = signal.getsignal(signal.SIGALRM)
    left, _ = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()

    def arm(handler: Any, interval: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, handler)
        if interval > 0:
            signal.setitimer(signal.ITIMER_REAL, interval, interval)
        elif interval < 0:
            signal.setitimer(signal.ITIMER_REAL, -interval)

    try:
        yield arm
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if left > 0:
            signal.setitimer(signal.ITIMER_REAL, max(0.001, left - (time.monotonic() - started)))


def _watchdog(signum: int, frame: Any) -> None:
    raise Wedged("blocked after the storm: a lock was left held")


#: Collectors found wedged, kept from garbage collection: their finalizer would block too.
_WEDGED: List[MetricsCollector] = []


@pytest.fixture
def make_collector() -> Iterator[Collectors]:
    """conftest's factory, with a shutdown under a watchdog: a lock left held fails the test
    instead of hanging its teardown."""
    collectors = Collectors()
    yield collectors
    wedged = []
    with alarm() as arm:
        for collector in collectors.made:
            arm(_watchdog, -5.0)
            try:
                collector.shutdown(2.0)
            except Wedged:
                wedged.append(collector)
            arm(signal.SIG_DFL, 0)
    _WEDGED.extend(wedged)
    assert not wedged, "shutdown() blocked: a lock was left held"
    for collector in collectors.made:
        assert collector.stats().internal_errors == 0, collector.stats()


def _exact(collector: MetricsCollector) -> None:
    stats = collector.stats()
    assert stats.pending == 0, stats
    for name in stats.sinks:
        assert stats.unaccounted(name) == 0, stats
        sink = stats.sinks[name]
        assert sink.delivered == stats.recorded - stats.sampled_out - stats.filtered - sum(
            stats.dropped.values()
        ), stats
    assert stats.internal_errors == 0, stats  # no caller's timeout counted as our failure


def _calls(collector: MetricsCollector) -> Callable[[int], None]:
    """One step of a busy caller: a decorated call (usage read from its return value in the
    background), a ``with`` block, a record built by hand (validated on this thread) and,
    now and then, a flush (the caller waits for the background threads)."""

    @collector.track_request("openai", "gpt-4o-mini")
    def call() -> Any:
        return {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 3, "completion_tokens": 4}}

    def step(i: int) -> None:
        call()
        with collector.track_request("anthropic", "claude-haiku-4-5") as m:
            m.set_usage(5, 6)
        collector.record(RequestMetrics(time.time(), f"user-{i}", "openai", "gpt-4o-mini"))
        if i % 100 == 0:
            collector.flush(1.0)

    return step


def _after_the_storm(arm: Any, collector: MetricsCollector, step: Callable[[int], None]) -> None:
    """Disarmed: calls, a flush and the shutdown complete within bounded time."""
    arm(_watchdog, -10.0)
    started = time.monotonic()
    step(0)
    assert collector.flush(5.0)
    assert collector.shutdown(5.0)
    arm(signal.SIG_DFL, 0)
    assert time.monotonic() - started < 10.0
    _exact(collector)


@atomic_with
@pytest.mark.slow
@pytest.mark.parametrize("interval", [0.0001, 0.0005])
def test_every_soft_time_limit_reaches_the_caller_and_nothing_stays_locked(
    make_collector, interval
):
    memory, slow_sink = InMemoryMetricsSink(max_size=1_000_000), RecordingSink()
    # batch_size 1: every record that finds the queue empty wakes the flush thread, so the
    # wake-up runs as often as it can.
    collector = make_collector(
        [memory, slow_sink], batch_size=1, batch_timeout_seconds=0.02, sink_queue_size=10**6
    )
    step = _calls(collector)
    step(0)  # threads started before the storm (a start under a storm: the next test)
    storm = Storm()
    with alarm() as arm:
        arm(storm.handler, interval)
        completed = storm.run(step, 1.5)
        arm(signal.SIG_DFL, 0)
        assert completed >= 100, completed
        storm.check()  # none eaten by the library
        _after_the_storm(arm, collector, step)
    assert len(slow_sink.records) == collector.stats().sinks["recording"].delivered


@atomic_with
@pytest.mark.slow
def test_flushes_under_a_storm_neither_eat_the_limit_nor_wedge_the_pipeline(make_collector):
    """Each step waits in ``flush()`` on this thread, where the storm lands most often; the
    thread that completes the flush must never find the flush's completion locked."""
    collector = make_collector([RecordingSink()], batch_timeout_seconds=0.02)
    collector.record(RequestMetrics(time.time(), "r-0", "openai", "gpt-4o-mini"))
    assert collector.flush(5.0)
    storm = Storm()

    def step(i: int) -> None:
        collector.record(RequestMetrics(time.time(), f"r-{i}", "openai", "gpt-4o-mini"))
        collector.flush(1.0)

    with alarm() as arm:
        arm(storm.handler, 0.0002)
        storm.run(step, 1.5)
        arm(signal.SIG_DFL, 0)
        storm.check()
        arm(_watchdog, -10.0)
        collector.record(RequestMetrics(time.time(), "after", "openai", "gpt-4o-mini"))
        assert collector.flush(5.0)
        assert collector.shutdown(5.0)
        arm(signal.SIG_DFL, 0)
    _exact(collector)


@atomic_with
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_threads_started_under_a_storm_run_or_are_started_again(make_collector):
    """Each collector starts its threads on its first record, inside the storm. A start
    interrupted halfway may leave a thread that died at once (Python reports it as an
    unraisable KeyError), one not yet running, or one stuck for good in the start's
    handshake: later records start another, and a replaced thread ends by itself."""
    storm = Storm()
    collectors = [make_collector([InMemoryMetricsSink(), RecordingSink()]) for _ in range(20)]
    reached = set()

    def step(i: int) -> None:
        n = min(i // 50, len(collectors) - 1)  # the next collector every 50 steps
        reached.add(n)
        collectors[n].record(RequestMetrics(time.time(), f"r-{i}", "openai", "gpt-4o-mini"))

    with alarm() as arm:
        arm(storm.handler, 0.0001)
        storm.run(step, 1.5)
        arm(signal.SIG_DFL, 0)
        storm.check()
        assert len(reached) >= 5
        arm(_watchdog, -30.0)
        for collector in collectors:
            collector.record(RequestMetrics(time.time(), "after", "openai", "gpt-4o-mini"))
            assert collector.flush(5.0)
            assert collector.shutdown(5.0)
            _exact(collector)
            assert not [
                t
                for t in collector._pipeline.threads.all(collector._pipeline.channels)
                if t.is_alive()
            ]
        arm(signal.SIG_DFL, 0)


def test_a_soft_time_limit_in_user_code_run_by_validation_reaches_the_caller(make_collector):
    """Validating a user's record may run user code (``str()`` of a model that is no
    string); a soft time limit arriving there is the caller's, not a bad value."""

    class Model:
        def __str__(self) -> str:
            signal.raise_signal(signal.SIGUSR1)
            return "not reached"

    collector = make_collector([InMemoryMetricsSink()])
    with handler_for(signal.SIGUSR1, _soft_limit):
        with pytest.raises(SoftTimeLimitExceeded):
            collector.record(RequestMetrics(time.time(), "r-1", "openai", Model()))
        assert collector.record(RequestMetrics(time.time(), "r-2", "openai", "gpt-4o-mini"))
    assert collector.flush(5.0)
    stats = collector.stats()
    assert stats.internal_errors == 0 and stats.sanitized == 0 and stats.recorded == 1


def test_a_flush_interrupted_by_the_caller_s_timeout_lets_it_through(make_collector):
    """``flush()`` waits on the caller's thread; a soft time limit arriving meanwhile is
    raised to the caller, and the pipeline goes on (a later flush completes)."""

    class SlowFlush(RecordingSink):
        def flush(self) -> None:
            time.sleep(0.3)

    collector = make_collector([SlowFlush()])
    collector.record(RequestMetrics(time.time(), "r-1", "openai", "gpt-4o-mini"))
    with alarm() as arm:
        arm(_soft_limit, -0.05)
        with pytest.raises(SoftTimeLimitExceeded):
            collector.flush(5.0)
        arm(_watchdog, -10.0)
        assert collector.flush(5.0)
        arm(signal.SIG_DFL, 0)
    assert collector.stats().internal_errors == 0


class _SignallingHandler(logging.Handler):
    """A logging handler whose ``emit`` is interrupted by a signal (SIGUSR1 raised there)."""

    def emit(self, record: logging.LogRecord) -> None:
        signal.raise_signal(signal.SIGUSR1)


class _FailingHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        raise ValueError("a broken logging setup")


@pytest.mark.parametrize("handler", [_SignallingHandler, _FailingHandler])
def test_a_warning_lets_only_a_signal_handler_s_exception_through(handler):
    """A soft time limit that lands while the library writes a warning on the caller's
    thread reaches the caller; a logging handler's own failure does not."""
    log = logging.getLogger("steer_llm_sdk")
    installed = handler()
    log.addHandler(installed)
    try:
        with handler_for(signal.SIGUSR1, _soft_limit):
            warn = RateLimitedLog(interval=0.0).warning
            if handler is _SignallingHandler:
                with pytest.raises(SoftTimeLimitExceeded):
                    warn("key", "steer_llm_sdk test warning", n=1)
            else:
                assert warn("key", "steer_llm_sdk test warning", n=1) is False
    finally:
        log.removeHandler(installed)


class _SlowToDescribe(Exception):
    def __str__(self) -> str:
        signal.raise_signal(signal.SIGUSR1)
        return "not reached"


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("no text")


def test_describing_an_exception_lets_only_a_signal_handler_s_exception_through():
    with handler_for(signal.SIGUSR1, _soft_limit):
        with pytest.raises(SoftTimeLimitExceeded):
            describe(_SlowToDescribe())
        assert describe(_Unprintable()) == "<unprintable _Unprintable>"


def test_a_warning_written_while_handling_an_earlier_time_limit_does_not_raise_it_again():
    """Code that already handled a soft time limit and then logs (through a broken logging
    handler) gets False, not that older exception back."""
    log = logging.getLogger("steer_llm_sdk")
    installed = _FailingHandler()
    log.addHandler(installed)
    try:
        with handler_for(signal.SIGUSR1, _soft_limit):
            try:
                signal.raise_signal(signal.SIGUSR1)
            except SoftTimeLimitExceeded:
                assert RateLimitedLog(interval=0.0).warning("key", "steer test", n=1) is False
                assert describe(_Unprintable()) == "<unprintable _Unprintable>"
    finally:
        log.removeHandler(installed)


class _RaisingSink:
    """A sink without ``record_batch`` whose every ``record`` fails."""

    def record(self, metrics: Any) -> None:
        raise ValueError("sink down")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_batch_left_by_a_time_limit_while_its_failure_is_logged_is_settled():
    """Inline delivery (on the caller's thread) to a failing sink, a soft time limit landing
    while the failure is logged: the limit reaches the caller and the batch is still
    counted, every record as failed."""
    from steer_llm_sdk.observability.pipeline.channels import make_channels

    log = RateLimitedLog(interval=0.0)

    def on_failure(component: str, subject: Any, exc: BaseException) -> None:
        log.warning(component, "steer_llm_sdk sink failed", error=type(exc).__name__)

    (channel,) = make_channels([_RaisingSink()], threading.Lock(), 100, on_failure)
    logger = logging.getLogger("steer_llm_sdk")
    installed = _SignallingHandler()
    logger.addHandler(installed)
    batch = [RequestMetrics(time.time(), f"r-{i}", "openai", "gpt-4o-mini") for i in range(3)]
    channel.accept_direct(batch)  # as the flush thread counts a batch it delivers itself
    try:
        with handler_for(signal.SIGUSR1, _soft_limit), pytest.raises(SoftTimeLimitExceeded):
            channel.deliver(batch)
    finally:
        logger.removeHandler(installed)
    assert (channel.received, channel.delivered, channel.failed) == (3, 0, 3)
    assert (channel.errors, channel.pending) == (1, 0)


def _interrupted_cleanup(collector: MetricsCollector) -> Callable[[bool], Iterator[str]]:
    """A tracked generator function over "abc" whose cleanup raises SIGUSR1 (a soft time
    limit under :func:`_soft_limit`) when called with True."""

    @collector.track_request("openai", model="m")
    def chunks(interrupted: bool = True) -> Iterator[str]:
        try:
            yield from "abc"
        finally:
            if interrupted:
                signal.raise_signal(signal.SIGUSR1)

    return chunks


@contextlib.contextmanager
def _unraisable() -> Iterator[List[str]]:
    """Collect the type names of what Python reports as unraisable meanwhile."""
    found: List[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda info: found.append(info.exc_type.__name__)
    try:
        yield found
    finally:
        sys.unraisablehook = previous


# ---------------------------------------------------------------------- loops that must finish
def test_every_step_runs_and_the_limit_is_raised_after_the_last():
    """A soft time limit in one step of a loop that must finish (fork resets, exit drain):
    the later steps still run, a step's own failure is reported, and the limit reaches the
    caller once all have run."""
    ran: List[str] = []
    failures: List[Exception] = []

    def interrupted() -> None:
        ran.append("interrupted")
        signal.raise_signal(signal.SIGUSR1)

    def broken() -> None:
        ran.append("broken")
        raise ValueError("a reset that fails")

    with handler_for(signal.SIGUSR1, _soft_limit), pytest.raises(SoftTimeLimitExceeded):
        run_each([interrupted, broken, lambda: ran.append("last")], failures.append)
    assert ran == ["interrupted", "broken", "last"]
    assert [type(exc) for exc in failures] == [ValueError]


def test_a_limit_landing_while_a_failure_is_reported_leaves_no_step_undone():
    ran: List[int] = []
    log = RateLimitedLog(interval=0.0)
    logger = logging.getLogger("steer_llm_sdk")
    installed = _SignallingHandler()

    def broken(number: int) -> None:
        ran.append(number)
        raise ValueError("a reset that fails")

    logger.addHandler(installed)
    try:
        with handler_for(signal.SIGUSR1, _soft_limit), pytest.raises(SoftTimeLimitExceeded):
            run_each(
                [functools.partial(broken, n) for n in range(3)],
                lambda exc: log.warning("key", "steer_llm_sdk test failure"),
            )
    finally:
        logger.removeHandler(installed)
    assert ran == [0, 1, 2]


class _FailingReset:
    """A part registered for fork resets (or the exit drain) whose every reset fails."""

    def __init__(self, calls: List[str]) -> None:
        self.calls = calls
        self.shutdown_timeout = 0.0

    def fail(self) -> None:
        self.calls.append("reset")
        raise ValueError("cannot reset")

    # the exit drain's side (runtime.exits.Drainable)
    def collector(self) -> Any:
        return None

    def forked(self) -> bool:
        return False

    def reset_after_fork(self) -> None:
        pass

    def prepare_exit(self) -> None:
        pass

    def drain_at_exit(self) -> None:
        self.fail()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_reset_runs_in_a_child_when_a_limit_lands_in_the_logging_of_a_failed_one():
    """In a forked child, the first failing reset is logged through a handler a soft time
    limit interrupts: the other resets still run, and the limit is raised after them (the
    interpreter reports what an at-fork callback raises as unraisable)."""
    calls: List[str] = []
    parts = [_FailingReset(calls) for _ in range(4)]
    for part in parts:
        on_fork(part, "fail", CLIENTS)
    logger = logging.getLogger("steer_llm_sdk")
    installed = _SignallingHandler()
    logger.addHandler(installed)
    try:
        with handler_for(signal.SIGUSR1, _soft_limit), _unraisable() as unraisable:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                code = 1
                try:
                    code = 0 if calls == ["reset"] * 4 else 3
                    if code == 0 and unraisable != ["SoftTimeLimitExceeded"]:
                        code = 4
                finally:
                    os._exit(code)
    finally:
        logger.removeHandler(installed)
    assert reap(pid, 20.0) == 0  # 3: a reset was left undone; 4: the limit was not raised
    assert calls == []  # the parent resets nothing


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_the_exit_drain_drains_every_collector_when_a_limit_lands_in_one():
    """The exit drain (run here in a forked child, whose exit it is) drains every collector
    although the first failure's warning is interrupted by a soft time limit; the limit is
    raised after the last."""
    calls: List[str] = []
    parts = [_FailingReset(calls) for _ in range(4)]
    logger = logging.getLogger("steer_llm_sdk")
    installed = _SignallingHandler()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            for part in parts:
                # The pipeline is only delivered if the part is dropped first: never here.
                register_collector(part, None)
            logger.addHandler(installed)
            signal.signal(signal.SIGUSR1, _soft_limit)
            try:
                _drain_at_exit()
                code = 4  # the limit was not raised
            except SoftTimeLimitExceeded:
                code = 0 if calls == ["reset"] * 4 else 3
        finally:
            os._exit(code)
    assert reap(pid, 30.0) == 0  # 3: a collector was left undrained


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_streams_left_open_at_exit_are_all_ended_when_a_limit_lands_in_one():
    """The exit drain ends every open stream (run here in a forked child): the first one's
    source is interrupted by a soft time limit while it closes; the others are still ended
    and recorded, and the limit is raised after the last."""
    from steer_llm_sdk.observability.measure.stream import end_open_streams

    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            sink = InMemoryMetricsSink()
            collector = MetricsCollector(sinks=[sink])

            chunks = _interrupted_cleanup(collector)
            streams = [chunks(n == 0) for n in range(3)]
            for stream in streams:
                next(stream)
            signal.signal(signal.SIGUSR1, _soft_limit)
            try:
                end_open_streams()
                code = 4  # the limit was not raised
            except SoftTimeLimitExceeded:
                collector.flush(5)
                requests = sink.get_metrics(metric_type="request")
                code = 0 if len(requests) == 3 else 3
        finally:
            os._exit(code)
    assert reap(pid, 30.0) == 0  # 3: a stream was left open


def test_a_stream_closed_while_its_source_s_cleanup_is_interrupted_is_still_recorded(
    make_collector,
):
    """``close()`` on a tracked stream whose own cleanup a soft time limit interrupts: the
    limit reaches the caller, and the call is recorded (failed, by the limit), not lost."""
    sink = InMemoryMetricsSink()
    collector = make_collector(sinks=[sink])
    stream = _interrupted_cleanup(collector)()
    assert next(stream) == "a"
    with handler_for(signal.SIGUSR1, _soft_limit), pytest.raises(SoftTimeLimitExceeded):
        stream.close()
    assert collector.flush(5)
    assert [r.status for r in sink.get_metrics(metric_type="streaming")] == ["error"]
    (request,) = sink.get_metrics(metric_type="request")
    assert request.error_class == "SoftTimeLimitExceeded"


class _Hostile(Exception):
    """The caller's own exception, whose ``response`` the error record reads and fails on."""

    @property
    def response(self) -> Any:
        raise RuntimeError("no response")


def test_a_time_limit_the_caller_already_handled_is_not_raised_into_it_again(make_collector):
    """Inside the application's ``except SoftTimeLimitExceeded:`` block (Celery's way of
    ending a task tidily), a record() of a non-record returns False (counted invalid) and a
    tracked call gets its own exception back, not the handled limit from the chain."""
    collector = make_collector(sinks=[InMemoryMetricsSink()])

    @collector.track_request("openai", model="m")
    def fallback() -> None:
        raise _Hostile("the caller's own")

    with handler_for(signal.SIGUSR1, _soft_limit):
        try:
            signal.raise_signal(signal.SIGUSR1)
        except SoftTimeLimitExceeded:
            assert collector.record({"provider": "openai"}) is False
            with pytest.raises(_Hostile, match="the caller's own"):
                fallback()
    assert collector.stats().dropped["invalid"] == 1


def test_a_dropped_stream_whose_source_s_cleanup_is_interrupted_is_still_recorded(
    make_collector,
):
    """A tracked stream dropped half read, its source's cleanup interrupted by a soft time
    limit while the collector closes it: the call is recorded (cancelled), not lost; the
    limit is reported as an exception no one could catch (as Python reports one raised in
    any collected generator's cleanup)."""
    sink = InMemoryMetricsSink()
    collector = make_collector(sinks=[sink])
    stream = _interrupted_cleanup(collector)()
    assert next(stream) == "a"
    with _unraisable() as unraisable, handler_for(signal.SIGUSR1, _soft_limit):
        del stream
        gc.collect()
    assert unraisable == ["SoftTimeLimitExceeded"]
    assert collector.flush(5)
    assert [r.status for r in sink.get_metrics(metric_type="streaming")] == ["cancelled"]
    assert len(sink.get_metrics(metric_type="request")) == 1
