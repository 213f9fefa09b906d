"""Scripted faults: what a ``Fault`` says to do to one request instead of answering it
normally, and where each part of it is applied (before the answer, or between the events of
a stream)."""

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from .azure import FILTERED_PROMPT
from .errors import ErrorShape, default_message, send_error
from .wire import Writer


@dataclass
class Fault:
    """What to do to one request instead of answering it normally.

    Attributes:
        status: answer with this HTTP status and the protocol's error body.
        retry_after: ``Retry-After`` header value (seconds) with ``status``.
        drop_after: for streams, drop the connection after this many events.
        malformed_after: for streams, send a malformed event after this many events.
        stall: seconds to wait before answering (or, with ``drop_after``/``stall_after``
            unset, before the first byte).
        stall_after: for streams, stall after this many events.
        content_filter: ``"prompt"`` (a 400 with code ``content_filter``, OpenAI
            protocol) or ``"completion"``: the answer withheld (chat completions:
            ``finish_reason: content_filter`` with the filter results) or cut short
            after half its text (Responses API: ``incomplete`` for ``content_filter``;
            Anthropic: ``stop_reason: "refusal"`` with ``stop_details``), each with the
            usage billed for what was answered.
        echo_request: with ``status``: ``"message"`` quotes the request's messages (as
            JSON) in the error message; ``"body"`` puts the whole request in the error
            body under ``"request"``, beside an error message that does not quote it.
        echo_headers: with ``status``: the error message quotes the request's headers,
            credentials included.
        echo_key: with ``status``: the error message quotes the request's credentials
            bare ("Incorrect API key provided: ..."): the values of its credential
            headers (an ``Authorization`` scheme dropped; of an AWS signature, the access
            key id).
    """

    status: Optional[int] = None
    retry_after: Optional[float] = None
    drop_after: Optional[int] = None
    malformed_after: Optional[int] = None
    stall: float = 0.0
    stall_after: Optional[int] = None
    content_filter: Optional[str] = None
    echo_request: Optional[str] = None
    echo_headers: bool = False
    echo_key: bool = False


def answered_first(
    writer: Writer, shape: ErrorShape, fault: Fault, body: Any, pause: Callable[[float], None]
) -> bool:
    """Apply what ``fault`` does before an answer: a stall, then an error status or a
    refused prompt. True when the request is answered so."""
    if fault.stall and fault.stall_after is None:
        pause(fault.stall)
    if fault.status is not None:
        send_fault_error(writer, shape, fault, body)
        return True
    if fault.content_filter == "prompt":
        writer.write_json(400, FILTERED_PROMPT)
        return True
    return False


def send_fault_error(writer: Writer, shape: ErrorShape, fault: Fault, body: Any) -> None:
    """Answer with the error status of ``fault``, echoing what it says to echo."""
    assert fault.status is not None
    default = default_message(fault.status)
    message = None
    extra: Dict[str, Any] = {}
    if fault.echo_request == "message" and isinstance(body, dict):
        quoted = ("system", "systemInstruction", "instructions", "messages", "contents")
        said = {k: body[k] for k in quoted if k in body}
        message = f"{default}: invalid input {json.dumps(said)}"
    elif fault.echo_request == "body":
        extra["request"] = body
    if fault.echo_key:
        keys = ", ".join(_credentials(writer.headers.items()))
        message = f"{message or default}. Incorrect API key provided: {keys}"
    if fault.echo_headers:
        lines = "\n".join(f"{k.lower()}:{v}" for k, v in writer.headers.items())
        message = f"{message or default}. The canonical request was:\n{lines}"
    send_error(writer, shape, fault.status, message, fault.retry_after, extra)


def _credentials(headers: Iterable[Tuple[str, str]]) -> List[str]:
    """The bare credentials among request headers (see ``Fault.echo_key``)."""
    found = []
    for name, value in headers:
        name = name.lower()
        if name == "authorization":
            scheme, _, value = value.partition(" ")
            if scheme.startswith("AWS4-"):
                value = value.split("Credential=", 1)[-1].split("/", 1)[0]
            found.append(value)
        elif name in ("api-key", "x-api-key", "x-goog-api-key", "x-amz-security-token"):
            found.append(value)
    return found


def interrupted(writer: Writer, fault: Fault, index: int, pause: Callable[[float], None]) -> bool:
    """Apply what ``fault`` does before event ``index`` of a stream: a dropped connection
    (then True: the stream is over), a malformed event, a stall."""
    if index == fault.drop_after:
        writer.drop()
        return True
    if index == fault.malformed_after:
        writer.write_chunk("data: {this is not json\n\n")
    if index == fault.stall_after:
        pause(fault.stall)
    return False
