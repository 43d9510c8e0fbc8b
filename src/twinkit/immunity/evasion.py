"""A clone's robustness to evasion: registered attacks at growing budgets, against the
clone undefended, vaccinated and adversarially trained.

:func:`evasion_report` trains a clone (a CNN on images, an MLP otherwise) and reports,
per attack (any registered classifier attack, :mod:`twinkit.immunity.base`; FGSM
and PGD by default) and budget ``eps``:

- ``undefended``: the clone's accuracy on attacks crafted against it;
- ``vaccinated_replay``: the vaccinated clone's accuracy on those *same* tampered items;
- ``retrained_replay``: the control for it: a clone retrained from scratch on the clean
  rows alone (another seed), on the same items; what replay gains from new weights alone;
- ``vaccinated_adaptive``: its accuracy on a fresh attack crafted against it;
- ``adv_trained_adaptive``: a PGD adversarially trained clone's accuracy on a fresh
  attack crafted against it (with a threshold input layer, for an attack that names a
  query-based check, the worse of the two per item: PGD through the threshold and the
  gradient-free Square attack).

Budgets run from the smallest up; at each, an item that the attack at a smaller budget
fooled and this one did not keeps the smaller budget's tampered version (it lies inside
the larger ball), so accuracy never rises with the budget.

The vaccine (:func:`~twinkit.immunity.vaccine.vaccine_samples`) is generated once, at
the largest budget, with the clean clone as the supervisor of its synthetic sixth and the
true training labels for its perturbed rows, and the clone retrained from scratch on it
mixed with the clean rows; the adversarially trained clone is trained once, at the
largest budget, and attacked at every budget.

The immunity benchmark (:func:`twinkit.eval.immunity_benchmark.evaluate_immunity`) adds poisoning
to this report; a decision twin's robustness job
(:func:`twinkit.engine.robustness.clone_robustness`) runs it on the twin's own labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from twinkit.clone.model import CloneModel
from twinkit.core.errors import TwinkitError
from twinkit.core.progress import ProgressFn, Steps
from twinkit.immunity.attacks import robust_accuracy
from twinkit.immunity.base import (
    DEFAULT_ATTACKS,
    AttackSettings,
    ClassifierAttack,
    classifier_attack,
)
from twinkit.immunity.vaccine import adversarial_training, vaccinate, vaccine_samples


def normalise_images(
    x: np.ndarray, image_shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Items as float64 flat features in [0, 1], and the image shape if any.

    ``x`` is (n, height, width) or (n, features). Integer arrays (uint8 pixels) are
    divided by 255; float arrays must already lie in [0, 1]. A 3-D array gives its
    ``image_shape``; a 2-D one keeps the ``image_shape`` passed (or none).

    >>> x, shape = normalise_images(np.full((2, 2, 3), 255, dtype=np.uint8))
    >>> x.shape, shape, float(x.max())
    ((2, 6), (2, 3), 1.0)
    """
    arr = np.asarray(x)
    if arr.ndim == 3:
        shape = (int(arr.shape[1]), int(arr.shape[2]))
        if image_shape is not None and tuple(image_shape) != shape:
            raise TwinkitError(f"images are {shape}, but image_shape {image_shape} was given")
        image_shape = shape
        arr = arr.reshape(len(arr), -1)
    elif arr.ndim != 2:
        raise TwinkitError(f"expected (n, height, width) or (n, features), got {arr.shape}")
    # Integer pixels (uint8) are 0..255; floats are taken as they are.
    out = arr.astype(np.float64) / (255.0 if arr.dtype.kind in "iub" else 1.0)
    if not np.isfinite(out).all() or (out.size and (out.min() < 0.0 or out.max() > 1.0)):
        raise TwinkitError("float features must be finite and in [0, 1] (or give uint8 pixels)")
    if image_shape is not None and image_shape[0] * image_shape[1] != out.shape[1]:
        raise TwinkitError(f"image shape {image_shape} does not hold {out.shape[1]} features")
    return out, image_shape


def class_names(labels: Sequence[str]) -> list[str]:
    """The distinct labels, sorted; as numbers when every one is an integer.

    >>> class_names(["10", "9", "9", "-1"])
    ['-1', '9', '10']
    """
    names = sorted(set(labels))
    if all(n.lstrip("-").isdigit() for n in names):
        names.sort(key=int)
    return names


def _label_names(labels: Sequence[Any] | np.ndarray) -> list[str]:
    return [str(v) for v in (labels.tolist() if isinstance(labels, np.ndarray) else labels)]


@dataclass(frozen=True)
class ItemSplit:
    """Labelled items split into a training and a test part, features in [0, 1]."""

    x_train: np.ndarray
    y_train: list[str]
    x_test: np.ndarray
    y_test: list[str]
    classes: list[str]
    image_shape: tuple[int, int] | None

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def new_model(self, seed: int) -> CloneModel:
        """An untrained clone of the kind these items need (a CNN on images)."""
        return CloneModel(self.classes, self.n_features, image_shape=self.image_shape, seed=seed)


def split_items(
    x_train: np.ndarray,
    y_train: Sequence[Any] | np.ndarray,
    x_test: np.ndarray,
    y_test: Sequence[Any] | np.ndarray,
    image_shape: tuple[int, int] | None = None,
) -> ItemSplit:
    """The items checked and normalised (:func:`normalise_images`), labels read as class
    names; refuses parts of different shapes, or a label count that is not the item
    count."""
    xtr, shape = normalise_images(x_train, image_shape)
    xte, shape_te = normalise_images(x_test, image_shape)
    if shape_te != shape or xte.shape[1] != xtr.shape[1]:
        raise TwinkitError("training and test items have different shapes")
    ytr, yte = _label_names(y_train), _label_names(y_test)
    if len(ytr) != len(xtr) or len(yte) != len(xte):
        raise TwinkitError("one label per item, please")
    return ItemSplit(xtr, ytr, xte, yte, class_names(ytr + yte), shape)


def _attacks(
    names: Sequence[str], settings: AttackSettings, images: bool
) -> dict[str, ClassifierAttack]:
    """The registered classifier attacks asked for, refused at once if unknown or unfit
    for these items (before anything is trained)."""
    built = {name: classifier_attack(name, settings) for name in names}
    for name, attack in built.items():
        if attack.needs_images and not images:
            raise TwinkitError(
                f"the {name} attack perturbs images: these items are flat features; "
                "choose another attack"
            )
    return built


def _through_threshold(name: str) -> str:
    """What an attack through a threshold's straight-through gradient is reported as."""
    return name if name == "bpda" else f"{name}_bpda"


def evasion_report(
    items: ItemSplit,
    *,
    eps: Sequence[float] = (0.1, 0.2, 0.3),
    vaccine: int = 300,
    seed: int = 0,
    pgd_steps: int = 40,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    adv_training: bool = True,
    epochs: int | None = None,
    adv_epochs: int = 20,
    adv_loss: Literal["madry", "trades"] = "trades",
    adv_width: int | None = None,
    adv_awp: float = 0.0,
    adv_binarize: float | None = None,
    square_queries: int = 5000,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """The clone's evasion report, JSON-ready (see the module).

    ``attacks`` are registered classifier attacks (:func:`~twinkit.immunity.base.
    registered_attacks`), each run as hard as ``pgd_steps`` (gradient steps) and
    ``square_queries`` (queries per item) say. ``epochs`` sets the clean clone's training
    passes (``None``: CloneModel's default); ``adv_epochs``, ``adv_loss``, ``adv_width``
    and ``adv_awp`` the adversarial training's (see
    :func:`~twinkit.immunity.vaccine.adversarial_training`). ``adv_binarize`` gives the
    adversarially trained clone a threshold input layer (``CloneModel(binarize=...)``;
    images only); attacks then see it through a straight-through gradient, and an attack
    that names a query-based check (PGD: Square) is checked by it at every budget, an
    item counting as fooled when either fools it, each one's accuracy alone in
    ``adv_trained_by_attack``. With ``adv_training=False`` the ``adv_trained_adaptive``
    entries and ``clean_acc_adv_trained`` are ``None``.
    """
    budgets = [float(e) for e in eps]
    say = Steps(2 + int(adv_training) + len(attacks) * len(budgets), progress)
    if not budgets or min(budgets) < 0:
        raise TwinkitError(f"need at least one budget eps >= 0, got {list(eps)}")
    shape = items.image_shape
    settings = AttackSettings(steps=pgd_steps, queries=square_queries)
    built = _attacks(attacks, settings, images=shape is not None)
    if adv_binarize is not None and shape is None:
        raise TwinkitError(
            "adv_binarize needs images: the Square attack that checks a thresholded clone "
            "perturbs squares of pixels"
        )
    xtr, ytr, xte, yte = items.x_train, items.y_train, items.x_test, items.y_test

    say("training the clean clone")
    model = items.new_model(seed).fit(xtr, ytr, epochs=epochs)
    clean_acc = robust_accuracy(model, xte, yte)

    top = max(budgets)
    say(f"making a vaccine of {vaccine} samples at eps={top}")
    xv, yv = vaccine_samples(model, model, xtr, vaccine, eps=top, y_pool=ytr, seed=seed)
    vaccinated = vaccinate(model, xtr, ytr, xv, yv, seed=seed)
    retrained = items.new_model(seed + 1).fit(xtr, ytr, epochs=epochs)
    adv_model: CloneModel | None = None
    if adv_training:
        say(f"adversarial training ({adv_loss}) at eps={top}")
        if adv_width is not None and shape is None:
            raise TwinkitError("adv_width is a CNN's width: it needs images")
        adv_base = CloneModel(
            items.classes,
            items.n_features,
            hidden=model.hidden,
            image_shape=shape,
            cnn_width=model.cnn_width if adv_width is None else adv_width,
            binarize=adv_binarize,
        )
        adv_model = adversarial_training(
            adv_base,
            xtr,
            ytr,
            eps=top,
            epochs=adv_epochs,
            seed=seed,
            loss=adv_loss,
            awp=adv_awp,
        )

    # The best attack seen per (attack, model) at a smaller budget: it lies inside every
    # larger ball, so an item it fools stays fooled at a larger budget (one random start
    # at eps 0.3 sometimes misses what eps 0.1 found).
    smaller: dict[tuple[str, int], np.ndarray] = {}
    truth = np.asarray(yte, dtype=object)
    # Per budget, a thresholded clone's accuracy under each attack and its check alone.
    checked: dict[str, dict[str, float]] = {}
    # A check's answer per (check, model, budget): two attacks may name the same one.
    blind_seen: dict[tuple[str, int, float], np.ndarray] = {}

    def blind(name: str, target: CloneModel, budget: float) -> np.ndarray:
        key = (name, id(target), budget)
        if key not in blind_seen:
            check = classifier_attack(name, settings)
            blind_seen[key] = check.generate(target, xte, yte, budget, seed=seed)
        return blind_seen[key]

    def attack(name: str, target: CloneModel, budget: float) -> np.ndarray:
        chosen = built[name]
        found = chosen.generate(target, xte, yte, budget, seed=seed)
        if target.binarize is not None and chosen.checked_by is not None:
            # A gradient attack sees the threshold through a straight-through gradient
            # (BPDA), a stand-in that can mislead it; its check asks only for answers.
            # Per item, the one that fools it counts.
            other = blind(chosen.checked_by, target, budget)
            checked.setdefault(str(budget), {}).update(
                {
                    _through_threshold(name): robust_accuracy(target, found, yte),
                    chosen.checked_by: robust_accuracy(target, other, yte),
                }
            )
            fooled = np.asarray(target.predict(other), dtype=object) != truth
            found = np.where(fooled[:, None], other, found)
        before = smaller.get((name, id(target)))
        if before is not None:
            missed = np.asarray(target.predict(found), dtype=object) == truth
            fooled_before = np.asarray(target.predict(before), dtype=object) != truth
            found = np.where((missed & fooled_before)[:, None], before, found)
        smaller[(name, id(target))] = found
        return found

    results: dict[str, dict[str, dict[str, float | None]]] = {}
    for name in attacks:
        results[name] = {}
        for budget in sorted(budgets):
            say(f"{name} at eps={budget}")
            tampered = attack(name, model, budget)
            results[name][str(budget)] = {
                "undefended": robust_accuracy(model, tampered, yte),
                "vaccinated_replay": robust_accuracy(vaccinated, tampered, yte),
                "retrained_replay": robust_accuracy(retrained, tampered, yte),
                "vaccinated_adaptive": robust_accuracy(
                    vaccinated, attack(name, vaccinated, budget), yte
                ),
                "adv_trained_adaptive": (
                    robust_accuracy(adv_model, attack(name, adv_model, budget), yte)
                    if adv_model is not None
                    else None
                ),
            }

    norms = sorted({a.norm for a in built.values()})
    return {
        "clean_acc": clean_acc,
        "attacks": results,
        "clean_acc_vaccinated": robust_accuracy(vaccinated, xte, yte),
        "clean_acc_retrained": robust_accuracy(retrained, xte, yte),
        "clean_acc_adv_trained": (
            robust_accuracy(adv_model, xte, yte) if adv_model is not None else None
        ),
        "vaccine_samples": len(xv),
        "adv_trained_by_attack": checked or None,
        "threat_model": {
            "norm": norms[0] if len(norms) == 1 else "per attack",
            "eps": budgets,
            "range": [0.0, 1.0],
            "white_box": any(a.access == "gradient" for a in built.values()),
            "pgd_steps": pgd_steps,
            "pgd_restarts": 1,
            "pgd_step_size": "2.5 * eps / steps",
            "attacks": {name: _declared(a) for name, a in built.items()},
            "vaccine_eps": top,
            "vaccine": "1/6 T-GAN boundary samples, 5/6 training rows perturbed by PGD-40; "
            "the clone retrained from scratch on them (repeated) and the clean rows",
            "adv_training": {
                "eps": top,
                "loss": adv_loss,
                "train_pgd_steps": 7,
                "epochs": adv_epochs,
                "awp": adv_awp,
                "binarize": adv_binarize,
                "attack": (
                    f"per item, the worse of PGD-{pgd_steps} through the threshold's "
                    f"straight-through gradient (BPDA) and Square ({square_queries} queries)"
                    if adv_binarize is not None
                    else f"PGD-{pgd_steps}"
                ),
                "cnn_width": adv_model.cnn_width if adv_model and shape is not None else None,
            }
            if adv_training
            else None,
        },
        "model": {
            "kind": "cnn" if shape is not None else "mlp",
            "image_shape": list(shape) if shape is not None else None,
            "hidden": list(model.hidden),
            "epochs": epochs,
        },
        "data": {
            "n_train": len(xtr),
            "n_test": len(xte),
            "n_features": items.n_features,
            "classes": items.classes,
        },
        "seed": seed,
    }


def _declared(attack: ClassifierAttack) -> dict[str, Any]:
    """What a report says of an attack it ran (``twinkit eval attacks`` says the rest)."""
    return {
        "norm": attack.norm,
        "access": attack.access,
        "targeted": attack.targeted,
        "checked_by": attack.checked_by,
    }


__all__ = [
    "DEFAULT_ATTACKS",
    "ItemSplit",
    "class_names",
    "evasion_report",
    "normalise_images",
    "split_items",
]
