"""Slim installs, each in a clean venv built from twinkit's wheel: `twinkit[service]`
without the training stack serves the forecast of a model trained elsewhere and refuses a
network's with the extra to install; `twinkit[edge]` runs an exported network to the
forecast the full install serves. Neither has torch, scikit-learn or GPyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine
from twinkit.service.app import create_app
from twinkit.service.settings import ServiceSettings

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "admin-token-for-slim-tests-" + "x" * 32
TINY = {"hidden": 8, "epochs": 3, "context_min": 60, "max_horizon_min": 60}
TRAINING_STACK = ("torch", "gpytorch", "sklearn", "art")

# Run by the slim venv's interpreter: the service over the store the full install wrote.
SERVE = """
import json, sys
from importlib.util import find_spec
from fastapi.testclient import TestClient
from pydantic import SecretStr
from twinkit.service.app import create_app
from twinkit.service.settings import ServiceSettings

if __name__ == "__main__":
    url, token = sys.argv[1], sys.argv[2]
    out = {}
    settings = ServiceSettings(admin_token=SecretStr("a" * 40))
    with TestClient(create_app(url, settings)) as client:
        for twin in ("p1", "p2"):
            answer = client.get(
                f"/v1/twins/{twin}/forecast",
                params=[("horizons", 30), ("horizons", 60)],
                headers={"Authorization": f"Bearer {token}"},
            )
            out[twin] = {"status": answer.status_code, "body": answer.json()}
    out["installed"] = [m for m in %r if find_spec(m) is not None]
    out["loaded"] = [m for m in %r if m in sys.modules]
    print(json.dumps(out))
"""

# Run by the edge venv's interpreter: the exported network on the twin's signals.
EDGE = """
import json, sys
from importlib.util import find_spec
import pandas as pd
from twinkit.edge import OnnxForecaster

if __name__ == "__main__":
    onnx, signals = sys.argv[1], sys.argv[2]
    forecast = OnnxForecaster(onnx).predict(pd.read_parquet(signals), [30, 60])
    modules = %r + ("fastapi",)
    print(json.dumps({
        "forecast": forecast.to_dict(),
        "installed": [m for m in modules if find_spec(m) is not None],
    }))
"""


def _run(*command: str | Path, timeout: int = 900) -> str:
    done = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{command}: {done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, ROOT)
    (built,) = out.glob("twinkit-*.whl")
    return built


def _venv(where: Path, wheel: Path, extra: str) -> Path:
    """A clean venv (no site packages of ours) with ``twinkit[extra]`` from the wheel."""
    _run(sys.executable, "-m", "venv", where)
    python = where / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", f"{wheel}[{extra}]")
    return python


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store the full install wrote: owner ana, twin p1 served by linear_ar, twin p2 by
    a GRU exported to ONNX; the forecasts the full install serves."""
    where = tmp_path_factory.mktemp("trained")
    url = f"sqlite:///{where}/store.db"
    settings = ServiceSettings.model_validate({"admin_token": SecretStr(ADMIN)})
    with TestClient(create_app(url, settings)) as client:
        answer = client.post(
            "/v1/owners", json={"name": "ana"}, headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert answer.status_code == 201, answer.text
        token = answer.json()["token"]
    engine = TwinEngine(url)
    data = synthetic_cohort(n_twins=1, days=3, seed=0)
    for twin in ("p1", "p2"):
        engine.create_twin(twin, "state", owner="ana")
        engine.ingest(data.assign(twin_id=twin), owner="ana")
    engine.fit("ana/p1", model="linear_ar")
    engine.fit("ana/p2", model="gru", params=TINY)
    onnx = engine.export_onnx("ana/p2", where / "p2.onnx")
    signals = where / "p2.parquet"
    engine.signals("ana/p2").to_parquet(signals)
    served = {t: engine.forecast(f"ana/{t}", (30, 60)).forecast for t in ("p1", "p2")}
    engine.store.dispose()
    return {"url": url, "token": token, "onnx": onnx, "signals": signals, "served": served}


def test_the_service_install_serves_a_forecast_without_the_training_stack(
    wheel: Path, trained: dict[str, Any], tmp_path: Path
) -> None:
    # Prepare
    python = _venv(tmp_path / "venv", wheel, "service")
    script = tmp_path / "serve.py"
    script.write_text(SERVE % (TRAINING_STACK, TRAINING_STACK))

    # Execute
    out = json.loads(_run(python, script, trained["url"], trained["token"]))

    # Assert: the linear model serves the full install's forecast
    assert out["installed"] == [] and out["loaded"] == []
    assert out["p1"]["status"] == 200, out["p1"]
    served = trained["served"]["p1"]
    answers = out["p1"]["body"]["forecasts"]
    assert [a["horizon_min"] for a in answers] == [30, 60]
    assert np.allclose([a["mean"] for a in answers], served.mean, atol=1e-9)
    for q, values in served.to_dict()["quantiles"].items():
        assert np.allclose([a["quantiles"][q] for a in answers], values, atol=1e-9), q
    # the network needs torch: refused, saying what to install, not failed over
    assert out["p2"]["status"] == 501, out["p2"]
    message = out["p2"]["body"]["error"]["message"]
    assert "needs torch" in message and "twinkit[train]" in message, message


def test_the_edge_install_runs_an_exported_network(
    wheel: Path, trained: dict[str, Any], tmp_path: Path
) -> None:
    # Prepare
    python = _venv(tmp_path / "venv", wheel, "edge")
    script = tmp_path / "edge.py"
    script.write_text(EDGE % (TRAINING_STACK,))

    # Execute
    out = json.loads(_run(python, script, trained["onnx"], trained["signals"]))

    # Assert: no torch, no service; the device's forecast is the one the twin serves
    assert out["installed"] == []
    served = trained["served"]["p2"]
    assert np.allclose(out["forecast"]["mean"], served.mean, atol=1e-4)
    for q, values in served.to_dict()["quantiles"].items():
        assert np.allclose(out["forecast"]["quantiles"][q], values, atol=1e-4), q
