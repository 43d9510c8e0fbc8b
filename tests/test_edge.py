"""Edge export: `twinkit export` writes ONNX that onnxruntime runs, without torch, to the
same forecast the twin serves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twinkit.core.errors import TwinkitError
from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine
from twinkit.models.ensemble import Ensemble

pytest.importorskip("onnxruntime")

TINY = {"hidden": 8, "epochs": 3, "context_min": 60, "max_horizon_min": 60}


@pytest.fixture
def engine(tmp_path: Path) -> TwinEngine:
    engine = TwinEngine(f"sqlite:///{tmp_path}/t.db")
    engine.create_twin("p1", "state")
    engine.ingest(synthetic_cohort(n_twins=1, days=3, seed=0).assign(twin_id="p1"))
    return engine


def edge_forecast(onnx: Path, signals: Path, horizons: list[int]) -> dict[str, object]:
    """Run the exported model in a fresh interpreter and report whether torch was loaded."""
    code = (
        "import json, sys; import pandas as pd\n"
        "from twinkit.edge import OnnxForecaster\n"
        f"frame = pd.read_parquet({str(signals)!r})\n"
        f"f = OnnxForecaster({str(onnx)!r}).predict(frame, {horizons!r})\n"
        "print(json.dumps({'forecast': f.to_dict(), 'torch': 'torch' in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("wrapped", [False, True])
def test_exported_model_matches_the_served_forecast_without_torch(
    engine: TwinEngine, tmp_path: Path, wrapped: bool
) -> None:
    # Prepare: a GRU serves, as it is or recalibrated (what auto-selection serves)
    if wrapped:
        engine.fit_population("gru", params=TINY)
        engine.fit("p1", candidates=["population"])
        assert isinstance(engine.load_model(engine.version("p1")), Ensemble)
    else:
        engine.fit("p1", model="gru", params=TINY)
    signals = tmp_path / "signals.parquet"
    engine.signals("p1").to_parquet(signals)
    served = engine.predict("p1", [15, 30, 60])

    # Execute
    path = engine.export_onnx("p1", tmp_path / "p1.onnx")
    result = edge_forecast(path, signals, [15, 30, 60])

    # Assert
    assert result["torch"] is False
    forecast = result["forecast"]
    assert isinstance(forecast, dict)
    for q, values in served.to_dict()["quantiles"].items():
        assert np.allclose(forecast["quantiles"][q], values, atol=1e-4), q
    assert np.allclose(forecast["mean"], served.mean, atol=1e-4)


def test_non_neural_model_refuses_to_export(engine: TwinEngine, tmp_path: Path) -> None:
    engine.fit("p1", model="linear_ar")
    with pytest.raises(TwinkitError, match="only a single neural"):
        engine.export_onnx("p1", tmp_path / "p1.onnx")
