"""Writing a fitted network as ONNX for devices (read back by :mod:`twinkit.edge`)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from twinkit.core.digest import canonical_json
from twinkit.core.errors import TwinkitError

#: the ONNX metadata key of the model's config (the same key twinkit.edge reads)
ONNX_CONFIG_KEY = "twinkit_config"


def export_network(
    network: nn.Module,
    example: tuple[torch.Tensor, torch.Tensor],
    config: dict[str, Any],
    target: Path,
) -> Path:
    """Write ``network`` (inputs ``past`` and ``future``, output ``quantiles``, any batch
    size along the first dimension of ``example``'s tensors) to ``target`` as ONNX, with
    ``config`` in its metadata, by torch's torch.export-based exporter (TorchScript's is
    deprecated since PyTorch 2.9)."""
    try:
        import onnx
    except ImportError:
        raise TwinkitError(
            "ONNX export needs the edge extra: pip install 'twinkit[edge]'"
        ) from None
    batch = torch.export.Dim("batch")
    # Its progress lines go to stdout and its notes to torch's log (e.g. "torchvision is
    # not installed"): a CLI command's output must stay its own.
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            torch.onnx.export(
                network,
                example,
                str(target),
                input_names=["past", "future"],
                output_names=["quantiles"],
                dynamic_shapes=({0: batch}, {0: batch}),
                opset_version=18,
                dynamo=True,
                external_data=False,
            )
    finally:
        quiet.setLevel(level)
    exported = onnx.load(str(target))
    entry = exported.metadata_props.add()
    entry.key = ONNX_CONFIG_KEY
    entry.value = canonical_json(config)
    onnx.save(exported, str(target))
    return target
