"""What must never reach metrics, logs or exception messages: credentials and the request's
own text.

Provider error bodies and exception strings sometimes echo the key that was sent
("Incorrect API key provided: sk-...", an AWS signature error quoting the canonical request
with its ``x-amz-security-token``), a URL's userinfo, an ``Authorization`` header, or the
prompt itself (validation errors quote their input). Everything the SDK stores or prints
from foreign text goes through :func:`redact` first, and an error message also through
:func:`remove_request_text`. The patterns are deliberately broad: a false positive costs a
few characters of a message, a false negative leaks a credential.
"""

import base64
import binascii
import json
import re
from typing import Any, Dict, Iterable, List, Tuple
from urllib.parse import quote, unquote, urlsplit

REDACTED = "[REDACTED]"
#: What replaces the request's own text (a prompt) quoted in an error message.
REQUEST_TEXT = "[REQUEST TEXT]"

_PATTERNS = re.compile(
    r"""
    (?P<key>(?:sk|rk|pk)-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{8,})  # OpenAI/Anthropic
    | (?P<aws>\b(?:AKIA|ASIA)[A-Z0-9]{16}\b)                        # AWS access key ids
    | (?P<userinfo>(?<=://)[^\s/?#@'"<>\\]+(?=@[^\s@]))             # URL user:password@
    | (?P<basic>(?i:basic)\s+)(?P<b64>[A-Za-z0-9+/]{6,}={0,2})      # Authorization: Basic
    | (?P<bearer>(?i:bearer)\s+)[A-Za-z0-9._~+/\-]{8,}=*            # Authorization: Bearer
    | (?P<named>(?i:(?:x-amz-security-token|(?:security|session|auth|access|refresh|id)
      [_-]?token|x-goog-api-key|x-api-key|api[_-]?key|client[_-]?secret|
      secret(?:[_-]?(?:access[_-]?)?key)?|password|passwd)["']?\s*[:=]\s*["']?))
      [A-Za-z0-9._~+/%\-]{8,}=*                                     # key=value, header: value
    | (?P<query>(?i:[?&;](?:key|api-key|api_key|apikey|token|access_token|auth|sig|signature|
      password|passwd|secret|client_secret|code|x-goog-api-key|x-amz-security-token|
      x-amz-credential|x-amz-signature)=))[^&#\s'"]+                # URL query
    """,
    re.VERBOSE,
)

#: Literal secrets and request strings shorter than this are left alone: they are ordinary
#: words ("test").
_MIN_SECRET = 4


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with credentials replaced by ``[REDACTED]``.

    Args:
        text: any string (an exception message, a response body, a URL).
        secrets: literal values to remove as well (the keys a client was configured with),
            even when they do not look like a known key format; their URL-encoded forms go
            too.

    Returns:
        The redacted string. Never raises for ``str`` input.
    """
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET:
            text = text.replace(secret, REDACTED)
            encoded = quote(secret, safe="")
            if encoded != secret:
                text = text.replace(encoded, REDACTED)
    return _PATTERNS.sub(_replace, text)


def _replace(match: "re.Match[str]") -> str:
    # Keep the "api_key=" / "Bearer " / "?key=" prefix so the message still says what was
    # wrong.
    kind = match.lastgroup
    if kind == "b64":
        if not _is_basic_credential(match.group("b64")):
            return match.group(0)  # "basic information": a word, not a credential
        return match.group("basic") + REDACTED
    if kind in ("bearer", "named", "query"):
        return match.group(kind) + REDACTED
    return REDACTED


def _is_basic_credential(token: str) -> bool:
    """Whether ``token`` is padded base64, or base64 of printable ``user:password`` text
    (RFC 7617): "Basic information" is a word, not a credential."""
    if token.endswith("="):
        return True
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        text = decoded.decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return False
    return ":" in text and text.isprintable()


def url_secrets(url: Any) -> Tuple[str, ...]:
    """The user name and password of a URL's userinfo (``http://alice:secret@host``) and
    the ``Basic`` credential HTTP clients make of them, to pass to :func:`redact` as
    literal secrets; () when it has none. Never raises."""
    try:
        parts = urlsplit(str(url))
        if parts.username is None:
            return ()
        user, password = unquote(parts.username), unquote(parts.password or "")
        basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return tuple(v for v in (user, password, basic) if v)
    except Exception:
        return ()


def mask_key(key: "str | None") -> str:
    """Say whether a key is set without showing any of it: ``'<set>'`` or ``'<unset>'``."""
    return "<set>" if key else "<unset>"


# ---------------------------------------------------------------------- the request's text

#: Keys (of mappings) and attributes (of SDK objects such as google-genai's ``Content``)
#: under which a request carries text: OpenAI chat and Responses, Anthropic, Gemini, Bedrock
#: Converse, completions and embeddings.
TEXT_FIELDS = (
    "messages",
    "content",
    "text",
    "input",
    "prompt",
    "system",
    "instructions",
    "contents",
    "parts",
    "output",
    "config",
    "system_instruction",
)
_MAX_TEXTS = 4096  # strings collected from one request
_MAX_DEPTH = 8

#: A quoted run of the request's text is found from windows of this many characters taken
#: every ``_STEP`` characters of the text: any quote of at least ``_WINDOW + _STEP - 1``
#: characters is found, and a shorter text only when quoted whole.
_WINDOW = 16
_STEP = 8
#: Only this much of a message is searched (and kept): error messages are stored cut
#: shorter still.
_SCAN_LIMIT = 4096


def request_texts(request: Any) -> List[str]:
    """The strings of a request's text content: the values under :data:`TEXT_FIELDS` of
    ``request`` (an SDK call's keyword arguments, a request body), at any depth, in lists,
    mappings and objects. Bounded (at most 4096 strings); never raises."""
    found: List[str] = []
    try:
        if isinstance(request, dict):
            for name in TEXT_FIELDS:
                if name in request:
                    _collect(request[name], found, 0)
        else:
            _collect(request, found, 0)
    except Exception:
        pass
    return found


def _collect(value: Any, found: List[str], depth: int) -> None:
    if len(found) >= _MAX_TEXTS or depth > _MAX_DEPTH or value is None:
        return
    if isinstance(value, str):
        if len(value) >= _MIN_SECRET:
            found.append(value)
        return
    if isinstance(value, (bytes, bytearray, int, float, bool)):
        return
    if isinstance(value, dict):
        for name in TEXT_FIELDS:
            if name in value:
                _collect(value[name], found, depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _collect(item, found, depth + 1)
        return
    for name in TEXT_FIELDS:  # an SDK's model object (google-genai's Content, Part, ...)
        item = getattr(value, name, None)
        if item is not None and not callable(item):
            _collect(item, found, depth + 1)


def remove_request_text(text: str, texts: Iterable[str]) -> str:
    """Return ``text`` (an error message) with the request's own text replaced by
    ``[REQUEST TEXT]``: each of ``texts`` quoted whole, in part (any run of about 24
    characters or more), JSON-escaped or as a Python ``repr``. Only the first 4096
    characters of ``text`` are searched and returned. Runs on failures only: linear in the
    sizes of ``text`` and ``texts``.
    """
    text = text[:_SCAN_LIMIT]
    variants = _variants(texts)
    if not variants or not text:
        return text
    windows: Dict[str, List[int]] = {}
    for i in range(len(text) - _WINDOW + 1):
        windows.setdefault(text[i : i + _WINDOW], []).append(i)
    spans: List[Tuple[int, int]] = []
    for variant in variants:
        if len(variant) < _WINDOW:
            _whole_words(text, variant, spans)
        else:
            _quoted_runs(text, variant, windows, spans)
    if not spans:
        return text
    spans.sort()
    out = []
    end = 0
    for start, stop in spans:
        if start >= end:
            out.append(text[end:start])
            out.append(REQUEST_TEXT)
            end = stop
        elif stop > end:
            end = stop
    out.append(text[end:])
    return "".join(out)


def _variants(texts: Iterable[str]) -> List[str]:
    """Each text as it may be quoted: as is, JSON-escaped (ASCII or not), ``repr``."""
    seen: Dict[str, None] = {}
    for value in texts:
        if not isinstance(value, str) or len(value) < _MIN_SECRET:
            continue
        for variant in (
            value,
            json.dumps(value)[1:-1],
            json.dumps(value, ensure_ascii=False)[1:-1],
            repr(value)[1:-1],
        ):
            seen.setdefault(variant, None)
    return list(seen)


def _whole_words(text: str, variant: str, spans: List[Tuple[int, int]]) -> None:
    """Add to ``spans`` each occurrence of a short ``variant`` that is not part of a longer
    word ("test" is removed from "a test", not from "latest")."""
    start = text.find(variant)
    while start >= 0:
        stop = start + len(variant)
        if not (_in_word(text, start - 1, variant[0]) or _in_word(text, stop, variant[-1])):
            spans.append((start, stop))
        start = text.find(variant, start + 1)


def _in_word(text: str, index: int, edge: str) -> bool:
    """Whether ``text[index]``, next to a match whose edge character is ``edge``, continues
    the same word."""
    if index < 0 or index >= len(text):
        return False
    return (edge.isalnum() or edge == "_") and (text[index].isalnum() or text[index] == "_")


def _quoted_runs(
    text: str, variant: str, windows: Dict[str, List[int]], spans: List[Tuple[int, int]]
) -> None:
    """Add to ``spans`` every run of ``text`` that is a run of ``variant`` found through a
    shared window (see ``_WINDOW``), extended both ways as far as the two agree."""
    reach: Dict[int, int] = {}  # text offset - variant offset -> end of the run found
    last = len(variant) - _WINDOW
    starts = list(range(0, last + 1, _STEP))
    if starts[-1] != last:
        starts.append(last)  # the tail, so that a quote of the end is found too
    for j in starts:
        for i in windows.get(variant[j : j + _WINDOW], ()):
            diagonal = i - j
            if i < reach.get(diagonal, -1):
                continue  # inside a run already found
            a, q = i, j
            while a > 0 and q > 0 and text[a - 1] == variant[q - 1]:
                a -= 1
                q -= 1
            b, r = i + _WINDOW, j + _WINDOW
            while b < len(text) and r < len(variant) and text[b] == variant[r]:
                b += 1
                r += 1
            reach[diagonal] = b
            spans.append((a, b))
