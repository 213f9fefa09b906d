"""Model prices and the cost of a call.

Where a price comes from, first match wins (the record says which, in ``price_source``):

1. ``override``: ``MetricsConfig(pricing={...})`` and a JSON file named by
   ``STEER_PRICING_FILE``::

       {"as_of": "2026-01-01",
        "models": {"gpt-4o": {"input": 2.5, "output": 10.0, "cached_input": 1.25}}}

2. ``genai-prices``: the maintained price database of the ``genai-prices`` package, when it
   is installed (extra ``[prices]``) and ``STEER_PRICE_SOURCE`` is not ``bundled``.
3. ``bundled``: the table below, dated :data:`PRICES_AS_OF`.

Prices are USD per million tokens: ``input``, ``output``, ``cached_input`` (cache reads),
``cache_write`` (cache creation; Anthropic bills 1.25x input for 5-minute writes) and
``reasoning`` (default: the output rate). In a table, a model matches the longest entry that
is a prefix of its name ending at a ``-``, ``@`` or the end (``gpt-4o-mini-2024-07-18`` is
priced as ``gpt-4o-mini``; ``gpt-4.5`` does not fall back to ``gpt-4``). An unknown model
costs None, never $0.

With prompt tokens in the OpenTelemetry meaning (cache reads and writes included) and
completion tokens including reasoning::

    cost = (prompt - cached - cache_creation) x input + cached x cached_input
         + cache_creation x cache_write
         + (completion - reasoning) x output + reasoning x reasoning
"""

import json
import os
import threading
from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple, Union

PRICES_AS_OF = "2025-11-01"


class ModelPrice(NamedTuple):
    """USD per million tokens (None: the input rate for cache reads and writes, the output
    rate for reasoning)."""

    input: float
    output: float
    cached_input: Optional[float] = None
    cache_write: Optional[float] = None
    reasoning: Optional[float] = None

    def cost(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: Optional[int] = None,
        cache_creation_tokens: Optional[int] = None,
        reasoning_tokens: Optional[int] = None,
    ) -> float:
        """USD for these counts (see the module docstring)."""
        cached = min(cached_tokens or 0, prompt_tokens)
        written = min(cache_creation_tokens or 0, prompt_tokens - cached)
        reasoning = min(reasoning_tokens or 0, completion_tokens)
        return (
            (prompt_tokens - cached - written) * self.input
            + cached * (self.input if self.cached_input is None else self.cached_input)
            + written * (self.input if self.cache_write is None else self.cache_write)
            + (completion_tokens - reasoning) * self.output
            + reasoning * (self.output if self.reasoning is None else self.reasoning)
        ) / 1_000_000


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
    "claude-opus-4-5": ModelPrice(5.0, 25.0, 0.50, 6.25),
    "claude-opus-4-1": ModelPrice(15.0, 75.0, 1.50, 18.75),
    "claude-opus-4": ModelPrice(15.0, 75.0, 1.50, 18.75),
    "claude-sonnet-4-5": ModelPrice(3.0, 15.0, 0.30, 3.75),
    "claude-sonnet-4": ModelPrice(3.0, 15.0, 0.30, 3.75),
    "claude-haiku-4-5": ModelPrice(1.0, 5.0, 0.10, 1.25),
    "claude-3-7-sonnet": ModelPrice(3.0, 15.0, 0.30, 3.75),
    "claude-3-5-sonnet": ModelPrice(3.0, 15.0, 0.30, 3.75),
    "claude-3-5-haiku": ModelPrice(0.80, 4.0, 0.08, 1),
    "claude-3-opus": ModelPrice(15.0, 75.0, 1.50, 18.75),
    "claude-3-haiku": ModelPrice(0.25, 1.25, 0.03, 0.3125),
}


_OPTIONAL_RATES = ("cached_input", "cache_write", "reasoning")


def _price(name: str, value: Any) -> ModelPrice:
    try:
        if isinstance(value, ModelPrice):
            price = value
        elif isinstance(value, Mapping):
            price = ModelPrice(
                float(value["input"]),
                float(value["output"]),
                *(None if value.get(k) is None else float(value[k]) for k in _OPTIONAL_RATES),
            )
        else:
            values = list(value)
            if not 2 <= len(values) <= 5:
                raise ValueError(f"expected 2 to 5 numbers, got {len(values)}")
            rest = [None if v is None else float(v) for v in values[2:]]
            price = ModelPrice(float(values[0]), float(values[1]), *rest)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"pricing[{name!r}] must give input and output USD per million tokens "
            f"(and optionally cached_input, cache_write, reasoning): {exc}"
        ) from None
    if min(p for p in price if p is not None) < 0:
        raise ValueError(f"pricing[{name!r}]: prices must be >= 0")
    return price


class PriceTable:
    """An immutable model -> price table. Thread-safe.

    Args:
        prices: model name (or prefix) -> :class:`ModelPrice`, an ``(input, output[,
            cached_input[, cache_write[, reasoning]]])`` tuple or a mapping with those keys.
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
        cache_creation_tokens: Optional[int] = None,
        reasoning_tokens: Optional[int] = None,
    ) -> Optional[float]:
        """USD cost of a call, or None when the model or the token counts are unknown."""
        price = self.lookup(model)
        if price is None or prompt_tokens is None or completion_tokens is None:
            return None
        return price.cost(
            prompt_tokens, completion_tokens, cached_tokens, cache_creation_tokens, reasoning_tokens
        )

    def __contains__(self, model: str) -> bool:
        return self.lookup(model) is not None

    def __repr__(self) -> str:
        return f"PriceTable({len(self._prices)} models, as_of={self.as_of!r})"


#: gen_ai.provider.name -> the provider id genai-prices uses.
_GENAI_PROVIDERS = {
    "openai": "openai",
    "azure.ai.openai": "azure",
    "anthropic": "anthropic",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "aws.bedrock": "aws",
    "groq": "groq",
    "mistral_ai": "mistral",
    "deepseek": "deepseek",
    "x_ai": "x-ai",
    "cohere": "cohere",
    "perplexity": "perplexity",
}


def _genai_prices_available() -> bool:
    try:
        import genai_prices  # noqa: F401
    except ImportError:
        return False
    # One lookup now, on the caller's thread, imports what lookups import (its price data,
    # ~15 ms, is imported lazily): an import running on a background thread when another
    # thread forks leaves that module's import lock held in the child, whose lookups then
    # wait for it forever.
    _genai_rates("openai", "gpt-4o")
    return True


class Pricer:
    """Prices calls from the three sources, in order (see the module docstring).

    Args:
        overrides: the user's table (``MetricsConfig.pricing``, ``STEER_PRICING_FILE``).
        bundled: the bundled table.
        genai_prices: look prices up in the ``genai-prices`` package (if it is installed).

    Thread-safe, and fork-safe: a forked child gets a fresh lock (another thread may have
    held this one at the fork). A model's genai-prices entry is looked up once and cached (a
    lookup searches its whole table; a cached price is a few additions); models with tiered
    prices (a higher rate past a prompt size) are priced by genai-prices itself at each call.
    """

    def __init__(
        self,
        overrides: Optional[PriceTable],
        bundled: PriceTable,
        genai_prices: bool = True,
    ) -> None:
        self.overrides = overrides
        self.bundled = bundled
        self.genai_prices = genai_prices and _genai_prices_available()
        self._lock = threading.Lock()
        self._genai: Dict[Tuple[str, str], Any] = {}

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (another thread may have held it at the fork).
        Called by the pipeline that owns the pricer, before its threads start again."""
        self._lock = threading.Lock()

    def cost(
        self,
        provider: Optional[str],
        model: Optional[str],
        prompt_tokens: Optional[int],
        completion_tokens: Optional[int],
        cached_tokens: Optional[int] = None,
        cache_creation_tokens: Optional[int] = None,
        reasoning_tokens: Optional[int] = None,
    ) -> Optional[Tuple[float, str]]:
        """(USD, source) of a call, or None when no source prices the model or a count is
        unknown. Never raises."""
        if not model or prompt_tokens is None or completion_tokens is None:
            return None
        counts = (prompt_tokens, completion_tokens, cached_tokens, cache_creation_tokens)
        if self.overrides is not None:
            price = self.overrides.lookup(model)
            if price is not None:
                return price.cost(*counts, reasoning_tokens), "override"
        if self.genai_prices:
            cost = self._genai_cost(provider, model, counts, reasoning_tokens)
            if cost is not None:
                return cost, "genai-prices"
        price = self.bundled.lookup(model)
        if price is not None:
            return price.cost(*counts, reasoning_tokens), "bundled"
        return None

    def _genai_cost(
        self, provider: Optional[str], model: str, counts: Tuple[Any, ...], reasoning: Any
    ) -> Optional[float]:
        key = (provider or "", model)
        with self._lock:
            known = key in self._genai
            rates = self._genai.get(key)
        if not known:
            rates = _genai_rates(provider, model)
            with self._lock:
                if len(self._genai) > 2000:
                    self._genai.clear()
                self._genai[key] = rates
        if rates is None:
            return None
        # Tiered rates (a higher price past a prompt size) apply to all tokens once the
        # prompt is larger than the tier's start, as genai-prices computes them.
        prompt, completion, cached, written = counts
        input_rate, output_rate, read_rate, write_rate = (_tier(r, prompt) for r in rates)
        if input_rate is None or output_rate is None:
            return None
        price = ModelPrice(input_rate, output_rate, read_rate, write_rate)
        return price.cost(prompt, completion, cached, written, reasoning)

    def __repr__(self) -> str:
        sources = ["override"] if self.overrides is not None else []
        sources += ["genai-prices"] if self.genai_prices else []
        return f"Pricer({' > '.join(sources + ['bundled'])})"


Rate = Union[None, float, Tuple[float, Tuple[Tuple[int, float], ...]]]


def _tier(rate: Rate, prompt_tokens: int) -> Optional[float]:
    if rate is None or isinstance(rate, float):
        return rate
    base, tiers = rate
    for start, price in reversed(tiers):
        if prompt_tokens > start:
            return price
    return base


def _genai_rates(provider: Optional[str], model: str) -> Optional[Tuple[Rate, ...]]:
    """(input, output, cache read, cache write) rates of a model in genai-prices, each a
    float or ``(base, ((start, price), ...))`` for tiered prices; None when unknown."""
    try:
        from decimal import Decimal

        from genai_prices import Usage, calc_price

        found = calc_price(
            Usage(input_tokens=0, output_tokens=0),
            model_ref=model,
            provider_id=_GENAI_PROVIDERS.get(provider or ""),
        )
        model_price = found.model_price
        rates: list = []
        for name in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"):
            value = getattr(model_price, name, None)
            if value is None or isinstance(value, Decimal):
                rates.append(None if value is None else float(value))
            else:  # TieredPrices
                tiers = tuple((int(t.start), float(t.price)) for t in value.tiers)
                rates.append((float(value.base), tiers))
        if rates[0] is None or rates[1] is None:
            return None
        return tuple(rates)
    except Exception:  # an unknown model (LookupError) or an entry of another shape
        return None


def load_pricing(
    overrides: Union[None, PriceTable, Mapping[str, Any]] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Pricer:
    """The pricer for a collector: ``STEER_PRICING_FILE`` then ``overrides`` as the
    override table, genai-prices unless ``STEER_PRICE_SOURCE=bundled``, the bundled table.

    Raises:
        ValueError: ``STEER_PRICING_FILE`` cannot be read, a price is invalid, or
            ``STEER_PRICE_SOURCE`` is neither ``genai-prices`` nor ``bundled``.
    """
    env = os.environ if environ is None else environ
    table: Optional[PriceTable] = None
    path = env.get("STEER_PRICING_FILE")
    if path:
        try:
            table = PriceTable.from_file(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"STEER_PRICING_FILE={path}: {exc}") from None
    if overrides is not None:
        table = (
            table.merged(overrides)
            if table is not None
            else (overrides if isinstance(overrides, PriceTable) else PriceTable(overrides))
        )
    source = (env.get("STEER_PRICE_SOURCE") or "genai-prices").strip().lower()
    if source not in ("genai-prices", "bundled"):
        raise ValueError(f"STEER_PRICE_SOURCE must be 'genai-prices' or 'bundled', got {source!r}")
    return Pricer(table, PriceTable.default(), genai_prices=source == "genai-prices")
