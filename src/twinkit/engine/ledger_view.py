"""The ledger as the lifecycle shows it: a twin's history, as its owner may see it, and the
whole store checked against the ledger."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twinkit.core.twin import split_ref
from twinkit.engine import reads
from twinkit.engine.context import EngineContext
from twinkit.store import ledger, twins
from twinkit.store.integrity import VerifyReport, verify_store
from twinkit.store.ledger import LedgerEntry


def verify(ctx: EngineContext) -> VerifyReport:
    """The chain, the stored data and the model artifacts against the ledger."""
    with ctx.store.read() as conn:
        return verify_store(conn, ctx.artifacts)


def history(
    ctx: EngineContext, twin_id: str | None = None, owner: str | None = None
) -> list[LedgerEntry]:
    """Ledger entries, or those that concern one twin (batches and priors spanning it
    included; ``twin_id`` in an entry is the twin's store key). As ``owner`` sees them: an
    entry that names other owners' twins or owners shows only how many there were
    (``other_twins``, ``other_owners``; marked ``redacted``)."""
    key = None if twin_id is None else reads.get_twin(ctx, twin_id).key
    with ctx.store.read() as conn:
        entries = ledger.entries(conn)
        if key is not None:
            entries = [e for e in entries if e.twin_id == key or key in e.payload.get("twins", [])]
        if owner is None:
            return entries
        named = {t for e in entries for t in e.payload.get("twins", []) if isinstance(t, str)}
        owner_of = twins.owners_of(conn, named)
    return [as_seen_by(e, owner, owner_of) for e in entries]


def as_seen_by(entry: LedgerEntry, owner: str, owner_of: dict[str, str]) -> LedgerEntry:
    """``entry`` with other owners' twins and names replaced by their number. A twin's
    owner is its key's prefix, else (a key from before schema 7) the store's record of it;
    a twin of neither (deleted since) counts as another owner's."""
    payload = entry.payload
    changed: dict[str, Any] = {}
    listed = payload.get("twins")
    if isinstance(listed, list):
        mine = [t for t in listed if (split_ref(t)[0] or owner_of.get(t)) == owner]
        if len(mine) < len(listed):
            changed.update(twins=mine, other_twins=len(listed) - len(mine))
        digests = payload.get("twin_digests")
        if isinstance(digests, dict) and set(digests) - set(mine):
            changed["twin_digests"] = {t: d for t, d in digests.items() if t in mine}
    owners = payload.get("owners")
    if isinstance(owners, list) and any(o != owner for o in owners):
        kept = [o for o in owners if o == owner]
        changed.update(owners=kept, other_owners=len(owners) - len(kept))
    if not changed:
        return entry
    return replace(entry, payload={**payload, **changed, "redacted": True})
