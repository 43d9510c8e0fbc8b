"""Continual learning: update a twin's model on new data without forgetting the old.

:class:`Consolidation` is one mechanism for a quadratic pull toward earlier weights:
elastic weight consolidation (EWC, Kirkpatrick et al. 2017) weighs each weight by its
diagonal Fisher information on the old data; uniform weights make it L2-SP (Li et al.
2018), the pull a clone feels toward its population prior. :func:`reservoir` and
:func:`stratified` choose the old windows a replay buffer keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twinkit.continual.replay import reservoir, stratified
from twinkit.core.lazy import lazy_exports

if TYPE_CHECKING:
    from twinkit.continual.consolidation import Consolidation, fisher_diagonal

#: consolidation needs torch (``twinkit[train]``): imported when first used
__getattr__ = lazy_exports(
    __name__, dict.fromkeys(["Consolidation", "fisher_diagonal"], "consolidation")
)

#: how a forecaster is brought up to date after a change (see ``NeuralForecaster.update``)
UPDATE_METHODS = ("ewc", "finetune", "scratch")

__all__ = ["UPDATE_METHODS", "Consolidation", "fisher_diagonal", "reservoir", "stratified"]
