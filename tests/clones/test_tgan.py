"""The Turing GAN: boundary samples, perturbations within budget, matching to the pool."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from twinkit.clone.model import CloneModel
from twinkit.clone.query import Pool, QueryContext, margins
from twinkit.clone.tgan import LatentSpace, TuringGAN, TuringGANQuery, match_to_pool
from twinkit.models.torch_threads import seeded

CLASSES = ["a", "b", "c"]


def fitted_space(model: CloneModel, x: np.ndarray) -> LatentSpace:
    """A VAE over ``x`` as ``model`` standardises it, initialised and trained seeded."""
    with seeded(0):
        space = LatentSpace(x.shape[1])
    return space.fit(model.standardize(x), seed=0)


def mean_margin(steps: list[float]) -> float:
    return float(np.mean(steps))


@pytest.fixture(scope="module")
def blob_pool_x(make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """200 unlabeled blob items (the donor's pool)."""
    return make_blobs(200, 61)[0]


@pytest.fixture(scope="module")
def agreeing_gan(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
    blob_prior: CloneModel,
    blob_pool_x: np.ndarray,
) -> TuringGAN:
    """Trainee: the prior. Trainer proxy: another MLP trained on other people's (true)
    labels of other items, so the two mostly agree. Trained for 150 steps."""
    x, y = make_blobs(300, 62)
    trainer = CloneModel(CLASSES, 2, seed=1).fit(x, [CLASSES[i] for i in y])
    gan = TuringGAN(blob_prior, trainer, fitted_space(blob_prior, blob_pool_x), seed=0)
    gan.train(150)
    return gan


@pytest.fixture(scope="module")
def disagreeing_gan(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]], blob_prior: CloneModel
) -> tuple[TuringGAN, np.ndarray]:
    """Trainee: the prior. Trainer proxy: the prior updated without restraint (pull 0,
    30 epochs, as ``TuringGANQuery.trainer_proxy`` builds it) on 40 answers of a donor
    who says "b" for the "a" items of the upper half plane. Trained for 150 steps.
    Returned with its pool."""
    x, y = make_blobs(200, 63)
    said = np.asarray([CLASSES[i] for i in y], dtype=object)
    said[(y == 0) & (x[:, 1] > 0.0)] = "b"
    proxy = blob_prior.copy(seed=1).fit(
        x[:40], list(said[:40]), prior=blob_prior, pull=0.0, epochs=30
    )
    gan = TuringGAN(blob_prior, proxy, fitted_space(blob_prior, x), seed=0)
    gan.train(150)
    return gan, x


def test_training_lowers_the_trainees_margin(agreeing_gan: TuringGAN) -> None:
    """As the generator learns, its samples sit nearer the trainee's decision boundary:
    the trainee's mean margin over the last 10 steps is well below the first 10."""
    history = [step.trainee_margin for step in agreeing_gan.history]
    assert len(history) == 150
    assert [step.step for step in agreeing_gan.history] == list(range(150))
    assert mean_margin(history[-10:]) < mean_margin(history[:10]) - 0.2


def test_training_lowers_the_margin_against_a_proxy_that_disagrees(
    disagreeing_gan: tuple[TuringGAN, np.ndarray],
) -> None:
    """The T-GAN's real setting: the trainer proxy has learnt the donor's answers, the
    trainee not yet. The generator is rewarded for disagreement *and* a small trainee
    margin; its samples must still move toward the trainee's boundary (last 10 steps'
    mean margin below the first 10's), not away from it."""
    gan, _ = disagreeing_gan
    history = [step.trainee_margin for step in gan.history]
    assert np.all(np.isfinite(history))
    assert mean_margin(history[-10:]) < mean_margin(history[:10])


def test_generated_samples_stay_near_the_data(
    disagreeing_gan: tuple[TuringGAN, np.ndarray],
) -> None:
    """Samples come from the VAE trained on the pool, with its prior as the realism term:
    every generated sample lies within the pool's range widened by one standard
    deviation per feature (on the data manifold, not extrapolated far outside it)."""
    gan, pool_x = disagreeing_gan
    samples = gan.generate(64)
    low = pool_x.min(axis=0) - pool_x.std(axis=0)
    high = pool_x.max(axis=0) + pool_x.std(axis=0)
    assert np.all(np.isfinite(samples))
    assert np.all((samples >= low) & (samples <= high))


def test_generate_orders_samples_most_ambiguous_first(agreeing_gan: TuringGAN) -> None:
    """``generate(n)`` gives ``n`` samples in feature units, sorted by the trainee's
    margin (smallest first), and the same samples on a second call (seeded)."""
    samples = agreeing_gan.generate(40)
    assert samples.shape == (40, 2)
    gap = margins(agreeing_gan.trainee.predict_proba(samples))
    assert np.all(np.diff(gap) >= -1e-6)
    assert np.array_equal(agreeing_gan.generate(40), samples)


@pytest.mark.parametrize("budget", [0.1, 0.5, 1.0])
def test_perturb_stays_within_the_l2_budget(
    agreeing_gan: TuringGAN, blob_pool_x: np.ndarray, budget: float
) -> None:
    """Each perturbed sample moves at most ``budget * sqrt(n_features)`` in the
    trainee's standardised units, and the pushed samples are nearer the boundary."""
    x = blob_pool_x[:50]
    out = agreeing_gan.perturb(x, budget=budget)
    trainee = agreeing_gan.trainee
    moved = np.linalg.norm(
        trainee.standardize(out).numpy() - trainee.standardize(x).numpy(), axis=1
    )
    assert out.shape == x.shape
    assert np.all(moved <= budget * np.sqrt(2) * (1 + 1e-5))
    before = margins(trainee.predict_proba(x)).mean()
    assert margins(trainee.predict_proba(out)).mean() < before


def digit_gan(digits: tuple[np.ndarray, np.ndarray], digit_prior: CloneModel) -> TuringGAN:
    """On the 8x8 digits: trainee the prior, proxy the prior updated without restraint on
    20 pool answers of a donor who says 7 for every 1; VAE on the 200-item pool."""
    x, y = digits
    pool_x = x[800:1000]
    said = ["7" if label == "1" else str(label) for label in y[800:820]]
    proxy = digit_prior.copy(seed=1).fit(pool_x[:20], said, prior=digit_prior, pull=0.0, epochs=30)
    return TuringGAN(digit_prior, proxy, fitted_space(digit_prior, pool_x), seed=0)


def test_perturbed_digits_stay_in_the_range_of_the_data(
    digits: tuple[np.ndarray, np.ndarray], digit_prior: CloneModel
) -> None:
    """Given the data's range (``bounds``, as the tgan strategy passes the pool's),
    ``perturb`` keeps samples inside it as well as within budget: perturbed digits keep
    every pixel within the pixels' range over the data (0..16 at most), and within the
    L2 budget."""
    x, _ = digits
    gan = digit_gan(digits, digit_prior)
    gan.bounds = (x.min(axis=0), x.max(axis=0))
    out = gan.perturb(x[800:820], budget=0.5)
    moved = np.linalg.norm(
        digit_prior.standardize(out).numpy() - digit_prior.standardize(x[800:820]).numpy(),
        axis=1,
    )
    assert np.all(moved <= 0.5 * 8.0 * (1 + 1e-5))
    assert np.all(out >= x.min(axis=0) - 1e-9)
    assert np.all(out <= x.max(axis=0) + 1e-9)


def test_training_stays_finite_on_digits(
    digits: tuple[np.ndarray, np.ndarray], digit_prior: CloneModel
) -> None:
    """On the 64-feature digits, 150 generator steps against a proxy that has learnt a
    donor's 1 -> 7 habit keep every recorded margin and divergence finite, and the
    generated samples are finite (so the pool can be searched for them)."""
    gan = digit_gan(digits, digit_prior)
    gan.train(150)
    assert all(np.isfinite(s.trainee_margin) for s in gan.history)
    assert all(np.isfinite(s.disagreement) for s in gan.history)
    assert np.all(np.isfinite(gan.generate(32)))


def test_match_to_pool_returns_unasked_distinct_rows(
    blob_prior: CloneModel, blob_pool_x: np.ndarray
) -> None:
    """Each sample is replaced by the nearest pool item not asked and not yet matched:
    at most ``k`` rows, all unasked, none twice; a sample equal to a free item matches
    it exactly, and two identical samples match two different items."""
    # Prepare: every even row asked already
    pool = Pool(blob_pool_x, [f"p{i}" for i in range(len(blob_pool_x))])
    pool.mark(np.arange(0, len(blob_pool_x), 2))
    samples = np.vstack([blob_pool_x[[1, 1, 3]], blob_pool_x[:20] + 0.01])

    # Execute
    rows = match_to_pool(samples, pool, blob_prior, k=10)

    # Assert
    assert len(rows) == 10
    assert len(set(rows.tolist())) == 10
    assert not pool.asked[rows].any()
    assert rows[0] == 1
    assert rows[1] != 1
    assert rows[2] == 3


def test_match_to_pool_caps_at_the_free_items(
    blob_prior: CloneModel, blob_pool_x: np.ndarray
) -> None:
    """Fewer free items than ``k``: every free item once and nothing more; an exhausted
    pool or no samples gives nothing."""
    pool = Pool(blob_pool_x[:6], [f"p{i}" for i in range(6)])
    pool.mark(np.array([0, 1, 2]))
    rows = match_to_pool(blob_pool_x[:30], pool, blob_prior, k=10)
    assert sorted(rows.tolist()) == [3, 4, 5]
    assert len(match_to_pool(np.zeros((0, 2)), pool, blob_prior, k=10)) == 0
    pool.mark(np.array([3, 4, 5]))
    assert len(match_to_pool(blob_pool_x[:5], pool, blob_prior, k=10)) == 0


def test_match_to_pool_with_k_zero_returns_nothing(
    blob_prior: CloneModel, blob_pool_x: np.ndarray
) -> None:
    """``k`` is a cap: asking for 0 rows returns none (not one row per sample)."""
    pool = Pool(blob_pool_x, [f"p{i}" for i in range(len(blob_pool_x))])
    assert len(match_to_pool(blob_pool_x[:5], pool, blob_prior, k=0)) == 0


def test_tgan_query_is_reproducible_for_a_fixed_seed(
    blob_prior: CloneModel, blob_pool_x: np.ndarray
) -> None:
    """Two T-GAN strategies with the same seed pick the same rows from the same context,
    whatever state torch's global random generator happens to be in (its VAE, generator
    and training are all meant to be seeded)."""
    picks = []
    for global_seed in (1, 2):
        pool = Pool(blob_pool_x, [f"p{i}" for i in range(len(blob_pool_x))])
        context = QueryContext(
            pool, blob_prior, blob_prior, np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
        )
        query = TuringGANQuery(seed=0, steps=30)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(global_seed)
            picks.append(query.select(context, 10, np.random.default_rng(0)).tolist())
    assert picks[0] == picks[1]
