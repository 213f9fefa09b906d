"""The attempts of one request: circuit-breaker admission, retries with backoff, and their
records (an ErrorMetrics per retried attempt, one ReliabilityMetrics per request).

Only the SDK's own errors are retried or reach the breaker as an outcome. Any other
exception out of an attempt (``KeyboardInterrupt``, ``SystemExit``, a Celery soft time
limit, ``gevent.Timeout``, a bug) is the caller's: it leaves at once, unchanged, after the
attempt's admission is released (a half-open circuit stays half-open; see
:mod:`steer_llm_sdk.reliability.circuit_breaker`)."""

import time
from typing import Any, Callable, Optional

from ..errors import CircuitOpenError, SteerLLMError
from ..observability import ErrorMetrics, ReliabilityMetrics
from ..reliability import CircuitBreaker, RetryPolicy
from ..reliability.circuit_breaker import Admission
from .routing import Routed


class Attempts:
    """The attempts of one request: circuit breaker admission, retries with backoff, an
    ErrorMetrics per retried attempt, and the request's ReliabilityMetrics (once).

    Args:
        policy: the client's retry policy; the call's ``retries`` option (when not None)
            overrides its count.
        breaker: the circuit breaker, keyed by ``provider:model``.
        collector: where the records go.
        call: the routed call (its provider, model and options).
        metrics: the request's RequestMetrics (ids, attributes shared by the records).
        method: ``generate`` or ``stream``.

    Used by one request on one thread.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        breaker: CircuitBreaker,
        collector: Any,
        call: Routed,
        metrics: Any,
        method: str,
    ) -> None:
        retries = call.options.retries
        self.policy = policy if retries is None else policy.with_attempts(max(0, retries) + 1)
        self.breaker = breaker
        self.key = f"{call.provider}:{call.model}"
        self.collector = collector
        self.metrics = metrics
        self.method = method
        self.attempt = 0
        self.retries = 0
        self.waited = 0.0
        self.last_category: Optional[str] = None
        self.recorded = False

    def run(self, call: Callable[[], Any], final: bool = True) -> Any:
        """``call()`` until it succeeds or the policy gives up; ``final`` records the
        request's ReliabilityMetrics when done."""
        try:
            while True:
                try:
                    result = self._once(call)
                    break
                except SteerLLMError as exc:
                    if not self._back_off(exc):
                        raise
        except BaseException:
            if final:
                self.record(success=False)
            raise
        if final:
            self.record(success=True)
        return result

    def can_resume(self, exc: BaseException) -> bool:
        """Whether a stream that failed with ``exc`` (before any text reached the caller)
        may be tried again."""
        return (
            isinstance(exc, SteerLLMError)
            and not isinstance(exc, CircuitOpenError)
            and self.policy.should_retry(exc, self.attempt)
        )

    def resume(self, exc: SteerLLMError, call: Callable[[], Any]) -> Any:
        """After a stream broke off: count the failure, wait, and call again."""
        self._failed(exc)
        self._back_off(exc)
        return self.run(call, final=False)

    def _once(self, call: Callable[[], Any]) -> Any:
        self.attempt += 1
        try:
            admission = self.breaker.admit(self.key)
        except CircuitOpenError as exc:
            self.last_category = exc.category
            raise
        try:
            try:
                result = call()
            except SteerLLMError as exc:
                self._failed(exc, admission)
                raise
            admission.success()
        finally:
            # Any other exit (an exception from user code or a signal handler, wherever it
            # lands) frees the probe slot; a no-op once the outcome was recorded.
            admission.release()
        return result

    def _failed(self, exc: SteerLLMError, admission: Optional[Admission] = None) -> None:
        """Count a failed attempt: by its admission, or by key for a stream that broke off
        after its attempt had succeeded."""
        self.last_category = exc.category
        if exc.retryable:
            if admission is None:
                self.breaker.record_failure(self.key)
            else:
                admission.failure()
        elif admission is None:  # the provider answered: the circuit has no reason to open
            self.breaker.record_success(self.key)
        else:
            admission.success()

    def _back_off(self, exc: SteerLLMError) -> bool:
        if isinstance(exc, CircuitOpenError) or not self.policy.should_retry(exc, self.attempt):
            return False
        delay = self.policy.delay(self.retries + 1, exc)
        self._attempt_error(exc)
        self.policy.sleep(delay)
        self.waited += delay
        self.retries += 1
        return True

    def _attempt_error(self, exc: SteerLLMError) -> None:
        if not self.collector.config.enable_reliability_metrics:
            return
        m = self.metrics
        self.collector.record(
            ErrorMetrics(
                **{**m._link(), "timestamp": time.time()},
                error_class=type(exc).__name__,
                error_category=exc.category,
                status_code=exc.status_code,
                retryable=exc.retryable,
                message=exc.message[:500],
            )
        )

    def record(self, success: bool) -> None:
        """The request's ReliabilityMetrics; once."""
        if self.recorded or not self.collector.config.enable_reliability_metrics:
            return
        self.recorded = True
        m = self.metrics
        self.collector.record(
            ReliabilityMetrics(
                **m._link(),
                retry_attempts=self.retries,
                retry_succeeded=success and self.retries > 0,
                total_retry_delay_ms=self.waited * 1000.0,
                circuit_breaker_state=self.breaker.state(self.key).value,
                error_category=self.last_category,
                final_success=success,
                method=self.method,
            )
        )
