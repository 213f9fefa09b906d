"""Telling an exception raised by a signal handler from any other.

A Python-level signal handler runs on the main thread between two bytecodes of whatever code
runs there, library code included; an exception it raises (Celery's
``SoftTimeLimitExceeded``, a ``signal.alarm`` timeout) surfaces in that code. Such an
exception is the host's way of stopping a task, so library code that catches ``Exception``
to keep its own failures from the host must let it through::

    except Exception as exc:
        if raised_by_signal(exc):
            raise
        ...  # count and log our own failure

It is recognised by its traceback, which passes through the handler's own frame (the handler
is called from the interrupted frame). Nothing is cached: handlers are installed and removed
at any time (Celery installs its soft-time-limit handler in each pool process).

Clean-up code that the exception interrupted may fail in turn while handling it (Python
3.13's ``Thread.start()`` raises ``KeyError`` from its own ``except`` block when interrupted
at the wrong moment): the exception that arrives is then another one, with the signal's in
its ``__context__`` chain. :func:`signal_exception` finds the signal's own exception there,
so that it, not the by-product, can be raised again for the caller::

    except Exception as exc:
        timeout = signal_exception(exc)
        if timeout is not None:
            raise timeout

A loop whose every step must run (the resets after a fork, the exit drain) cannot stop at
such an exception without leaving the rest undone: :func:`run_each` runs them all and raises
it after the last.

A leaf module: no imports from the rest of the package.
"""

import functools
import signal
import sys
from types import FunctionType, MethodType
from typing import Any, Callable, Dict, Iterable, Optional, Set

# Handlers wrapped in partials, bound methods or callable objects are unwrapped this deep.
_MAX_UNWRAP = 8


# How far along ``__context__`` links an exception raised by a handler is looked for.
_MAX_CONTEXT = 8


def raised_by_signal(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by a currently installed Python-level signal handler (or by
    code it called), or while handling such an exception: whether its traceback, or that of
    an exception in its ``__context__`` chain, passes through the code of such a handler.

    The same as ``signal_exception(exc) is not None``; see :func:`signal_exception`.
    """
    return _find(exc, sys._getframe(1)) is not None


def signal_exception(exc: BaseException) -> Optional[BaseException]:
    """The exception raised by a currently installed Python-level signal handler (or by
    code it called) that ``exc`` is, or that ``exc`` was raised while handling (its
    ``__context__`` chain, a few links deep); None if there is none. Call it where ``exc``
    was caught. The chain is followed no further than an exception that a caller of that
    frame caught: the application was already handling it when it called the code that
    raised ``exc`` (a Celery task recording something in its ``except
    SoftTimeLimitExceeded:`` block), so it is not that code's to raise again.

    Handlers may be functions, bound methods, ``functools.partial`` objects or instances of a
    class with ``__call__``; handlers implemented in C (``signal.default_int_handler``) have
    no frame to find, and the exceptions they raise are not ``Exception`` subclasses anyway.

    Runs only on exception paths: it reads every signal's handler (a few microseconds).
    Never raises, except that an exception a signal handler raises while it runs propagates
    (it is one for the caller too). Thread-safe.
    """
    return _find(exc, sys._getframe(1))


def _find(exc: BaseException, catcher: Any) -> Optional[BaseException]:
    """:func:`signal_exception` for ``exc`` caught in the frame ``catcher``."""
    codes: Optional[Dict[int, Any]] = None
    outside: Optional[Set[int]] = None
    current: Optional[BaseException] = exc
    for _ in range(_MAX_CONTEXT):
        if current is None:
            return None
        tb = current.__traceback__
        if tb is not None:
            if codes is None:
                codes = _handler_codes()
                if not codes:
                    return None
            if current is not exc:
                # An exception in the chain that a frame of our callers caught (the head of
                # its traceback is the frame that caught it) was being handled before the
                # code that raised ``exc`` began: the caller's own, already handled.
                if outside is None:
                    outside = _callers(catcher)
                if id(tb.tb_frame) in outside:
                    return None
            while tb is not None:
                if id(tb.tb_frame.f_code) in codes:
                    return current
                tb = tb.tb_next
        current = current.__context__
    return None


def _callers(frame: Any) -> Set[int]:
    """The ids of the frames that called ``frame`` (not ``frame`` itself), all alive."""
    found: Set[int] = set()
    frame = frame.f_back
    while frame is not None:
        found.add(id(frame))
        frame = frame.f_back
    return found


def _handler_codes() -> Dict[int, Any]:
    """id -> code object of every installed Python-level handler (the objects are kept in the
    dict so that their ids stay theirs while it is used)."""
    codes: Dict[int, Any] = {}
    try:
        signals = signal.valid_signals()
    except Exception:  # an interpreter without signal support
        return codes
    for signum in signals:
        try:
            code = _code_of(signal.getsignal(signum))
        except Exception:  # an odd handler object, or a number getsignal() refuses
            continue
        if code is not None:
            codes[id(code)] = code
    return codes


def _code_of(handler: Any) -> Optional[Any]:
    """The code object that runs when ``handler`` is called, or None (SIG_DFL, SIG_IGN, None,
    a handler written in C). Looks only at types and class attributes, so no instance
    ``__getattr__`` runs."""
    for _ in range(_MAX_UNWRAP):
        kind = type(handler)
        if kind is FunctionType:
            return handler.__code__
        if kind is MethodType:
            handler = handler.__func__
        elif isinstance(handler, functools.partial):
            handler = handler.func
        elif handler is None or isinstance(handler, int):  # SIG_DFL, SIG_IGN: Handlers
            return None
        else:
            call = getattr(kind, "__call__", None)  # noqa: B004 - the class's, not the instance's
            if call is None or type(call) is not FunctionType:
                return None  # not callable, or a builtin (C) function or method
            return call.__code__
    return None


def _unreported(exc: Exception) -> None:
    pass


def run_each(
    steps: Iterable[Callable[[], Any]], failed: Callable[[Exception], Any] = _unreported
) -> None:
    """Call every step in turn, for loops whose every step must run (resets after a fork,
    the exit drain), even when a signal handler's exception lands in one of them.

    Args:
        steps: the calls to make; an ``Exception`` one raises goes to ``failed(exc)`` and
            the next step runs.
        failed: reports a step's own failure (by default nothing does); may raise only a
            signal handler's exception.

    Raises:
        The first exception a signal handler raised (in a step, or while ``failed`` reported
        one), once every step has run: it is the caller's (a Celery soft time limit), and
        running the rest first keeps it from leaving the remaining steps undone. Later ones
        are dropped: one interruption is enough to tell the caller. Exceptions that are not
        an ``Exception`` (``KeyboardInterrupt``, ``SystemExit``) leave at once, as from any
        loop.
    """
    kept: Optional[BaseException] = None
    for step in steps:
        try:
            try:
                step()
            except Exception as exc:
                if signal_exception(exc) is not None:
                    raise
                failed(exc)
        except Exception as exc:
            timeout = signal_exception(exc)
            if timeout is None:
                raise  # ``failed`` broke its contract: not ours to hide
            if kept is None:
                kept = timeout
    if kept is not None:
        try:
            raise kept
        finally:
            del kept  # the traceback keeps this frame: it must not keep the exception


__all__ = ["raised_by_signal", "run_each", "signal_exception"]
