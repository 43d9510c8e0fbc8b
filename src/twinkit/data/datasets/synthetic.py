"""A synthetic glucose-like cohort for tests and quick runs: known structure, no downloads."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd


def synthetic_cohort(
    n_twins: int = 3,
    days: float = 3.0,
    step_min: int = 5,
    seed: int = 0,
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC),
) -> pd.DataFrame:
    """Long-format signals ``twin_id,time,channel,value``: ``glucose`` and ``carbs``.

    Each twin has its own baseline, daily rhythm and meal response, plus AR(1) noise, so a
    personal model has something personal to learn.

    >>> frame = synthetic_cohort(n_twins=2, days=1, seed=1)
    >>> sorted(frame["channel"].unique())
    ['carbs', 'glucose']
    """
    rng = np.random.default_rng(seed)
    n = int(days * 24 * 60 / step_min)
    times = pd.date_range(start, periods=n, freq=f"{step_min}min")
    minutes = np.arange(n) * step_min
    frames = []
    for k in range(n_twins):
        twin_id = f"synth-{k + 1:03d}"
        base = rng.uniform(90, 150)
        amp = rng.uniform(5, 25)
        phase = rng.uniform(0, 2 * np.pi)
        gain = rng.uniform(0.5, 2.0)  # mg/dL per gram of carbs at the peak
        carbs = np.zeros(n)
        for day in range(int(np.ceil(days))):
            for hour in (7.5, 12.5, 19.0):
                at = int((day * 24 + hour + rng.normal(0, 0.5)) * 60 / step_min)
                if 0 <= at < n:
                    carbs[at] = rng.uniform(20, 90)
        kernel_t = np.arange(0, 240, step_min)
        kernel = (kernel_t / 60) * np.exp(1 - kernel_t / 60)  # peaks one hour after eating
        meal = np.convolve(carbs, kernel)[:n] * gain
        noise = np.zeros(n)
        for i in range(1, n):
            noise[i] = 0.9 * noise[i - 1] + rng.normal(0, 2.0)
        glucose = base + amp * np.sin(2 * np.pi * minutes / 1440 + phase) + meal + noise
        frames.append(
            pd.DataFrame(
                {"twin_id": twin_id, "time": times, "channel": "glucose", "value": glucose}
            )
        )
        eaten = carbs > 0
        frames.append(
            pd.DataFrame(
                {
                    "twin_id": twin_id,
                    "time": times[eaten],
                    "channel": "carbs",
                    "value": carbs[eaten],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
