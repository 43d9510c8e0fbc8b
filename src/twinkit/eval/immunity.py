"""The digital immunity benchmark: evasion attacks, two defences, and poisoning screens.

:func:`evaluate_immunity` trains a clone (a CNN on images, an MLP otherwise) and reports,
per attack (FGSM, PGD; L-infinity, white box) and budget ``eps``:

- ``undefended``: the clone's accuracy on attacks crafted against it;
- ``vaccinated_replay``: the vaccinated clone's accuracy on those *same* tampered items;
- ``retrained_replay``: the control for it: a clone retrained from scratch on the clean
  rows alone (another seed), on the same items; what replay gains from new weights alone;
- ``vaccinated_adaptive``: its accuracy on a fresh attack crafted against it;
- ``adv_trained_adaptive``: a PGD adversarially trained clone's accuracy on a fresh
  attack crafted against it (with a threshold input layer, the worse of PGD through it
  and the gradient-free Square attack, per item).

Budgets run from the smallest up; at each, an item that the attack at a smaller budget
fooled and this one did not keeps the smaller budget's tampered version (it lies inside
the larger ball), so accuracy never rises with the budget.

The vaccine (:func:`~twinkit.immunity.vaccine.vaccine_samples`) is generated once, at
the largest budget, with the clean clone as the supervisor of its synthetic sixth and the
true training labels for its perturbed rows, and the clone retrained from scratch on it
mixed with the clean rows; the adversarially trained clone is trained
once, at the largest budget, and attacked at every budget. Poisoning: 10% of the
training labels flipped and screened by out-of-fold loss; a 3x3 corner-patch backdoor
(a tabular trigger of the last features without an image) screened by spectral
signatures and by the trigger screen (a row either flags is held); each time a clone
is retrained on the rows not flagged. The label-flip accuracies (clean, poisoned,
screened) are means over ``flip_seeds`` training seeds, three by default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from twinkit.clone.model import CloneModel
from twinkit.core.errors import TwinkitError
from twinkit.immunity.attacks import fgsm, pgd, robust_accuracy, square
from twinkit.immunity.poison import Trigger, attack_success_rate, backdoor, flip_labels
from twinkit.immunity.screening import (
    DEFAULT_THRESHOLD,
    Method,
    screen_poison,
    suspicious_rows,
)
from twinkit.immunity.vaccine import adversarial_training, vaccinate, vaccine_samples

#: the attacks :func:`evaluate_immunity` knows
ATTACKS = ("fgsm", "pgd")
#: share of training labels flipped, and of rows backdoored
FLIP_RATE = 0.1
BACKDOOR_RATE = 0.05
#: the screens run against the backdoor; a row either flags is held
BACKDOOR_SCREENS: tuple[Method, ...] = ("spectral", "trigger")


def normalise_images(
    x: np.ndarray, image_shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Items as float64 flat features in [0, 1], and the image shape if any.

    ``x`` is (n, height, width) or (n, features). Integer arrays (uint8 pixels) are
    divided by 255; float arrays must already lie in [0, 1]. A 3-D array gives its
    ``image_shape``; a 2-D one keeps the ``image_shape`` passed (or none).
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


def _class_names(labels: Sequence[str]) -> list[str]:
    names = sorted(set(labels))
    if all(n.lstrip("-").isdigit() for n in names):
        names.sort(key=int)
    return names


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else 0.0


def evaluate_immunity(
    x_train: np.ndarray,
    y_train: Sequence[Any] | np.ndarray,
    x_test: np.ndarray,
    y_test: Sequence[Any] | np.ndarray,
    *,
    eps: Sequence[float] = (0.1, 0.2, 0.3),
    vaccine: int = 300,
    seed: int = 0,
    image_shape: tuple[int, int] | None = None,
    pgd_steps: int = 40,
    attacks: Sequence[str] = ATTACKS,
    adv_training: bool = True,
    poisoning: bool = True,
    epochs: int | None = None,
    adv_epochs: int = 20,
    adv_loss: Literal["madry", "trades"] = "trades",
    adv_width: int | None = None,
    adv_awp: float = 0.0,
    adv_binarize: float | None = None,
    square_queries: int = 5000,
    flip_seeds: int = 3,
    flip_threshold: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the immunity benchmark; returns the JSON-ready report (see the module).

    ``epochs`` sets the clean clone's training passes (``None``: CloneModel's default);
    ``adv_epochs`` the adversarial training's, ``adv_loss`` its loss (TRADES by default:
    on MNIST at eps 0.3 it kept 62.8% under PGD-40 where Madry's kept 50.2%, same CNN,
    in a one-off comparison; the benchmark in docs/benchmarks.md uses width 64 with AWP)
    and ``adv_width`` its CNN's width (``None``: the clone's), ``adv_awp`` its adversarial
    weight perturbation (0: none; see
    :func:`~twinkit.immunity.vaccine.adversarial_training`). ``adv_binarize`` gives it a
    threshold input layer (``CloneModel(binarize=...)``; images only); PGD then attacks it
    through a straight-through gradient, and at every budget the Square attack
    (``square_queries`` queries per item) checks it: its PGD figures count an item fooled
    when either attack fools it, each attack's accuracy alone in ``adv_trained_by_attack``
    (on MNIST at eps 0.3: 82.3% against 62.9% without the layer; Square 82.3%, PGD 87.8%).
    With ``adv_training=False`` the
    ``adv_trained_adaptive`` entries and ``clean_acc_adv_trained`` are ``None``; with
    ``poisoning=False`` so is ``poisoning``.

    The label-flip accuracies (clean, poisoned, screened) are means over ``flip_seeds``
    training seeds (``seed``, ``seed + 1``, ...), each seed's in ``poisoning_by_seed``:
    on 4,000 MNIST digits the seed alone moves screened accuracy by up to 2.9 points (0.918
    to 0.947), more than the 1-point target it is held to. ``flip_threshold`` is the loss
    screen's threshold on a label's out-of-fold probability (``None``: the screen's
    default; see :func:`~twinkit.immunity.screening.suspicious_rows`).
    """
    say = progress or (lambda _: None)
    if flip_seeds < 1:
        raise TwinkitError(f"flip_seeds must be at least 1, got {flip_seeds}")
    threshold = DEFAULT_THRESHOLD if flip_threshold is None else float(flip_threshold)
    if not 0.0 <= threshold <= 1.0:
        raise TwinkitError(f"flip_threshold must be between 0 and 1, got {flip_threshold}")
    budgets = [float(e) for e in eps]
    if not budgets or min(budgets) < 0:
        raise TwinkitError(f"need at least one budget eps >= 0, got {list(eps)}")
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise TwinkitError(f"unknown attacks {unknown}: choose among {ATTACKS}")
    xtr, shape = normalise_images(x_train, image_shape)
    xte, shape_te = normalise_images(x_test, image_shape)
    if shape_te != shape or xte.shape[1] != xtr.shape[1]:
        raise TwinkitError("training and test items have different shapes")
    if adv_binarize is not None and shape is None:
        raise TwinkitError(
            "adv_binarize needs images: the Square attack that checks a thresholded clone "
            "perturbs squares of pixels"
        )
    ytr = [str(v) for v in (y_train.tolist() if isinstance(y_train, np.ndarray) else y_train)]
    yte = [str(v) for v in (y_test.tolist() if isinstance(y_test, np.ndarray) else y_test)]
    if len(ytr) != len(xtr) or len(yte) != len(xte):
        raise TwinkitError("one label per item, please")
    classes = _class_names(ytr + yte)
    n_features = xtr.shape[1]

    def new_model(seed: int = seed) -> CloneModel:
        return CloneModel(classes, n_features, image_shape=shape, seed=seed)

    say("training the clean clone")
    model = new_model().fit(xtr, ytr, epochs=epochs)
    clean_acc = robust_accuracy(model, xte, yte)

    top = max(budgets)
    say(f"making a vaccine of {vaccine} samples at eps={top}")
    xv, yv = vaccine_samples(model, model, xtr, vaccine, eps=top, y_pool=ytr, seed=seed)
    vaccinated = vaccinate(model, xtr, ytr, xv, yv, seed=seed)
    retrained = new_model(seed + 1).fit(xtr, ytr, epochs=epochs)
    adv_model: CloneModel | None = None
    if adv_training:
        say(f"adversarial training ({adv_loss}) at eps={top}")
        if adv_width is not None and shape is None:
            raise TwinkitError("adv_width is a CNN's width: it needs images")
        adv_base = CloneModel(
            classes,
            n_features,
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

    # Per budget, a thresholded clone's accuracy under each of the two attacks combined.
    checked: dict[str, dict[str, float]] = {}

    def attack(name: str, target: CloneModel, budget: float) -> np.ndarray:
        if name == "fgsm":
            found = fgsm(target, xte, yte, budget)
        else:
            found = pgd(target, xte, yte, budget, steps=pgd_steps, seed=seed)
            if target.binarize is not None:
                # PGD sees the threshold through a straight-through gradient (BPDA), a
                # stand-in that can mislead it; Square asks only for answers. Per item,
                # the one that fools it counts.
                blind = square(target, xte, yte, budget, queries=square_queries, seed=seed)
                checked[str(budget)] = {
                    "pgd_bpda": robust_accuracy(target, found, yte),
                    "square": robust_accuracy(target, blind, yte),
                }
                fooled = np.asarray(target.predict(blind), dtype=object) != truth
                found = np.where(fooled[:, None], blind, found)
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

    report: dict[str, Any] = {
        "clean_acc": clean_acc,
        "attacks": results,
        "clean_acc_vaccinated": robust_accuracy(vaccinated, xte, yte),
        "clean_acc_retrained": robust_accuracy(retrained, xte, yte),
        "clean_acc_adv_trained": (
            robust_accuracy(adv_model, xte, yte) if adv_model is not None else None
        ),
        "vaccine_samples": len(xv),
        "adv_trained_by_attack": checked or None,
        "poisoning": None,
        "poisoning_by_seed": None,
        "threat_model": {
            "norm": "linf",
            "eps": budgets,
            "range": [0.0, 1.0],
            "white_box": True,
            "pgd_steps": pgd_steps,
            "pgd_restarts": 1,
            "pgd_step_size": "2.5 * eps / steps",
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
            "n_features": n_features,
            "classes": classes,
        },
        "seed": seed,
    }
    if poisoning:
        say("poisoning: label flips and a backdoor")
        report["poisoning"], report["poisoning_by_seed"] = _poisoning(
            xtr,
            ytr,
            xte,
            yte,
            classes,
            shape,
            # the clean clone and the retrained control: clean training at seeds seed, seed + 1
            {seed: clean_acc, seed + 1: report["clean_acc_retrained"]},
            new_model,
            epochs,
            seed,
            flip_seeds,
            threshold,
        )
        report["threat_model"]["poison_screen"] = {
            "label_flip": f"loss screen, flags p(label) < {threshold} out of fold",
            "backdoor": "spectral signatures and the trigger screen",
        }
    return report


def _poisoning(
    xtr: np.ndarray,
    ytr: list[str],
    xte: np.ndarray,
    yte: list[str],
    classes: list[str],
    shape: tuple[int, int] | None,
    clean_known: dict[int, float],
    new_model: Callable[[int], CloneModel],
    epochs: int | None,
    seed: int,
    flip_seeds: int,
    flip_threshold: float,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[Any]]]]:
    def train(x: np.ndarray, y: Sequence[str], at: int = seed) -> CloneModel:
        return new_model(at).fit(x, list(y), epochs=epochs)

    n = len(xtr)
    flipped, rows = flip_labels(ytr, FLIP_RATE, classes, seed=seed)
    poisoned = np.zeros(n, dtype=bool)
    poisoned[rows] = True
    flags = suspicious_rows(
        xtr,
        flipped,
        classes,
        method="loss",
        seed=seed,
        threshold=flip_threshold,
        image_shape=shape,
        epochs=epochs,
    ).flagged
    keep = np.flatnonzero(~flags)
    seeds = [seed + k for k in range(flip_seeds)]
    by_seed: dict[str, list[float]] = {"acc_clean": [], "acc_poisoned": [], "acc_screened": []}
    for at in seeds:
        # The same split, flips and screen; only the networks' training seed changes.
        known = clean_known.get(at)
        by_seed["acc_clean"].append(
            known if known is not None else robust_accuracy(train(xtr, ytr, at), xte, yte)
        )
        by_seed["acc_poisoned"].append(robust_accuracy(train(xtr, flipped, at), xte, yte))
        by_seed["acc_screened"].append(
            robust_accuracy(train(xtr[keep], [flipped[i] for i in keep], at), xte, yte)
        )
    flip_report = {
        "recall": _share(flags[poisoned]),
        "false_quarantine": _share(flags[~poisoned]),
        **{key: float(np.mean(values)) for key, values in by_seed.items()},
    }

    if shape is not None:
        trigger = Trigger.patch(shape, size=max(1, min(3, min(shape) // 2)), value=1.0)
    else:
        width = max(1, min(3, xtr.shape[1] // 4))
        trigger = Trigger.of({xtr.shape[1] - 1 - i: 1.0 for i in range(width)})
    target = classes[0]
    xb, yb, brows = backdoor(
        xtr, ytr, trigger=trigger, target=target, rate=BACKDOOR_RATE, seed=seed
    )
    stamped = np.zeros(n, dtype=bool)
    stamped[brows] = True
    # Spectral signatures on raw pixels found every poisoned 8x8 digit but none of the
    # poisoned 28x28 MNIST digits (a 3x3 patch is too small a part of a large image);
    # on an MLP's hidden layer they found 87.5% there, and the last 25 rows still planted
    # the backdoor. The trigger screen (a rare feature only the target label has, which
    # the rest of the item does not explain) finds every stamped row on both.
    screening = screen_poison(
        xb,
        yb,
        classes,
        methods=BACKDOOR_SCREENS,
        contamination=BACKDOOR_RATE,
        seed=seed,
        representation=backdoor_representation(xb.shape[1]),
    )
    flags = screening.flagged
    keep = np.flatnonzero(~flags)
    backdoored = train(xb, yb)
    screened = train(xb[keep], [yb[i] for i in keep])
    backdoor_report = {
        "asr_poisoned": attack_success_rate(backdoored, xte, trigger, target, labels=yte),
        "asr_screened": attack_success_rate(screened, xte, trigger, target, labels=yte),
        "recall": _share(flags[stamped]),
        "false_quarantine": _share(flags[~stamped]),
        "acc_screened": robust_accuracy(screened, xte, yte),
        **{
            f"recall_{name}": _share(result.flagged[stamped])
            for name, result in screening.results.items()
        },
    }
    flip = f"label_flip_{FLIP_RATE}"
    return (
        {flip: flip_report, "backdoor": backdoor_report},
        {flip: {"training_seeds": seeds, **by_seed}},
    )


#: inputs wider than this (in features) screen backdoors on a hidden layer, not raw input
LARGE_INPUT = 256


def backdoor_representation(n_features: int) -> Literal["input", "hidden"]:
    """Where spectral signatures look for a backdoor: the raw input for small items (all
    poisoned 8x8 digits found), an MLP's hidden layer for large ones (on 28x28 MNIST raw
    pixels found none, the hidden layer 87.5%)."""
    return "hidden" if n_features > LARGE_INPUT else "input"


__all__ = ["LARGE_INPUT", "backdoor_representation", "evaluate_immunity", "normalise_images"]
