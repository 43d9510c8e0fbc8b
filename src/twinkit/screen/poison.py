"""A decisions screen that quarantines rows that look poisoned (opt-in, not a default)."""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from typing import Literal, cast

import numpy as np
import pandas as pd

from twinkit.core.errors import TwinkitError
from twinkit.data.importers import Batch, DecisionBatch
from twinkit.immunity.base import DEFAULT_THRESHOLD, Method, Representation
from twinkit.screen.base import ScreenContext

#: the screens :class:`PoisonScreen` can run: one of them, or "both" (loss and spectral)
PoisonMethod = Method | Literal["both"]


class PoisonScreen:
    """Quarantine decision rows whose labels look poisoned, with the screen's reason.

    At ingest, each twin's candidate rows in the batch (rows no earlier screen held, with
    finite features) are screened together by
    :func:`twinkit.immunity.screening.screen_poison` on their features and labels:
    ``method="loss"`` (the default) holds labels improbable to clones cross-validated on
    the twin's other rows of the batch (label flips); ``"spectral"`` holds spectral
    outliers within a label (backdoors; it holds ``1.5 * contamination`` of the rows
    whatever the batch, unless ``min_score`` says how far out a row must be); ``"trigger"``
    holds rows carrying a rare feature that nearly only one label has and the rest of the
    row does not explain (backdoors that stamp a patch; it holds nothing when there is
    none); ``"both"`` runs loss and spectral, and a sequence such as ``("loss",
    "trigger")`` runs those (a ``contamination`` then also turns the loss screen's rule
    into "the ``contamination`` share of highest loss"). A held row's reason starts ``"possible
    poisoning: "`` and says which screen found what, e.g. ``"possible poisoning: label
    improbable: out-of-fold p(label '4')=0.01, ..."``. Nothing is deleted: a held row can
    be released as any other.

    Each twin is screened on its own rows: its labels are its own, and a habit it is
    consistent about is learnt from its other rows, so only labels it contradicts itself
    on look improbable. The screen sees only the batch (its context carries no stored
    features); a twin with fewer than ``min_rows`` (50) candidate rows in the batch
    is not screened at all (too few to cross-validate a clone on), and rows whose label
    appears fewer than ``min_class_rows`` (5) times among them are never held (a rare
    label is improbable to a clone that has barely seen it, honest or not). Honest rows
    are held too, now and then: an answer the donor gave against everything else they
    answered (1% to 4% of 700 honest digits; with 10% of the labels flipped, 96% to 100%
    of the flips are held and 2% to 4% of the rest).

    The screen costs ``rounds * folds`` small clone fits per twin per batch (about 2 s
    for 700 rows of 64 features), so it is not among
    :data:`~twinkit.screen.DEFAULT_DECISION_SCREENS`. Opt in by adding it after them::

        from twinkit.screen import DEFAULT_DECISION_SCREENS
        from twinkit.screen.poison import PoisonScreen

        engine = TwinEngine(store, decision_screens=(*DEFAULT_DECISION_SCREENS, PoisonScreen()))

    Placed last, it screens only the rows the built-in screens passed (no conflicting
    label, no repeat, finite features). The result is seeded: the same batch is held the
    same way every time.
    """

    name = "poison"

    def __init__(
        self,
        method: PoisonMethod | Sequence[Method] = "loss",
        *,
        min_rows: int = 50,
        min_class_rows: int = 5,
        folds: int = 5,
        threshold: float = DEFAULT_THRESHOLD,
        contamination: float | None = None,
        rounds: int = 2,
        min_score: float = 0.0,
        representation: Representation = "input",
        hidden: Sequence[int] = (64,),
        seed: int = 0,
        twins: Collection[str] | None = None,
        history: bool = False,
    ) -> None:
        if isinstance(method, str):
            chosen = ["loss", "spectral"] if method == "both" else [method]
        else:
            chosen = list(method)
        unknown = [m for m in chosen if m not in ("loss", "spectral", "trigger")]
        if unknown or not chosen:
            raise TwinkitError(
                "method must be 'loss', 'spectral', 'trigger', 'both' or a sequence of the "
                f"first three, not {method!r}"
            )
        if min_rows < 2 * folds:
            raise TwinkitError(f"min_rows ({min_rows}) must be at least twice folds ({folds})")
        self.method = method if isinstance(method, str) else tuple(method)
        self.methods: tuple[Method, ...] = tuple(cast(list[Method], chosen))
        self.min_rows = min_rows
        self.min_class_rows = min_class_rows
        self.folds = folds
        self.threshold = threshold
        self.contamination = contamination
        self.rounds = rounds
        self.min_score = min_score
        self.representation: Representation = representation
        self.hidden = tuple(hidden)
        self.seed = seed
        #: the twins (store keys) it screens; None: every twin
        self.twins = None if twins is None else frozenset(twins)
        #: screen a batch together with the twin's stored decisions (ingest supplies them)
        self.uses_history = history

    def __repr__(self) -> str:
        return f"PoisonScreen(method={self.method!r}, min_rows={self.min_rows})"

    def flag(self, batch: Batch, candidates: np.ndarray, context: ScreenContext) -> np.ndarray:
        out = np.full(len(batch), None, dtype=object)
        if not isinstance(batch, DecisionBatch) or not candidates.any():
            return out
        # the screens train clones: the training stack, imported only for decision rows
        from twinkit.immunity.screening import screen_poison

        twin_ids = batch.frame["twin_id"].to_numpy(dtype=object)
        labels = np.asarray([str(v) for v in batch.frame["label"]], dtype=object)
        usable = candidates & np.isfinite(batch.features).all(axis=1)
        for twin_id in pd.unique(twin_ids[usable]):
            if self.twins is not None and twin_id not in self.twins:
                continue
            rows = np.flatnonzero(usable & (twin_ids == twin_id))
            x_past, said_past = self._history(batch, context, str(twin_id), rows)
            if len(rows) + len(said_past) < self.min_rows:
                continue
            given = np.concatenate([labels[rows], said_past])
            classes, counts = np.unique(given, return_counts=True)
            judged = np.isin(given, classes[counts >= self.min_class_rows])[: len(rows)]
            if len(classes) < 2 or not judged.any():
                continue
            screening = screen_poison(
                np.concatenate([batch.features[rows], x_past]),
                list(given),
                [str(c) for c in classes],
                methods=self.methods,
                folds=self.folds,
                seed=self.seed,
                threshold=self.threshold,
                contamination=self.contamination,
                rounds=self.rounds,
                min_score=self.min_score,
                representation=self.representation,
                hidden=self.hidden,
            )
            held = screening.flagged[: len(rows)] & judged
            reasons = screening.reasons[: len(rows)]
            for i, reason in zip(rows[held], reasons[held], strict=True):
                out[i] = f"possible poisoning: {reason}"
        return out

    def _history(
        self, batch: DecisionBatch, context: ScreenContext, twin_id: str, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The twin's stored decisions on the batch's features (items the batch sends
        again left out): features and labels; none without ``uses_history``."""
        names = list(batch.feature_names)
        none = (np.empty((0, len(names))), np.empty(0, dtype=object))
        past = context.history
        if not self.uses_history or past is None or past.empty:
            return none
        mine = past[past["twin_id"] == twin_id]
        mine = mine[~mine["item_id"].isin(set(batch.frame["item_id"].iloc[rows]))]
        x, said = [], []
        for features, label in zip(mine["features"], mine["label"], strict=True):
            values = json.loads(features)
            row = [values.get(n) for n in names]
            if all(isinstance(v, int | float) and math.isfinite(v) for v in row):
                x.append([float(v) for v in row])
                said.append(str(label))
        if not said:
            return none
        return np.asarray(x, dtype=np.float64), np.asarray(said, dtype=object)
