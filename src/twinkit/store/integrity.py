"""`ledger verify`: the chain, the stored data and the model artifacts against the ledger."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from twinkit.store import ledger, model_versions, observations, tables
from twinkit.store.artifacts import ArtifactStore


@dataclass
class VerifyReport:
    entries: int = 0
    batches: int = 0
    models: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(conn: Connection, artifacts: ArtifactStore) -> VerifyReport:
    """Everything the ledger vouches for, checked; the first problem found comes first."""
    report = VerifyReport()
    report.problems += ledger.verify_chain(conn)
    entries = ledger.entries(conn)
    report.entries = len(entries)
    if report.problems:
        return report  # nothing after a broken chain can be trusted

    expected: dict[int, tuple[str, int]] = {}  # batch -> (digest, ledger seq that set it)
    expected_held: dict[int, tuple[str, int]] = {}  # the same for its quarantined rows
    registered: dict[tuple[str, int], str] = {}
    for entry in entries:
        for batch_id, digest in entry.payload.get("batch_hashes", {}).items():
            expected[int(batch_id)] = (digest, entry.seq)
        for batch_id, digest in entry.payload.get("quarantine_hashes", {}).items():
            expected_held[int(batch_id)] = (digest, entry.seq)
        if entry.event == "model_registered" and entry.twin_id is not None:
            registered[(entry.twin_id, int(entry.payload["version"]))] = entry.payload["sha256"]
        if entry.event == "population_registered":
            registered[("*population*", int(entry.payload["version"]))] = entry.payload["sha256"]

    stored_ids = {int(r[0]) for r in conn.execute(select(tables.batches.c.id))}
    report.batches = len(stored_ids)
    actual = observations.batch_digests(conn, sorted(stored_ids))
    for batch_id in sorted(stored_ids | set(expected)):
        if batch_id not in expected:
            report.problems.append(f"batch {batch_id} is in the store but not in the ledger")
        elif batch_id not in stored_ids:
            report.problems.append(
                f"batch {batch_id} (ledger entry {expected[batch_id][1]}) is missing from the store"
            )
        elif actual[batch_id] != expected[batch_id][0]:
            report.problems.append(
                f"batch {batch_id}: its stored rows do not match the digest in ledger entry "
                f"{expected[batch_id][1]}: a stored value was modified, added or deleted"
            )

    held = observations.quarantine_digests(conn, expected_held)
    for batch_id, (digest, seq) in sorted(expected_held.items()):
        if held.get(batch_id) != digest:
            report.problems.append(
                f"batch {batch_id}: its quarantined rows do not match the digest in ledger "
                f"entry {seq}: a held row was modified, added or deleted"
            )

    for p in model_versions.populations(conn):
        report.problems += _check_model(
            f"population model v{p.version}",
            registered.get(("*population*", p.version)),
            p.sha256,
            artifacts,
        )

    versions = model_versions.all_versions(conn)
    history = ledger.serving_history(entries)
    serving_now = {
        v.twin_id: v.version for v in versions if v.status == model_versions.Status.SERVING
    }
    for twin_id in sorted(set(serving_now) | {t for t, s in history.items() if s}):
        said = history.get(twin_id, [])
        if serving_now.get(twin_id) != (said[-1] if said else None):
            report.problems.append(
                f"twin {twin_id}: the registry serves v{serving_now.get(twin_id)} but the "
                f"ledger's last promotion or rollback says v{said[-1] if said else None}"
            )
    report.models = len(versions)
    for v in versions:
        report.problems += _check_model(
            f"model {v.twin_id} v{v.version}",
            registered.get((v.twin_id, v.version)),
            v.sha256,
            artifacts,
        )
    return report


def _check_model(
    label: str, recorded: str | None, sha256: str, artifacts: ArtifactStore
) -> list[str]:
    """A registry entry against its ledger entry and its artifact file."""
    if recorded is None:
        return [f"{label} is in the registry but not in the ledger"]
    if recorded != sha256:
        return [f"{label}: the registry's sha256 differs from the ledger's"]
    broken = artifacts.check(sha256)
    return [f"{label}: {broken}"] if broken else []
