"""The Turing GAN: a generator that finds the samples worth asking the donor about.

Three players. The **trainer** is the donor (or, for immunity, a supervisor), who labels
samples; the generator cannot differentiate through a person, so it plays against a
differentiable proxy of the trainer: the population prior updated, without restraint,
on the donor's labels so far. The **trainee** is the clone. The **generator** proposes
samples and is rewarded where the trainee fails to copy the trainer (the total
variation distance between the proxy's probabilities and the trainee's), near the
trainee's decision boundary (a small top-1 minus top-2 margin), and on the data
manifold: it works in the latent space of a variational autoencoder trained on the
unlabeled items, with the VAE's standard-normal prior as the realism term, and its
samples are that VAE's decodings.

It makes both kinds of vaccine: synthetic samples from the boundary (:meth:`generate`)
and real samples pushed toward it within a budget (:meth:`perturb`). In pool mode
(the donor can only label recorded items) :func:`match_to_pool` replaces each generated
sample by the nearest item not asked yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from twinkit.clone.model import CloneModel
from twinkit.clone.query import Pool, QueryContext, QueryStrategy, margins
from twinkit.models.torch_threads import one_thread, seeded


class LatentSpace(nn.Module):
    """A small VAE over standardised features: the manifold generated samples stay on."""

    def __init__(self, n_features: int, latent: int = 8, hidden: int = 128) -> None:
        super().__init__()
        self.latent = latent
        self.encoder = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent)
        self.log_var = nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, n_features)
        )

    def encode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(z)
        return self.mu(h), self.log_var(h)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.decoder(code)
        return out

    def fit(
        self, z: torch.Tensor, steps: int = 400, batch: int = 128, seed: int = 0
    ) -> LatentSpace:
        """Train on standardised unlabeled features (ELBO with a Gaussian decoder)."""
        rng = np.random.default_rng(seed)
        with seeded(seed):
            optimizer = torch.optim.Adam(self.parameters(), lr=2e-3)
            for _ in range(steps):
                rows = torch.as_tensor(rng.integers(0, len(z), min(batch, len(z))))
                x = z[rows]
                mu, log_var = self.encode(x)
                code = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
                recon = ((self.decode(code) - x) ** 2).sum(dim=1).mean()
                kl = (-0.5 * (1 + log_var - mu**2 - log_var.exp()).sum(dim=1)).mean()
                loss = recon + kl
                optimizer.zero_grad()
                torch.autograd.backward(loss)
                optimizer.step()
        self.eval()
        return self


class _Generator(nn.Module):
    """Noise -> latent code, as noise plus a learned shift (samples stay diverse)."""

    def __init__(self, latent: int, hidden: int = 64) -> None:
        super().__init__()
        self.shift = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, latent))

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = noise + self.shift(noise)
        return out


@contextmanager
def _frozen(*modules: nn.Module) -> Iterator[None]:
    """Gradients flow through these modules' inputs but never into their weights."""
    flags = [[p.requires_grad for p in m.parameters()] for m in modules]
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(False)
    try:
        yield
    finally:
        for m, saved in zip(modules, flags, strict=True):
            for p, flag in zip(m.parameters(), saved, strict=True):
                p.requires_grad_(flag)


def _soft_margin(logits: torch.Tensor) -> torch.Tensor:
    top2 = torch.topk(torch.softmax(logits, dim=1), 2, dim=1).values
    return top2[:, 0] - top2[:, 1]


@dataclass
class Step:
    """One generator update: the trainee's mean margin and the proxy-trainee divergence
    on that batch of generated samples."""

    step: int
    trainee_margin: float
    disagreement: float


class TuringGAN:
    """Generator versus trainee, with the trainer proxy as the judge of what to copy."""

    def __init__(
        self,
        trainee: CloneModel,
        trainer: CloneModel,
        space: LatentSpace,
        *,
        fool: float = 1.0,
        border: float = 1.0,
        realism: float = 0.1,
        bounds: tuple[np.ndarray, np.ndarray] | None = None,
        seed: int = 0,
    ) -> None:
        if trainee.n_features != trainer.n_features:
            raise ValueError("the trainee and the trainer proxy must see the same features")
        self.trainee, self.trainer, self.space = trainee, trainer, space
        # The range each feature takes in the data (in its own units); perturbed samples
        # are kept inside it.
        self.bounds = bounds
        self.weights = (fool, border, realism)
        self.seed = seed
        with seeded(seed):
            self.generator = _Generator(space.latent)
        self.history: list[Step] = []

    def _objective(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per sample: divergence to be maximised, trainee margin to be minimised."""
        student = self.trainee.logits_of(z)
        teacher = torch.softmax(self.trainer.logits_of(z), dim=1)
        # Total variation: bounded in [0, 1], so the generator cannot run off to infinity
        # chasing an ever larger divergence.
        divergence = 0.5 * (teacher - torch.softmax(student, dim=1)).abs().sum(dim=1)
        return divergence, _soft_margin(student), student

    def train(self, steps: int = 150, batch: int = 128) -> list[Step]:
        """Update the generator; record the trainee's margin as it goes."""
        fool, border, realism = self.weights
        with seeded(self.seed + len(self.history)):
            optimizer = torch.optim.Adam(self.generator.parameters(), lr=5e-3)
            with _frozen(self.trainee.network, self.trainer.network, self.space):
                for _ in range(steps):
                    noise = torch.randn(batch, self.space.latent)
                    code = self.generator(noise)
                    divergence, margin, _ = self._objective(self.space.decode(code))
                    prior = (code**2).mean(dim=1)
                    loss = (-fool * divergence + border * margin + realism * prior).mean()
                    optimizer.zero_grad()
                    torch.autograd.backward(loss)
                    optimizer.step()
                    self.history.append(
                        Step(
                            len(self.history),
                            float(margin.detach().mean()),
                            float(divergence.detach().mean()),
                        )
                    )
        return self.history

    def generate(self, n: int) -> np.ndarray:
        """``n`` synthetic samples (in the features' own units), most ambiguous first."""
        with seeded(self.seed + 7919), torch.no_grad():
            z = self.space.decode(self.generator(torch.randn(n, self.space.latent)))
            _, margin, _ = self._objective(z)
        order = torch.argsort(margin).numpy()
        return self._unstandardize(z.numpy()[order])

    def perturb(self, x: np.ndarray, budget: float = 1.0, steps: int = 20) -> np.ndarray:
        """Real samples pushed toward the trainee's boundary (and the proxy's
        disagreement), each moved at most ``budget`` (L2, in standard deviations per
        feature, scaled by the square root of the width) and, given ``bounds``, kept
        inside the range the features take in the data."""
        fool, border, _ = self.weights
        start = self.trainee.standardize(x)
        radius = budget * np.sqrt(start.shape[1])
        delta = torch.zeros_like(start, requires_grad=True)
        with one_thread(), _frozen(self.trainee.network, self.trainer.network):
            for _ in range(steps):
                divergence, margin, _ = self._objective(start + delta)
                loss = (-fool * divergence + border * margin).sum()
                (grad,) = torch.autograd.grad(loss, delta)
                with torch.no_grad():
                    norm = grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
                    delta -= (radius / 4) * grad / norm
                    size = delta.norm(dim=1, keepdim=True).clamp_min(1e-12)
                    delta *= torch.clamp(radius / size, max=1.0)
        moved = self._unstandardize((start + delta).detach().numpy())
        if self.bounds is not None:
            moved = np.clip(moved, self.bounds[0], self.bounds[1])
        return moved

    def _unstandardize(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z * self.trainee.scale + self.trainee.mean, dtype=np.float64)


def match_to_pool(samples: np.ndarray, pool: Pool, model: CloneModel, k: int) -> np.ndarray:
    """Pool mode: each sample (in order) replaced by the nearest pool item not asked yet
    and not already matched; at most ``k`` rows, each unasked, none twice."""
    free = pool.unasked()
    samples = samples[np.isfinite(samples).all(axis=1)]
    if len(free) == 0 or len(samples) == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    a = model.standardize(samples).numpy().astype(np.float64)
    b = model.standardize(pool.features[free]).numpy().astype(np.float64)
    distance = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    taken: list[int] = []
    used = np.zeros(len(free), dtype=bool)
    for row in distance:
        row = np.where(used, np.inf, row)
        best = int(np.argmin(row))
        if not np.isfinite(row[best]):
            break
        used[best] = True
        taken.append(int(free[best]))
        if len(taken) == k:
            break
    return np.asarray(taken, dtype=np.int64)


class TuringGANQuery(QueryStrategy):
    """Ask about the pool items nearest to what the Turing GAN generates: half from
    synthetic boundary samples, half from real items perturbed toward the boundary."""

    name = "tgan"

    def __init__(self, seed: int = 0, steps: int = 150, proxy_epochs: int = 30) -> None:
        self.seed = seed
        self.steps = steps
        self.proxy_epochs = proxy_epochs
        self._spaces: dict[int, tuple[Pool, LatentSpace]] = {}
        self.last: TuringGAN | None = None

    def space_for(self, pool: Pool, model: CloneModel) -> LatentSpace:
        """One VAE per pool, trained on all its items (labels are not needed)."""
        key = id(pool)
        if key not in self._spaces or self._spaces[key][0] is not pool:
            z = model.standardize(pool.features)
            with seeded(self.seed):  # the VAE's first weights, too, come from the seed
                space = LatentSpace(z.shape[1])
            self._spaces[key] = (pool, space.fit(z, seed=self.seed))
        return self._spaces[key][1]

    def trainer_proxy(self, context: QueryContext) -> CloneModel:
        """The population model updated on the donor's labels so far, unrestrained."""
        population = context.population
        if len(context.labeled_y) == 0:
            return population
        proxy = population.copy(seed=self.seed)
        labels = [population.classes[i] for i in context.labeled_y]
        return proxy.fit(
            context.labeled_x, labels, prior=population, pull=0.0, epochs=self.proxy_epochs
        )

    def select(self, context: QueryContext, k: int, rng: np.random.Generator) -> np.ndarray:
        pool = context.pool
        free = pool.unasked()
        if len(free) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64)
        gan = TuringGAN(
            context.clone,
            self.trainer_proxy(context),
            self.space_for(pool, context.population),
            bounds=(pool.features.min(axis=0), pool.features.max(axis=0)),
            seed=int(rng.integers(0, 2**31 - 1)),
        )
        gan.train(self.steps)
        self.last = gan
        synthetic = gan.generate(max(4 * k, 32))
        # The real items to perturb: the clone's least certain unasked ones.
        near = free[np.argsort(margins(context.clone.predict_proba(pool.features[free])))[: 2 * k]]
        perturbed = gan.perturb(pool.features[near])
        # Interleave the two kinds so both reach the donor.
        mixed = np.empty((len(synthetic) + len(perturbed), synthetic.shape[1]))
        n = min(len(synthetic), len(perturbed))
        mixed[: 2 * n : 2], mixed[1 : 2 * n : 2] = synthetic[:n], perturbed[:n]
        mixed[2 * n :] = synthetic[n:] if len(synthetic) > n else perturbed[n:]
        return match_to_pool(mixed, pool, context.clone, k)
