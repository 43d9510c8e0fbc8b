"""Decision twins ("digital clones"): one person's decision boundary, learned by asking.

A clone is a classifier fine-tuned from a population prior on its donor's answers
(:mod:`.model`); confusion labels and border categories say where people hesitate
(:mod:`.confusion`); query strategies, the Turing GAN among them, choose what to ask
(:mod:`.query`, :mod:`.tgan`); donors answer (:mod:`.donor`); :func:`learn_clone` runs
the loop; :mod:`.metrics` measures fidelity and advice.

Clones are networks: this package needs the training stack (``twinkit[train]``), and
imports its parts when first used, so that a slim install can import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twinkit.core.lazy import lazy_exports

if TYPE_CHECKING:
    from twinkit.clone.active import Trajectory, learn_clone, personalize
    from twinkit.clone.confusion import border_categories, confusion_labels, confusion_zone
    from twinkit.clone.donor import Donor, ModelDonor, PoolDonor, Queries, QueueDonor
    from twinkit.clone.model import CloneModel
    from twinkit.clone.query import Pool, QueryContext, QueryStrategy
    from twinkit.clone.strategies import STRATEGIES, strategy

__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(["Trajectory", "learn_clone", "personalize"], "active"),
        **dict.fromkeys(["border_categories", "confusion_labels", "confusion_zone"], "confusion"),
        **dict.fromkeys(["Donor", "ModelDonor", "PoolDonor", "Queries", "QueueDonor"], "donor"),
        "CloneModel": "model",
        **dict.fromkeys(["Pool", "QueryContext", "QueryStrategy"], "query"),
        **dict.fromkeys(["STRATEGIES", "strategy"], "strategies"),
    },
)

__all__ = [
    "STRATEGIES",
    "CloneModel",
    "Donor",
    "ModelDonor",
    "Pool",
    "PoolDonor",
    "Queries",
    "QueryContext",
    "QueryStrategy",
    "QueueDonor",
    "Trajectory",
    "border_categories",
    "confusion_labels",
    "confusion_zone",
    "learn_clone",
    "personalize",
    "strategy",
]
