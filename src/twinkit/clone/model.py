"""The clone: a classifier with calibrated probabilities, personalised on top of a prior.

An MLP for tabular features, a small CNN when the features are the pixels of an image.
The population prior is the same network trained on other people's decisions; a clone is
that prior fine-tuned on its donor's labels with an L2 pull back toward the prior's
weights (L2-SP, Li et al. 2018), so that ten labels move it only where they disagree with
people in general. Probabilities are temperature-scaled on held-out labels.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from twinkit.continual import Consolidation
from twinkit.core.errors import TwinkitError
from twinkit.models.torch_threads import seeded


class _MLP(nn.Module):
    def __init__(self, n_features: int, n_classes: int, hidden: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class _CNN(nn.Module):
    def __init__(self, shape: tuple[int, int], n_classes: int, width: int) -> None:
        super().__init__()
        self.shape = shape
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = 2 * width * (shape[0] // 4) * (shape[1] // 4)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 64), nn.ReLU(), nn.Linear(64, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x.reshape(-1, 1, *self.shape)
        out: torch.Tensor = self.head(self.features(image))
        return out


class _WithAdapter(nn.Module):
    """A prior's network, frozen, plus a personal map from its answer probabilities to
    shifts of its logits: ``z + A softmax(z) + b``, zero at the start (the prior itself).
    With ``A[9, 4] > 0`` the person answers 9 more often where people in general lean 4,
    which is what a personal confusion is; it has classes^2 + classes weights, so a few
    dozen labels can set it."""

    def __init__(self, base: nn.Module, n_classes: int) -> None:
        super().__init__()
        self.base = base
        self.adapter = nn.Linear(n_classes, n_classes)
        nn.init.zeros_(self.adapter.weight)
        nn.init.zeros_(self.adapter.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z: torch.Tensor = self.base(x)
        out: torch.Tensor = z + self.adapter(torch.softmax(z, dim=1))
        return out


#: how a clone departs from its prior: a personal adapter on the prior's answers, the
#: prior's whole network fine-tuned, or both
PERSONAL_MODES = ("adapter", "finetune", "both")


class CloneModel:
    """A classifier over a fixed list of classes, trained from scratch or from a prior.

    ``image_shape`` (height, width) makes it a CNN over the features read as pixels;
    otherwise an MLP with ``hidden`` layers. Features are standardised with the statistics
    of the first data it is trained on (a prior's, for a clone), which the clone keeps.

    ``binarize`` (a threshold in the features' own units) makes every feature 1 where it is
    at least the threshold and 0 elsewhere before anything else: a fixed input layer, the
    one-bit pixel code that Chen et al. (2019) found robust on MNIST. It has no gradient;
    :meth:`binarized` passes the gradient straight through (BPDA, Athalye et al. 2018),
    which is how attacks see it.
    """

    def __init__(
        self,
        classes: Sequence[str],
        n_features: int,
        *,
        hidden: Sequence[int] = (64,),
        image_shape: tuple[int, int] | None = None,
        cnn_width: int = 8,
        binarize: float | None = None,
        seed: int = 0,
    ) -> None:
        names = [str(c) for c in classes]
        if len(names) < 2:
            raise TwinkitError(f"a clone needs at least two classes, got {names}")
        if len(set(names)) != len(names):
            raise TwinkitError(f"classes repeat: {names}")
        if image_shape is not None and image_shape[0] * image_shape[1] != n_features:
            raise TwinkitError(f"image shape {image_shape} does not hold {n_features} features")
        if binarize is not None and not math.isfinite(binarize):
            raise TwinkitError(f"binarize must be a finite threshold, got {binarize}")
        self.classes = [str(c) for c in classes]
        self.n_features = n_features
        self.hidden = tuple(hidden)
        self.image_shape = image_shape
        self.cnn_width = cnn_width
        self.binarize = None if binarize is None else float(binarize)
        self.seed = seed
        self.mean = np.zeros(n_features)
        self.scale = np.ones(n_features)
        self.temperature = 1.0
        self.fitted = False
        self.adapted = False
        with seeded(seed):
            self.network: nn.Module = (
                _CNN(image_shape, len(classes), cnn_width)
                if image_shape is not None
                else _MLP(n_features, len(classes), self.hidden)
            )

    # -- data ------------------------------------------------------------------------
    def encode(self, labels: Sequence[Any]) -> np.ndarray:
        """Class names to indices; a label outside the classes is an error naming it."""
        index = {c: i for i, c in enumerate(self.classes)}
        out = np.empty(len(labels), dtype=np.int64)
        for i, label in enumerate(labels):
            key = str(label)
            if key not in index:
                raise TwinkitError(f"label {key!r} (row {i}) is not one of {self.classes}")
            out[i] = index[key]
        return out

    def _check_features(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise TwinkitError(
                f"expected a (n, {self.n_features}) feature matrix, got shape {x.shape}"
            )
        if not np.isfinite(x).all():
            row = int(np.argwhere(~np.isfinite(x))[0][0])
            raise TwinkitError(f"features are not finite (row {row})")
        return x

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """The features after the ``binarize`` threshold (unchanged without one)."""
        x = self._check_features(x)
        if self.binarize is None:
            return x
        return (x >= self.binarize).astype(np.float64)

    def binarized(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`quantize` on a tensor, differentiable: the forward pass thresholds, the
        backward pass takes the threshold for the identity (a straight-through gradient)."""
        if self.binarize is None:
            return x
        hard = (x >= self.binarize).to(x.dtype)
        return x + (hard - x).detach()

    def standardize(self, x: np.ndarray) -> torch.Tensor:
        """Features as the network sees them."""
        z = (self.quantize(x) - self.mean) / self.scale
        return torch.as_tensor(z, dtype=torch.float32)

    def logits_of(self, z: torch.Tensor) -> torch.Tensor:
        """Differentiable temperature-scaled logits of standardised features."""
        out: torch.Tensor = self.network(z) / self.temperature
        return out

    # -- training --------------------------------------------------------------------
    def fit(
        self,
        x: np.ndarray,
        labels: Sequence[Any],
        *,
        prior: CloneModel | None = None,
        pull: float = 1.0,
        unlabeled: np.ndarray | None = None,
        distill: float | None = None,
        personal: str = "adapter",
        epochs: int | None = None,
        lr: float | None = None,
        batch_size: int = 64,
        weight_decay: float = 1e-4,
        calibrate_frac: float = 0.0,
    ) -> Self:
        """Train on ``(x, labels)``; with ``prior``, start from it and stay near it.

        ``pull`` weighs the L2 distance to the prior's weights against the labels' loss.
        ``unlabeled`` items (the donor's pool) keep the clone answering like the prior
        where the labels say nothing: each step adds ``distill`` times the KL divergence
        from the prior's probabilities to the clone's on a batch of them (by default 1 when
        the network is fine-tuned, 0 for an adapter, which cannot stray far).
        ``personal`` says what a clone may change (:data:`PERSONAL_MODES`): only an
        adapter on the prior's answers (the default), the prior's whole network, or both.
        ``calibrate_frac`` of the rows (at random) are held out to fit the temperature;
        with 0, a clone keeps its prior's temperature (few labels calibrate nothing).
        """
        x = self._check_features(x)
        y = self.encode(labels)
        if len(y) == 0:
            raise TwinkitError("no labelled rows to train on")
        if len(y) != len(x):
            raise TwinkitError(f"{len(x)} rows of features but {len(y)} labels: give one each")
        rng = np.random.default_rng(self.seed)
        if prior is not None:
            if personal not in PERSONAL_MODES:
                raise TwinkitError(f"personal must be one of {PERSONAL_MODES}, not {personal!r}")
            self._copy_from(prior)
            if personal in ("adapter", "both") and not self.adapted:
                self.network = _WithAdapter(self.network, len(self.classes))
                self.adapted = True
        elif not self.fitted:
            seen = self.quantize(x)
            self.mean = seen.mean(axis=0)
            std = seen.std(axis=0)
            self.scale = np.where(std > 1e-12, std, 1.0)
        held = np.zeros(len(y), dtype=bool)
        if calibrate_frac > 0 and len(y) >= 20:
            held[rng.permutation(len(y))[: max(1, int(len(y) * calibrate_frac))]] = True
        z = self.standardize(x)
        target = torch.as_tensor(y)
        train = np.flatnonzero(~held)
        trainable = list(self.network.parameters())
        if prior is not None and personal == "adapter" and isinstance(self.network, _WithAdapter):
            trainable = list(self.network.adapter.parameters())
        frozen = [p for p in self.network.parameters() if all(p is not t for t in trainable)]
        for p in frozen:
            p.requires_grad_(False)
        # The pull is toward the prior: its weights, and a zero adapter. It is L2-SP, the
        # uniform case of EWC's consolidation; an adapter's few weights must grow to
        # several units to express a strong personal habit, the network's many must stay
        # close.
        anchor = (
            Consolidation(trainable, pull * (1e-5 if personal == "adapter" else 1e-3))
            if prior is not None
            else None
        )
        if distill is None:
            distill = 0.0 if personal == "adapter" else 1.0
        teacher: torch.Tensor | None = None
        pool_z: torch.Tensor | None = None
        if prior is not None and unlabeled is not None and len(unlabeled) and distill > 0:
            pool_z = self.standardize(unlabeled)
            with torch.no_grad():
                teacher = torch.softmax(prior.network(pool_z), dim=1)
        if epochs is None:
            # About 300 gradient steps whatever the size, at least 5 passes over the data.
            steps_per_epoch = max(1, math.ceil(len(train) / batch_size))
            epochs = max(5, min(200, math.ceil(300 / steps_per_epoch)))
        if lr is None:
            # An adapter starts at zero and has few weights: it takes larger steps.
            lr = 3e-2 if prior is not None and personal == "adapter" else 3e-3
        with seeded(self.seed):
            optimizer = torch.optim.AdamW(
                trainable, lr=lr, weight_decay=0.0 if anchor else weight_decay
            )
            loss_fn = nn.CrossEntropyLoss()
            self.network.train()
            self.temperature = 1.0 if prior is None else self.temperature
            for _ in range(epochs):
                order = train[rng.permutation(len(train))]
                for start in range(0, len(order), batch_size):
                    rows = torch.as_tensor(order[start : start + batch_size])
                    loss = loss_fn(self.network(z[rows]), target[rows])
                    if anchor is not None:
                        loss = loss + anchor.penalty()
                    if teacher is not None and pool_z is not None:
                        pick = torch.as_tensor(rng.integers(0, len(pool_z), 2 * batch_size))
                        log_q = torch.log_softmax(self.network(pool_z[pick]), dim=1)
                        loss = loss + distill * nn.functional.kl_div(
                            log_q, teacher[pick], reduction="batchmean"
                        )
                    optimizer.zero_grad()
                    torch.autograd.backward(loss)
                    optimizer.step()
            self.network.eval()
        for p in frozen:
            p.requires_grad_(True)
        if held.any():
            self.temperature = _fit_temperature(self, z[torch.as_tensor(held)], target[held])
        self.fitted = True
        return self

    def _copy_from(self, prior: CloneModel) -> None:
        if prior.classes != self.classes or prior.n_features != self.n_features:
            raise TwinkitError("the prior was trained on other classes or features")
        self.network = copy.deepcopy(prior.network)
        self.adapted = prior.adapted
        self.mean, self.scale = prior.mean.copy(), prior.scale.copy()
        self.temperature = prior.temperature

    def copy(self, seed: int | None = None) -> CloneModel:
        """An independent copy (a clone starts as a copy of its prior)."""
        other = copy.copy(self)
        other.network = copy.deepcopy(self.network)
        other.mean, other.scale = self.mean.copy(), self.scale.copy()
        if seed is not None:
            other.seed = seed
        return other

    # -- prediction ------------------------------------------------------------------
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, classes) probabilities, rows summing to one."""
        if not self.fitted:
            raise TwinkitError("the clone is not trained yet")
        with torch.no_grad():
            out = torch.softmax(self.logits_of(self.standardize(x)), dim=1)
        return out.numpy().astype(np.float64)

    def predict(self, x: np.ndarray) -> list[str]:
        """The most probable class of each row."""
        return [self.classes[i] for i in self.predict_proba(x).argmax(axis=1)]

    # -- persistence -----------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Weights and config for a safetensors artifact."""
        # Copies: a state taken now must not change when the model trains again.
        tensors = {
            f"net.{k}": v.detach().numpy().copy() for k, v in self.network.state_dict().items()
        }
        tensors["mean"], tensors["scale"] = self.mean.copy(), self.scale.copy()
        config = {
            "kind": "clone",
            "classes": self.classes,
            "n_features": self.n_features,
            "hidden": list(self.hidden),
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "cnn_width": self.cnn_width,
            "binarize": self.binarize,
            "seed": self.seed,
            "temperature": self.temperature,
            "adapter": self.adapted,
        }
        return tensors, config

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], config: dict[str, Any]) -> CloneModel:
        shape = config.get("image_shape")
        model = cls(
            config["classes"],
            int(config["n_features"]),
            hidden=config["hidden"],
            image_shape=(int(shape[0]), int(shape[1])) if shape else None,
            cnn_width=int(config["cnn_width"]),
            binarize=None if config.get("binarize") is None else float(config["binarize"]),
            seed=int(config["seed"]),
        )
        if config.get("adapter"):
            model.network = _WithAdapter(model.network, len(model.classes))
            model.adapted = True
        state = {k[4:]: torch.as_tensor(v) for k, v in tensors.items() if k.startswith("net.")}
        model.network.load_state_dict(state)
        model.network.eval()
        model.mean, model.scale = (
            tensors["mean"].astype(np.float64),
            tensors["scale"].astype(np.float64),
        )
        model.temperature = float(config["temperature"])
        model.fitted = True
        return model


def _fit_temperature(model: CloneModel, z: torch.Tensor, target: torch.Tensor) -> float:
    """The temperature that minimises held-out negative log-likelihood (Guo et al. 2017)."""
    with torch.no_grad():
        logits = model.network(z)
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 61))
    losses = [float(nn.functional.cross_entropy(logits / t, target)) for t in grid]
    return float(grid[int(np.argmin(losses))])


def expected_calibration_error(proba: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE: the gap between confidence and accuracy, averaged over confidence bins."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(total)
