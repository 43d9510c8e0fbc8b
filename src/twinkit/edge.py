"""Run an exported twin model on a device: onnxruntime and NumPy, no torch.

>>> # model = OnnxForecaster("p-007.onnx"); model.predict(recent_frame, [30, 60])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from twinkit.core.errors import IntegrityError, TwinkitError
from twinkit.core.forecast import Forecast
from twinkit.data.network_io import NetworkSpec, forecast_from_output, network_inputs

#: the ONNX metadata key holding the model's JSON config
ONNX_CONFIG_KEY = "twinkit_config"


class OnnxForecaster:
    """A forecaster exported with ``twinkit export``, run by onnxruntime."""

    def __init__(self, path: Path | str) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise TwinkitError("running an exported model needs onnxruntime") from None
        self.path = Path(path)
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise IntegrityError(f"{self.path} is not a loadable ONNX model: {exc}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if ONNX_CONFIG_KEY not in meta:
            raise IntegrityError(f"{self.path} carries no twinkit config; export it with twinkit")
        self.config = json.loads(meta[ONNX_CONFIG_KEY])
        self.spec = NetworkSpec.from_config(self.config)

    @property
    def target(self) -> str:
        return self.spec.target

    def predict(self, context: pd.DataFrame, horizons: Sequence[int]) -> Forecast:
        """The same forecast the twin's model gives from the same ``context``."""
        inputs = network_inputs(self.spec, context, horizons)
        (output,) = self.session.run(["quantiles"], {"past": inputs.past, "future": inputs.future})
        return forecast_from_output(self.spec, np.asarray(output), inputs)
