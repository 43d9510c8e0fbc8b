"""The Attack protocol, and the registry of every attack twinkit knows by name.

An attack is a class that says what it attacks (a ``"classifier"``, a clone; or a
``"forecaster"``), the norm its budget is measured in, what the budget means, whether it
can aim at a chosen answer (``targeted``) and what it needs of the model (``"gradient"``:
white box; ``"query"``: only the answers). ``generate`` does the attack:
:class:`ClassifierAttack` on a clone's items, :class:`ForecasterAttack` on a twin's
history. ``@register_attack`` makes a class known by its ``name``; the immunity
benchmark, the robustness job, the REST schema and the CLI list what the registry holds,
and :func:`twinkit.checks.check_attack` holds every registered class to the contract.

Adding an attack is one new module: a subclass of one of the two bases, decorated with
:func:`register_attack` (twinkit's own are imported by :mod:`twinkit.immunity`).

>>> from twinkit.immunity import attack_class, registered_attacks
>>> registered_attacks("classifier")
['bpda', 'fgsm', 'pgd', 'pgd_l2', 'square']
>>> pgd = attack_class("pgd")
>>> (pgd.attacks, pgd.norm, pgd.access, pgd.targeted)
('classifier', 'linf', 'gradient', True)
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Self, TypeVar

import numpy as np

from twinkit.core.errors import MissingExtraError, TwinkitError
from twinkit.core.lazy import require
from twinkit.core.plugins import load_plugins

if TYPE_CHECKING:
    import pandas as pd

    from twinkit.clone.model import CloneModel
    from twinkit.immunity.attacks import Bound, Labels, Target
    from twinkit.immunity.history_tampering import HistoryBudget, TamperedHistory
    from twinkit.models.base import Forecaster

#: what an attack attacks: a clone's answers, or a forecaster's forecasts
Victim = Literal["classifier", "forecaster"]
#: what an attack needs of the model: its gradient (white box), or only its answers
Access = Literal["gradient", "query"]
#: the norm a perturbation's size is measured in
AttackNorm = Literal["linf", "l2"]

VICTIMS: tuple[Victim, ...] = ("classifier", "forecaster")
ACCESSES: tuple[Access, ...] = ("gradient", "query")
NORMS: tuple[AttackNorm, ...] = ("linf", "l2")


@dataclass(frozen=True)
class AttackSettings:
    """How hard an attack tries, for the attacks that take it (``None``: the attack's own
    default): ``steps`` gradient steps (PGD and its kin; a forecaster attack's
    finite-difference steps), ``restarts`` random restarts, ``queries`` model calls per
    item (query-based attacks)."""

    steps: int | None = None
    restarts: int | None = None
    queries: int | None = None

    def __post_init__(self) -> None:
        for field, least in (("steps", 0), ("restarts", 1), ("queries", 1)):
            value = getattr(self, field)
            if value is not None and value < least:
                raise TwinkitError(f"{field} must be at least {least}, got {value}")


class Attack(abc.ABC):
    """What every attack declares; subclass :class:`ClassifierAttack` or
    :class:`ForecasterAttack`, not this."""

    #: the name it is registered, asked for and reported under
    name: ClassVar[str]
    #: what it attacks
    attacks: ClassVar[Victim]
    #: the norm its budget bounds
    norm: ClassVar[AttackNorm]
    #: what its budget ``eps`` means, in a user's words
    budget: ClassVar[str]
    #: whether it can aim at a chosen answer (a target class, a direction) as well as
    #: away from the true one
    targeted: ClassVar[bool]
    #: "gradient": it needs the model's gradient; "query": only its answers
    access: ClassVar[Access]

    @classmethod
    def from_settings(cls, settings: AttackSettings) -> Self:
        """An instance that tries as hard as ``settings`` say (the default ignores them)."""
        return cls()

    @classmethod
    def tiny(cls) -> Self:
        """A quick instance for the shared contract checks (:mod:`twinkit.checks`)."""
        return cls()

    @classmethod
    def summary(cls) -> str:
        """The first paragraph of the class's docstring, on one line: what the attack is."""
        paragraph = (cls.__doc__ or cls.name).strip().split("\n\n")[0]
        return " ".join(paragraph.split())

    @classmethod
    def describe(cls) -> dict[str, str | bool]:
        """What it declares, JSON-ready (listed by the CLI and in reports)."""
        return {
            "name": cls.name,
            "attacks": cls.attacks,
            "norm": cls.norm,
            "budget": cls.budget,
            "targeted": cls.targeted,
            "access": cls.access,
            "summary": cls.summary(),
        }


class ClassifierAttack(Attack):
    """An evasion attack on a clone: items moved, within a budget, to change its answers."""

    attacks: ClassVar[Victim] = "classifier"
    #: it perturbs images (a clone with ``image_shape``) and refuses flat features
    needs_images: ClassVar[bool] = False
    #: a query-based attack of the same norm that reports also run where this one's
    #: gradient is a stand-in (a clone with a threshold input layer, seen through a
    #: straight-through gradient), counting an item fooled when either fools it
    checked_by: ClassVar[str | None] = None

    @abc.abstractmethod
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
        """The attacked items: float64 of ``x``'s shape, inside ``[low, high]`` and
        within ``eps`` of ``x`` in :attr:`norm`.

        Untargeted (``target=None``) it moves each item away from its label ``y`` (class
        names or indices); targeted (only if :attr:`targeted`), toward ``target`` (one
        class, or one per item; ``y`` may be None). The same ``seed`` gives the same
        array. Bad input (a wrong shape, a value that is not finite or outside the range,
        an unknown label, ``eps < 0``) raises :class:`~twinkit.core.errors.TwinkitError`.
        """

    def _refuse_target(self, target: Target | None) -> None:
        """For attacks that cannot aim: a target is a mistake the caller should hear of."""
        if target is not None:
            raise TwinkitError(
                f"the {self.name} attack is untargeted: it cannot aim at a target class"
            )


class ForecasterAttack(Attack):
    """An evasion attack on a forecaster: the last readings of its history moved, within a
    :class:`~twinkit.immunity.history_tampering.HistoryBudget`, to push its forecast."""

    attacks: ClassVar[Victim] = "forecaster"

    @abc.abstractmethod
    def generate(
        self,
        model: Forecaster,
        context: pd.DataFrame,
        horizons: Sequence[int],
        direction: Sequence[float] | np.ndarray,
        budget: HistoryBudget,
        *,
        seed: int = 0,
        origin: pd.Timestamp | None = None,
    ) -> TamperedHistory:
        """The tampered history that pushes ``sum(direction * forecast mean)`` up: the
        last ``budget.window`` target readings up to ``origin`` (default: the last one)
        moved within ``budget``. With the signs of the clean errors it maximises the
        error; with ``+1`` it raises the forecast. Bad input raises
        :class:`~twinkit.core.errors.TwinkitError`."""


_REGISTRY: dict[str, type[Attack]] = {}

#: the poison screens (:mod:`.screening`): out-of-fold loss (label flips), spectral
#: signatures and trigger features (backdoors)
Method = Literal["loss", "spectral", "trigger"]
#: what the spectral screen looks at: scaled features, or a trained clone's last hidden layer
Representation = Literal["input", "hidden"]
#: the loss screen flags a row whose label has out-of-fold probability below this
DEFAULT_THRESHOLD = 0.2

#: the attacks a robustness report runs unless told otherwise
DEFAULT_ATTACKS = ("fgsm", "pgd")

#: twinkit's own classifier attacks, which need the training stack: registered when
#: their module is first imported (by :func:`attack_class`, or a listing where torch is)
_CLASSIFIER_HOME = "twinkit.immunity.classifier_attacks"
_CLASSIFIER_NAMES = ("bpda", "fgsm", "pgd", "pgd_l2", "square")


def _builtin_classifier_attacks() -> None:
    with contextlib.suppress(MissingExtraError):  # a slim install: listed, refused when asked
        require(_CLASSIFIER_HOME, "the classifier attacks")


A = TypeVar("A", bound=type[Attack])


def register_attack(cls: A) -> A:
    """Class decorator: make an attack known by its ``name``.

    Refuses a class that does not declare what an attack must, or a name already taken
    by another class.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise TwinkitError(f"{cls.__qualname__}: an attack's name must be an identifier")
    if not issubclass(cls, ClassifierAttack | ForecasterAttack):
        raise TwinkitError(f"{name}: subclass ClassifierAttack or ForecasterAttack")
    victim = "classifier" if issubclass(cls, ClassifierAttack) else "forecaster"
    if cls.attacks != victim:
        raise TwinkitError(f"{name}: a {victim} attack declares attacks = {victim!r}")
    for field, allowed in (("norm", NORMS), ("access", ACCESSES)):
        if getattr(cls, field, None) not in allowed:
            raise TwinkitError(f"{name}: {field} must be one of {allowed}")
    for field in ("budget", "targeted"):
        if not hasattr(cls, field):
            raise TwinkitError(f"{name}: an attack declares its {field}")
    known = _REGISTRY.get(name)
    if known is not None and known is not cls:
        raise TwinkitError(f"an attack named {name!r} is registered already ({known.__qualname__})")
    _REGISTRY[name] = cls
    return cls


def unregister_attack(name: str) -> None:
    """Forget an attack (for a test that registers its own)."""
    _REGISTRY.pop(name, None)


def registered_attacks(attacks: Victim | None = None) -> list[str]:
    """Names of the registered attacks, sorted; only those on ``attacks`` if given."""
    load_plugins()
    _builtin_classifier_attacks()
    names = {n for n, cls in _REGISTRY.items() if attacks is None or cls.attacks == attacks}
    if attacks in (None, "classifier"):
        names.update(_CLASSIFIER_NAMES)
    return sorted(names)


def attack_class(name: str, attacks: Victim | None = None) -> type[Attack]:
    """The attack registered as ``name``; with ``attacks``, it must attack that."""
    load_plugins()
    if name not in _REGISTRY and name in _CLASSIFIER_NAMES:
        require(_CLASSIFIER_HOME, f"the {name!r} attack")
    cls = _REGISTRY.get(name)
    if cls is None or (attacks is not None and cls.attacks != attacks):
        what = f"{attacks} attack" if attacks is not None else "attack"
        known = ", ".join(registered_attacks(attacks))
        raise TwinkitError(f"unknown {what} {name!r}: choose among {known}")
    return cls


def classifier_attack(name: str, settings: AttackSettings | None = None) -> ClassifierAttack:
    """An instance of the classifier attack ``name``, as hard as ``settings`` say."""
    cls = attack_class(name, "classifier")
    if not issubclass(cls, ClassifierAttack):
        raise TwinkitError(f"{name} says it attacks classifiers but is no ClassifierAttack")
    return cls.from_settings(settings or AttackSettings())


def forecaster_attack(name: str, settings: AttackSettings | None = None) -> ForecasterAttack:
    """An instance of the forecaster attack ``name``, as hard as ``settings`` say."""
    cls = attack_class(name, "forecaster")
    if not issubclass(cls, ForecasterAttack):
        raise TwinkitError(f"{name} says it attacks forecasters but is no ForecasterAttack")
    return cls.from_settings(settings or AttackSettings())


__all__ = [
    "ACCESSES",
    "NORMS",
    "VICTIMS",
    "Access",
    "Attack",
    "AttackNorm",
    "AttackSettings",
    "ClassifierAttack",
    "ForecasterAttack",
    "Victim",
    "attack_class",
    "classifier_attack",
    "forecaster_attack",
    "register_attack",
    "registered_attacks",
    "unregister_attack",
]
