"""Loading a decision twin's registered clone, and the population prior it was
personalised from, from their checked artifacts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twinkit.core.errors import IntegrityError, TwinkitError
from twinkit.core.lazy import require
from twinkit.store.model_versions import ModelVersion

if TYPE_CHECKING:
    from twinkit.clone.model import CloneModel
    from twinkit.engine.context import EngineContext

#: the registry's name of a decision twin's model
CLONE = "clone"


def _clone_class() -> type[CloneModel]:
    """:class:`CloneModel`, which needs the training stack (torch)."""
    cls: type[CloneModel] = require("twinkit.clone.model", "a decision twin's clone").CloneModel
    return cls


def load_clone(ctx: EngineContext, version: ModelVersion) -> CloneModel:
    """The clone of a registry version; its artifact's sha256 is checked."""
    tensors, config = ctx.artifacts.load(version.sha256)
    if config.get("kind") != CLONE:
        raise TwinkitError(f"v{version.version} is a {version.model} model, not a clone")
    return _clone_class().from_state(tensors, config)


def load_prior(ctx: EngineContext, version: ModelVersion) -> CloneModel | None:
    """The population prior a clone version was personalised from (checked), or None if
    it is not recorded or does not load."""
    sha = version.params.get("prior_sha256")
    if not isinstance(sha, str):
        return None
    cls = _clone_class()
    try:
        tensors, config = ctx.artifacts.load(sha)
        return cls.from_state(tensors, config)
    except (IntegrityError, TwinkitError, ValueError, KeyError):
        return None
