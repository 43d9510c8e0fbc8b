"""Digital immunity: attacks on a clone's answers and a twin's forecasts, to measure and
harden its robustness.

Attacks are registered by name (:mod:`.base`); importing this package registers
twinkit's own: the classifier attacks of :mod:`.classifier_attacks` and the forecaster
attack of :mod:`.forecaster_attacks`.
"""

from __future__ import annotations

from twinkit.immunity.attacks import (
    InputLogits,
    false_alarm,
    fgsm,
    make_safe,
    pgd,
    robust_accuracy,
    square,
)
from twinkit.immunity.base import (
    Attack,
    AttackSettings,
    ClassifierAttack,
    ForecasterAttack,
    attack_class,
    classifier_attack,
    forecaster_attack,
    register_attack,
    registered_attacks,
)
from twinkit.immunity.classifier_attacks import BPDA, FGSM, PGD, PGDL2, Square
from twinkit.immunity.forecaster_attacks import HistoryPGD
from twinkit.immunity.vaccine import adversarial_training, vaccinate, vaccine_samples

__all__ = [
    "BPDA",
    "FGSM",
    "PGD",
    "PGDL2",
    "Attack",
    "AttackSettings",
    "ClassifierAttack",
    "ForecasterAttack",
    "HistoryPGD",
    "InputLogits",
    "Square",
    "adversarial_training",
    "attack_class",
    "classifier_attack",
    "false_alarm",
    "fgsm",
    "forecaster_attack",
    "make_safe",
    "pgd",
    "register_attack",
    "registered_attacks",
    "robust_accuracy",
    "square",
    "vaccinate",
    "vaccine_samples",
]
