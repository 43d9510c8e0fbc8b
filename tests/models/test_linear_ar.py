"""The linear AR forecaster's intervals are calibrated (its contract with every other
forecaster is checked in ``tests/test_contracts.py``)."""

from __future__ import annotations

from twinkit.checks.forecasters import sinusoid
from twinkit.models import LinearAR
from twinkit.models.evaluate import rolling_scores


def test_linear_ar_90_interval_is_calibrated() -> None:
    # Prepare: two weeks of sine + N(0, 1); the last quarter is held out
    frame = sinusoid(n=4000, seed=3, noise=1.0)
    split = frame.index[3000]
    model = LinearAR.tiny(target="y", seed=0).fit(frame.loc[frame.index < split])

    # Execute
    scores = rolling_scores(model, frame, split, [15, 30], max_origins=600)

    # Assert
    for h in (15, 30):
        assert scores[f"n_{h}"] >= 500
        assert 0.80 <= scores[f"coverage90_{h}"] <= 0.97, scores
