"""Importing the parts that need the training stack only when they are used.

A slim install (``pip install 'twinkit[service]'``, ``'twinkit[edge]'``) has no torch,
GPyTorch or scikit-learn. A package that re-exports such a part names it in
:func:`lazy_exports`, so importing the package works and using the part without its
libraries raises :class:`~twinkit.core.errors.MissingExtraError` saying what to install.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from types import ModuleType

from twinkit.core.errors import MissingExtraError

#: top-level modules of each extra, for the message when one is missing
EXTRA_OF = {
    "torch": "train",
    "gpytorch": "train",
    "linear_operator": "train",
    "sklearn": "train",
    "art": "train",
    "onnx": "train",
    "onnxscript": "train",
    "onnxruntime": "edge",
    "fastapi": "service",
    "simglucose": "sim",
    "psycopg": "postgres",
    "flwr": "federated",
    "ray": "federated",
}


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` for ``what`` (said in the error), or raise
    :class:`MissingExtraError` naming the extra that installs the missing library.

    >>> require("json", "reading JSON").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        missing = (err.name or "").split(".")[0]
        extra = EXTRA_OF.get(missing)
        if extra is None:
            raise
        raise MissingExtraError(
            f"{what} needs {missing}, which this install lacks: pip install 'twinkit[{extra}]'"
        ) from err


def lazy_exports(package: str, homes: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package`` that imports each name in ``homes`` from
    its module (relative to ``package``) on first use.

    >>> getattr_ = lazy_exports("twinkit.core", {"TwinkitError": "errors"})
    >>> getattr_("TwinkitError").__name__
    'TwinkitError'
    """

    def __getattr__(name: str) -> object:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(require(f"{package}.{home}", f"{package}.{name}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
