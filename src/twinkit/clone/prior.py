"""The population prior of a clone: a classifier trained on other people's decisions,
the start every personal clone adapts from."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from twinkit.clone.model import CloneModel
from twinkit.core.errors import TwinkitError

#: the columns of the decisions layout that are not features
DECISION_META = ("twin_id", "item_id", "label", "row")


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """Every column but the decision layout's own."""
    names = [str(c) for c in frame.columns if c not in DECISION_META]
    if not names:
        raise TwinkitError("a decisions file needs at least one feature column")
    return names


def train_population(
    frame: pd.DataFrame, classes: Sequence[str], features: Sequence[str], seed: int
) -> CloneModel:
    """The prior: an MLP trained on these (other people's) decisions, temperature-scaled
    on a tenth of them."""
    x = frame[list(features)].to_numpy(dtype=np.float64)
    model = CloneModel(classes, x.shape[1], hidden=(64,), seed=seed)
    return model.fit(x, frame["label"].astype(str).tolist(), calibrate_frac=0.1)
