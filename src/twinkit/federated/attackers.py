"""Sites that do not play fair, to measure a strategy against them (a benchmark tool).

An :class:`Attacker` replaces a site's honest round: ``sign_flip`` sends the opposite of
its update scaled by ``factor`` (w_round - factor * (w_site - w_round)), ``scale`` sends
its update scaled by ``factor``, ``flip_target`` trains on its windows with every
target change negated (a site whose glucose moves the other way), and ``fail`` raises
instead of answering (a site whose store is unreachable: Flower drops it from the
round). ``rounds`` limits it to some rounds (default: every round).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import torch

from twinkit.core.errors import TwinkitError
from twinkit.data.windows import Windows

AttackKind = Literal["sign_flip", "scale", "flip_target", "fail"]
KINDS: tuple[AttackKind, ...] = ("sign_flip", "scale", "flip_target", "fail")


class SiteFailure(TwinkitError):
    """A site that could not take part in a round."""


@dataclass(frozen=True)
class Attacker:
    """What one site does instead of an honest round (see the module)."""

    kind: AttackKind
    factor: float = 10.0
    rounds: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TwinkitError(f"unknown attack {self.kind!r}; choose among {', '.join(KINDS)}")

    def active(self, server_round: int) -> bool:
        return self.rounds is None or server_round in self.rounds

    def windows(self, windows: list[Windows]) -> list[Windows]:
        """The windows the site trains on: its own, or with the targets negated."""
        if self.kind != "flip_target":
            return windows
        return [replace(w, target=-w.target) for w in windows]

    def sent(
        self, start: Mapping[str, torch.Tensor], trained: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The weights the site sends after training from ``start`` to ``trained``."""
        if self.kind == "sign_flip":
            return {k: start[k] - self.factor * (trained[k] - start[k]) for k in trained}
        if self.kind == "scale":
            return {k: start[k] + self.factor * (trained[k] - start[k]) for k in trained}
        return dict(trained)
