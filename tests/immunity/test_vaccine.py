"""Defences against evasion on the 8x8 digits: the vaccine, adversarial training, and the
immunity benchmark's report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from twinkit.clone.model import CloneModel
from twinkit.core.errors import TwinkitError
from twinkit.eval.immunity_benchmark import evaluate_immunity, normalise_images
from twinkit.immunity import pgd, robust_accuracy
from twinkit.immunity.vaccine import (
    _weight_perturbation,
    adversarial_training,
    vaccinate,
    vaccine_samples,
)
from twinkit.models.torch_threads import seeded

DIGIT_CLASSES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class Digits:
    """A clean MLP clone of the digits, its training rows and held-out items."""

    model: CloneModel
    x_train: np.ndarray
    y_train: list[str]
    x_test: np.ndarray
    y_test: list[str]


@pytest.fixture(scope="module")
def digits() -> Digits:
    data = load_digits()
    x = data.data / 16.0
    y = [str(v) for v in data.target]
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1200], order[1200:1500]
    y_train = [y[i] for i in train]
    model = CloneModel(DIGIT_CLASSES, 64, seed=0).fit(x[train], y_train)
    return Digits(model, x[train], y_train, x[test], [y[i] for i in test])


def test_vaccine_samples_are_valid_and_labelled(digits: Digits) -> None:
    xv, yv = vaccine_samples(
        digits.model, digits.model, digits.x_train, 40, eps=0.1, y_pool=digits.y_train, seed=1
    )
    assert xv.shape == (40, 64) and len(yv) == 40
    assert xv.min() >= 0.0 and xv.max() <= 1.0
    assert set(yv) <= set(DIGIT_CLASSES)


def test_vaccination_raises_replayed_attack_accuracy(digits: Digits) -> None:
    eps = 0.1
    xv, yv = vaccine_samples(
        digits.model, digits.model, digits.x_train, 300, eps=eps, y_pool=digits.y_train, seed=0
    )
    vaccinated = vaccinate(digits.model, digits.x_train, digits.y_train, xv, yv, seed=0)
    tampered = pgd(digits.model, digits.x_test, digits.y_test, eps, steps=20, seed=0)
    undefended = robust_accuracy(digits.model, tampered, digits.y_test)
    replay = robust_accuracy(vaccinated, tampered, digits.y_test)
    assert replay > undefended + 0.3, (undefended, replay)
    clean = robust_accuracy(digits.model, digits.x_test, digits.y_test)
    clean_vaccinated = robust_accuracy(vaccinated, digits.x_test, digits.y_test)
    assert clean_vaccinated >= clean - 0.03, (clean, clean_vaccinated)
    # The clean model is untouched.
    assert robust_accuracy(digits.model, tampered, digits.y_test) == undefended


@pytest.mark.parametrize(("loss", "awp"), [("madry", 0.0), ("trades", 0.0), ("trades", 0.005)])
def test_adversarial_training_raises_adaptive_pgd_accuracy(
    digits: Digits, loss: Literal["madry", "trades"], awp: float
) -> None:
    eps = 0.05
    robust = adversarial_training(
        digits.model,
        digits.x_train,
        digits.y_train,
        eps=eps,
        epochs=10,
        seed=0,
        loss=loss,
        awp=awp,
    )
    before = robust_accuracy(
        digits.model, pgd(digits.model, digits.x_test, digits.y_test, eps, steps=20), digits.y_test
    )
    after = robust_accuracy(
        robust, pgd(robust, digits.x_test, digits.y_test, eps, steps=20), digits.y_test
    )
    assert after > before + 0.4, (before, after)
    assert robust_accuracy(robust, digits.x_test, digits.y_test) > 0.9


def test_weight_perturbation_moves_each_weight_by_its_share() -> None:
    with seeded(0):
        net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(32) % 3
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    loss = nn.functional.cross_entropy(net(x), y)

    moves = _weight_perturbation(net, loss, 0.01)

    assert len(moves) == 2  # the two weight matrices; biases stay
    params = dict(net.named_parameters())
    for name in ("0.bias", "2.bias"):
        assert torch.equal(params[name], before[name])
    for name in ("0.weight", "2.weight"):
        step = params[name].detach() - before[name]
        assert float(step.norm()) == pytest.approx(0.01 * float(before[name].norm()), rel=1e-5)
    # a small step along the gradient raises the loss
    assert float(nn.functional.cross_entropy(net(x), y)) > float(loss)
    with torch.no_grad():
        for weight, move in moves:
            weight.sub_(move)
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.detach(), before[name])


def test_adversarial_training_refuses_an_unknown_loss(digits: Digits) -> None:
    with pytest.raises(TwinkitError, match="loss must be 'madry' or 'trades'"):
        adversarial_training(
            digits.model,
            digits.x_train,
            digits.y_train,
            eps=0.1,
            loss="mart",  # type: ignore[arg-type]
        )
    with pytest.raises(TwinkitError, match=r"awp must be >= 0, got -0\.1"):
        adversarial_training(digits.model, digits.x_train, digits.y_train, eps=0.1, awp=-0.1)


def _leaves(tree: Any) -> list[Any]:
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in _leaves(value)]
    return [tree]


def test_evaluate_immunity_report_layout() -> None:
    data = load_digits()
    x, y = data.data[:400] / 16.0, data.target[:400]
    report = evaluate_immunity(
        x[:300],
        y[:300],
        x[300:],
        y[300:],
        eps=(0.1,),
        vaccine=40,
        pgd_steps=5,
        epochs=10,
        adv_epochs=3,
    )
    for key in (
        "clean_acc",
        "attacks",
        "clean_acc_vaccinated",
        "clean_acc_adv_trained",
        "vaccine_samples",
        "poisoning",
        "threat_model",
        "model",
        "data",
        "seed",
    ):
        assert key in report
    assert set(report["attacks"]) == {"fgsm", "pgd"}
    for attack in report["attacks"].values():
        assert set(attack) == {"0.1"}
        assert set(attack["0.1"]) == {
            "undefended",
            "vaccinated_replay",
            "retrained_replay",
            "vaccinated_adaptive",
            "adv_trained_adaptive",
        }
    assert set(report["poisoning"]["label_flip_0.1"]) == {
        "recall",
        "false_quarantine",
        "acc_clean",
        "acc_poisoned",
        "acc_screened",
    }
    by_seed = report["poisoning_by_seed"]["label_flip_0.1"]
    assert by_seed["training_seeds"] == [0, 1, 2]
    assert "p(label) < 0.2 " in report["threat_model"]["poison_screen"]["label_flip"]
    flip = report["poisoning"]["label_flip_0.1"]
    for key in ("acc_clean", "acc_poisoned", "acc_screened"):
        assert len(by_seed[key]) == 3
        assert flip[key] == pytest.approx(np.mean(by_seed[key]))
    # seed 0's clean network is the clone, seed 1's the retrained control
    assert by_seed["acc_clean"][:2] == [report["clean_acc"], report["clean_acc_retrained"]]
    assert set(report["poisoning"]["backdoor"]) == {
        "asr_poisoned",
        "asr_screened",
        "recall",
        "false_quarantine",
        "acc_screened",
        "recall_spectral",
        "recall_trigger",
    }
    scores = [
        report["clean_acc"],
        report["clean_acc_vaccinated"],
        report["clean_acc_adv_trained"],
        *_leaves(report["attacks"]),
        *_leaves(report["poisoning"]),
    ]
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in scores), scores
    assert report["vaccine_samples"] == 40
    assert report["adv_trained_by_attack"] is None
    assert report["model"]["kind"] == "mlp"
    assert report["data"]["n_train"] == 300 and report["data"]["n_test"] == 100


def test_a_thresholded_adversarial_clone_is_scored_by_the_worse_of_two_attacks() -> None:
    """With ``adv_binarize`` the adversarially trained clone thresholds its pixels; at each
    budget its adaptive accuracy counts an item as fooled when either PGD through the
    straight-through gradient or the gradient-free Square attack fools it, so it is at most
    either one's; without images the option is refused."""
    data = load_digits()
    images = (data.images[:360] / 16.0).astype(np.float64)
    y = data.target[:360]
    report = evaluate_immunity(
        images[:300],
        y[:300],
        images[300:],
        y[300:],
        eps=(0.2, 0.3),
        vaccine=20,
        pgd_steps=5,
        attacks=("pgd",),
        epochs=5,
        adv_epochs=2,
        adv_binarize=0.5,
        square_queries=30,
        poisoning=False,
    )
    adv = report["threat_model"]["adv_training"]
    assert adv["binarize"] == 0.5 and "Square (30 queries)" in adv["attack"]
    for budget in ("0.2", "0.3"):
        by_attack = report["adv_trained_by_attack"][budget]
        combined = report["attacks"]["pgd"][budget]["adv_trained_adaptive"]
        assert combined <= min(by_attack["pgd_bpda"], by_attack["square"]), report
    # every budget is checked
    assert set(report["adv_trained_by_attack"]) == {"0.2", "0.3"}

    flat = images.reshape(len(images), -1)
    with pytest.raises(TwinkitError, match="adv_binarize needs images"):
        evaluate_immunity(flat, y, flat, y, adv_binarize=0.5)


def test_flip_options_are_checked() -> None:
    x = np.zeros((4, 3))
    with pytest.raises(TwinkitError, match="flip_seeds must be at least 1, got 0"):
        evaluate_immunity(x, list("abab"), x, list("abab"), flip_seeds=0)
    with pytest.raises(TwinkitError, match=r"flip_threshold must be between 0 and 1, got 1\.5"):
        evaluate_immunity(x, list("abab"), x, list("abab"), flip_threshold=1.5)


def test_uint8_images_are_normalised() -> None:
    data = load_digits()
    images = (data.images[:120] * 255 / 16).round().astype(np.uint8)
    flat, shape = normalise_images(images)
    assert shape == (8, 8)
    assert flat.shape == (120, 64) and flat.dtype == np.float64
    assert flat.min() >= 0.0 and flat.max() == 1.0
    np.testing.assert_allclose(flat, images.reshape(120, -1) / 255.0)
    with pytest.raises(Exception, match=r"\[0, 1\]"):
        normalise_images(data.images[:5])  # floats 0..16
    report = evaluate_immunity(
        images[:100],
        data.target[:100],
        images[100:],
        data.target[100:120],
        eps=(0.1,),
        vaccine=10,
        pgd_steps=2,
        attacks=("fgsm",),
        adv_training=False,
        poisoning=False,
        epochs=2,
    )
    assert report["model"] == {"kind": "cnn", "image_shape": [8, 8], "hidden": [64], "epochs": 2}
    assert report["poisoning"] is None
    assert report["attacks"]["fgsm"]["0.1"]["adv_trained_adaptive"] is None


def test_large_images_are_screened_for_backdoors_on_a_hidden_layer() -> None:
    """8x8 digits are screened on their pixels; 28x28 MNIST digits on a hidden layer,
    where spectral signatures find the trigger (raw 28x28 pixels hid it completely)."""
    from twinkit.eval.immunity_benchmark import backdoor_representation

    assert backdoor_representation(64) == "input"
    assert backdoor_representation(784) == "hidden"


def test_vaccine_share_and_start(digits: Digits) -> None:
    # With no synthetic share every sample is a perturbed real row within eps of a pool
    # row, labelled with that row's true label.
    xv, yv = vaccine_samples(
        digits.model,
        digits.model,
        digits.x_train,
        30,
        eps=0.1,
        y_pool=digits.y_train,
        seed=0,
        synthetic_share=0.0,
        pgd_steps=5,
    )
    nearest = np.abs(xv[:, None, :] - digits.x_train[None, :, :]).max(axis=2).argmin(axis=1)
    assert np.abs(xv - digits.x_train[nearest]).max() <= 0.1 + 1e-9
    assert yv == [digits.y_train[i] for i in nearest]
    with pytest.raises(TwinkitError, match="synthetic_share"):
        vaccine_samples(digits.model, digits.model, digits.x_train, 30, eps=0.1, synthetic_share=2)
    # Both starts give a working clone; fine-tuning keeps the model's standardisation.
    tuned = vaccinate(digits.model, digits.x_train, digits.y_train, xv, yv, start="model")
    fresh = vaccinate(digits.model, digits.x_train, digits.y_train, xv, yv, start="scratch")
    assert np.array_equal(tuned.mean, digits.model.mean)
    for clone in (tuned, fresh):
        assert robust_accuracy(clone, digits.x_test, digits.y_test) > 0.8
    with pytest.raises(TwinkitError, match="start"):
        vaccinate(digits.model, digits.x_train, digits.y_train, xv, yv, start="nowhere")  # type: ignore[arg-type]


def test_accuracy_under_attack_never_rises_with_the_budget(digits: Digits) -> None:
    """An item fooled at a small budget counts as fooled at every larger one (the smaller
    ball's attack lies inside the larger), whatever order the budgets come in."""
    report = evaluate_immunity(
        digits.x_train[:400],
        digits.y_train[:400],
        digits.x_test,
        digits.y_test,
        eps=(0.3, 0.05, 0.15),
        vaccine=20,
        pgd_steps=3,
        adv_training=False,
        poisoning=False,
        seed=0,
    )
    for attack in ("fgsm", "pgd"):
        rows = report["attacks"][attack]
        assert list(rows) == ["0.05", "0.15", "0.3"]
        for key in ("undefended", "vaccinated_adaptive"):
            accuracies = [rows[e][key] for e in rows]
            assert accuracies == sorted(accuracies, reverse=True), (attack, key, accuracies)
