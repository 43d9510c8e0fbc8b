"""Model artifacts on disk: safetensors files named by their sha256, checked on every load."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from twinkit.core.digest import canonical_json, file_sha256
from twinkit.core.errors import IntegrityError

CONFIG_KEY = "twinkit_config"


class ArtifactStore:
    """Content-addressed: an artifact's file name is its hash, so it is written once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.safetensors"

    def save(self, tensors: dict[str, np.ndarray], config: dict[str, Any]) -> str:
        """Write the weights with their config in the file's metadata; return the sha256."""
        contiguous = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        data = st_save(contiguous, metadata={CONFIG_KEY: canonical_json(config)})
        digest = file_sha256(data)
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, target)  # atomic: a reader never sees half a file
        return digest

    def load(self, sha256: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Read and check an artifact; raise :class:`IntegrityError` if it changed."""
        target = self.path(sha256)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"model artifact {target} is missing") from None
        actual = file_sha256(data)
        if actual != sha256:
            raise IntegrityError(
                f"model artifact {target} was modified: its sha256 is {actual}, "
                f"the registry recorded {sha256}"
            )
        try:
            tensors = st_load(data)
            header_len = int.from_bytes(data[:8], "little")
            header = json.loads(data[8 : 8 + header_len])
            config = json.loads(header["__metadata__"][CONFIG_KEY])
        except (SafetensorError, KeyError, ValueError) as exc:
            raise IntegrityError(f"model artifact {target} cannot be read: {exc}") from None
        return tensors, config

    def delete(self, sha256: str) -> bool:
        """Remove an artifact's file (a model that must not exist any more); whether
        there was one."""
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def check(self, sha256: str) -> str | None:
        """None if the artifact is intact, else what is wrong."""
        try:
            self.load(sha256)
        except IntegrityError as exc:
            return str(exc)
        return None
