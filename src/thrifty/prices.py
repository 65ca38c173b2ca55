"""Token prices: the one place the ledger, the router and batch jobs read them.

A deployment's price is five per-token rates (input, input read from the
provider's prompt cache, input written to it, output, reasoning output) from
the bundled ``genai-prices`` table. The ledger keeps them per deployment
in a :class:`PriceTable`, the router's tiers take them from :func:`lookup` at
startup, batch jobs price a response by its model name with :func:`for_model`.
Each is looked up once, so pricing a request is three multiplications. The table is the snapshot shipped
inside the package: thrifty never starts genai-prices' web updater, so pricing
touches no network. Deployments on this machine (``provider: local``, or an
OpenAI-compatible server on a loopback address) cost nothing unless
``price_model`` names a model to price them as; their tokens still count.
Models the table does not know cost 0 and are reported as unpriced.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .config import Config, Deployment
from .types import Usage

# Prices are read at this usage size and scaled: large enough for exact
# decimals, small enough to stay below long-context price tiers.
_PROBE_TOKENS = 1000
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token for one deployment."""

    input: float = 0.0
    cached_input: float = 0.0
    output: float = 0.0
    priced: bool = False  # False: the price table does not know this model
    source: str = "unpriced"  # "local", "unpriced" or "<provider>:<model>"
    cache_write: float | None = None  # None: as ``input``
    reasoning: float | None = None  # None: as ``output``

    def cost(self, prompt: int, completion: int, cached: int, written: int = 0, reasoning: int = 0) -> float:
        """USD for a usage. ``cached`` and ``written`` are parts of ``prompt`` (read from and
        written to the prompt cache), ``reasoning`` is part of ``completion``, as OpenAI counts them."""
        cached = min(cached, prompt)
        written = min(written, prompt - cached)
        reasoning = min(reasoning, completion)
        cost = (prompt - cached - written) * self.input + cached * self.cached_input
        cost += (completion - reasoning) * self.output
        if written:
            cost += written * (self.input if self.cache_write is None else self.cache_write)
        if reasoning:
            cost += reasoning * (self.output if self.reasoning is None else self.reasoning)
        return cost

    def usage_cost(self, usage: Usage) -> float:
        return self.cost(
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
        )

    def full_cost(self, prompt: int, completion: int) -> float:
        """The cost with no prompt-cache discount."""
        return prompt * self.input + completion * self.output

    @property
    def weight(self) -> float:
        """How expensive the deployment is, for picking the priciest one."""
        return self.input + self.output


LOCAL = Rates(priced=True, source="local")
UNPRICED = Rates()


def _is_loopback(api_base: str | None) -> bool:
    if not api_base:
        return False
    host = urlsplit(api_base).hostname or ""
    return host in _LOOPBACK or host.startswith("127.")


def lookup(dep: Deployment) -> Rates:
    """The rates of one deployment (imports genai-prices on first use)."""
    if dep.price_model in ("local", "free", "0"):
        return LOCAL
    # the pool's workers are the user's own devices: free unless price_model says otherwise
    if dep.price_model is None and (dep.provider in ("local", "fake", "pool") or _is_loopback(dep.api_base)):
        return LOCAL
    ref = dep.price_model or dep.model
    candidates: list[dict[str, Any]] = []
    if dep.price_model and "/" in dep.price_model:
        provider, _, name = dep.price_model.partition("/")
        candidates.append({"model_ref": name, "provider_id": provider})
    if dep.provider == "anthropic":
        candidates.append({"model_ref": ref, "provider_id": "anthropic"})
    elif dep.api_base:
        candidates.append({"model_ref": ref, "provider_api_url": dep.api_base})
    candidates.append({"model_ref": ref})
    for kw in candidates:
        rates = _probe(**kw)
        if rates is not None:
            return rates
    return UNPRICED


@functools.lru_cache(maxsize=256)
def for_model(model: str) -> Rates:
    """The rates of a bare model name (no deployment to say where it runs)."""
    return _probe(model_ref=model) or UNPRICED


def _probe(model_ref: str, **where: str) -> Rates | None:
    import genai_prices  # deferred: its table takes ~0.3 s to load

    def total(**usage: int) -> float:
        calc = genai_prices.calc_price(genai_prices.Usage(**usage), model_ref, **where)  # type: ignore[call-overload]
        return float(calc.total_price) / _PROBE_TOKENS

    try:
        calc = genai_prices.calc_price(genai_prices.Usage(input_tokens=_PROBE_TOKENS), model_ref, **where)  # type: ignore[call-overload]
        cached = total(input_tokens=_PROBE_TOKENS, cache_read_tokens=_PROBE_TOKENS)
        written = total(input_tokens=_PROBE_TOKENS, cache_write_tokens=_PROBE_TOKENS)
        output = total(output_tokens=_PROBE_TOKENS)
        reasoning = total(output_tokens=_PROBE_TOKENS, output_reasoning_tokens=_PROBE_TOKENS)
    except (LookupError, ValueError):
        return None
    return Rates(
        input=float(calc.total_price) / _PROBE_TOKENS,
        cached_input=cached,
        output=output,
        priced=True,
        source=f"{calc.provider.id}:{calc.model.id}",
        cache_write=written,
        reasoning=reasoning,
    )


class PriceTable:
    """Rates per deployment name, looked up once each, thread-safe."""

    def __init__(self, config: Config) -> None:
        self._deployments: dict[str, Deployment] = {}
        self._group_first: dict[str, str] = {}
        for group in config.models:
            for dep in group.deployments:
                self._deployments[dep.name] = dep
            if group.deployments:
                self._group_first[group.name] = group.deployments[0].name
        self._rates: dict[str, Rates] = {}
        self._lock = threading.Lock()
        self._top: Rates | None = None

    @property
    def groups(self) -> dict[str, str]:
        """Model group name -> its first deployment's name."""
        return self._group_first

    def rates(self, deployment: str, *groups: str) -> Rates:
        """Rates for a deployment name; else for the first named model group that exists.

        A cache hit has no deployment: it is priced (for the no-cache baseline)
        as the group that would have answered, the route's tier or the model asked for.
        """
        if deployment in self._deployments:
            key = deployment
        else:
            group = next((g for g in groups if g in self._group_first), "")
            key = "@" + group
        found = self._rates.get(key)
        if found is not None:
            return found
        name = key if not key.startswith("@") else self._group_first.get(key[1:], "")
        with self._lock:
            rates = self._rates.get(name) if name else UNPRICED
            if rates is None:
                rates = lookup(self._deployments[name])
                self._rates[name] = rates
            self._rates[key] = rates
        return rates

    def top(self) -> Rates:
        """The most expensive configured deployment: the "everything on top" baseline."""
        if self._top is None:
            best = UNPRICED
            for name in self._deployments:
                rates = self.rates(name)
                if rates.weight > best.weight:
                    best = rates
            self._top = best
        return self._top

    def warm(self) -> None:
        """Look every configured deployment up now (called off the event loop)."""
        self.top()
