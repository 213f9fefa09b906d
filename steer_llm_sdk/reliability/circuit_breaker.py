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
"""

import enum
import threading
import time
from typing import Callable, Dict, List, Optional

from ..errors import CircuitOpenError


class CircuitState(str, enum.Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


Listener = Callable[[str, CircuitState, CircuitState], None]


class _Circuit:
    __slots__ = ("state", "failures", "opened_at", "probes")

    def __init__(self) -> None:
        self.state = CircuitState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.probes = 0


class CircuitBreaker:
    """Circuits per key; see the module docstring.

    Args:
        failure_threshold: consecutive retryable failures that open a circuit (>= 1).
        recovery_timeout: seconds an open circuit rejects calls before probing (>= 0).
        half_open_max_calls: probes allowed at a time while half-open (>= 1).
        clock: monotonic seconds (default ``time.monotonic``).

    Raises:
        ValueError: a bound out of range.
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
        """Admit a call for ``key`` or raise.

        Returns:
            The state the call was admitted in (CLOSED, or HALF_OPEN for a probe).

        Raises:
            CircuitOpenError: the circuit is open, or half-open with its probes taken.
        """
        changes = []
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
                circuit.probes += 1
            admitted = circuit.state
        self._notify(changes)
        return admitted

    def record_success(self, key: str) -> None:
        """A call for ``key`` succeeded (or failed in a way that shows the provider is up)."""
        changes = []
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is None:
                return
            circuit.failures = 0
            if circuit.state is CircuitState.HALF_OPEN:
                circuit.probes = max(0, circuit.probes - 1)
                changes.append(self._move(key, circuit, CircuitState.CLOSED))
        self._notify(changes)

    def record_failure(self, key: str) -> None:
        """A call for ``key`` failed in a retryable way."""
        changes = []
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is None:
                circuit = self._circuits[key] = _Circuit()
            if circuit.state is CircuitState.HALF_OPEN:
                circuit.probes = max(0, circuit.probes - 1)
                changes.append(self._open(key, circuit))
            elif circuit.state is CircuitState.CLOSED:
                circuit.failures += 1
                if circuit.failures >= self.failure_threshold:
                    changes.append(self._open(key, circuit))
        self._notify(changes)

    def reset(self, key: Optional[str] = None) -> None:
        """Close one circuit, or all (without notifying)."""
        with self._lock:
            if key is None:
                self._circuits.clear()
            else:
                self._circuits.pop(key, None)

    # ------------------------------------------------------------------ internals
    def _open(self, key: str, circuit: _Circuit) -> tuple:
        circuit.opened_at = self._clock()
        circuit.failures = 0
        return self._move(key, circuit, CircuitState.OPEN)

    def _move(self, key: str, circuit: _Circuit, to: CircuitState) -> tuple:
        before = circuit.state
        circuit.state = to
        if to is not CircuitState.HALF_OPEN:
            circuit.probes = 0
        return (key, before, to)

    def _rejection(self, key: str, circuit: _Circuit) -> CircuitOpenError:
        provider = key.split(":", 1)[0]
        wait = max(0.0, self.recovery_timeout - (self._clock() - circuit.opened_at))
        return CircuitOpenError(
            f"circuit for {key} is {circuit.state.value}; retry in {wait:.1f}s", provider=provider
        )

    def _notify(self, changes: list) -> None:
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
