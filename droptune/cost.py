"""Training cost estimate from token totals: billable tokens x a price per 1M tokens.

Vertex AI bills Gemini supervised tuning per training token (dataset tokens x epochs). The
table holds list prices in USD per 1M training tokens; prices change, so a run can set
`price_per_million_tokens`. The custom backend is billed by GPU time, which depends on the
machine; it is estimated only when a price per 1M tokens is configured.
"""

from __future__ import annotations

from dataclasses import dataclass

# USD per 1M training tokens (Vertex AI list prices; check the pricing page for your region).
PRICE_TABLE: dict[str, float] = {
    "gemini-2.5-pro": 25.0,
    "gemini-2.5-flash": 5.0,
    "gemini-2.5-flash-lite": 1.5,
    "gemini-2.0-flash": 3.0,
    "gemini-2.0-flash-lite": 1.0,
}


@dataclass(frozen=True)
class CostEstimate:
    billable_tokens: int
    usd_per_million: float | None
    usd: float | None
    basis: str


def price_for(model: str) -> float | None:
    """Longest table key that prefixes the model id (`gemini-2.5-flash-001` -> 2.5 Flash)."""
    matches = [key for key in PRICE_TABLE if model.startswith(key)]
    return PRICE_TABLE[max(matches, key=len)] if matches else None


def estimate(
    model: str, train_tokens: int, epochs: float, configured: float | None
) -> CostEstimate:
    """
    >>> estimate("gemini-2.5-flash-001", 1_000_000, 3, None).usd
    15.0
    """
    billable = round(train_tokens * epochs)
    price = configured if configured is not None else price_for(model)
    if price is None:
        return CostEstimate(
            billable, None, None, "no price for this model: set price_per_million_tokens"
        )
    basis = "configured price" if configured is not None else "droptune price table (list price)"
    return CostEstimate(billable, price, round(billable / 1e6 * price, 2), basis)
