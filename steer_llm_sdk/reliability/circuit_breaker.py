"""CircuitBreaker: stop calling a provider+model that keeps failing, and probe it later.

Per key (``"provider:model"``):

* CLOSED: calls pass; ``failure_threshold`` consecutive retryable failures open it.
* OPEN: calls are rejected at once with :class:`~steer_llm_sdk.errors.CircuitOpenError`,
  without a network call, until ``recovery_timeout`` has passed; then
* HALF_OPEN: up to ``half_open_max_calls`` probes pass at a time (others are rejected). A
  probe that succeeds closes the circuit; one that fails opens it again for another
  ``recovery_timeout``.

A failure that is not retryable (an invalid request, a bad key) means the provider
answered: it counts as a success for the circuit. Thread-safe; the clock is injectable.
Listeners hear every state change as ``(key, from_state, to_state)``.

A call admitted with :meth:`CircuitBreaker.admit` holds an :class:`Admission` that ends
exactly once: with a success, a failure, or a release. A release is how a call ends when it
was stopped by something that is not the provider's answer (``KeyboardInterrupt``,
``SystemExit``, a Celery soft time limit, ``gevent.Timeout``, a bug in user code): it says
nothing about the provider's health, so it frees the probe slot the call held and changes
nothing else. A half-open circuit stays half-open and the next call probes again; a closed
one counts no failure. Wrap the call in ``try``/``finally: admission.release()`` (a no-op
once the call reported its outcome) and the slot is freed on every exit.
"""

import enum
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import CircuitOpenError


class CircuitState(str, enum.Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


Listener = Callable[[str, CircuitState, CircuitState], None]
_Change = Tuple[str, CircuitState, CircuitState]

# How an admission ends.
_SUCCESS, _FAILURE, _RELEASE = "success", "failure", "release"


class _Circuit:
    __slots__ = ("state", "failures", "opened_at", "probes", "epoch")

    def __init__(self) -> None:
        self.state = CircuitState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.probes = 0
        self.epoch = 0  # counts state changes: a probe slot belongs to one half-open spell


class Admission:
    """One admitted call's hold on its circuit, from :meth:`CircuitBreaker.admit`.

    Ends once: the first of :meth:`success`, :meth:`failure` or :meth:`release` counts and
    the others do nothing. A half-open admission holds a probe slot until it ends; a slot
    taken in an earlier half-open spell (the circuit moved since) is not given back to the
    current one.

    Attributes:
        key: the circuit's key.
        state: what the call was admitted in: CLOSED, or HALF_OPEN for a probe.

    Thread-safe (the breaker's lock guards it).
    """

    __slots__ = ("_breaker", "key", "state", "_circuit", "_epoch", "_ended")

    def __init__(self, breaker: "CircuitBreaker", key: str) -> None:
        self._breaker = breaker
        self.key = key
        self.state = CircuitState.CLOSED
        self._circuit: Optional[_Circuit] = None  # set while a probe slot is held
        self._epoch = 0
        self._ended = False

    def success(self) -> None:
        """The call succeeded (or failed in a way that shows the provider is up)."""
        self._breaker._end(self, _SUCCESS)

    def failure(self) -> None:
        """The call failed in a retryable way."""
        self._breaker._end(self, _FAILURE)

    def release(self) -> None:
        """The call ended without an answer that says anything about the provider: free its
        probe slot and change nothing else. A no-op once the admission has ended."""
        if not self._ended:
            self._breaker._end(self, _RELEASE)

    def __repr__(self) -> str:
        return f"Admission(key={self.key!r}, state={self.state.value}, ended={self._ended})"


class CircuitBreaker:
    """Circuits per key; see the module docstring.

    Args:
        failure_threshold: consecutive retryable failures that open a circuit (>= 1).
        recovery_timeout: seconds an open circuit rejects calls before probing (>= 0).
        half_open_max_calls: probes allowed at a time while half-open (>= 1).
        clock: monotonic seconds (default ``time.monotonic``).

    Raises:
        ValueError: a bound out of range.

    Thread-safe: one breaker may be shared by every thread and client of a process. An
    exception raised anywhere inside a call (by user code or a signal handler) cannot keep a
    probe slot taken if the call is run as :meth:`admit` describes.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        recovery_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or half_open_max_calls < 1 or recovery_timeout < 0:
            raise ValueError(
                "failure_threshold and half_open_max_calls must be >= 1, recovery_timeout >= 0"
            )
        self.failure_threshold = failure_threshold
        self.recovery_timeout = float(recovery_timeout)
        self.half_open_max_calls = half_open_max_calls
        self._clock = clock
        self._lock = threading.Lock()
        self._circuits: Dict[str, _Circuit] = {}
        self._listeners: List[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(key, from_state, to_state)`` on every state change (outside the
        breaker's lock; exceptions from it are ignored)."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def state(self, key: str) -> CircuitState:
        """The state of ``key`` now (an open circuit past its timeout reads HALF_OPEN)."""
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is None:
                return CircuitState.CLOSED
            if (
                circuit.state is CircuitState.OPEN
                and self._clock() - circuit.opened_at >= self.recovery_timeout
            ):
                return CircuitState.HALF_OPEN
            return circuit.state

    def before_call(self, key: str) -> CircuitState:
        """Admit a call for ``key`` or raise; end it with :meth:`record_success` or
        :meth:`record_failure` (a probe admitted here has no other way to give its slot
        back: prefer :meth:`admit`).

        Returns:
            The state the call was admitted in (CLOSED, or HALF_OPEN for a probe).

        Raises:
            CircuitOpenError: the circuit is open, or half-open with its probes taken.
        """
        return self.admit(key).state

    def admit(self, key: str) -> Admission:
        """Admit a call for ``key`` or raise. Run the call as::

            admission = breaker.admit(key)
            try:
                result = call()  # then admission.success() or admission.failure()
            finally:
                admission.release()  # frees the probe slot on any other exit

        Listeners hear the change to HALF_OPEN before this returns; if one raises (or a
        signal lands here), the slot taken is released before the exception leaves.

        Raises:
            CircuitOpenError: the circuit is open, or half-open with its probes taken.
        """
        admission = Admission(self, key)
        changes: List[_Change] = []
        try:
            with self._lock:
                circuit = self._circuits.get(key)
                if circuit is None:
                    circuit = self._circuits[key] = _Circuit()
                if circuit.state is CircuitState.OPEN:
                    if self._clock() - circuit.opened_at < self.recovery_timeout:
                        raise self._rejection(key, circuit)
                    changes.append(self._move(key, circuit, CircuitState.HALF_OPEN))
                if circuit.state is CircuitState.HALF_OPEN:
                    if circuit.probes >= self.half_open_max_calls:
                        raise self._rejection(key, circuit)
                    admission._epoch = circuit.epoch
                    # No call between taking the slot and noting it: nothing can land there.
                    circuit.probes += 1
                    admission._circuit = circuit
                admission.state = circuit.state
            self._notify(changes)
        except BaseException:
            admission.release()
            raise
        return admission

    def record_success(self, key: str) -> None:
        """A call for ``key`` succeeded (or failed in a way that shows the provider is up)."""
        changes: List[_Change] = []
        with self._lock:
            self._succeeded(key, changes)
        self._notify(changes)

    def record_failure(self, key: str) -> None:
        """A call for ``key`` failed in a retryable way."""
        changes: List[_Change] = []
        with self._lock:
            self._failed(key, changes)
        self._notify(changes)

    def reset(self, key: Optional[str] = None) -> None:
        """Close one circuit, or all (without notifying)."""
        with self._lock:
            if key is None:
                self._circuits.clear()
            else:
                self._circuits.pop(key, None)

    # ------------------------------------------------------------------ internals
    def _end(self, admission: Admission, outcome: str) -> None:
        """End ``admission`` once: free its slot first (so that an exception landing later
        leaves the circuit as a release would), then record a success or a failure as
        :meth:`record_success`/:meth:`record_failure` do."""
        changes: List[_Change] = []
        with self._lock:
            if admission._ended:
                return
            circuit, admission._circuit, admission._ended = admission._circuit, None, True
            if (
                circuit is not None
                and circuit.state is CircuitState.HALF_OPEN
                and circuit.epoch == admission._epoch
            ):
                circuit.probes -= 1
            if outcome == _SUCCESS:
                self._succeeded(admission.key, changes)
            elif outcome == _FAILURE:
                self._failed(admission.key, changes)
        self._notify(changes)

    def _succeeded(self, key: str, changes: List[_Change]) -> None:
        circuit = self._circuits.get(key)
        if circuit is None:
            return
        circuit.failures = 0
        if circuit.state is CircuitState.HALF_OPEN:
            changes.append(self._move(key, circuit, CircuitState.CLOSED))

    def _failed(self, key: str, changes: List[_Change]) -> None:
        circuit = self._circuits.get(key)
        if circuit is None:
            circuit = self._circuits[key] = _Circuit()
        if circuit.state is CircuitState.HALF_OPEN:
            changes.append(self._open(key, circuit))
        elif circuit.state is CircuitState.CLOSED:
            circuit.failures += 1
            if circuit.failures >= self.failure_threshold:
                changes.append(self._open(key, circuit))

    def _open(self, key: str, circuit: _Circuit) -> _Change:
        circuit.opened_at = self._clock()
        circuit.failures = 0
        return self._move(key, circuit, CircuitState.OPEN)

    def _move(self, key: str, circuit: _Circuit, to: CircuitState) -> _Change:
        before = circuit.state
        circuit.state = to
        circuit.epoch += 1
        if to is not CircuitState.HALF_OPEN:
            circuit.probes = 0
        return (key, before, to)

    def _rejection(self, key: str, circuit: _Circuit) -> CircuitOpenError:
        provider = key.split(":", 1)[0]
        wait = max(0.0, self.recovery_timeout - (self._clock() - circuit.opened_at))
        return CircuitOpenError(
            f"circuit for {key} is {circuit.state.value}; retry in {wait:.1f}s", provider=provider
        )

    def _notify(self, changes: List[_Change]) -> None:
        if not changes:
            return
        with self._lock:
            listeners = list(self._listeners)
        for key, before, after in changes:
            for listener in listeners:
                try:
                    listener(key, before, after)
                except Exception:
                    pass

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(failure_threshold={self.failure_threshold}, recovery_timeout="
            f"{self.recovery_timeout}, half_open_max_calls={self.half_open_max_calls})"
        )
