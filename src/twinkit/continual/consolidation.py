"""A weighted quadratic pull toward anchor weights: EWC, with L2-SP as its uniform case."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch


class Consolidation:
    """``strength * sum_i w_i (theta_i - anchor_i)^2`` over the given parameters.

    ``weights`` None is the uniform case (every ``w_i`` = 1: L2-SP); :meth:`ewc` builds
    the weights from the diagonal Fisher information of the old data, normalised to mean
    1 over all weights so that ``strength`` means the same in both cases: the total pull
    is as strong, but it falls on the weights the old data pinned down.

    >>> p = [torch.nn.Parameter(torch.tensor([1.0, 2.0]))]
    >>> pull = Consolidation(p, strength=0.5)
    >>> with torch.no_grad():
    ...     _ = p[0].add_(torch.tensor([1.0, -2.0]))
    >>> float(pull.penalty().detach())
    2.5
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        strength: float = 1.0,
        weights: Sequence[torch.Tensor] | None = None,
    ) -> None:
        if strength < 0:
            raise ValueError(f"strength must not be negative, got {strength}")
        self.params = list(params)
        self.anchor = [p.detach().clone() for p in self.params]
        self.strength = strength
        if weights is not None and len(weights) != len(self.params):
            raise ValueError("give one weight tensor per parameter")
        self.weights = None if weights is None else [w.detach().clone() for w in weights]

    @classmethod
    def ewc(
        cls, params: Sequence[torch.Tensor], fisher: Sequence[torch.Tensor], strength: float = 1.0
    ) -> Consolidation:
        """EWC: the pull weighted by ``fisher`` (see :func:`fisher_diagonal`), normalised."""
        total = sum(float(f.sum()) for f in fisher)
        count = sum(f.numel() for f in fisher)
        mean = total / count if count else 0.0
        weights = [f / mean for f in fisher] if mean > 0 else None
        return cls(params, strength, weights)

    def penalty(self) -> torch.Tensor:
        """The pull's value at the parameters' present values (differentiable)."""
        if self.weights is None:
            # The same sum, in the same order, as the clone's pull always computed.
            distance = sum(
                ((p - a) ** 2).sum() for p, a in zip(self.params, self.anchor, strict=True)
            )
        else:
            distance = sum(
                (w * (p - a) ** 2).sum()
                for p, a, w in zip(self.params, self.anchor, self.weights, strict=True)
            )
        return self.strength * torch.as_tensor(distance)


def fisher_diagonal(
    params: Sequence[torch.Tensor], losses: Iterable[Callable[[], torch.Tensor]]
) -> list[torch.Tensor]:
    """The empirical diagonal Fisher information: the mean over ``losses`` (each a closure
    computing the loss of one small batch of the old data) of the squared gradients of
    ``params``. Small batches estimate it better; one sample per batch is exact."""
    sums = [torch.zeros_like(p) for p in params]
    n = 0
    for loss_of in losses:
        grads = torch.autograd.grad(loss_of(), list(params), allow_unused=True)
        for total, grad in zip(sums, grads, strict=True):
            if grad is not None:
                total += grad.detach() ** 2
        n += 1
    if n == 0:
        raise ValueError("no batches to estimate the Fisher information from")
    return [s / n for s in sums]
