"""Digital immunity: attacks on a clone's answers and a twin's forecasts, to measure and
harden its robustness.

Attacks are registered by name (:mod:`.base`); importing this package registers
twinkit's own: the classifier attacks of :mod:`.classifier_attacks` and the forecaster
attack of :mod:`.forecaster_attacks`. The classifier attacks and vaccination need the
training stack (``twinkit[train]``) and are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twinkit.core.lazy import lazy_exports
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
from twinkit.immunity.forecaster_attacks import HistoryPGD

if TYPE_CHECKING:
    from twinkit.immunity.attacks import (
        InputLogits,
        false_alarm,
        fgsm,
        make_safe,
        pgd,
        robust_accuracy,
        square,
    )
    from twinkit.immunity.classifier_attacks import BPDA, FGSM, PGD, PGDL2, Square
    from twinkit.immunity.vaccine import adversarial_training, vaccinate, vaccine_samples

__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            ["InputLogits", "false_alarm", "fgsm", "make_safe", "pgd", "robust_accuracy"],
            "attacks",
        ),
        "square": "attacks",
        **dict.fromkeys(["BPDA", "FGSM", "PGD", "PGDL2", "Square"], "classifier_attacks"),
        **dict.fromkeys(["adversarial_training", "vaccinate", "vaccine_samples"], "vaccine"),
    },
)

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
