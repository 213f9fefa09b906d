"""The OTLP sink's attribute sets: built once per distinct call identity, cached, bounded.

Building an attribute dict per record would cost more than recording it: the sink keeps
the dict of every (operation, provider, model, response model, error type, server,
allow-listed attributes) it has seen, and the dict extended with a token type or the
estimate mark, so that records of the same calls share them. Both caches are cleared when
they grow past their bound. Values are truncated to ``max_attribute_length``. Past
``max_attribute_sets`` distinct sets per instrument, new ones fold into :data:`OVERFLOW`
(the specification's overflow attribute), counted by :class:`~..measurements.AttributeSets`.
"""

from typing import Any, Dict, FrozenSet, Optional, Tuple

from ..conventions import (
    ERROR_CATEGORY,
    ERROR_TYPE,
    ESTIMATED,
    OPERATION,
    PROVIDER,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    SERVER_ADDRESS,
    SERVER_PORT,
    TOKEN_TYPE,
)
from ..measurements import AttributeSets, operation_of, provider_of

#: The one attribute set an instrument records into once it has too many.
OVERFLOW = {"otel.metric.overflow": True}
#: Cached sets (and extended sets) before a cache starts over.
CACHED_SETS = 10_000
CACHED_TYPED = 20_000


class Attributes:
    """The attribute sets of one provider's instruments (see the module docstring).

    Args:
        allowlist: custom attribute keys that may become attributes.
        max_length: longest value exported.
        sets: the bound on distinct sets per instrument.

    Thread-safety: used by the sink's delivery thread only.
    """

    def __init__(self, allowlist: FrozenSet[str], max_length: int, sets: AttributeSets) -> None:
        self.allowlist = allowlist
        self.max_length = max_length
        self.sets = sets
        self._cache: Dict[Tuple[Any, ...], Dict[str, Any]] = {}
        self._typed: Dict[Tuple[Any, ...], Tuple[Dict[str, Any], Dict[str, Any]]] = {}

    def clip(self, value: Any) -> Any:
        """``value`` as an attribute value: numbers and booleans as they are, anything else
        as text of at most ``max_length`` characters."""
        if isinstance(value, (bool, int, float)):
            return value
        text = value if isinstance(value, str) else str(value)
        return text[: self.max_length]

    def attributes(
        self,
        record: Any,
        *,
        response_model: Any = None,
        error_type: Any = None,
        scoped: bool = True,
    ) -> Dict[str, Any]:
        """The attribute set of ``record`` (cached). ``scoped=False``: process state, only
        operation, provider and model."""
        extra = record.attributes
        allowed = (
            tuple(sorted((k, extra[k]) for k in self.allowlist.intersection(extra)))
            if scoped
            else ()
        )
        key = (
            getattr(record, "operation", None),
            record.provider,
            record.model,
            response_model,
            error_type,
            extra.get(SERVER_ADDRESS) if scoped else None,
            extra.get(SERVER_PORT) if scoped else None,
            allowed,
        )
        attrs = self._cache.get(key)
        if attrs is None:
            attrs = self._build(record, key)
            if len(self._cache) > CACHED_SETS:
                self._cache.clear()
            self._cache[key] = attrs
        return attrs

    def _build(self, record: Any, key: Tuple[Any, ...]) -> Dict[str, Any]:
        clip = self.clip
        _, _, model, response_model, error_type, address, port, allowed = key
        attrs = {OPERATION: clip(operation_of(record)), PROVIDER: clip(provider_of(record))}
        if model:
            attrs[REQUEST_MODEL] = clip(model)
        if response_model:
            attrs[RESPONSE_MODEL] = clip(response_model)
        if error_type is not None:
            attrs[ERROR_TYPE] = clip(error_type)
        if address:
            attrs[SERVER_ADDRESS] = clip(address)
        if isinstance(port, int) and not isinstance(port, bool):
            attrs[SERVER_PORT] = port
        for k, v in allowed:
            attrs[k] = clip(v)
        return attrs

    def typed(
        self, attrs: Dict[str, Any], token_type: Optional[str], estimated: bool = False
    ) -> Dict[str, Any]:
        """``attrs`` plus ``gen_ai.token.type`` (unless None) and, when ``estimated``, the
        estimate mark; cached with the set."""
        key = (id(attrs), token_type, estimated)
        entry = self._typed.get(key)
        if entry is None or entry[0] is not attrs:  # an id can be reused after a clear
            extra: Dict[str, Any] = {} if token_type is None else {TOKEN_TYPE: token_type}
            if estimated:
                extra[ESTIMATED] = True
            entry = (attrs, {**attrs, **extra})
            if len(self._typed) > CACHED_TYPED:
                self._typed.clear()
            self._typed[key] = entry
        return entry[1]

    @staticmethod
    def categorised(attrs: Dict[str, Any], category: str) -> Dict[str, Any]:
        """``attrs`` plus ``error.category``."""
        return {**attrs, ERROR_CATEGORY: category}

    def bounded(self, instrument: str, attrs: Dict[str, Any]) -> Dict[str, Any]:
        """``attrs``, or :data:`OVERFLOW` once ``instrument`` has too many distinct sets."""
        return attrs if self.sets.admits(instrument, frozenset(attrs.items())) else OVERFLOW
