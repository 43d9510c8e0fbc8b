"""Evasion attacks on a clone: small changes to an item's features that change its answer.

Every attack works in the model's *input* space, the raw features (pixels in [0, 1], say),
inside a valid range ``[low, high]`` (scalars, or arrays broadcast to the features):
:class:`InputLogits` puts the clone's standardisation in front of its network, so the
logits are differentiable with respect to the raw features. What comes back is always a
valid input: inside the range exactly, and within the budget exactly (``||delta||_inf <=
eps`` or ``||delta||_2 <= eps``, up to float rounding), because the last projection is
done in float64 on the returned array.

- :func:`fgsm`: one signed-gradient step (Goodfellow et al. 2015), L-infinity.
- :func:`pgd`: projected gradient descent (Madry et al. 2018), L-infinity or L2, random
  starts and restarts; per item it returns the best iterate it saw, one that succeeds if
  any did (the most confident such), otherwise the one of highest loss.
- :func:`square`: the Square attack (Andriushchenko et al. 2020), L-infinity, from the
  Adversarial Robustness Toolbox (ART): random search that asks only for the answers, so a
  model whose gradient misleads (a thresholded input, say) cannot hide from it.
- targeted mode (``targeted=True, target=...``) minimises the cross-entropy to a target
  class instead of maximising it to the true one; :func:`make_safe` and
  :func:`false_alarm` are the two directions that matter to a screen.
- :func:`robust_accuracy`: the share of (attacked) items still answered right.

Labels and targets are class names (``"3"``, read with :meth:`CloneModel.encode`) or
integer class indices (an integer array, or a sequence of ``int``). Randomness comes from
torch under :func:`~twinkit.models.torch_threads.seeded`, so a seed fixes the result.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import numpy as np
import torch
from torch import nn

from twinkit.clone.model import CloneModel
from twinkit.core.errors import TwinkitError
from twinkit.models.torch_threads import one_thread, seeded

#: labels of items: class names, or integer class indices
Labels = Sequence[str] | Sequence[int] | np.ndarray
#: a target class for every item (one name or index), or one per item
Target = str | int | Labels
#: a bound of the valid input range: one number, or an array broadcast to the features
Bound = float | np.ndarray
#: the norm that measures a perturbation's size
Norm = Literal["linf", "l2"]

#: rows handled at once, to bound memory
DEFAULT_BATCH = 512

# Below this, a gradient (or a perturbation) has no direction to normalise.
_TINY = 1e-12


class InputLogits(nn.Module):
    """A clone's logits as a function of its raw input features, differentiable in them.

    ``forward(x) = model.logits_of((x - mean) / scale)``, the standardisation done in
    float64 exactly as :meth:`CloneModel.standardize` does it, so the answers are the
    clone's own. The clone's network is a submodule (no copy): this is an ``nn.Module``
    that third-party attack libraries can be handed as the model. A clone with a
    ``binarize`` threshold thresholds ``x`` first, with the straight-through gradient of
    :meth:`CloneModel.binarized` (BPDA): the answers are exact, the gradient an
    approximation.
    """

    def __init__(self, model: CloneModel) -> None:
        super().__init__()
        self.model = model
        self.network = model.network
        self.mean = torch.as_tensor(np.asarray(model.mean, dtype=np.float64))
        self.scale = torch.as_tensor(np.asarray(model.scale, dtype=np.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (n, classes) of raw features (n, features) of any float dtype."""
        seen = self.model.binarized(x.to(torch.float64))
        z = ((seen - self.mean) / self.scale).to(torch.float32)
        return self.model.logits_of(z)


# -- inputs ----------------------------------------------------------------------------
def _features(model: CloneModel, x: np.ndarray) -> np.ndarray:
    if not model.fitted:
        raise TwinkitError("the clone is not trained yet: there is nothing to attack")
    out = np.asarray(x, dtype=np.float64)
    if out.ndim != 2 or out.shape[1] != model.n_features:
        raise TwinkitError(
            f"expected a (n, {model.n_features}) feature matrix, got shape {out.shape}"
        )
    if not np.isfinite(out).all():
        row = int(np.argwhere(~np.isfinite(out))[0][0])
        raise TwinkitError(f"features are not finite (row {row})")
    return out


def _bounds(x: np.ndarray, low: Bound, high: Bound) -> tuple[np.ndarray, np.ndarray]:
    try:
        lo = np.broadcast_to(np.asarray(low, dtype=np.float64), x.shape)
        hi = np.broadcast_to(np.asarray(high, dtype=np.float64), x.shape)
    except ValueError as err:
        raise TwinkitError(f"low and high must broadcast to the features {x.shape}") from err
    if (lo > hi).any():
        raise TwinkitError("the valid range is empty somewhere: low > high")
    outside = (x < lo) | (x > hi)
    if outside.any():
        row, col = (int(v) for v in np.argwhere(outside)[0])
        raise TwinkitError(
            f"row {row}, feature {col} = {x[row, col]} is outside the valid range "
            f"[{lo[row, col]}, {hi[row, col]}]: clip the items first"
        )
    return lo, hi


def _indices(model: CloneModel, labels: Labels, n: int, what: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or len(arr) != n:
        raise TwinkitError(f"expected {n} {what}, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        out = arr.astype(np.int64)
        bad = (out < 0) | (out >= len(model.classes))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise TwinkitError(
                f"{what} index {out[row]} (row {row}) is not a class index "
                f"(0..{len(model.classes) - 1})"
            )
        return out
    return model.encode(list(arr))


def _target_indices(model: CloneModel, target: Target | None, n: int) -> np.ndarray:
    if target is None:
        raise TwinkitError("a targeted attack needs a target class")
    if isinstance(target, str | int | np.integer):
        return np.full(n, _indices(model, np.asarray([target]), 1, "target")[0])
    return _indices(model, target, n, "targets")


def _check_eps(eps: float) -> float:
    value = float(eps)
    if not np.isfinite(value) or value < 0:
        raise TwinkitError(f"eps must be a finite number >= 0, got {eps}")
    return value


def _project(
    x: np.ndarray, candidate: np.ndarray, eps: float, norm: Norm, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """``candidate`` moved into the budget around ``x``, then into the range.

    Clipping to the range after the ball keeps the budget: ``x`` is in the range, so the
    clip only shrinks each coordinate of the perturbation.
    """
    delta = candidate - x
    if norm == "linf":
        delta = np.clip(delta, -eps, eps)
    else:
        size = np.linalg.norm(delta, axis=1, keepdims=True)
        delta = delta * np.minimum(1.0, eps / np.maximum(size, _TINY))
    out: np.ndarray = np.clip(x + delta, lo, hi)
    return out


def _project_t(
    x: torch.Tensor,
    candidate: torch.Tensor,
    eps: float,
    norm: Norm,
    lo: torch.Tensor,
    hi: torch.Tensor,
) -> torch.Tensor:
    """:func:`_project` on float64 tensors."""
    delta = candidate - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        size = delta.norm(dim=1, keepdim=True)
        delta = delta * torch.clamp(eps / size.clamp_min(_TINY), max=1.0)
    return torch.minimum(torch.maximum(x + delta, lo), hi)


def _objective_and_grad(
    logits_fn: InputLogits, x: torch.Tensor, goal: torch.Tensor, targeted: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row objective to maximise, its gradient in ``x``, and the predicted classes.

    Untargeted: the cross-entropy to the true class; targeted: minus the cross-entropy to
    the target.
    """
    x = x.detach().requires_grad_(True)
    logits = logits_fn(x)
    ce = nn.functional.cross_entropy(logits, goal, reduction="none")
    objective = -ce if targeted else ce
    (grad,) = torch.autograd.grad(objective.sum(), x)
    return objective.detach(), grad.detach(), logits.detach().argmax(dim=1)


def _succeeds(predicted: torch.Tensor, goal: torch.Tensor, targeted: bool) -> torch.Tensor:
    return predicted == goal if targeted else predicted != goal


def _goals(
    model: CloneModel,
    y: Labels | None,
    n: int,
    targeted: bool,
    target: Target | None,
) -> np.ndarray:
    if targeted:
        return _target_indices(model, target, n)
    if target is not None:
        raise TwinkitError("a target was given to an untargeted attack: pass targeted=True")
    if y is None:
        raise TwinkitError("an untargeted attack needs the items' true labels y")
    return _indices(model, y, n, "labels")


# -- attacks ---------------------------------------------------------------------------
def fgsm(
    model: CloneModel,
    x: np.ndarray,
    y: Labels | None,
    eps: float,
    *,
    low: Bound = 0.0,
    high: Bound = 1.0,
    targeted: bool = False,
    target: Target | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> np.ndarray:
    """The fast gradient sign method: one L-infinity step of size ``eps``.

    Untargeted, each item moves by ``eps * sign(grad)`` of the cross-entropy to its label
    ``y``; targeted (``targeted=True``, ``target`` one class or one per item, ``y`` may be
    None), it moves down the cross-entropy to the target. The result is clipped to
    ``[low, high]``, so ``max |x_adv - x| <= eps`` holds exactly. Returns float64 (n,
    features).
    """
    eps = _check_eps(eps)
    xs = _features(model, x)
    lo, hi = _bounds(xs, low, high)
    goals = _goals(model, y, len(xs), targeted, target)
    logits_fn = InputLogits(model)
    out = np.empty_like(xs)
    with one_thread():
        for start in range(0, len(xs), batch_size):
            rows = slice(start, start + batch_size)
            xb = torch.as_tensor(xs[rows])
            _, grad, _ = _objective_and_grad(logits_fn, xb, torch.as_tensor(goals[rows]), targeted)
            step = (xb + eps * grad.sign()).numpy()
            out[rows] = _project(xs[rows], step, eps, "linf", lo[rows], hi[rows])
    return out


def _restart_seed(seed: int, restart: int) -> int:
    """An independent torch seed for each restart; restart r is the same whatever the
    number of restarts, so more restarts can only find more."""
    state = np.random.SeedSequence([seed, restart]).generate_state(1, dtype=np.uint64)
    return int(state[0] % (2**63 - 1))


def _random_start(
    x: torch.Tensor, eps: float, norm: Norm, lo: torch.Tensor, hi: torch.Tensor
) -> torch.Tensor:
    """A uniform draw from the budget's ball around ``x``, clipped to the range."""
    if norm == "linf":
        delta = (torch.rand(x.shape, dtype=torch.float64) * 2.0 - 1.0) * eps
    else:
        direction = torch.randn(x.shape, dtype=torch.float64)
        direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(_TINY)
        radius = eps * torch.rand(len(x), 1, dtype=torch.float64) ** (1.0 / x.shape[1])
        delta = direction * radius
    return _project_t(x, x + delta, eps, norm, lo, hi)


def pgd(
    model: CloneModel,
    x: np.ndarray,
    y: Labels | None,
    eps: float,
    *,
    norm: Norm = "linf",
    steps: int = 40,
    step_size: float | None = None,
    restarts: int = 1,
    random_start: bool = True,
    targeted: bool = False,
    target: Target | None = None,
    low: Bound = 0.0,
    high: Bound = 1.0,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
) -> np.ndarray:
    """Projected gradient descent (Madry et al. 2018) in an L-infinity or L2 ball.

    Each of ``restarts`` runs starts at a uniform draw from the ball (``random_start``; the
    item itself otherwise) and takes ``steps`` steps of ``step_size`` (default ``2.5 * eps
    / steps``): along the gradient's sign (``norm="linf"``) or its L2-normalised direction
    (``norm="l2"``), each followed by a projection onto the ball and a clip to ``[low,
    high]``. Untargeted it climbs the cross-entropy to the label ``y``; targeted
    (``targeted=True``, ``target`` one class or one per item, ``y`` may be None) it
    descends the cross-entropy to the target.

    Per item, the answer is the best point any run reached (the start and every step
    count): one that succeeds (answered other than ``y``, or as the target) if there was
    one, the most confident such, otherwise the one of highest loss. Restart ``r`` draws
    from a seed derived from ``(seed, r)``, so the same seed gives the same array and more
    restarts are never weaker. Returns float64 (n, features) with ``||x_adv - x|| <= eps``
    in the chosen norm and every value inside ``[low, high]``.
    """
    eps = _check_eps(eps)
    if norm not in ("linf", "l2"):
        raise TwinkitError(f"norm must be 'linf' or 'l2', not {norm!r}")
    if steps < 0 or restarts < 1:
        raise TwinkitError(f"need steps >= 0 and restarts >= 1, got {steps} and {restarts}")
    alpha = 2.5 * eps / max(steps, 1) if step_size is None else float(step_size)
    xs = _features(model, x)
    lo, hi = _bounds(xs, low, high)
    goals = _goals(model, y, len(xs), targeted, target)
    logits_fn = InputLogits(model)

    best = xs.copy()
    best_success = np.zeros(len(xs), dtype=bool)
    best_objective = np.full(len(xs), -np.inf)
    for restart in range(restarts):
        with seeded(_restart_seed(seed, restart)):
            for start in range(0, len(xs), batch_size):
                rows = slice(start, start + batch_size)
                x0 = torch.as_tensor(xs[rows])
                lo_t, hi_t = torch.tensor(lo[rows]), torch.tensor(hi[rows])
                goal = torch.as_tensor(goals[rows])
                point = _random_start(x0, eps, norm, lo_t, hi_t) if random_start else x0.clone()
                # The best of this run so far, per row: it starts from the overall best.
                b_point = torch.as_tensor(best[rows])
                b_success = torch.as_tensor(best_success[rows])
                b_objective = torch.as_tensor(best_objective[rows])
                for step in range(steps + 1):
                    objective, grad, predicted = _objective_and_grad(
                        logits_fn, point, goal, targeted
                    )
                    success = _succeeds(predicted, goal, targeted)
                    better = (success & ~b_success) | (
                        (success == b_success) & (objective > b_objective)
                    )
                    b_point = torch.where(better[:, None], point, b_point)
                    b_success = b_success | success
                    b_objective = torch.where(better, objective, b_objective)
                    if step == steps:
                        break
                    if norm == "linf":
                        move = grad.sign()
                    else:
                        move = grad / grad.norm(dim=1, keepdim=True).clamp_min(_TINY)
                    point = _project_t(x0, point + alpha * move, eps, norm, lo_t, hi_t)
                best[rows] = b_point.numpy()
                best_success[rows] = b_success.numpy()
                best_objective[rows] = b_objective.numpy()
    # Every iterate was projected already; once more in float64 on the array returned.
    return _project(xs, best, eps, norm, lo, hi)


def _screen_attack(
    model: CloneModel,
    x: np.ndarray,
    from_class: str | int,
    to_class: str | int,
    eps: float,
    labels: Labels | None,
    norm: Norm,
    steps: int,
    restarts: int,
    low: Bound,
    high: Bound,
    seed: int,
) -> np.ndarray:
    xs = _features(model, x)
    source, goal = _indices(model, np.asarray([from_class, to_class]), 2, "classes")
    if source == goal:
        raise TwinkitError(f"the two classes are the same: {model.classes[source]!r}")
    rows = np.ones(len(xs), dtype=bool)
    if labels is not None:
        rows = _indices(model, labels, len(xs), "labels") == source
    out = xs.copy()
    if rows.any():
        out[rows] = pgd(
            model,
            xs[rows],
            None,
            eps,
            norm=norm,
            steps=steps,
            restarts=restarts,
            targeted=True,
            target=int(goal),
            low=low if np.ndim(low) == 0 else np.broadcast_to(low, xs.shape)[rows],
            high=high if np.ndim(high) == 0 else np.broadcast_to(high, xs.shape)[rows],
            seed=seed,
        )
    return out


def make_safe(
    model: CloneModel,
    x: np.ndarray,
    dangerous_class: str | int,
    safe_class: str | int,
    eps: float,
    *,
    labels: Labels | None = None,
    norm: Norm = "linf",
    steps: int = 40,
    restarts: int = 1,
    low: Bound = 0.0,
    high: Bound = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Evasion: dangerous items disguised as safe, by targeted :func:`pgd` toward
    ``safe_class``.

    Every row of ``x`` is attacked (pass the items of the dangerous class), or with
    ``labels`` only the rows labelled ``dangerous_class``; the others come back unchanged.
    """
    return _screen_attack(
        model, x, dangerous_class, safe_class, eps, labels, norm, steps, restarts, low, high, seed
    )


def false_alarm(
    model: CloneModel,
    x: np.ndarray,
    safe_class: str | int,
    dangerous_class: str | int,
    eps: float,
    *,
    labels: Labels | None = None,
    norm: Norm = "linf",
    steps: int = 40,
    restarts: int = 1,
    low: Bound = 0.0,
    high: Bound = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """False alarms: safe items made to look dangerous, by targeted :func:`pgd` toward
    ``dangerous_class``.

    Every row of ``x`` is attacked (pass the items of the safe class), or with ``labels``
    only the rows labelled ``safe_class``; the others come back unchanged.
    """
    return _screen_attack(
        model, x, safe_class, dangerous_class, eps, labels, norm, steps, restarts, low, high, seed
    )


@contextmanager
def numpy_global_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator for the block, then put its state back: ART's
    attacks draw from it."""
    state = np.random.get_state()  # noqa: NPY002 - ART uses the legacy global generator
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


class _ImageLogits(nn.Module):
    """:class:`InputLogits` of images (n, 1, height, width), for ART."""

    def __init__(self, logits_fn: InputLogits) -> None:
        super().__init__()
        self.logits_fn = logits_fn

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.logits_fn(images.reshape(len(images), -1))
        return out


def square(
    model: CloneModel,
    x: np.ndarray,
    y: Labels,
    eps: float,
    *,
    queries: int = 5000,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
) -> np.ndarray:
    """The Square attack (Andriushchenko et al. 2020): gradient-free random search in the
    L-infinity ball of ``eps`` around each item, at most ``queries`` model calls per item,
    with the margin loss; the Adversarial Robustness Toolbox's implementation, run on
    :class:`InputLogits`.

    It needs images (a clone with ``image_shape``): it perturbs squares of pixels. Pixels
    are the range [0, 1]. The result is projected onto the ball and the range in float64,
    as the other attacks' results are. Returns float64 (n, features).
    """
    eps = _check_eps(eps)
    if queries < 1:
        raise TwinkitError(f"queries must be at least 1, got {queries}")
    if model.image_shape is None:
        raise TwinkitError("the Square attack perturbs squares of pixels: it needs an image clone")
    xs = _features(model, x)
    lo, hi = _bounds(xs, 0.0, 1.0)
    truth = _indices(model, y, len(xs), "labels")
    if eps == 0 or len(xs) == 0:
        return xs.copy()
    try:
        from art.attacks.evasion import SquareAttack
        from art.estimators.classification import PyTorchClassifier
    except ImportError as err:  # pragma: no cover - the train extra installs it
        raise TwinkitError(
            "the Square attack needs the Adversarial Robustness Toolbox: "
            "pip install 'twinkit[train]'"
        ) from err
    height, width = model.image_shape
    classifier = PyTorchClassifier(
        _ImageLogits(InputLogits(model)).eval(),
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, height, width),
        nb_classes=len(model.classes),
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    # One restart of ``queries`` model calls: ART counts the first call as iteration 0.
    attack = SquareAttack(
        classifier,
        norm=np.inf,
        eps=eps,
        max_iter=max(queries - 1, 1),
        nb_restarts=1,
        batch_size=batch_size,
        verbose=False,
    )
    images = xs.reshape(-1, 1, height, width).astype(np.float32)
    with numpy_global_seed(seed), seeded(seed):
        found = attack.generate(images, y=truth)
    return _project(xs, found.reshape(len(xs), -1).astype(np.float64), eps, "linf", lo, hi)


def robust_accuracy(model: CloneModel, x_adv: np.ndarray, y: Labels) -> float:
    """The share of items the clone still answers with their label ``y`` (names or
    indices); on clean items, the plain accuracy."""
    xs = _features(model, x_adv)
    truth = _indices(model, y, len(xs), "labels")
    if len(xs) == 0:
        raise TwinkitError("no items to score")
    correct = 0
    for start in range(0, len(xs), DEFAULT_BATCH):
        rows = slice(start, start + DEFAULT_BATCH)
        correct += int((model.predict_proba(xs[rows]).argmax(axis=1) == truth[rows]).sum())
    return correct / len(xs)
