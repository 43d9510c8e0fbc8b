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
    frame: pd.DataFrame,
    classes: Sequence[str],
    features: Sequence[str],
    seed: int,
    image_shape: tuple[int, int] | None = None,
) -> CloneModel:
    """The prior: an MLP (a small CNN when the features are the pixels of an image of
    ``image_shape``) trained on these (other people's) decisions, temperature-scaled on a
    tenth of them."""
    x = frame[list(features)].to_numpy(dtype=np.float64)
    if image_shape is not None and image_shape[0] * image_shape[1] != x.shape[1]:
        raise TwinkitError(
            f"the twin's metadata says its items are {image_shape[0]}x{image_shape[1]} "
            f"images ({image_shape[0] * image_shape[1]} pixels), but they have {x.shape[1]} "
            "features"
        )
    model = CloneModel(classes, x.shape[1], hidden=(64,), image_shape=image_shape, seed=seed)
    return model.fit(x, frame["label"].astype(str).tolist(), calibrate_frac=0.1)
