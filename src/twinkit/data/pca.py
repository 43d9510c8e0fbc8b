"""Optional stage: compress many covariate channels into a few principal components."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from sklearn.decomposition import PCA

from twinkit.core.errors import ForecastInputError
from twinkit.data.windows import Grid


class CovariatePCA:
    """Fit on grids' covariates (standardised), replace them by ``n_components`` scores.

    >>> import pandas as pd
    >>> idx = pd.date_range("2026-01-01", periods=50, freq="5min", tz="UTC")
    >>> rng = np.random.default_rng(0)
    >>> base = rng.normal(size=(50, 1))
    >>> grid = Grid(idx, 5.0, np.zeros(50), np.hstack([base, 2 * base, -base]), ("a", "b", "c"))
    >>> pca = CovariatePCA(1, seed=0).fit([grid])
    >>> round(pca.explained_variance_ratio, 3)
    1.0
    >>> pca.transform(grid).covariate_names
    ('pc1',)
    """

    def __init__(self, n_components: int, seed: int = 0) -> None:
        if n_components < 1:
            raise ForecastInputError(f"n_components must be at least 1, got {n_components}")
        self.n_components = n_components
        self.seed = seed
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.components: np.ndarray | None = None  # (k x C)
        self.explained_variance_ratio = 0.0
        self.input_names: tuple[str, ...] = ()

    def fit(self, grids: list[Grid]) -> CovariatePCA:
        names = grids[0].covariate_names
        if any(g.covariate_names != names for g in grids):
            raise ForecastInputError("every grid must carry the same covariates for PCA")
        if self.n_components > len(names):
            raise ForecastInputError(
                f"{self.n_components} components from {len(names)} covariates is not a reduction"
            )
        data = np.concatenate([g.covariates for g in grids])
        self.mean = data.mean(axis=0)
        std = data.std(axis=0)
        self.scale = np.where(std > 0, std, 1.0)
        pca = PCA(n_components=self.n_components, random_state=self.seed)
        pca.fit((data - self.mean) / self.scale)
        self.components = np.asarray(pca.components_, dtype=np.float64)
        self.explained_variance_ratio = float(np.sum(pca.explained_variance_ratio_))
        self.input_names = names
        return self

    def transform(self, grid: Grid) -> Grid:
        if self.components is None or self.mean is None or self.scale is None:
            raise ForecastInputError("CovariatePCA: call fit() before transform()")
        if grid.covariate_names != self.input_names:
            raise ForecastInputError(
                f"covariates {grid.covariate_names} differ from those fitted {self.input_names}"
            )
        scores = ((grid.covariates - self.mean) / self.scale) @ self.components.T
        names = tuple(f"pc{i + 1}" for i in range(self.n_components))
        return replace(grid, covariates=scores, covariate_names=names)

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if self.components is None or self.mean is None or self.scale is None:
            raise ForecastInputError("CovariatePCA: nothing to save before fit()")
        tensors = {"mean": self.mean, "scale": self.scale, "components": self.components}
        return tensors, {
            "n_components": self.n_components,
            "seed": self.seed,
            "input_names": list(self.input_names),
            "explained_variance_ratio": self.explained_variance_ratio,
        }

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], config: dict[str, Any]) -> CovariatePCA:
        pca = cls(int(config["n_components"]), int(config["seed"]))
        pca.mean, pca.scale = tensors["mean"], tensors["scale"]
        pca.components = tensors["components"]
        pca.input_names = tuple(config["input_names"])
        pca.explained_variance_ratio = float(config["explained_variance_ratio"])
        return pca
