"""The decision model contract: what every registered
:class:`~twinkit.models.decision.DecisionModel` keeps, checked on the tiny instances its
registered factory builds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import numpy as np

from twinkit.checks._common import expect, raises, round_trip
from twinkit.core.errors import TwinkitError
from twinkit.models.decision import (
    DecisionModel,
    TinyFactory,
    decision_model_class,
    registered_decision_models,
    tiny_decision_model,
)

#: a check of a decision model class, given the factory of its tiny instances
DecisionModelCheck = Callable[[type[DecisionModel], TinyFactory], None]

#: labelled rows the checks train on
N_ITEMS = 90


def labelled_items(
    model: DecisionModel, n: int = N_ITEMS, seed: int = 0
) -> tuple[np.ndarray, list[str]]:
    """``n`` items for ``model``: features in [0, 1] around one centre per class, the
    classes in turn, so that any classifier can learn them."""
    rng = np.random.default_rng(seed)
    k, d = len(model.classes), model.n_features
    centres = rng.uniform(0.2, 0.8, (k, d))
    which = np.arange(n) % k
    x = np.clip(centres[which] + rng.normal(0.0, 0.05, (n, d)), 0.0, 1.0)
    return x, [model.classes[i] for i in which]


def _fitted(tiny: TinyFactory, seed: int = 0) -> tuple[DecisionModel, np.ndarray, list[str]]:
    model = tiny(seed)
    x, labels = labelled_items(model)
    return model.fit(x, labels), x, labels


def check_decision_model_registered(cls: type[DecisionModel], tiny: TinyFactory) -> None:
    """Its factory builds an instance of it with the protocol's methods, two or more
    distinct classes and at least one feature."""
    model = tiny(0)
    name = cls.__name__
    expect(type(model) is cls, f"{name}: its tiny factory built a {type(model).__name__}")
    expect(isinstance(model, DecisionModel), f"{name}: lacks a DecisionModel method")
    expect(len(set(model.classes)) >= 2, f"{name}: fewer than two classes {model.classes}")
    expect(model.n_features >= 1, f"{name}: {model.n_features} features")


def check_decision_model_unfitted(cls: type[DecisionModel], tiny: TinyFactory) -> None:
    """Before ``fit``, ``predict_proba`` refuses with a TwinkitError."""
    model = tiny(0)
    x, _ = labelled_items(model, n=3)
    raises(TwinkitError, partial(model.predict_proba, x), f"{cls.__name__}: predict before fit")


def check_decision_model_predictions(cls: type[DecisionModel], tiny: TinyFactory) -> None:
    """``fit`` returns the model; probabilities are (n, classes), finite, sum to one per
    row; ``predict`` names the most probable class; it learns separable items."""
    model = tiny(0)
    x, labels = labelled_items(model)
    name = cls.__name__
    expect(model.fit(x, labels) is model, f"{name}.fit did not return the model")
    proba = model.predict_proba(x)
    k = len(model.classes)
    expect(proba.shape == (len(x), k), f"{name}: probabilities of shape {proba.shape}")
    expect(bool(np.isfinite(proba).all()), f"{name}: probabilities not finite")
    expect(bool(((proba >= 0) & (proba <= 1)).all()), f"{name}: probabilities outside [0, 1]")
    expect(bool(np.allclose(proba.sum(axis=1), 1.0, atol=1e-6)), f"{name}: rows do not sum to 1")
    answers = model.predict(x)
    expect(
        list(answers) == [model.classes[i] for i in proba.argmax(axis=1)],
        f"{name}.predict is not the most probable class",
    )
    accuracy = float(np.mean([a == b for a, b in zip(answers, labels, strict=True)]))
    expect(
        accuracy >= 1.0 / k + 0.3,
        f"{name}: {accuracy:.2f} of {len(x)} separable training items right",
    )


def check_decision_model_round_trip(cls: type[DecisionModel], tiny: TinyFactory) -> None:
    """Saved (safetensors and JSON) and loaded, it answers identically and saves to the
    same bytes."""
    model, x, _ = _fitted(tiny)
    tensors, config, data = round_trip(*model.get_state())
    loaded = cls.from_state(tensors, config)
    name = cls.__name__
    expect(type(loaded) is cls, f"{name}: loaded as {type(loaded).__name__}")
    expect(loaded.classes == model.classes, f"{name}: classes changed on loading")
    expect(
        np.array_equal(loaded.predict_proba(x), model.predict_proba(x)),
        f"{name}: the loaded model answers differently",
    )
    expect(round_trip(*loaded.get_state())[2] == data, f"{name}: the loaded state differs")


def check_decision_model_seeded(cls: type[DecisionModel], tiny: TinyFactory) -> None:
    """The same seed gives the same weights and answers."""
    (first, x, _), (second, _, _) = _fitted(tiny, 3), _fitted(tiny, 3)
    (t1, c1), (t2, c2) = first.get_state(), second.get_state()
    name = cls.__name__
    expect(c1 == c2 and t1.keys() == t2.keys(), f"{name}, seed 3: another config")
    for key in t1:
        expect(np.array_equal(t1[key], t2[key]), f"{name}, seed 3: weights {key!r} differ")
    expect(
        np.array_equal(first.predict_proba(x), second.predict_proba(x)),
        f"{name}, seed 3: answers differ",
    )


def _spoiled(x: np.ndarray) -> dict[str, np.ndarray]:
    nan, inf = x.copy(), x.copy()
    nan[1, 0], inf[2, -1] = np.nan, np.inf
    return {
        "a feature too many": np.hstack([x, x[:, :1]]),
        "one row as a 1-D array": x[0],
        "a NaN": nan,
        "an infinity": inf,
    }


def check_decision_model_bad_features(cls: type[DecisionModel], tiny: TinyFactory) -> None:
    """Features of the wrong shape or not finite are refused, in ``fit`` and in
    ``predict_proba``, with a TwinkitError."""
    model, x, labels = _fitted(tiny)
    for what, bad in _spoiled(x).items():
        rows = len(bad) if bad.ndim == 2 else 1
        raises(
            TwinkitError,
            partial(tiny(0).fit, bad, labels[:rows]),
            f"{cls.__name__}.fit: {what}",
        )
        raises(TwinkitError, partial(model.predict_proba, bad), f"{cls.__name__}: {what}")


def check_decision_model_unknown_label(cls: type[DecisionModel], tiny: TinyFactory) -> None:
    """A label that is not one of its classes is refused with a TwinkitError."""
    model = tiny(0)
    x, labels = labelled_items(model)
    labels[4] = "no such class " + "/".join(model.classes)
    raises(TwinkitError, partial(model.fit, x, labels), f"{cls.__name__}.fit: unknown label")


def check_decision_model_label_count(cls: type[DecisionModel], tiny: TinyFactory) -> None:
    """Fewer (or more) labels than rows are refused with a TwinkitError, not trained on
    in part."""
    model = tiny(0)
    x, labels = labelled_items(model)
    raises(
        TwinkitError,
        partial(model.fit, x, labels[:-10]),
        f"{cls.__name__}.fit: {len(x)} rows, {len(labels) - 10} labels",
    )
    raises(
        TwinkitError,
        partial(tiny(0).fit, x[:-10], labels),
        f"{cls.__name__}.fit: {len(x) - 10} rows, {len(labels)} labels",
    )


def decision_model_checks() -> tuple[DecisionModelCheck, ...]:
    """Every check a decision model class is held to, in order."""
    return (
        check_decision_model_registered,
        check_decision_model_unfitted,
        check_decision_model_predictions,
        check_decision_model_round_trip,
        check_decision_model_seeded,
        check_decision_model_bad_features,
        check_decision_model_unknown_label,
        check_decision_model_label_count,
    )


def tiny_factory(cls: type[DecisionModel]) -> TinyFactory:
    """The registered factory of ``cls``'s tiny instances."""
    for name in registered_decision_models():
        if decision_model_class(name) is cls:
            return partial(tiny_decision_model, name)
    raise AssertionError(
        f"{cls.__name__} is not a registered decision model: decorate it with "
        "@register_decision_model(name, tiny=...) or pass tiny= to the check"
    )


def check_decision_model(cls: type[DecisionModel], tiny: TinyFactory | None = None) -> None:
    """Run every decision model check on ``cls``, its tiny instances built by ``tiny``
    (default: its registered factory); raises AssertionError at the first broken one."""
    factory = tiny or tiny_factory(cls)
    for check in decision_model_checks():
        check(cls, factory)


def decision_model_classes() -> Iterator[type[DecisionModel]]:
    """Every registered decision model class."""
    for name in registered_decision_models():
        yield decision_model_class(name)


__all__ = [
    "N_ITEMS",
    "DecisionModelCheck",
    "check_decision_model",
    "check_decision_model_bad_features",
    "check_decision_model_label_count",
    "check_decision_model_predictions",
    "check_decision_model_registered",
    "check_decision_model_round_trip",
    "check_decision_model_seeded",
    "check_decision_model_unfitted",
    "check_decision_model_unknown_label",
    "decision_model_checks",
    "decision_model_classes",
    "labelled_items",
    "tiny_factory",
]
