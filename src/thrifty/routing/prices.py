"""Prices of a tier, per million input and output tokens.

Local and fake models cost nothing; hosted models are looked up in the
``genai-prices`` table (bundled with the package, no network at lookup time).
"""

from __future__ import annotations

from ..config import Deployment

FREE_PROVIDERS = frozenset({"local", "fake"})


def lookup_price(deployment: Deployment) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for a deployment, or None if unknown."""
    if deployment.provider in FREE_PROVIDERS:
        return (0.0, 0.0)
    ref = deployment.price_model or deployment.model
    try:
        from genai_prices import Usage, calc_price  # deferred: only startup needs it

        price_in = calc_price(Usage(input_tokens=1_000_000, output_tokens=0), model_ref=ref)
        price_out = calc_price(Usage(input_tokens=0, output_tokens=1_000_000), model_ref=ref)
    except (LookupError, ValueError, ImportError):
        return None
    return (float(price_in.total_price), float(price_out.total_price))
