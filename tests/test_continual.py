"""Continual learning (issue #18): EWC's consolidation (L2-SP its uniform case), the Fisher
information, replay buffers, and a neural forecaster's update that forgets less than plain
fine-tuning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from twinkit.continual import Consolidation, fisher_diagonal, reservoir, stratified
from twinkit.core.errors import ForecastInputError, TwinkitError
from twinkit.engine import TwinEngine
from twinkit.models.evaluate import rolling_scores
from twinkit.models.gru import GRUAttention


def test_uniform_consolidation_is_the_l2_sp_pull() -> None:
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(4))]
    pull = Consolidation(params, strength=0.25)
    anchor = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p))

    expected = 0.25 * sum(float(((p - a) ** 2).sum()) for p, a in zip(params, anchor, strict=True))
    assert float(pull.penalty().detach()) == pytest.approx(expected)
    torch.autograd.backward(pull.penalty())  # differentiable: it pulls back to the anchor
    assert params[1].grad is not None
    np.testing.assert_allclose(
        params[1].grad.numpy(), (0.5 * (params[1] - anchor[1])).detach().numpy(), rtol=1e-6
    )


def test_ewc_weighs_the_pull_by_the_fisher_information() -> None:
    # y = w x on data where only the first input varies: only w[0] is pinned down
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [3.0, 0.0]])
    y = x[:, 0] * 2.0
    w = torch.nn.Parameter(torch.tensor([2.0, 5.0]))

    def batch(i: int) -> torch.Tensor:
        return ((x[i] @ w - y[i]) ** 2 + (x[i] @ w - y[i] - 1.0) ** 2) / 2

    fisher = fisher_diagonal([w], [lambda i=i: batch(i) for i in range(4)])  # type: ignore[misc]
    pull = Consolidation.ewc([w], fisher, strength=1.0)
    with torch.no_grad():
        w.add_(torch.tensor([1.0, 1.0]))

    assert fisher[0][1] == 0.0 and fisher[0][0] > 0  # no information on w[1]
    assert pull.weights is not None and float(pull.weights[0].mean()) == pytest.approx(1.0)
    # the same step costs only where the old data cared: all of it on w[0]
    assert float(pull.penalty().detach()) == pytest.approx(2.0)


def test_reservoir_keeps_each_item_with_equal_probability() -> None:
    counts = np.zeros(50)
    for seed in range(2000):
        kept = reservoir(50, 10, seed)
        assert len(kept) == 10 and len(set(kept.tolist())) == 10
        counts[kept] += 1
    rates = counts / 2000
    assert np.all(np.abs(rates - 0.2) < 0.04)  # 10 of 50, whatever the position
    assert reservoir(5, 10).tolist() == [0, 1, 2, 3, 4]


def test_stratified_replay_keeps_rare_regimes() -> None:
    rng = np.random.default_rng(0)
    levels = np.concatenate([rng.normal(100, 5, 950), rng.normal(250, 5, 50)])
    picked = stratified(levels, 40, bins=4, seed=1)
    assert len(picked) == 40 and len(set(picked.tolist())) == 40
    high = int((levels[picked] > 200).sum())
    assert high >= 8  # a quarter of the buffer for the top regime, not 5 % of it
    sampled = reservoir(1000, 40, seed=1)
    assert int((levels[sampled] > 200).sum()) < high


def _regime(n: int, start: str, kind: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    wave = 120 + 30 * np.sin(t / 24.0) if kind == "old" else 170 - 40 * np.sin(t / 9.0)
    index = pd.date_range(start, periods=n, freq="5min", tz="UTC")
    return pd.DataFrame({"glucose": wave + rng.normal(0, 2, n)}, index=index)


def _old_regime_rmse(model: GRUAttention, history: pd.DataFrame, seed: int) -> float:
    later = _regime(288, "2026-01-06", "old", seed)
    split = pd.Timestamp("2026-01-06", tz="UTC")
    frame = pd.concat([history, later])
    return rolling_scores(model, frame, split, [30], max_origins=100)["rmse_30"]


def test_an_ewc_update_forgets_less_than_plain_fine_tuning() -> None:
    # Learnt on one regime, updated on two days of another; then asked about the first.
    since = pd.Timestamp("2026-01-04", tz="UTC")
    gaps = []
    for seed in (0, 1):
        old = _regime(288 * 3, "2026-01-01", "old", seed)
        history = pd.concat([old, _regime(288 * 2, "2026-01-04", "new", seed + 10)])
        model = GRUAttention(seed=seed, hidden=16, epochs=15, context_min=60, max_horizon_min=30)
        model.fit(old)

        ewc = model.update(history, since=since, method="ewc")
        tuned = model.update(history, since=since, method="finetune")

        before = _old_regime_rmse(model, history, seed)
        gaps.append(_old_regime_rmse(tuned, history, seed) - _old_regime_rmse(ewc, history, seed))
        assert _old_regime_rmse(ewc, history, seed) < 1.5 * before  # it still knows the old
    assert min(gaps) > 2.0  # fine-tuning forgot by mg/dL more, in every run


def test_update_by_scratch_is_a_fresh_fit_and_bad_methods_are_named() -> None:
    old = _regime(288 * 2, "2026-01-01", "old", 3)
    model = GRUAttention(seed=3, hidden=8, epochs=3, context_min=60, max_horizon_min=30).fit(old)
    fresh = model.update(old, method="scratch")
    again = GRUAttention(seed=3, hidden=8, epochs=3, context_min=60, max_horizon_min=30).fit(old)

    a, b = fresh.get_state()[0], again.get_state()[0]
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(ForecastInputError, match="unknown update method"):
        model.update(old, method="forget")


def _long(frame: pd.DataFrame) -> pd.DataFrame:
    times = pd.DatetimeIndex(frame.index)
    return pd.DataFrame(
        {
            "time": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "channel": "glucose",
            "value": frame["glucose"].to_numpy(),
        }
    )


def test_the_engine_updates_a_neural_serving_version_and_records_how(
    engine: TwinEngine,
) -> None:
    old = _regime(288 * 3, "2026-01-01", "old", 4)
    new = _regime(288 * 2, "2026-01-04", "new", 14)
    frame = pd.concat([old, new])
    rows = _long(frame)
    engine.create_twin("p1", "state")
    engine.ingest(rows.iloc[: 288 * 3], twin="p1")
    small = {"hidden": 8, "epochs": 3, "context_min": 60, "max_horizon_min": 60}
    assert engine.fit("p1", model="gru", params=small).version == 1
    engine.ingest(rows.iloc[288 * 3 :], twin="p1")

    updated = engine.fit("p1", update="ewc", since="2026-01-04T00:00:00Z")

    assert (updated.version, updated.model) == (2, "gru")
    assert updated.selection == {
        "update": {"method": "ewc", "from_version": 1, "since": "2026-01-04T00:00:00+00:00"}
    }
    version = engine.version("p1", 2)
    assert version.params["selection"]["update"]["method"] == "ewc"
    assert version.params["hidden"] == 8  # the serving version's settings carry over
    with pytest.raises(TwinkitError, match="unknown update"):
        engine.fit("p1", update="forget")


def test_a_one_pass_model_is_fitted_anew_or_refused(engine: TwinEngine) -> None:
    old = _regime(288 * 3, "2026-01-01", "old", 5)
    rows = _long(old)
    engine.create_twin("p1", "state")
    engine.ingest(rows, twin="p1")
    with pytest.raises(TwinkitError, match="no serving version to update"):
        engine.fit("p1", update="ewc")
    engine.fit("p1", model="linear_ar")

    with pytest.raises(TwinkitError, match="no weights to update"):
        engine.fit("p1", update="finetune")
    anew = engine.fit("p1", model="linear_ar", update="auto")

    assert anew.version == 2 and anew.model == "linear_ar"
    assert not (anew.selection or {}).get("update")
