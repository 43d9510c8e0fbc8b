"""What the contract checks share: explicit failures, expected errors, a save/load trip."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from twinkit.core.digest import canonical_json


def expect(condition: bool, message: str) -> None:
    """An explicit AssertionError (an ``assert`` vanishes under ``python -O``)."""
    if not condition:
        raise AssertionError(message)


def raises(error: type[Exception], action: Callable[[], object], what: str) -> None:
    """``action()`` must raise ``error`` with a message; ``what`` says what was tried."""
    try:
        action()
    except error as exc:
        expect(bool(str(exc).strip()), f"{what}: {type(exc).__name__} without a message")
        return
    except Exception as exc:  # the wrong error is what the check reports
        raise AssertionError(
            f"{what}: raised {type(exc).__name__} ({exc}), not a {error.__name__}"
        ) from exc
    raise AssertionError(f"{what}: no error, expected a {error.__name__}")


def round_trip(
    tensors: dict[str, np.ndarray], config: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any], bytes]:
    """A state through what an artifact is (safetensors weights, the config as canonical
    JSON in its metadata, as :class:`twinkit.store.artifacts.ArtifactStore` writes it):
    the weights and config read back, and the bytes."""
    text = canonical_json(config)
    data = st_save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, {"config": text})
    loaded: dict[str, Any] = json.loads(text)
    return st_load(data), loaded, data
