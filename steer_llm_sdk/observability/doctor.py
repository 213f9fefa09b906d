"""``doctor()``: the troubleshooting list, run against a live collector.

``steer_llm_sdk.observability.doctor()`` and ``python -m steer_llm_sdk doctor`` return the
same findings; the Flask and Django integrations serve them as JSON at
``<prefix>/debug/doctor`` behind the debug endpoints' authorisation. Each
:class:`Finding` has a ``check`` (a stable name, below), an optional ``subject`` (the sink or
drop reason it is about), a ``status`` (``ok``, ``warning`` or ``problem``), a short
``message``, a ``fix`` (the setting or call that fixes it) when something is wrong, and
``details`` (plain JSON data).

=======================  ===============================================================
check                    what it looks at
=======================  ===============================================================
collector                enabled, shut down
sinks                    the sinks attached (their names in ``stats()``)
sampling                 the sampling rates in force (``set_sampling`` included)
round_trip               ``collector.flush(timeout)``: the flush and delivery threads run
                         and every sink's ``flush()`` returns
sink                     one per sink: ``stats()`` counters and the last error logged
dropped                  one per drop reason seen (``stats().dropped``)
internal_errors          failures of the pipeline itself
otlp_endpoint            one per ``OTelMetricsSink``: a TCP connect to its endpoint
prometheus_multiproc     ``PROMETHEUS_MULTIPROC_DIR`` under gunicorn or uWSGI
fork                     how this process's fork was noticed (``lifecycle.fork_state()``)
instrumentation          the supported SDKs installed, their versions, what is patched
stream_usage             streams recorded without the provider's token counts
=======================  ===============================================================

Side effects, each bounded in time (see :func:`doctor`): ``collector.flush()`` (which starts
the collector's threads if they never ran, delivers what is queued and calls every sink's
``flush()``: an OTLP sink exports what it aggregated, real data only, nothing made up),
one TCP connection per OTLP endpoint (closed at once, nothing sent), and a probe file
created and removed in ``PROMETHEUS_MULTIPROC_DIR`` when a ``PrometheusMetricsSink`` is
attached and the variable is set.

Importing this module attaches a small handler to the ``steer_llm_sdk`` logger that keeps
the last failure logged per sink class and the last internal error (the library keeps no
other record of them); it stores a few short, already redacted strings and prints nothing.
"""

import importlib.metadata
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from .._secrets import redact
from . import lifecycle
from ._log import describe
from ._signals import signal_exception
from .collector import CollectorStats, MetricsCollector, SinkStats
from .instrumentation import SDKS, instrumented
from .models import RequestMetrics
from .sinks.base import sink_name
from .sinks.in_memory import InMemoryMetricsSink

OK = "ok"
WARNING = "warning"
PROBLEM = "problem"
_RANK = {OK: 0, WARNING: 1, PROBLEM: 2}

#: The distribution whose version is reported for each supported SDK.
_DISTRIBUTIONS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google_genai": "google-genai",
    "bedrock": "botocore",
    "groq": "groq",
    "mistralai": "mistralai",
    "cohere": "cohere",
    "litellm": "litellm",
}
#: Providers whose streams report usage only when asked (OpenAI's protocol, Azure's too).
_OPENAI_LIKE = ("openai", "azure.ai.openai")
#: Streamed requests looked at by the ``stream_usage`` check (the most recent ones).
_RECENT_STREAMS = 1000


class Finding:
    """One result of :func:`doctor`.

    Attributes:
        check: the check's stable name (see the module docstring).
        status: ``"ok"``, ``"warning"`` or ``"problem"``.
        message: what was found, one short sentence or two.
        fix: the setting or call that fixes it; None when nothing needs fixing.
        subject: the sink (its name in ``stats()``) or drop reason the finding is about.
        details: plain, JSON-safe data behind the message.
    """

    __slots__ = ("check", "status", "message", "fix", "subject", "details")

    def __init__(
        self,
        check: str,
        status: str,
        message: str,
        fix: Optional[str] = None,
        subject: Optional[str] = None,
        details: Optional[Dict[str, Any]] = None,
    ) -> None:
        if status not in _RANK:
            raise ValueError(f"status must be one of {sorted(_RANK)}, got {status!r}")
        self.check = check
        self.status = status
        self.message = message
        self.fix = fix
        self.subject = subject
        self.details = details or {}

    def to_dict(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        about = f"[{self.subject}]" if self.subject else ""
        return f"Finding({self.check}{about}: {self.status}: {self.message})"


class DoctorReport:
    """What :func:`doctor` found.

    Attributes:
        findings: every :class:`Finding`, in the order of the checks.
        pid: the process checked (under a pre-fork server, one worker).
        status: the worst status among the findings (``ok`` when there are none).
        ok: True unless a finding is a problem (warnings alone keep it True).
        exit_code: 1 when a finding is a problem, else 0 (what the command exits with).
    """

    __slots__ = ("findings", "pid")

    def __init__(self, findings: Sequence[Finding], pid: Optional[int] = None) -> None:
        self.findings: List[Finding] = list(findings)
        self.pid = os.getpid() if pid is None else pid

    @property
    def status(self) -> str:
        return max((f.status for f in self.findings), key=_RANK.__getitem__, default=OK)

    @property
    def ok(self) -> bool:
        return self.status != PROBLEM

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def by_check(self, check: str) -> List[Finding]:
        """The findings of one check (several for per-sink checks)."""
        return [f for f in self.findings if f.check == check]

    def to_dict(self) -> Dict[str, Any]:
        """``{"status", "pid", "findings": [...]}``: what ``--json`` prints and the debug
        endpoints return."""
        return {
            "status": self.status,
            "pid": self.pid,
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_text(self) -> str:
        """The report for people: one line per finding, the fix indented under it."""
        lines = [f"steer_llm_sdk doctor (pid {self.pid}): {self.status}"]
        for f in self.findings:
            label = f"{f.check} {f.subject}" if f.subject else f.check
            lines.append(f"  {f.status.upper():<8} {label:<28} {f.message}")
            if f.fix:
                lines.append(f"  {'':<8} {'':<28} fix: {f.fix}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"DoctorReport(status={self.status!r}, findings={len(self.findings)})"


# ---------------------------------------------------------------------- last errors logged
class _LastErrors(logging.Handler):
    """Keeps the last failure the pipeline logged for each sink class (the log line's
    ``component``) and the last internal error. Sees only what the rate-limited log let
    through: at most one line a minute per sink."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: Dict[str, Dict[str, Any]] = {}

    def handle(self, record: logging.LogRecord) -> bool:
        # Without the handler lock logging would take around emit(): a signal handler's
        # exception landing between its acquire and release would leave it held, and the
        # next failure logged by a delivery thread would block that thread for good. One
        # dict assignment needs no lock.
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = getattr(record, "steer", None)
            if not isinstance(fields, dict) or "error" not in fields:
                return
            key = "internal" if "where" in fields else f"component:{fields.get('component')}"
            if key not in self.seen and len(self.seen) >= 64:
                return  # bounded: a process has a handful of sink classes
            self.seen[key] = {
                "error": str(fields.get("error")),
                "message": redact(str(fields.get("message", "")))[:200],
                "at": record.created,
            }
        except Exception as exc:  # a diagnostic aid must never fail the logging call
            _reraise_signal(exc)

    def last(self, key: str) -> Optional[Dict[str, Any]]:
        entry = self.seen.get(key)
        if entry is None:
            return None
        return {**entry, "seconds_ago": round(max(0.0, time.time() - entry["at"]), 1)}

    def clear(self) -> None:
        self.seen = {}


_last_errors = _LastErrors()
logging.getLogger("steer_llm_sdk").addHandler(_last_errors)
# A forked child's sinks start over: the parent's errors are not the child's.
lifecycle.on_fork_call(_last_errors.clear, lifecycle.IDENTITY)


# ---------------------------------------------------------------------- the checks
class _Context:
    """What the checks share: the collector, its stats before the round trip and after it
    (the checks that follow the round trip read ``after``)."""

    def __init__(self, collector: MetricsCollector, timeout: float) -> None:
        self.collector = collector
        self.timeout = timeout
        self.before: CollectorStats = collector.stats()
        self.after: CollectorStats = self.before
        self.flushed: Optional[bool] = None  # the round trip's flush(), None if not run

    def named_sinks(self) -> List[Tuple[str, Any]]:
        """(name in ``stats()``, sink) for every sink. Channels keep the sinks' order, so
        the names pair up; if a sink was added or removed meanwhile, plain names."""
        sinks = list(self.collector.sinks)
        names = list(self.collector.stats().sinks)
        if len(names) != len(sinks):
            names = [sink_name(s) for s in sinks]
        return list(zip(names, sinks))


_Check = Callable[[_Context], Iterable[Finding]]


def _check_collector(ctx: _Context) -> Iterable[Finding]:
    collector = ctx.collector
    if collector.is_shutdown:
        yield Finding(
            "collector",
            PROBLEM,
            "the collector is shut down: every record is refused (dropped as after_shutdown)",
            fix="configure(...) a new default collector (or make a new MetricsCollector); "
            "call shutdown() only when the process stops",
        )
    elif not collector.enabled:
        yield Finding(
            "collector",
            WARNING,
            "the collector is disabled: calls run unmeasured",
            fix="collector.enabled = True (or unset STEER_METRICS_ENABLED=false)",
        )
    else:
        yield Finding("collector", OK, "enabled")


def _check_sinks(ctx: _Context) -> Iterable[Finding]:
    names = [name for name, _ in ctx.named_sinks()]
    if not names:
        yield Finding(
            "sinks",
            PROBLEM,
            "no sinks: records are counted and go nowhere",
            fix="collector.add_sink(InMemoryMetricsSink()) or configure(sinks=[...])",
        )
        return
    yield Finding("sinks", OK, ", ".join(names), details={"names": names})


def _check_sampling(ctx: _Context) -> Iterable[Finding]:
    rates = {name: float(rate) for name, rate in ctx.collector.sampling.items()}
    shown = ", ".join(f"{name}={rate:g}" for name, rate in rates.items())
    zero = [name for name, rate in rates.items() if rate == 0]
    if zero:
        yield Finding(
            "sampling",
            WARNING,
            f"{shown}: nothing is kept for {', '.join(zero)}",
            fix="collector.set_sampling("
            + ", ".join(f"{name}=1.0" for name in zero)
            + ") (or STEER_METRICS_*_SAMPLING_RATE)",
            details=rates,
        )
        return
    yield Finding("sampling", OK, shown, details=rates)


def _check_round_trip(ctx: _Context) -> Iterable[Finding]:
    collector = ctx.collector
    if collector.is_shutdown:
        yield Finding(
            "round_trip",
            PROBLEM,
            "not run: the collector is shut down and its threads have stopped",
            fix="configure(...) a new default collector",
        )
        return
    started = time.monotonic()
    ctx.flushed = collector.flush(ctx.timeout)
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    after = ctx.after = collector.stats()
    details: Dict[str, Any] = {"flushed": ctx.flushed, "elapsed_ms": elapsed_ms}
    if ctx.flushed:
        yield Finding(
            "round_trip",
            OK,
            f"flush() returned True in {elapsed_ms:g} ms: what was queued reached every "
            "sink and every sink's flush() returned",
            details=details,
        )
        return
    stuck = {name: s.pending for name, s in after.sinks.items() if s.pending}
    raised = _errors_during(ctx)
    details.update(pending=after.pending, stuck=stuck, raised=raised)
    if raised and not stuck:
        message = f"flush() returned False: {_names(raised)} raised in flush()"
        fix = "see the sink findings below for the error"
    elif stuck or after.queued:
        behind = dict(stuck, **({"queue": after.queued} if after.queued else {}))
        message = (
            f"flush() did not finish in {ctx.timeout:g} s; records still pending: "
            + ", ".join(f"{name} {n}" for name, n in behind.items())
        )
        fix = (
            "a sink that blocks holds up only itself: find why it hangs (its endpoint or "
            "backend), or collector.remove_sink(sink)"
        )
    else:
        message = f"flush() did not finish in {ctx.timeout:g} s: a sink's flush() has not returned"
        fix = "find the sink whose flush() blocks (its endpoint or backend)"
    yield Finding("round_trip", PROBLEM, message, fix=fix, details=details)


def _errors_during(ctx: _Context) -> List[str]:
    """The sinks whose error count rose while the round trip ran."""
    before = ctx.before.sinks
    return [
        name
        for name, s in ctx.after.sinks.items()
        if name in before and s.errors > before[name].errors
    ]


def _names(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _check_each_sink(ctx: _Context) -> Iterable[Finding]:
    stats = ctx.after.sinks
    raised_now = set(_errors_during(ctx)) if ctx.flushed is not None else set()
    for name, sink in ctx.named_sinks():
        s = stats.get(name)
        if s is None:
            continue
        try:  # one sink's broken attribute must not hide the others' findings
            details: Dict[str, Any] = s.to_dict()
            for extra in ("export_failures", "write_failures", "overflowed"):
                value = getattr(sink, extra, None)
                if isinstance(value, (int, dict)):
                    details[extra] = value
            # Kept per class: only a sink that failed itself may show its class's error.
            last = _last_errors.last(f"component:{type(sink).__name__}")
            if last is not None and (s.errors or s.failed):
                details["last_error"] = last
            else:
                last = None
            yield _sink_finding(name, s, details, last, name in raised_now, ctx.flushed)
        except Exception as exc:
            yield _unchecked("sink", exc, subject=name)


def _sink_finding(
    name: str,
    s: SinkStats,
    details: Dict[str, Any],
    last: Optional[Dict[str, Any]],
    raised_now: bool,
    flushed: Optional[bool],
) -> Finding:
    counts = f"received {s.received}, delivered {s.delivered}"
    trouble = []
    if s.failed or s.errors:
        trouble.append(f"{s.errors} call(s) raised, {s.failed} record(s) in them")
    if s.dropped:
        trouble.append(f"{s.dropped} dropped (backlog full)")
    if s.pending and flushed is False:
        trouble.append(f"{s.pending} pending after the round trip")
    if last is not None:
        trouble.append(
            f"last error {last['error']}: {last['message']} ({last['seconds_ago']:g} s ago)"
        )
    if not trouble:
        return Finding("sink", OK, counts, subject=name, details=details)
    status = PROBLEM if raised_now or (s.pending and flushed is False) else WARNING
    if s.errors or s.failed:
        fix = (
            "fix what the error says (the library logs each failure on the "
            "'steer_llm_sdk' logger, at most once a minute per sink)"
        )
    elif s.dropped:
        fix = "MetricsConfig(sink_queue_size=...) larger, or a faster sink"
    else:
        fix = "find why the sink blocks, or collector.remove_sink(sink)"
    if raised_now:
        trouble.insert(0, "failing now (raised during the round trip)")
    return Finding(
        "sink", status, f"{counts}; " + "; ".join(trouble), fix=fix, subject=name, details=details
    )


_DROP_ADVICE: Dict[str, Tuple[str, str, str]] = {
    "queue_full": (
        WARNING,
        "the queue was full: records came faster than the flush thread took them",
        "MetricsConfig(max_queue_size=...) (STEER_METRICS_MAX_QUEUE_SIZE), lower sampling, "
        "or find a slow sink",
    ),
    "fork": (
        WARNING,
        "records inherited by a child forked without Python's fork hooks",
        "under uWSGI set py-call-uwsgi-fork-hooks = true (or import steer_llm_sdk before "
        "uWSGI forks, so its post-fork hook runs); elsewhere fork with os.fork()",
    ),
    "internal_error": (
        PROBLEM,
        "records lost to a failure of the pipeline itself",
        "a bug in steer_llm_sdk: report it with the logged 'metrics internal error' line",
    ),
    "after_shutdown": (
        WARNING,
        "records made after shutdown()",
        "shut the collector down only when the process stops; configure() makes a new one",
    ),
    "filter_error": (
        WARNING,
        "a filter raised or returned a non-record (the record is dropped)",
        "fix the filter the 'steer_llm_sdk' log names",
    ),
    "invalid": (
        WARNING,
        "records that were not metrics records, or whose values could not be checked",
        "record() only BaseMetrics records with plain values",
    ),
}


def _check_dropped(ctx: _Context) -> Iterable[Finding]:
    dropped = {reason: n for reason, n in ctx.after.dropped.items() if n}
    if not dropped:
        yield Finding("dropped", OK, "no records dropped", details={"dropped": {}})
        return
    for reason, count in dropped.items():
        status, meaning, fix = _DROP_ADVICE.get(
            reason, (WARNING, "records dropped", "see collector.stats()")
        )
        yield Finding(
            "dropped",
            status,
            f"{count} dropped: {meaning}",
            fix=fix,
            subject=reason,
            details={"count": count},
        )


def _check_internal_errors(ctx: _Context) -> Iterable[Finding]:
    count = ctx.after.internal_errors
    last = _last_errors.last("internal")
    if not count:
        yield Finding("internal_errors", OK, "none")
        return
    message = f"{count} failure(s) inside the pipeline"
    if last is not None:
        message += f"; last {last['error']}: {last['message']} ({last['seconds_ago']:g} s ago)"
    yield Finding(
        "internal_errors",
        PROBLEM,
        message,
        fix="a bug in steer_llm_sdk: report it with the logged 'metrics internal error' line",
        details={"count": count, "last_error": last},
    )


# ---------------------------------------------------------------------- OTLP endpoints
def _loaded_class(module: str, name: str) -> Optional[type]:
    """A sink class if its module was imported (an instance cannot exist otherwise), without
    importing it: the OpenTelemetry SDK and prometheus_client are optional."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else None


def _public_endpoint(url: str) -> str:
    """``url`` fit to show: no userinfo, query or fragment, and redacted."""
    text = url if "://" in url else "//" + url
    parts = urlsplit(text)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    scheme = f"{parts.scheme}://" if parts.scheme else ""
    return redact(f"{scheme}{host}{port}{parts.path}")


def _address(url: str) -> Tuple[str, int]:
    """(host, port) of an endpoint, with the scheme's port when it names none.

    Raises:
        ValueError: no host, or a bad port.
    """
    parts = urlsplit(url if "://" in url else "//" + url)
    if not parts.hostname:
        raise ValueError("the endpoint names no host")
    port = parts.port
    if port is None:
        port = {"https": 443, "http": 80}.get(parts.scheme, 4317)
    return parts.hostname, port


def _tcp_connect(host: str, port: int, timeout: float) -> Optional[str]:
    """Open a TCP connection to ``host:port`` and close it at once, sending nothing.

    Returns:
        None when the connection was accepted, else why not. Returns by ``timeout`` (plus
        a little) even when name resolution hangs: the attempt runs on a daemon thread,
        left to finish on its own.
    """
    outcome: List[Optional[str]] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
            outcome.append(None)
        except Exception as exc:
            reason = getattr(exc, "strerror", None) or describe(exc)
            outcome.append(f"{type(exc).__name__}: {reason}")

    thread = threading.Thread(target=attempt, name="steer-doctor-connect", daemon=True)
    thread.start()
    thread.join(timeout + 0.2)
    if not outcome:
        return f"no answer within {timeout:g} s"
    return outcome[0]


def _check_otlp(ctx: _Context) -> Iterable[Finding]:
    sink_class = _loaded_class("steer_llm_sdk.observability.sinks.otlp", "OTelMetricsSink")
    if sink_class is None:
        return
    for name, sink in ctx.named_sinks():
        if isinstance(sink, sink_class):
            yield _otlp_finding(name, sink, min(ctx.timeout, 2.0))


def _otlp_finding(name: str, sink: Any, timeout: float) -> Finding:
    if not sink.active:
        return Finding(
            "otlp_endpoint",
            WARNING,
            "the sink is off (OTEL_SDK_DISABLED=true or OTEL_METRICS_EXPORTER=none): it "
            "accepts records and exports nothing",
            fix="unset OTEL_SDK_DISABLED / set OTEL_METRICS_EXPORTER=otlp",
            subject=name,
        )
    if getattr(sink, "_external_provider", None) is not None:
        return Finding(
            "otlp_endpoint",
            OK,
            "exports through the application's MeterProvider (its exporters are not checked)",
            subject=name,
        )
    if "otlp" not in sink.settings.exporters:
        return Finding("otlp_endpoint", OK, "no OTLP exporter (console only)", subject=name)
    endpoint = str(sink.endpoint)
    shown = _public_endpoint(endpoint)
    details: Dict[str, Any] = {"endpoint": shown, "protocol": sink.protocol}
    try:
        host, port = _address(endpoint)
    except ValueError as exc:
        return Finding(
            "otlp_endpoint",
            PROBLEM,
            f"{shown}: not a usable endpoint ({describe(exc)})",
            fix="OTEL_EXPORTER_OTLP_ENDPOINT=http://<host>:<port> (or endpoint=...)",
            subject=name,
            details=details,
        )
    failure = _tcp_connect(host, port, timeout)
    details["reachable"] = failure is None
    if failure is None:
        return Finding(
            "otlp_endpoint",
            OK,
            f"{shown} ({sink.protocol}) accepts TCP connections",
            subject=name,
            details=details,
        )
    details["error"] = failure
    return Finding(
        "otlp_endpoint",
        PROBLEM,
        f"{shown} ({sink.protocol}) is unreachable: {failure}",
        fix="start the Collector there, or point OTEL_EXPORTER_OTLP_ENDPOINT "
        "(OTEL_EXPORTER_OTLP_METRICS_ENDPOINT) at it",
        subject=name,
        details=details,
    )


# ---------------------------------------------------------------------- Prometheus
def _pre_fork_server() -> Optional[str]:
    """``"gunicorn"`` or ``"uWSGI"`` when this process runs under one, else None: gunicorn
    when it is imported or named by ``SERVER_SOFTWARE``, uWSGI when its embedded ``uwsgi``
    module imports."""
    if "gunicorn" in sys.modules or os.environ.get("SERVER_SOFTWARE", "").lower().startswith(
        "gunicorn"
    ):
        return "gunicorn"
    try:
        import uwsgi  # noqa: F401 - only importable inside uWSGI
    except Exception:
        return None
    return "uWSGI"


def _check_prometheus(ctx: _Context) -> Iterable[Finding]:
    sink_class = _loaded_class(
        "steer_llm_sdk.observability.sinks.prometheus", "PrometheusMetricsSink"
    )
    if sink_class is None or not any(isinstance(s, sink_class) for s in ctx.collector.sinks):
        return
    server = _pre_fork_server()
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    details: Dict[str, Any] = {"server": server, "directory": path}
    if server is None and not path:
        yield Finding(
            "prometheus_multiproc",
            OK,
            "one process (no gunicorn or uWSGI): no PROMETHEUS_MULTIPROC_DIR needed",
            details=details,
        )
        return
    problem = _multiproc_problem(server, path)
    if problem is None:
        yield Finding(
            "prometheus_multiproc",
            OK,
            f"PROMETHEUS_MULTIPROC_DIR={path} exists and is writable",
            details=details,
        )
        return
    message, fix = problem
    yield Finding(
        "prometheus_multiproc",
        PROBLEM if server is not None else WARNING,
        message,
        fix=fix,
        details=details,
    )


def _multiproc_problem(server: Optional[str], path: Optional[str]) -> Optional[Tuple[str, str]]:
    """(message, fix) of what is wrong with the multiprocess directory, or None."""
    before_start = (
        "set PROMETHEUS_MULTIPROC_DIR to an empty, writable directory in the server's "
        "environment before it starts"
    )
    if not path:
        return (
            f"under {server} without PROMETHEUS_MULTIPROC_DIR: each worker keeps its own "
            "values and a scrape shows only the worker it reaches",
            before_start,
        )
    values = sys.modules.get("prometheus_client.values")
    if values is not None and values.ValueClass is values.MutexValue:
        return (
            f"PROMETHEUS_MULTIPROC_DIR={path} was set after prometheus_client was imported: "
            "values stay per process",
            before_start,
        )
    if not os.path.isdir(path):
        return (f"PROMETHEUS_MULTIPROC_DIR={path} is not a directory", before_start)
    try:  # access() cannot tell: root passes it, and it ignores read-only mounts
        fd, probe = tempfile.mkstemp(prefix=".steer-doctor-", dir=path)
    except OSError as exc:
        return (
            f"PROMETHEUS_MULTIPROC_DIR={path} is not writable: {exc.strerror or exc}",
            before_start,
        )
    os.close(fd)
    os.unlink(probe)
    return None


# ---------------------------------------------------------------------- process and SDKs
def _check_fork(ctx: _Context) -> Iterable[Finding]:
    state = lifecycle.fork_state()
    how = state.get("reset_by")
    if how == "pid-check":
        yield Finding(
            "fork",
            WARNING,
            "this process was forked without fork hooks: the fork was noticed only at its "
            "first record, and records queued then were dropped as fork",
            fix="under uWSGI set py-call-uwsgi-fork-hooks = true; elsewhere fork with "
            "os.fork() or call reset_after_fork() in the child",
            details=state,
        )
        return
    message = {
        None: "not forked since steer_llm_sdk was imported",
        "python-hook": "forked; reset by Python's at-fork hook",
        "uwsgi-hook": "forked; reset by uWSGI's post-fork hook",
    }.get(how, f"forked; reset by {how}")
    yield Finding("fork", OK, message, details=state)


def _check_instrumentation(ctx: _Context) -> Iterable[Finding]:
    patched = instrumented()
    sdks: Dict[str, Dict[str, Any]] = {}
    for name, (module, _) in SDKS.items():
        try:
            # An SDK added to the registry without a distribution name here is looked up
            # under its own name.
            version: Optional[str] = importlib.metadata.version(_DISTRIBUTIONS.get(name, name))
        except importlib.metadata.PackageNotFoundError:
            continue
        paths = [p for p in patched if p.startswith(module + ".")]
        sdks[name] = {"version": version, "instrumented": len(paths)}
    if not sdks:
        yield Finding("instrumentation", OK, "no supported SDK installed", details={"sdks": {}})
        return
    parts = [
        f"{name} {info['version']} "
        + (
            f"(instrumented: {info['instrumented']} entry points)"
            if info["instrumented"]
            else "(not instrumented)"
        )
        for name, info in sdks.items()
    ]
    yield Finding("instrumentation", OK, "; ".join(parts), details={"sdks": sdks})


def _check_stream_usage(ctx: _Context) -> Iterable[Finding]:
    sink = next((s for s in ctx.collector.sinks if isinstance(s, InMemoryMetricsSink)), None)
    if sink is None:
        yield Finding("stream_usage", OK, "not checked: no InMemoryMetricsSink attached")
        return
    streams = sink.get_metrics(metric_type="request", method="stream", limit=_RECENT_STREAMS)
    # A stream closed early or failed never got to its usage chunk: not a setting to fix.
    ended_early = {
        str(m.request_id)
        for m in sink.get_metrics(metric_type="streaming")
        if getattr(m, "status", "completed") != "completed"
    }
    missing: Dict[str, int] = {}
    considered = 0
    for m in streams:
        if not isinstance(m, RequestMetrics) or not m.success or str(m.request_id) in ended_early:
            continue
        considered += 1
        if m.tokens_estimated or (m.prompt_tokens is None and m.completion_tokens is None):
            missing[m.provider] = missing.get(m.provider, 0) + 1
    details = {"streams": considered, "without_usage": missing}
    if not considered:
        yield Finding("stream_usage", OK, "no recent completed streams", details=details)
        return
    if not missing:
        yield Finding(
            "stream_usage",
            OK,
            f"{considered} recent completed stream(s), all with the provider's token counts",
            details=details,
        )
        return
    total = sum(missing.values())
    hints = [
        'pass stream_options={"include_usage": True} to OpenAI\'s create(..., stream=True)'
        if provider in _OPENAI_LIKE
        else f"ask {provider}'s SDK to report usage in streams"
        for provider in missing
    ]
    yield Finding(
        "stream_usage",
        WARNING,
        f"{total} of {considered} recent stream(s) ended without the provider's token counts "
        f"({', '.join(f'{p} {n}' for p, n in missing.items())}): tokens are missing or "
        "estimated, and not exported",
        fix="; ".join(hints),
        details=details,
    )


_CHECKS: Tuple[Tuple[str, _Check], ...] = (
    ("collector", _check_collector),
    ("sinks", _check_sinks),
    ("sampling", _check_sampling),
    ("round_trip", _check_round_trip),
    ("sink", _check_each_sink),
    ("dropped", _check_dropped),
    ("internal_errors", _check_internal_errors),
    ("otlp_endpoint", _check_otlp),
    ("prometheus_multiproc", _check_prometheus),
    ("fork", _check_fork),
    ("instrumentation", _check_instrumentation),
    ("stream_usage", _check_stream_usage),
)


def _reraise_signal(exc: BaseException) -> None:
    """Raise the exception a signal handler raised (a Celery soft time limit, say), if
    ``exc`` is it or came of it: it is the caller's, not a failure to report."""
    interrupt = signal_exception(exc)
    if interrupt is not None:
        raise interrupt


def _unchecked(check: str, exc: Exception, subject: Optional[str] = None) -> Finding:
    _reraise_signal(exc)
    return Finding(
        check,
        WARNING,
        f"could not be checked: {type(exc).__name__}: {redact(describe(exc))}",
        subject=subject,
    )


def _run(check: str, function: _Check, ctx: _Context) -> List[Finding]:
    """A check's findings; a check that fails (a broken sink, say) is a finding too, after
    the findings it made before failing."""
    findings: List[Finding] = []
    try:
        findings.extend(function(ctx))
    except Exception as exc:
        findings.append(_unchecked(check, exc))
    return findings


def doctor(collector: Optional[MetricsCollector] = None, timeout: float = 2.0) -> DoctorReport:
    """Check the metrics set-up of this process and say what is wrong and how to fix it.

    The round trip is ``collector.flush(timeout)``: True proves that the flush thread ran and
    that everything accepted before the call reached every sink, whose ``flush()`` returned.
    No record is made for it (a made-up record would land in the application's metrics), so
    a collector that has received nothing yet proves its threads start and each sink's
    ``flush()`` returns. See the module docstring for every check and side effect.

    Args:
        collector: the collector to check (default: :func:`get_collector`).
        timeout: seconds the round trip may take; each TCP connect to an OTLP endpoint gets
            at most 2 s of it. The whole call returns within about ``timeout`` plus 2 s per
            OTLP sink.

    Returns:
        A :class:`DoctorReport`; ``report.ok`` is False when a finding is a problem.

    Never raises for a broken sink, an unreachable endpoint or a missing optional
    dependency: each is a finding (an exception raised by a signal handler meanwhile, a
    Celery soft time limit say, is the caller's and goes through). Thread-safe; callable
    from a request handler.
    """
    timeout = max(0.0, float(timeout))
    try:
        target = collector if collector is not None else lifecycle.get_collector()
        ctx = _Context(target, timeout)
    except Exception as exc:
        _reraise_signal(exc)
        return DoctorReport(
            [
                Finding(
                    "collector",
                    PROBLEM,
                    f"no collector to check: {type(exc).__name__}: {redact(describe(exc))}",
                    fix="configure(MetricsConfig(...), sinks=[...])",
                )
            ]
        )
    findings: List[Finding] = []
    for check, function in _CHECKS:
        findings.extend(_run(check, function, ctx))
    return DoctorReport(findings)
