"""Digital immunity: attacks on a clone's answers, to measure and harden its robustness."""

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
from twinkit.immunity.vaccine import adversarial_training, vaccinate, vaccine_samples

__all__ = [
    "InputLogits",
    "adversarial_training",
    "false_alarm",
    "fgsm",
    "make_safe",
    "pgd",
    "robust_accuracy",
    "square",
    "vaccinate",
    "vaccine_samples",
]
