"""A clock moved by hand, for what takes an injectable clock (circuit breaker, TTL,
retries): time passes only when the test sets or advances it."""


class Clock:
    """Returns :attr:`now` when called; ``now`` starts at ``start`` seconds."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now
