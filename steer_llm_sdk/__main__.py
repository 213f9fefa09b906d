"""``python -m steer_llm_sdk doctor``: the metrics set-up checked from the command line.

    python -m steer_llm_sdk doctor [--json] [--timeout SECONDS] [--import MODULE[:CALLABLE]]

Prints what :func:`steer_llm_sdk.observability.doctor` finds, as text or (``--json``) as one
JSON object ``{"status", "pid", "findings"}``. ``--import`` (repeatable) first imports a
module of the application, and calls ``CALLABLE`` in it when given (an app factory, say),
so that the collector and sinks the application configures are the ones checked; without
it the default collector of a fresh process is checked (``STEER_METRICS_*`` variables).

Exit status: 0 when no finding is a problem (warnings alone exit 0), 1 when one is, 2 for a
usage error or an ``--import`` that failed.
"""

import argparse
import importlib
import json
import sys
from typing import Optional, Sequence


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m steer_llm_sdk", description="steer_llm_sdk command line tools"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    doctor = commands.add_parser(
        "doctor",
        help="check the metrics set-up (exit 1 when a finding is a problem)",
        description="Check the metrics set-up of this process: collector, sinks, delivery, "
        "drops, OTLP endpoints, PROMETHEUS_MULTIPROC_DIR, fork, instrumented SDKs, stream "
        "usage. Exit status 1 when a finding is a problem; warnings alone exit 0.",
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON object")
    doctor.add_argument(
        "--timeout",
        type=_positive,
        default=2.0,
        help="seconds the delivery round trip may take (default 2)",
    )
    doctor.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE[:CALLABLE]",
        help="import the application's module (and call CALLABLE) before checking",
    )
    return parser


def _load(target: str) -> None:
    """Import ``module`` and call ``callable`` of ``module:callable``.

    Raises:
        Exception: whatever the application's code raises; AttributeError for a missing
            callable.
    """
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    if attribute:
        getattr(module, attribute)()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    args = _parser().parse_args(argv)
    from ._secrets import redact
    from .observability import doctor
    from .observability._log import describe

    for target in args.imports:
        try:
            _load(target)
        except Exception as exc:
            print(
                f"doctor: --import {target} failed: {type(exc).__name__}: {redact(describe(exc))}",
                file=sys.stderr,
            )
            return 2
    report = doctor(timeout=args.timeout)
    print(json.dumps(report.to_dict()) if args.json else report.to_text())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
