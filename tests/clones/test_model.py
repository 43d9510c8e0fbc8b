"""The clone classifier: accuracy, probabilities, temperature scaling, state, input errors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from twinkit.clone.model import CloneModel, expected_calibration_error
from twinkit.core.errors import TwinkitError

CLASSES = ["a", "b", "c"]
DIGITS = [str(i) for i in range(10)]


def nll(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class indices ``y``."""
    return float(-np.log(proba[np.arange(len(y)), y]).mean())


def three_blobs(n: int, seed: int, gap: float, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Three 2-D blobs on a triangle of side ``gap``: features (n, 2), class indices."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = gap * np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.85]])
    return centers[y] + rng.normal(0.0, spread, (n, 2)), y


def test_clone_learns_blobs_with_probabilities_summing_to_one() -> None:
    """An MLP trained on well-separated blobs classifies held-out points almost always
    right; every probability row is in [0, 1] and sums to one; ``predict`` names classes."""
    # Prepare
    x, y = three_blobs(600, seed=10, gap=4.0, spread=0.8)
    model = CloneModel(CLASSES, 2, seed=0)

    # Execute
    model.fit(x[:400], [CLASSES[i] for i in y[:400]])
    proba = model.predict_proba(x[400:])

    # Assert
    assert proba.shape == (200, 3)
    assert np.all((proba >= 0.0) & (proba <= 1.0))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert (proba.argmax(axis=1) == y[400:]).mean() >= 0.95
    assert set(model.predict(x[400:])) <= set(CLASSES)


def test_temperature_scaling_lowers_held_out_nll_and_ece() -> None:
    """An over-fitted network (large, many epochs, few overlapping points) is
    over-confident; with ``calibrate_frac`` the fitted temperature is above one and, on
    fresh points, gives a lower NLL and a lower ECE than the same network at temperature 1."""
    # Prepare
    x, y = three_blobs(1300, seed=2, gap=2.0, spread=0.9)
    model = CloneModel(CLASSES, 2, hidden=(128, 128), seed=0)

    # Execute
    model.fit(x[:300], [CLASSES[i] for i in y[:300]], epochs=150, calibrate_frac=0.4)
    scaled = model.predict_proba(x[300:])
    fitted = model.temperature
    model.temperature = 1.0
    raw = model.predict_proba(x[300:])
    model.temperature = fitted

    # Assert
    assert fitted > 1.0
    assert nll(scaled, y[300:]) < nll(raw, y[300:])
    assert expected_calibration_error(scaled, y[300:]) < expected_calibration_error(raw, y[300:])
    assert expected_calibration_error(scaled, y[300:]) < 0.08


def test_without_calibration_the_temperature_stays_one(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
) -> None:
    """``calibrate_frac=0`` (the default) leaves a model trained from scratch at T = 1."""
    x, y = make_blobs(100, 11)
    model = CloneModel(CLASSES, 2, seed=0).fit(x, [CLASSES[i] for i in y], epochs=5)
    assert model.temperature == 1.0


def test_state_round_trip_gives_identical_probabilities(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
) -> None:
    """``from_state(*get_state())`` restores the same network, standardisation and
    temperature: probabilities are bit-for-bit equal, and the config names the classes."""
    # Prepare: a calibrated model, so the temperature is not the default
    x, y = make_blobs(300, 12)
    model = CloneModel(CLASSES, 2, hidden=(16, 8), seed=3)
    model.fit(x, [CLASSES[i] for i in y], epochs=20, calibrate_frac=0.3)

    # Execute
    tensors, config = model.get_state()
    restored = CloneModel.from_state(tensors, config)

    # Assert
    assert config["classes"] == CLASSES
    assert restored.temperature == model.temperature
    assert restored.hidden == (16, 8)
    assert np.array_equal(restored.predict_proba(x), model.predict_proba(x))


def test_state_is_a_snapshot_unaffected_by_later_training(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
) -> None:
    """A state taken before more training still restores the model as it was then:
    ``get_state`` must copy the weights, not hand out views of the live parameters."""
    # Prepare
    x, y = make_blobs(120, 13)
    labels = [CLASSES[i] for i in y]
    model = CloneModel(CLASSES, 2, seed=0).fit(x, labels, epochs=5)
    before = model.predict_proba(x)
    tensors, config = model.get_state()

    # Execute: train the same model further, on other labels
    model.fit(x, [CLASSES[(i + 1) % 3] for i in y], epochs=20)

    # Assert
    restored = CloneModel.from_state(tensors, config)
    np.testing.assert_allclose(restored.predict_proba(x), before, atol=1e-6)


def test_label_outside_the_classes_raises_naming_it(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
) -> None:
    """Training on a label that is not one of the classes fails, naming the label and
    its row, before any training."""
    x, y = make_blobs(10, 14)
    labels = [CLASSES[i] for i in y]
    labels[3] = "zebra"
    model = CloneModel(CLASSES, 2, seed=0)
    with pytest.raises(TwinkitError, match=r"'zebra' \(row 3\)"):
        model.fit(x, labels)
    assert not model.fitted


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_raise_naming_the_row(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]], bad: float
) -> None:
    """NaN or infinite features are refused in training and in prediction, and the
    message names the first offending row."""
    x, y = make_blobs(20, 15)
    labels = [CLASSES[i] for i in y]
    broken = x.copy()
    broken[4, 1] = bad
    broken[9, 0] = bad
    model = CloneModel(CLASSES, 2, seed=0)
    with pytest.raises(TwinkitError, match=r"not finite \(row 4\)"):
        model.fit(broken, labels)
    model.fit(x, labels, epochs=2)
    with pytest.raises(TwinkitError, match=r"not finite \(row 4\)"):
        model.predict_proba(broken)


def test_feature_matrix_of_the_wrong_width_is_refused(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
) -> None:
    """A (n, 3) matrix given to a 2-feature clone, or a 1-D vector, is an error naming
    the expected shape."""
    x, y = make_blobs(20, 16)
    model = CloneModel(CLASSES, 2, seed=0).fit(x, [CLASSES[i] for i in y], epochs=2)
    with pytest.raises(TwinkitError, match=r"\(n, 2\)"):
        model.predict_proba(np.zeros((4, 3)))
    with pytest.raises(TwinkitError, match=r"\(n, 2\)"):
        model.predict_proba(np.zeros(2))


def test_constructor_and_prediction_guards() -> None:
    """Fewer than two classes, repeated classes, an image shape that does not hold the
    features, predicting before training and training on no rows are errors."""
    with pytest.raises(TwinkitError, match="at least two classes"):
        CloneModel(["a"], 2)
    with pytest.raises(TwinkitError, match="repeat"):
        CloneModel(["a", "b", "a"], 2)
    with pytest.raises(TwinkitError, match="does not hold 10 features"):
        CloneModel(["a", "b"], 10, image_shape=(3, 3))
    model = CloneModel(["a", "b"], 2)
    with pytest.raises(TwinkitError, match="not trained"):
        model.predict_proba(np.zeros((1, 2)))
    with pytest.raises(TwinkitError, match="no labelled rows"):
        model.fit(np.zeros((0, 2)), [])


def test_prior_with_other_classes_is_refused(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
) -> None:
    """Fine-tuning from a prior trained on other classes is an error, not a silent mix."""
    x, y = make_blobs(30, 17)
    prior = CloneModel(CLASSES, 2, seed=0).fit(x, [CLASSES[i] for i in y], epochs=2)
    other = CloneModel(["a", "b", "d"], 2, seed=0)
    with pytest.raises(TwinkitError, match="other classes"):
        other.fit(x[:5], ["a"] * 5, prior=prior)


def test_cnn_on_digits_learns_and_round_trips(digits: tuple[np.ndarray, np.ndarray]) -> None:
    """With ``image_shape=(8, 8)`` the clone is a CNN over the pixels: it learns the 8x8
    digits (>= 85% held out) and its state round-trips with the image shape."""
    # Prepare
    x, y = digits
    model = CloneModel(DIGITS, 64, image_shape=(8, 8), seed=0)

    # Execute
    model.fit(x[:1200], list(y[:1200]))
    proba = model.predict_proba(x[1200:])
    restored = CloneModel.from_state(*model.get_state())

    # Assert
    accuracy = float(np.mean(np.asarray(model.predict(x[1200:])) == y[1200:]))
    assert accuracy >= 0.85
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert restored.image_shape == (8, 8)
    assert np.array_equal(restored.predict_proba(x[1200:]), proba)


def test_expected_calibration_error_of_hand_made_cases() -> None:
    """ECE is 0 when confidence equals accuracy in every bin, and the gap otherwise."""
    proba = np.array([[0.8, 0.2]] * 10)
    right_8_of_10 = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(proba, right_8_of_10) == pytest.approx(0.0)
    all_right = np.zeros(10, dtype=np.int64)
    assert expected_calibration_error(proba, all_right) == pytest.approx(0.2)


def test_an_adapter_learns_a_personal_habit_and_leaves_the_prior_untouched(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]], blob_prior: CloneModel
) -> None:
    """A donor who answers "b" wherever people in general answer "a": a personal adapter
    on the prior's answers learns it from 30 labels spread over the classes; the prior's
    own network inside the clone keeps the prior's weights exactly; the state round-trips."""
    # Prepare
    x, _ = make_blobs(30, 31)
    x_test, _ = make_blobs(300, 32)
    habit = {"a": "b"}
    said = [habit.get(v, v) for v in blob_prior.predict(x)]
    expected = [habit.get(v, v) for v in blob_prior.predict(x_test)]
    before = {k: v.clone() for k, v in blob_prior.network.state_dict().items()}

    # Execute
    clone = blob_prior.copy().fit(x, said, prior=blob_prior, personal="adapter", pull=1.0)
    restored = CloneModel.from_state(*clone.get_state())

    # Assert
    assert np.mean(np.asarray(clone.predict(x_test)) == np.asarray(expected)) >= 0.95
    inner = clone.network.base.state_dict()  # type: ignore[union-attr]
    for key, value in before.items():
        assert np.array_equal(inner[key].numpy(), value.numpy())
        assert np.array_equal(blob_prior.network.state_dict()[key].numpy(), value.numpy())
    assert np.array_equal(restored.predict_proba(x_test), clone.predict_proba(x_test))


def test_an_unknown_way_to_personalise_is_refused(blob_prior: CloneModel) -> None:
    x = np.zeros((3, 2))
    with pytest.raises(TwinkitError, match="personal must be one of"):
        blob_prior.copy().fit(x, ["a", "b", "c"], prior=blob_prior, personal="everything")


def test_a_binarizing_clone_sees_only_the_threshold_and_round_trips(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    """With ``binarize=0.5`` the clone answers the same for any two items on the same side
    of 0.5 in every feature, learns from the thresholded features, keeps the threshold in
    its state, and gives attacks the straight-through gradient: the gradient in ``x`` is
    the one an unthresholded network takes at the thresholded item."""
    import torch

    from twinkit.immunity.attacks import InputLogits

    # Prepare: 8x8 digits in [0, 1]
    x, y = digits
    x = x / max(1.0, float(x.max()))
    model = CloneModel(DIGITS, 64, image_shape=(8, 8), binarize=0.5, seed=0)

    # Execute
    model.fit(x[:1200], list(y[:1200]))
    hard = (x[1200:] >= 0.5).astype(np.float64)
    # Move every feature within its side of the threshold.
    held = x[1200:]
    nudged = np.where(hard == 1.0, np.maximum(0.5, held - 0.2), np.minimum(0.49, held + 0.2))
    restored = CloneModel.from_state(*model.get_state())

    # Assert
    accuracy = float(np.mean(np.asarray(model.predict(x[1200:])) == y[1200:]))
    assert accuracy >= 0.8, accuracy
    assert np.array_equal(model.predict_proba(nudged), model.predict_proba(x[1200:]))
    assert np.array_equal(model.predict_proba(hard), model.predict_proba(x[1200:]))
    assert restored.binarize == 0.5
    assert np.array_equal(restored.predict_proba(x[1200:]), model.predict_proba(x[1200:]))

    logits = InputLogits(model)
    item = torch.as_tensor(x[1200:1205]).requires_grad_(True)
    logits(item)[:, 0].sum().backward()
    at_hard = torch.as_tensor(hard[:5]).requires_grad_(True)
    model.binarize = None
    InputLogits(model)(at_hard)[:, 0].sum().backward()
    assert item.grad is not None and at_hard.grad is not None
    assert float(item.grad.abs().sum()) > 0.0
    torch.testing.assert_close(item.grad, at_hard.grad)

    with pytest.raises(TwinkitError, match="finite threshold"):
        CloneModel(DIGITS, 64, binarize=float("nan"))
