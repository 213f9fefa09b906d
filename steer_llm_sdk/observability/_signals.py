"""Whether an exception was raised by a signal handler (provisional; see tests)."""

import signal
from typing import Any, Set


def _handler_codes() -> Set[Any]:
    codes = set()
    for number in signal.valid_signals():
        try:
            handler = signal.getsignal(number)
        except (ValueError, OSError):
            continue
        func = getattr(handler, "__func__", handler)
        code = getattr(func, "__code__", None)
        if code is None:
            code = getattr(getattr(type(handler), "__call__", None), "__code__", None)
        if code is not None:
            codes.add(code)
    return codes


def raised_by_signal(exc: BaseException) -> bool:
    """True when ``exc``'s traceback passes through an installed Python signal handler."""
    try:
        tb = exc.__traceback__
        if tb is None:
            return False
        codes = _handler_codes()
        if not codes:
            return False
        while tb is not None:
            if tb.tb_frame.f_code in codes:
                return True
            tb = tb.tb_next
        return False
    except Exception:
        return False
