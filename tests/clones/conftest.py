"""Shared data for the clone tests: seeded Gaussian blobs, the 8x8 digits, trained priors.

Tests run with ``--import-mode=importlib``, so the data makers are served as fixtures
(``make_blobs``); annotate them in a test's signature with the alias spelled out:
``Callable[[int, int], tuple[np.ndarray, np.ndarray]]``. The priors are built once per
session and shared: read them, never train them further (``personalize`` and
``learn_clone`` copy before training).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from twinkit.clone.model import CloneModel

#: the three blob classes, and where their centres sit (2-D, spread 0.8)
BLOB_CLASSES = ["a", "b", "c"]
BLOB_CENTERS = np.array([[0.0, 0.0], [2.5, 0.0], [1.25, 2.2]])
DIGIT_CLASSES = [str(i) for i in range(10)]

BlobsFn = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of three 2-D Gaussian blobs: features (n, 2), class indices (n,)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = BLOB_CENTERS[y] + rng.normal(0.0, 0.8, (n, 2))
    return x, y


def names(y: np.ndarray, classes: list[str]) -> list[str]:
    """Class indices as class names."""
    return [classes[int(i)] for i in y]


@pytest.fixture
def pinned_torch() -> Iterator[None]:
    """torch's global random generator seeded (0) for the test, then restored: for code
    that draws from it (the T-GAN strategy's VAE initialisation does)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


@pytest.fixture(scope="session")
def make_blobs() -> BlobsFn:
    """``make_blobs(n, seed)``: seeded blobs, features (n, 2) and class indices (n,)."""
    return blobs


@pytest.fixture(scope="session")
def blob_prior() -> CloneModel:
    """A population prior: an MLP trained on 400 blob points with their true classes."""
    x, y = blobs(400, seed=0)
    return CloneModel(BLOB_CLASSES, 2, seed=0).fit(x, names(y, BLOB_CLASSES))


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1,797 8x8 digits: pixels (0..16) as 64 features, labels as strings."""
    data = load_digits()
    return np.asarray(data.data, dtype=np.float64), np.asarray([str(v) for v in data.target])


@pytest.fixture(scope="session")
def digit_prior(digits: tuple[np.ndarray, np.ndarray]) -> CloneModel:
    """A population prior on the digits: an MLP trained on the first 800 with gold labels."""
    x, y = digits
    return CloneModel(DIGIT_CLASSES, 64, seed=0).fit(x[:800], list(y[:800]))
