"""Query strategies by name: the three ranking strategies of ``query`` and the Turing GAN
of ``tgan`` (which builds on ``query``, so the names live here, above both)."""

from __future__ import annotations

from twinkit.clone.query import ConfusionQuery, QueryStrategy, RandomQuery, UncertaintyQuery
from twinkit.clone.tgan import TuringGANQuery
from twinkit.core.errors import TwinkitError

#: every strategy's name, as ``twinkit clone queries --strategy`` and the benchmarks take it
STRATEGIES = ("random", "uncertainty", "confusion", "tgan")


def strategy(name: str, seed: int = 0) -> QueryStrategy:
    """A strategy by name: random, uncertainty, confusion or tgan."""
    if name == "random":
        return RandomQuery()
    if name == "uncertainty":
        return UncertaintyQuery()
    if name == "confusion":
        return ConfusionQuery()
    if name == "tgan":
        return TuringGANQuery(seed=seed)
    raise TwinkitError(f"unknown query strategy {name!r}: {', '.join(STRATEGIES)}")
