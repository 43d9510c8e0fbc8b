"""Contract checks every forecaster, decision model and attack keeps (River's
``check_estimator`` idea), shipped so that a plugin's author can run them too.

:func:`check_forecaster`, :func:`check_decision_model` and :func:`check_attack` build the
tiny instances a class declares (``tiny()``; a decision model's registered factory), run
every check of its kind and raise :class:`AssertionError` naming the class, the check and
what broke. The checks of a kind are listed one by one (:func:`forecaster_checks`,
:func:`decision_model_checks`, :func:`attack_checks`), and :func:`forecaster_classes`,
:func:`decision_model_classes` and :func:`attack_classes` yield every registered class:
twinkit's test suite runs every check on every class without a list of its own.

>>> from twinkit.models import Persistence
>>> check_forecaster(Persistence)  # silent: the contract holds
>>> [cls.__name__ for cls in decision_model_classes()]
['CloneModel']
"""

from __future__ import annotations

from twinkit.checks.attacks import (
    AttackCheck,
    attack_checks,
    attack_classes,
    check_attack,
)
from twinkit.checks.decision_models import (
    DecisionModelCheck,
    check_decision_model,
    decision_model_checks,
    decision_model_classes,
    tiny_factory,
)
from twinkit.checks.forecasters import (
    ForecasterCheck,
    check_forecaster,
    forecaster_checks,
    forecaster_classes,
)

__all__ = [
    "AttackCheck",
    "DecisionModelCheck",
    "ForecasterCheck",
    "attack_checks",
    "attack_classes",
    "check_attack",
    "check_decision_model",
    "check_forecaster",
    "decision_model_checks",
    "decision_model_classes",
    "forecaster_checks",
    "forecaster_classes",
    "tiny_factory",
]
