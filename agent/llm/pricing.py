"""What model calls cost: a per-model price table (USD per million tokens) that a job file can extend.

Local models cost nothing. Hosted prices change; the defaults below are list prices at the time of
writing and a job file's ``[proposer.prices]`` overrides them. A model missing from the table is
counted at zero, with a warning, so a money budget is never silently wrong without a trace.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

log = logging.getLogger(__name__)

#: model name -> (USD per 1M prompt tokens, USD per 1M completion tokens)
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}
_FREE_PREFIXES = ("smollm2", "local", "replay")
_warned: set[str] = set()


def cost_usd(
    model: str, prompt_tokens: int, completion_tokens: int, prices: Mapping[str, tuple[float, float]] | None = None
) -> float:
    """USD for one call of ``model``; ``prices`` (e.g. from a job file) takes precedence over the defaults."""
    table = {**DEFAULT_PRICES, **(prices or {})}
    price = table.get(model)
    if price is None:
        if not model.lower().startswith(_FREE_PREFIXES) and model not in _warned:
            _warned.add(model)
            log.warning("no price known for model %r: its calls count as $0; set [proposer.prices]", model)
        return 0.0
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6
