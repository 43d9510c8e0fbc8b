"""Digital immunity: attacks on a clone's answers, to measure and harden its robustness."""

from __future__ import annotations

from twinkit.immunity.attacks import (
    InputLogits,
    false_alarm,
    fgsm,
    make_safe,
    pgd,
    robust_accuracy,
)

__all__ = [
    "InputLogits",
    "false_alarm",
    "fgsm",
    "make_safe",
    "pgd",
    "robust_accuracy",
]
