"""Exporting a twin's model to ONNX, for devices that run it without torch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from twinkit.core.errors import TwinkitError
from twinkit.engine import reads
from twinkit.models.base import is_neural
from twinkit.models.ensemble import Ensemble

if TYPE_CHECKING:
    from twinkit.engine.context import EngineContext


def export_onnx(
    ctx: EngineContext, twin_id: str, path: Path | str, version: int | None = None
) -> Path:
    """Export the serving (or a given) version's network to ONNX for edge devices.

    A neural model exports as it is; a recalibrated single neural model (what ``fit``
    serves when a network wins) exports with its conformal offsets, so the device
    gives the served intervals. Anything else cannot run as one network.
    """
    chosen = reads.version(ctx, twin_id, version)
    model = reads.load_model(ctx, chosen)
    calibration = None
    if isinstance(model, Ensemble) and len(model.members) == 1:
        calibration = model.residual_quantiles
        model = model.members[0]
    if not is_neural(model):
        members = getattr(model, "members_names", None)
        raise TwinkitError(
            f"twin {twin_id!r} v{chosen.version} is {chosen.model}"
            f"{' of ' + ', '.join(members) if members else ''}: only a single neural "
            "network (gru, transformer) exports to ONNX; fit one with --model gru"
        )
    return model.export_onnx(path, calibration=calibration)
