"""Model prices and the cost of a call.

A bundled, dated table of USD prices per million tokens (input, output, cached input) for
current OpenAI and Anthropic models. Prices change: override or extend the table with
``MetricsConfig(pricing={...})`` or a JSON file named by ``STEER_PRICING_FILE``::

    {"as_of": "2026-01-01",
     "models": {"gpt-4o": {"input": 2.5, "output": 10.0, "cached_input": 1.25}}}

A model matches the longest table entry that is a prefix of its name ending at a ``-``,
``@`` or the end (``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``; ``gpt-4.5`` does
not fall back to ``gpt-4``). An unknown model costs None, never $0.

Cost = (prompt - cached) x input + cached x cached_input + completion x output. For
Anthropic, prompt tokens include cache creation, priced here at the input rate (Anthropic
charges 1.25x for 5-minute cache writes), so a cost with cache writes is a slight
underestimate.
"""

import json
import os
from typing import Any, Dict, Mapping, NamedTuple, Optional, Union

PRICES_AS_OF = "2025-11-01"


class ModelPrice(NamedTuple):
    """USD per million tokens."""

    input: float
    output: float
    cached_input: Optional[float] = None


_DEFAULT: Dict[str, ModelPrice] = {
    # OpenAI
    "gpt-5": ModelPrice(1.25, 10.0, 0.125),
    "gpt-5-mini": ModelPrice(0.25, 2.0, 0.025),
    "gpt-5-nano": ModelPrice(0.05, 0.40, 0.005),
    "gpt-4.1": ModelPrice(2.0, 8.0, 0.50),
    "gpt-4.1-mini": ModelPrice(0.40, 1.60, 0.10),
    "gpt-4.1-nano": ModelPrice(0.10, 0.40, 0.025),
    "gpt-4o": ModelPrice(2.50, 10.0, 1.25),
    "gpt-4o-mini": ModelPrice(0.15, 0.60, 0.075),
    "gpt-4-turbo": ModelPrice(10.0, 30.0),
    "gpt-4": ModelPrice(30.0, 60.0),
    "gpt-3.5-turbo": ModelPrice(0.50, 1.50),
    "o1": ModelPrice(15.0, 60.0, 7.50),
    "o1-mini": ModelPrice(1.10, 4.40, 0.55),
    "o3": ModelPrice(2.0, 8.0, 0.50),
    "o3-mini": ModelPrice(1.10, 4.40, 0.55),
    "o4-mini": ModelPrice(1.10, 4.40, 0.275),
    # Anthropic
    "claude-opus-4-5": ModelPrice(5.0, 25.0, 0.50),
    "claude-opus-4-1": ModelPrice(15.0, 75.0, 1.50),
    "claude-opus-4": ModelPrice(15.0, 75.0, 1.50),
    "claude-sonnet-4-5": ModelPrice(3.0, 15.0, 0.30),
    "claude-sonnet-4": ModelPrice(3.0, 15.0, 0.30),
    "claude-haiku-4-5": ModelPrice(1.0, 5.0, 0.10),
    "claude-3-7-sonnet": ModelPrice(3.0, 15.0, 0.30),
    "claude-3-5-sonnet": ModelPrice(3.0, 15.0, 0.30),
    "claude-3-5-haiku": ModelPrice(0.80, 4.0, 0.08),
    "claude-3-opus": ModelPrice(15.0, 75.0, 1.50),
    "claude-3-haiku": ModelPrice(0.25, 1.25, 0.03),
}


def _price(name: str, value: Any) -> ModelPrice:
    try:
        if isinstance(value, ModelPrice):
            price = value
        elif isinstance(value, Mapping):
            price = ModelPrice(
                float(value["input"]),
                float(value["output"]),
                None if value.get("cached_input") is None else float(value["cached_input"]),
            )
        else:
            values = list(value)
            cached = None if len(values) < 3 or values[2] is None else float(values[2])
            price = ModelPrice(float(values[0]), float(values[1]), cached)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"pricing[{name!r}] must give input and output USD per million tokens "
            f"(and optionally cached_input): {exc}"
        ) from None
    if min(p for p in price if p is not None) < 0:
        raise ValueError(f"pricing[{name!r}]: prices must be >= 0")
    return price


class PriceTable:
    """An immutable model -> price table. Thread-safe.

    Args:
        prices: model name (or prefix) -> :class:`ModelPrice`, a ``(input, output[,
            cached_input])`` tuple or a ``{"input", "output", "cached_input"}`` mapping.
        as_of: the date the prices were taken.

    Raises:
        ValueError: a price is missing, not a number or negative (the message names it).
    """

    def __init__(self, prices: Mapping[str, Any], as_of: str = PRICES_AS_OF) -> None:
        self._prices = {str(k).lower(): _price(k, v) for k, v in prices.items()}
        self.as_of = as_of
        # Longest first, so the first boundary match is the most specific entry.
        self._order = sorted(self._prices, key=len, reverse=True)

    @classmethod
    def default(cls) -> "PriceTable":
        """The bundled table (see :data:`PRICES_AS_OF`)."""
        return cls(_DEFAULT, PRICES_AS_OF)

    @classmethod
    def from_file(cls, path: str) -> "PriceTable":
        """Read ``{"as_of": ..., "models": {...}}`` from a JSON file."""
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            raise ValueError(f"{path}: expected an object with a 'models' object")
        return cls(data["models"], str(data.get("as_of", "unknown")))

    def merged(self, other: Union["PriceTable", Mapping[str, Any]]) -> "PriceTable":
        """A table with ``other``'s entries added or replacing this one's."""
        if not isinstance(other, PriceTable):
            other = PriceTable(other, self.as_of)
        return PriceTable({**self._prices, **other._prices}, other.as_of)

    def lookup(self, model: Optional[str]) -> Optional[ModelPrice]:
        """The price of ``model``, or None when no entry matches."""
        if not model:
            return None
        name = model.split(":", 1)[-1].lower()
        for key in self._order:
            if name.startswith(key) and (len(name) == len(key) or name[len(key)] in "-@"):
                return self._prices[key]
        return None

    def cost(
        self,
        model: Optional[str],
        prompt_tokens: Optional[int],
        completion_tokens: Optional[int],
        cached_tokens: Optional[int] = None,
    ) -> Optional[float]:
        """USD cost of a call, or None when the model or the token counts are unknown."""
        price = self.lookup(model)
        if price is None or prompt_tokens is None or completion_tokens is None:
            return None
        cached = min(cached_tokens or 0, prompt_tokens)
        cached_rate = price.input if price.cached_input is None else price.cached_input
        return (
            (prompt_tokens - cached) * price.input
            + cached * cached_rate
            + completion_tokens * price.output
        ) / 1_000_000

    def __contains__(self, model: str) -> bool:
        return self.lookup(model) is not None

    def __repr__(self) -> str:
        return f"PriceTable({len(self._prices)} models, as_of={self.as_of!r})"


def load_pricing(
    overrides: Union[None, PriceTable, Mapping[str, Any]] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> PriceTable:
    """The bundled table, then ``STEER_PRICING_FILE`` if set, then ``overrides``."""
    env = os.environ if environ is None else environ
    table = PriceTable.default()
    path = env.get("STEER_PRICING_FILE")
    if path:
        try:
            table = table.merged(PriceTable.from_file(path))
        except (OSError, ValueError) as exc:
            raise ValueError(f"STEER_PRICING_FILE={path}: {exc}") from None
    if overrides is not None:
        table = table.merged(overrides)
    return table
