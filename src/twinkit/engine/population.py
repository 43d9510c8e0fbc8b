"""Population priors in the engine: train one model on many twins, register, load it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from twinkit.core.digest import signals_digest
from twinkit.core.errors import ForecastInputError, NotFoundError, TwinkitError
from twinkit.core.lazy import require
from twinkit.core.progress import ProgressFn
from twinkit.core.timewindow import TimeWindow
from twinkit.core.twin import Twin, TwinKind
from twinkit.data.frames import long_to_wide
from twinkit.engine.owners import OWNER_NAME_PATTERN
from twinkit.models.base import Forecaster, forecaster_class, is_neural
from twinkit.models.evaluate import holdout_split
from twinkit.store import ledger, model_versions, observations, twins
from twinkit.store.artifacts import ArtifactStore
from twinkit.store.db import Store
from twinkit.store.model_versions import PopulationVersion
from twinkit.store.timeutil import utc_now_iso

if TYPE_CHECKING:
    from twinkit.federated.strategies import Privacy

DEFAULT_POPULATION_MODEL = "gru"


@dataclass
class PopulationResult:
    version: int
    model: str
    twins: list[str]  # store keys
    skipped: dict[str, str]
    seconds: float
    sha256: str
    owners: list[str]  # whose twins it pools
    #: how a federated prior was trained (what its ledger entry records), else None
    federation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Federation:
    """Train a prior across sites instead of pooling their data: ``sites`` simulated
    sites (the twins dealt round-robin in key order) on Flower's simulation engine,
    ``rounds`` rounds of ``strategy`` (:data:`twinkit.federated.STRATEGIES`), each site
    training ``local_epochs`` epochs a round; ``options`` go to the strategy."""

    sites: int = 3
    strategy: str = "fedavg"
    rounds: int = 20
    local_epochs: int = 1
    options: dict[str, Any] | None = None
    #: site index (0-based) -> a :class:`twinkit.federated.attackers.Attacker`: sites
    #: that attack or fail, to measure a strategy or fault tolerance (a benchmark tool)
    attackers: Mapping[int, Any] | None = None
    #: central differential privacy per site (:class:`twinkit.federated.strategies.Privacy`)
    privacy: Privacy | None = None
    #: a population version (of the same model and layout) to go on training from: a
    #: checkpoint, so that forgetting someone who joined later retrains only from there
    start_from: int | None = None
    #: aggregate with SecAgg+: the server learns only the sum of the sites' updates
    secure: bool = False

    def settings(self) -> dict[str, Any]:
        """What re-running it takes (attackers aside: a benchmark tool), as JSON."""
        privacy = self.privacy
        return {
            "sites": self.sites,
            "strategy": self.strategy,
            "rounds": self.rounds,
            "local_epochs": self.local_epochs,
            "options": self.options,
            "privacy": None if privacy is None else dict(privacy.__dict__),
            "start_from": self.start_from,
            "secure": self.secure,
        }


def _pseudonym(seed: int, twins: Sequence[str]) -> str:
    """A site's name in the ledger: a hash of its twins, not the twins."""
    return "site-" + hashlib.sha256(f"{seed}:{','.join(twins)}".encode()).hexdigest()[:10]


def _federate(
    prior: Forecaster,
    histories: list[pd.DataFrame],
    used: list[str],
    federation: Federation,
    seed: int,
    checkpoint: Forecaster | None = None,
) -> tuple[Forecaster, dict[str, Any]]:
    """``prior`` trained by ``federation`` over ``histories`` (of the twins ``used``),
    from the weights of ``checkpoint`` if given; the record of the run for the ledger."""
    if not is_neural(prior):
        raise TwinkitError(f"{prior.name!r} cannot be federated; use a neural model (gru)")
    if not 2 <= federation.sites <= len(used):
        raise TwinkitError(
            f"{federation.sites} sites for {len(used)} twins: a federation needs at least two "
            "sites and a twin for each"
        )
    simulation = require("twinkit.federated.simulation", "a federated population model")
    from twinkit.federated.local import LocalTraining

    order = sorted(range(len(used)), key=lambda i: used[i])
    members = {s: [used[i] for i in order[s :: federation.sites]] for s in range(federation.sites)}
    names = {s: _pseudonym(seed, twins) for s, twins in members.items()}
    initial = None
    if checkpoint is not None:
        if checkpoint.name != prior.name:
            raise TwinkitError(
                f"population v{federation.start_from} is a {checkpoint.name!r}, not a "
                f"{prior.name!r}: a run goes on only from the same model"
            )
        initial = checkpoint.get_state()[0]
    result = simulation.federate(
        prior,
        {names[s]: [histories[used.index(t)] for t in twins] for s, twins in members.items()},
        strategy=federation.strategy,
        rounds=federation.rounds,
        local=LocalTraining(
            epochs=federation.local_epochs, lr=prior.lr, batch_size=prior.batch_size
        ),
        options=federation.options,
        seed=seed,
        attackers={names[s]: a for s, a in (federation.attackers or {}).items()},
        privacy=federation.privacy,
        initial=initial,
        secure=federation.secure,
    )
    record = result.record()
    record["continues"] = federation.start_from
    record["settings"] = {**federation.settings(), "params": prior.params()}
    record["attackers"] = {names[s]: a.kind for s, a in (federation.attackers or {}).items()}
    return result.model, record


def fit_population(
    store: Store,
    artifacts: ArtifactStore,
    model: str = DEFAULT_POPULATION_MODEL,
    twin_ids: Sequence[str] | None = None,
    target: str = "glucose",
    seed: int = 0,
    holdout_frac: float = 0.2,
    params: dict[str, Any] | None = None,
    meta: bool = False,
    window: TimeWindow | None = None,
    owner: str | None = None,
    progress: ProgressFn | None = None,
    federation: Federation | None = None,
) -> PopulationResult:
    """Train ``model`` on state twins' data and register it as the next population prior.

    Whose twins: those named (``twin_ids``, as ``id`` or ``owner/id``), else ``owner``'s
    (the one owner of the store's state twins if not given). A prior pools one owner's
    twins, unless every owner in it shares (:func:`pooled_owners`): an owner who shares
    gets a prior of all sharing owners' twins. The owners are recorded with it, and a fit
    starts only from a prior that :meth:`~PopulationVersion.serves` its twin's owner.

    Each twin contributes only the data before its own holdout split (the part
    ``twinkit fit`` trains on), so a twin's holdout scores stay honest when its personal
    model starts from this prior. ``meta`` refines the pooled model by Reptile, a better
    start for twins with about a day of data. ``progress`` hears of a neural model's
    training epochs. With ``federation`` the twins are split into sites and the model is
    trained across them with Flower instead (:class:`Federation`); the ledger records the
    rounds, the sites by pseudonym and the hash of every round's aggregate.
    """
    started = time.perf_counter()
    data = collect_histories(store, twin_ids, target, holdout_frac, window, owner)
    prior = forecaster_class(model)(target=target, seed=seed, **(params or {}))
    if is_neural(prior):
        prior.progress = progress  # the epochs of its training
    record = None
    if federation is not None:
        if meta:
            raise TwinkitError("a prior is either meta-learned or federated, not both")
        checkpoint = None
        if federation.start_from is not None:
            loaded = load_population(store, artifacts, federation.start_from)
            checkpoint = None if loaded is None else loaded[1]
        prior, record = _federate(prior, data.histories, data.used, federation, seed, checkpoint)
    elif meta:
        if not is_neural(prior):
            raise TwinkitError(f"{model!r} cannot be meta-learned; use a neural model (gru)")
        from twinkit.personalize.meta import meta_learn

        meta_learn(prior, data.histories)
    else:
        fit = getattr(prior, "fit_population", None)
        if fit is None:
            raise TwinkitError(f"{model!r} cannot be trained on many twins (no fit_population)")
        fit(data.histories)
    training = "federated" if record else "reptile" if meta else "pooled"
    return register_prior(
        store, artifacts, prior, data, training, record, holdout_frac, started=started
    )


@dataclass
class Histories:
    """The training parts of the twins a prior learns from (``used``, store keys), the
    twins left out and why, a digest of each one's readings, and whose twins they are."""

    histories: list[pd.DataFrame]
    used: list[str]
    skipped: dict[str, str]
    digests: list[str]
    owners: list[str]

    @property
    def data_hash(self) -> str:
        return hashlib.sha256("".join(sorted(self.digests)).encode()).hexdigest()


def collect_histories(
    store: Store,
    twin_ids: Sequence[str] | None,
    target: str,
    holdout_frac: float = 0.2,
    window: TimeWindow | None = None,
    owner: str | None = None,
) -> Histories:
    """The histories a prior of ``target`` learns from: the named twins' (``twin_ids``,
    as ``id`` or ``owner/id``), else ``owner``'s state twins (pooled with other owners'
    only if all of them share), each cut at its holdout split; twins with data outside
    ``window`` or too few readings are skipped, with why."""
    window = window or TimeWindow()
    with store.read() as conn:
        sharing = model_versions.sharing_owners(conn)
        if twin_ids:
            chosen = []
            for ref in twin_ids:
                found = twins.find(conn, ref)
                if found is None:
                    raise NotFoundError(f"no twin {ref!r}")
                chosen.append(found)
        else:
            state = [t for t in twins.list_twins(conn) if t.kind is TwinKind.STATE]
            owner = owner or _only_owner(state)
            pool = pooled_owners(owner, sharing)
            chosen = [t for t in state if t.owner in pool]
        owners = sorted({t.owner for t in chosen}) or ([owner] if owner else [])
        if len(owners) > 1 and not set(owners) <= sharing:
            alone = ", ".join(o for o in owners if o not in sharing)
            raise TwinkitError(
                f"these twins belong to several owners and {alone} do(es) not share: a "
                "population prior pools one owner's twins unless every owner in it shares "
                "(twinkit owner share-population)"
            )
        longs = {t.key: observations.read_signals(conn, t.key) for t in chosen}
    data = Histories([], [], {}, [], owners)
    for twin_id, long in longs.items():
        try:
            # One twin's bad data (times outside the window, written before it was
            # enforced) must not stop everyone's prior: that twin is skipped, with why.
            window.check_stored(twin_id, long["t"].to_numpy())
        except ForecastInputError as exc:
            data.skipped[twin_id] = str(exc)
            continue
        frame = long_to_wide(long)
        if target not in frame.columns or frame[target].notna().sum() < 50:
            data.skipped[twin_id] = f"fewer than 50 readings of {target!r}"
            continue
        split = holdout_split(frame, target, holdout_frac)
        data.histories.append(frame.loc[frame.index < split])
        data.used.append(twin_id)
        data.digests.append(signals_digest(long.assign(twin_id=twin_id)))
    if not data.histories:
        whose = f" of {', '.join(owners)}" if owners else ""
        raise ForecastInputError(
            f"no twin{whose} has enough {target!r} data for a population model"
        )
    return data


def register_prior(
    store: Store,
    artifacts: ArtifactStore,
    prior: Forecaster,
    data: Histories,
    training: str,
    record: dict[str, Any] | None = None,
    holdout_frac: float = 0.2,
    started: float | None = None,
) -> PopulationResult:
    """Save ``prior`` (trained on ``data`` by ``training``: pooled, reptile, federated)
    and register it as the next population version, with its ledger entry (``record``: a
    federated run's)."""
    started = time.perf_counter() if started is None else started
    tensors, config = prior.get_state()
    sha = artifacts.save(tensors, config)
    owners = data.owners
    with store.write() as conn:
        version = model_versions.next_population_version(conn)
        metrics = {
            "twins": float(len(data.used)),
            "seconds": round(time.perf_counter() - started, 2),
        }
        model_versions.insert_population(
            conn,
            PopulationVersion(
                version=version,
                model=prior.name,
                target=prior.target,
                sha256=sha,
                params=prior.params(),
                metrics=metrics,
                twins=data.used,
                data_hash=data.data_hash,
                created_at=utc_now_iso(),
                owners=owners,
            ),
        )
        ledger.append(
            conn,
            "population_registered",
            None,
            {
                "version": version,
                "model": prior.name,
                "sha256": sha,
                "twins": data.used,
                "owners": owners,
                "pooling": "owner" if len(owners) == 1 else "shared",
                "params": prior.params(),
                "data_hash": data.data_hash,
                # each twin's readings' digest: whether a retrain saw the same data (a
                # prior from a deployed federation names no twins: its digests are sites')
                "twin_digests": dict(zip(data.used, data.digests, strict=True))
                if data.used
                else {},
                "holdout_frac": holdout_frac,
                "training": training,
                **({"federation": record} if record else {}),
            },
        )
    return PopulationResult(
        version,
        prior.name,
        data.used,
        data.skipped,
        round(time.perf_counter() - started, 2),
        sha,
        owners,
        record,
    )


def pooled_owners(owner: str, sharing: set[str]) -> list[str]:
    """Whose twins ``owner``'s prior pools: ``owner``'s alone, or every sharing owner's if
    ``owner`` shares.

    >>> pooled_owners("a", {"b", "c"}), pooled_owners("b", {"b", "c"})
    (['a'], ['b', 'c'])
    """
    return sorted(sharing) if owner in sharing else [owner]


def _only_owner(state: list[Twin]) -> str:
    owners = sorted({t.owner for t in state})
    if len(owners) > 1:
        raise TwinkitError(
            f"the store's state twins belong to several owners ({', '.join(owners)}): a "
            "population prior is fitted per owner; name the owner (twinkit population fit "
            "--owner NAME)"
        )
    return owners[0] if owners else "local"


def load_population(
    store: Store,
    artifacts: ArtifactStore,
    version: int | None = None,
    owner: str | None = None,
) -> tuple[PopulationVersion, Forecaster] | None:
    """The newest (or a given) population model, checked against its sha256; None if none.
    With ``owner``: the newest that may serve that owner's twins (a version named that may
    not is :class:`NotFoundError`)."""
    with store.read() as conn:
        known = model_versions.populations(conn)
        if owner is not None:
            sharing = model_versions.sharing_owners(conn)
            known = [p for p in known if p.serves(owner, sharing)]
    if not known:
        if version is not None:
            raise NotFoundError(f"no population model v{version}")
        return None
    entry = known[-1] if version is None else next((p for p in known if p.version == version), None)
    if entry is None:
        raise NotFoundError(f"no population model v{version}")
    tensors, config = artifacts.load(entry.sha256)
    return entry, forecaster_class(config["model"]).from_state(tensors, config)


def share_population(store: Store, owner: str, share: bool = True) -> bool:
    """Let ``owner``'s twins be pooled with other sharing owners' for a shared population
    prior (or stop it: priors pooling the owner's twins with others' then serve no one).
    Recorded in the ledger; returns whether anything changed."""
    if not OWNER_NAME_PATTERN.match(owner):
        raise TwinkitError(f"invalid owner name {owner!r}")
    with store.write() as conn:
        changed = model_versions.set_sharing(conn, owner, share, utc_now_iso())
        if changed:
            ledger.append(conn, "population_sharing", None, {"owner": owner, "share": share})
    return changed


def sharing_owners(store: Store) -> list[str]:
    """The owners who pool their twins for shared population priors."""
    with store.read() as conn:
        return sorted(model_versions.sharing_owners(conn))


def populations(store: Store) -> list[PopulationVersion]:
    """Every population prior, oldest first."""
    with store.read() as conn:
        return model_versions.populations(conn)
