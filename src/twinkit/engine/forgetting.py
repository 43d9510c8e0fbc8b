"""Forgetting a person in the population priors (the right to erasure): every prior that
learned from the twin is retrained without it, from the last checkpoint before the twin
joined, and the old ones are withdrawn and their weights deleted.

The guarantee: a prior that continued from an earlier one (``Federation.start_from``)
went through the earlier one's rounds first. If the twin joined in the continuation, the
rounds before it never saw the twin's data, so training again from that checkpoint
without the twin gives the prior a run without the twin would have given, while
retraining only the rounds since. A twin present from the first run costs a retrain of
the whole chain. Each replacement runs with the recorded settings and seed over the other
twins' current training data; the replacement's ledger entry says whether their data are
still the ones the withdrawn prior learned from (``same_data``): then the replacement is
exactly the prior trained without the person (up to Flower summing replies in arrival
order, the last bits of float32).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from twinkit.core.errors import NotFoundError, TwinkitError
from twinkit.core.timewindow import TimeWindow
from twinkit.engine.population import Federation, fit_population
from twinkit.store import ledger, model_versions, twins
from twinkit.store.artifacts import ArtifactStore
from twinkit.store.db import Store
from twinkit.store.model_versions import PopulationVersion
from twinkit.store.timeutil import utc_now_iso


@dataclass
class ForgetResult:
    """Which priors were retrained without the twin (old version -> new) and what it
    cost: rounds retrained against the rounds of retraining every affected prior's whole
    chain from scratch (a pooled prior counts as one round)."""

    replaced: dict[int, int] = field(default_factory=dict)
    #: priors trained on the deployment runtime, withdrawn without a replacement
    withdrawn: list[int] = field(default_factory=list)
    rounds_retrained: int = 0
    rounds_full: int = 0
    seconds: float = 0.0

    @property
    def cost(self) -> float:
        """The share of a full retrain it took."""
        return self.rounds_retrained / self.rounds_full if self.rounds_full else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "cost": round(self.cost, 4)}


def _registrations(store: Store) -> dict[int, dict[str, Any]]:
    with store.read() as conn:
        entries = ledger.store_events(conn, ["population_registered"])
    return {int(e.payload["version"]): e.payload for e in entries}


def _key(store: Store, live: list[PopulationVersion], ref: str) -> str:
    """The store key of the twin ``ref`` names: found, or (deleted) named in a prior."""
    with store.read() as conn:
        found = twins.find(conn, ref)
    if found is not None:
        return found.key
    known = {t for p in live for t in p.twins}
    if ref in known:
        return ref
    matches = sorted(t for t in known if t.split("/", 1)[-1] == ref)
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise TwinkitError(f"{ref!r} names several twins {matches}; say owner/id")
    raise NotFoundError(f"no twin {ref!r}, and no population prior learned from one")


def _rounds(payload: dict[str, Any]) -> int:
    return int(payload.get("federation", {}).get("rounds", 1))


#: why a prior trained on the deployment runtime is withdrawn rather than retrained
DEPLOYED_REASON = (
    "learned on the deployment runtime from a twin that was forgotten: its other sites hold "
    "the rest of its data, so a new federated run replaces it"
)


def _withdraw(
    store: Store,
    artifacts: ArtifactStore,
    old: PopulationVersion,
    replaced_by: int | None,
    entry: dict[str, Any],
    live: list[PopulationVersion],
) -> None:
    """Withdraw ``old`` (replaced by ``replaced_by``, or by nothing yet), say so in the
    ledger, and delete its weights unless another serving prior shares them."""
    with store.write() as conn:
        model_versions.withdraw_population(conn, old.version, replaced_by, utc_now_iso())
        ledger.append(
            conn,
            "population_withdrawn",
            None,
            {"version": old.version, "replaced_by": replaced_by, **entry},
        )
        serving = {p.version for p in model_versions.populations(conn)}
    if not any(p.sha256 == old.sha256 for p in live if p.version in serving):
        artifacts.delete(old.sha256)


def priors_of(store: Store, twin: str) -> list[int]:
    """The serving population versions that learned from the twin ``twin`` names."""
    with store.read() as conn:
        live = model_versions.populations(conn)
    key = _key(store, live, twin)
    return [p.version for p in live if key in p.twins]


def forget(
    store: Store, artifacts: ArtifactStore, twin: str, window: TimeWindow | None = None
) -> ForgetResult:
    """Retrain every serving prior that learned from ``twin`` (id or ``owner/id``; the
    twin may already be deleted) without it, each from the last checkpoint before the
    twin joined; withdraw the old priors and delete their weights. A prior trained on the
    deployment runtime (installed at a site) is withdrawn without a replacement: the other
    sites hold the rest of its data, and a new run replaces it. The ledger records the
    erasure without naming the twin (see the module)."""
    started = time.perf_counter()
    with store.read() as conn:
        live = model_versions.populations(conn)
    key = _key(store, live, twin)
    payloads = _registrations(store)
    by_version = {p.version: p for p in live}

    def parent(version: int) -> int | None:
        start = payloads[version].get("federation", {}).get("continues")
        return None if start is None else int(start)

    def chain(version: int | None) -> list[int]:
        return [] if version is None else [*chain(parent(version)), version]

    affected: list[int] = []
    for prior in live:  # oldest first: a parent is retrained before its continuations
        up = parent(prior.version)
        if key in prior.twins or (up is not None and up in affected):
            affected.append(prior.version)
    result = ForgetResult()
    if not affected:
        return result
    for version in affected:
        old = by_version[version]
        payload = payloads[version]
        record = payload.get("federation")
        if record is not None and record.get("engine") != "flower-simulation":
            # the other sites hold the rest of its data: withdraw it; a new run replaces it
            _withdraw(store, artifacts, old, None, {"reason": DEPLOYED_REASON}, live)
            result.withdrawn.append(version)
            continue
        up = parent(version)
        federation = None
        params = {k: v for k, v in old.params.items() if k not in ("target", "seed")}
        if record is not None:
            settings = dict(record["settings"])
            params = {
                k: v for k, v in settings.pop("params").items() if k not in ("target", "seed")
            }
            privacy = settings.pop("privacy")
            if privacy is not None:
                from twinkit.federated.strategies import Privacy

                settings["privacy"] = Privacy(**privacy)
            settings["start_from"] = result.replaced.get(up, up) if up is not None else None
            federation = Federation(**settings)
        with store.read() as conn:
            others = [t for t in old.twins if t != key and twins.find(conn, t) is not None]
        if not others:
            raise TwinkitError(
                f"population v{version} has no twin left to learn from without this one"
            )
        new = fit_population(
            store,
            artifacts,
            old.model,
            others,
            old.target,
            int(old.params.get("seed", 0)),
            holdout_frac=float(payload.get("holdout_frac", 0.2)),
            params=params,
            meta=payload.get("training") == "reptile",
            window=window,
            federation=federation,
        )
        result.replaced[version] = new.version
        result.rounds_retrained += _rounds(payload)
        before = payload.get("twin_digests")
        now = _registrations(store)[new.version]["twin_digests"]
        # the others' data as the withdrawn prior saw them (unknown for older priors)
        same = None if before is None else all(before.get(t) == now[t] for t in now)
        if len(others) < len(old.twins) - (key in old.twins):
            same = False  # a twin it learned from is gone too
        entry = {
            "reason": "retrained without a twin that was forgotten",
            "rounds_retrained": _rounds(payload),
            "same_data": same,
        }
        _withdraw(store, artifacts, old, new.version, entry, live)
    lineage = {v for version in affected for v in chain(version)}
    result.rounds_full = sum(_rounds(payloads[v]) for v in lineage)
    result.seconds = round(time.perf_counter() - started, 2)
    return result
