"""What model calls cost: a price table (USD per million tokens) that users extend, and per-study prices.

A money budget is only as good as the prices behind it. Hosted prices change and new models appear, so
the table is open: :func:`register_price` adds or replaces a model for the whole process, and a study's
own ``prices`` (a job file's ``[proposer.prices]``) override the table for that study. Models that run
locally or replay a record cost nothing; the gateway knows which (``free=True``) and never asks here. A
hosted model missing from every table is counted at $0 *with a warning*, once per model and process,
so a money budget is never wrong without a trace.

Dated snapshots are priced as their model (``gpt-4o-mini-2024-07-18`` as ``gpt-4o-mini``): the API
answers with the snapshot's name, while users write the model's.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Mapping
from typing import Any

from agent.errors import ConfigError

log = logging.getLogger(__name__)

#: (USD per 1M prompt tokens, USD per 1M completion tokens)
Price = tuple[float, float]

#: List prices at the time of writing; :func:`register_price` or a study's ``prices`` override them.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
}

_lock = threading.Lock()
_registered: dict[str, Price] = dict(DEFAULT_PRICES)
_warned: set[str] = set()
#: A snapshot suffix the API appends to a model's name: "-2024-07-18", "-0613".
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")


def check_price(model: str, price: Any) -> Price:
    """``price`` as ``(input, output)`` USD per million tokens: a pair, or ``{"input": .., "output": ..}``.

    Raises:
        ConfigError: not such a pair of finite, non-negative numbers (``field`` is ``prices.<model>``).
    """
    if isinstance(price, Mapping):
        if set(price) != {"input", "output"}:
            raise ConfigError(f"expected {{input = ..., output = ...}}, got {dict(price)!r}", field=f"prices.{model}")
        price = (price["input"], price["output"])
    if isinstance(price, str) or not hasattr(price, "__len__") or len(price) != 2:
        raise ConfigError(f"expected (input, output) in USD per million tokens, got {price!r}", field=f"prices.{model}")
    pair: list[float] = []
    for value in price:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ConfigError(
                f"prices must be finite non-negative numbers (USD per million tokens), got {value!r}",
                field=f"prices.{model}",
            )
        pair.append(float(value))
    return pair[0], pair[1]


def check_prices(prices: Mapping[str, Any] | None) -> dict[str, Price]:
    """A study's prices, each checked by :func:`check_price`; ``None`` is no prices."""
    return {str(model): check_price(str(model), price) for model, price in (prices or {}).items()}


def register_price(model: str, input_per_million: float, output_per_million: float) -> None:
    """Price ``model`` for every study of this process (replacing the built-in price, if any).

    Raises:
        ConfigError: a price that is negative or not a finite number.
    """
    price = check_price(model, (input_per_million, output_per_million))
    with _lock:
        _registered[model] = price


def price_of(model: str, prices: Mapping[str, Price] | None = None) -> Price | None:
    """The price of ``model``: the study's ``prices`` first, then the registered table; None when unknown.

    A dated snapshot (``gpt-4o-2024-08-06``) without a price of its own takes its model's price.
    """
    with _lock:
        table = {**_registered, **(prices or {})}
    for name in (model, _SNAPSHOT.sub("", model)):
        if name in table:
            return table[name]
    return None


def warn_unpriced(model: str) -> None:
    """Warn, once per model and process, that a hosted model's calls are counted at $0."""
    with _lock:
        if model in _warned:
            return
        _warned.add(model)
    log.warning(
        "no price is known for model %r: its calls count as $0, so a money budget cannot bound them; "
        "set its price with [proposer.prices] in the job file, prices= in create_study, "
        "or agent.llm.pricing.register_price",
        model,
    )


def cost_usd(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    prices: Mapping[str, Price] | None = None,
    *,
    free: bool = False,
) -> float:
    """USD for one call of ``model``; ``free`` (a local or replayed model) costs nothing.

    An unpriced hosted model costs $0 and is warned about once (:func:`warn_unpriced`).
    """
    if free:
        return 0.0
    price = price_of(model, prices)
    if price is None:
        warn_unpriced(model)
        return 0.0
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6
