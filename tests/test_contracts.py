"""Every registered forecaster, decision model and attack keeps its contract
(:mod:`twinkit.checks`): each check runs on each class the registries hold, with no list
kept here; and the checks catch a class that breaks its contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

from twinkit.checks import (
    attack_checks,
    attack_classes,
    check_attack,
    check_decision_model,
    decision_model_checks,
    decision_model_classes,
    forecaster_checks,
    forecaster_classes,
    tiny_factory,
)
from twinkit.clone.model import CloneModel
from twinkit.immunity import PGD, Attack, register_attack
from twinkit.immunity.attacks import Bound, Labels, Target
from twinkit.immunity.base import AttackNorm, unregister_attack
from twinkit.models import Forecaster
from twinkit.models.decision import DecisionModel

#: checks a registered class is known to fail, each an open defect (strict: a fix shows)
KNOWN_DEFECTS: dict[tuple[str, str], str] = {}


def _cases(classes: Iterator[Any], checks: Any) -> Iterator[Any]:
    for cls in classes:
        for check in checks(cls) if callable(checks) else checks:
            marks = []
            defect = KNOWN_DEFECTS.get((cls.__name__, check.__name__))
            if defect is not None:
                marks.append(pytest.mark.xfail(reason=defect, strict=True, raises=AssertionError))
            name = getattr(cls, "name", cls.__name__)
            yield pytest.param(cls, check, id=f"{name}-{check.__name__}", marks=marks)


@pytest.mark.parametrize(("cls", "check"), list(_cases(forecaster_classes(), forecaster_checks())))
def test_every_forecaster_keeps_the_contract(cls: type[Forecaster], check: Any) -> None:
    check(cls)


@pytest.mark.parametrize(
    ("cls", "check"), list(_cases(decision_model_classes(), decision_model_checks()))
)
def test_every_decision_model_keeps_the_contract(cls: type[DecisionModel], check: Any) -> None:
    check(cls, tiny_factory(cls))


@pytest.mark.parametrize(("cls", "check"), list(_cases(attack_classes(), attack_checks)))
def test_every_attack_keeps_the_contract(cls: type[Attack], check: Any) -> None:
    check(cls)


def test_the_registries_hold_what_twinkit_ships() -> None:
    # Execute
    forecasters = {cls.name for cls in forecaster_classes()}
    attacks = {cls.name for cls in attack_classes()}

    # Assert: the lists above are the registries', and they hold every built-in
    assert {"persistence", "linear_ar", "gru", "transformer", "gp", "ensemble"} <= forecasters
    assert list(decision_model_classes()) == [CloneModel]
    assert {"fgsm", "pgd", "pgd_l2", "bpda", "square", "history_pgd"} <= attacks


class _Greedy(PGD):
    """PGD that spends twice its budget: a broken attack the checks must catch."""

    name: ClassVar[str] = "greedy_for_the_test"
    norm: ClassVar[AttackNorm] = "linf"

    def generate(
        self,
        model: CloneModel,
        x: np.ndarray,
        y: Labels | None,
        eps: float,
        *,
        seed: int = 0,
        low: Bound = 0.0,
        high: Bound = 1.0,
        target: Target | None = None,
    ) -> np.ndarray:
        found = super().generate(model, x, y, eps, seed=seed, low=low, high=high, target=target)
        out: np.ndarray = np.clip(x + 2.0 * (found - x), 0.0, 1.0)
        return out


def test_an_attack_over_its_budget_fails_its_check() -> None:
    # Prepare
    register_attack(_Greedy)
    try:
        # Execute / Assert
        with pytest.raises(AssertionError, match=r"_Greedy: moved an item by .* > eps 0.15"):
            check_attack(_Greedy)
    finally:
        unregister_attack(_Greedy.name)


def test_a_decision_model_without_a_factory_is_told_how_to_register() -> None:
    # Prepare: a clone subclass nobody registered
    class Unregistered(CloneModel):
        pass

    # Execute / Assert
    with pytest.raises(AssertionError, match="not a registered decision model"):
        check_decision_model(Unregistered)  # type: ignore[arg-type]
