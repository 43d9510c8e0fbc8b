"""Twins themselves: create one, look it up, summarise it, delete it with its data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twinkit.core.errors import AlreadyExistsError, NotFoundError, TwinkitError
from twinkit.core.twin import (
    Channel,
    MetadataLimits,
    Twin,
    TwinKind,
    split_ref,
    validate_metadata,
    validate_twin_id,
)
from twinkit.engine import reads
from twinkit.engine.context import EngineContext
from twinkit.engine.owners import OWNER_NAME_PATTERN
from twinkit.store import jobs as store_jobs
from twinkit.store import ledger, model_versions, observations, twins
from twinkit.store.db import new_uid
from twinkit.store.timeutil import utc_now_iso


def create_twin(
    ctx: EngineContext,
    twin_id: str,
    kind: TwinKind | str,
    owner: str | None = None,
    metadata: dict[str, Any] | None = None,
    channels: Sequence[Channel | str] = (),
    metadata_limits: MetadataLimits = MetadataLimits(),
) -> Twin:
    """A new twin of ``owner`` ("local" if not given; ``twin_id`` may also name it, as
    ``owner/id``). Ids are unique per owner: another owner may have a twin of the same id.
    It must differ from the owner's other ids in more than the case of its letters; its
    metadata must be JSON within ``metadata_limits``."""
    try:
        kind = TwinKind(kind)
    except ValueError:
        raise TwinkitError(f"unknown twin kind {kind!r}: use 'state' or 'decision'") from None
    named_owner, twin_id = split_ref(twin_id)
    if named_owner is not None and owner is not None and named_owner != owner:
        raise TwinkitError(f"the twin {named_owner}/{twin_id} cannot be owned by {owner!r}")
    owner = named_owner or owner or "local"
    if not OWNER_NAME_PATTERN.match(owner):
        raise TwinkitError(f"invalid owner name {owner!r}: use 1-128 letters, digits or - _ . :")
    twin = Twin(
        id=validate_twin_id(twin_id),
        kind=kind,
        owner=owner,
        metadata=dict(validate_metadata({} if metadata is None else metadata, metadata_limits)),
        channels=tuple(c if isinstance(c, Channel) else Channel.parse(c) for c in channels),
        created_at=utc_now_iso(),
        uid=new_uid(),
    )
    twin.check_screens()
    with ctx.store.write() as conn:
        # Only the owner's own twins are looked at: another owner's ids are theirs.
        similar = twins.find_twin_casefold(conn, owner, twin.id)
        if similar is not None and similar.id == twin.id:
            raise AlreadyExistsError(f"twin {twin.id!r} already exists")
        if similar is not None:
            raise AlreadyExistsError(
                f"twin id {twin.id!r} differs only in case from your twin {similar.id!r}; "
                "twin ids are unique whatever their case: choose another id"
            )
        twins.insert_twin(conn, twin)
        ledger.append(conn, "twin_created", twin.key, twin.to_dict())
    return twin


def is_twin(ctx: EngineContext, twin_id: str, uid: str) -> bool:
    """Whether the twin ``twin_id`` names now is the one whose uid is ``uid``."""
    with ctx.store.read() as conn:
        twin = twins.find(conn, twin_id)
    return twin is not None and twin.uid == uid


def list_twins(ctx: EngineContext, owner: str | None = None) -> list[Twin]:
    """Every twin, or ``owner``'s, by owner then id."""
    with ctx.store.read() as conn:
        return twins.list_twins(conn, owner)


def twin_summary(ctx: EngineContext, twin_id: str) -> dict[str, Any]:
    """The twin's definition with its row counts and serving version."""
    twin = reads.get_twin(ctx, twin_id)
    with ctx.store.read() as conn:
        counts = observations.count_rows(conn, twin.key)
        serving = model_versions.serving(conn, twin.key)
    return {**twin.to_dict(), **counts, "serving_version": serving.version if serving else None}


def _str_keys(mapping: dict[int, str]) -> dict[str, str]:
    return {str(k): v for k, v in mapping.items()}


def delete_twin(ctx: EngineContext, twin_id: str) -> list[int]:
    """Delete a twin and its data (the ledger keeps its history). Its queued and running
    jobs end as cancelled; their ids are returned, so that a job runner can stop them (a
    job that goes on anyway finds the twin gone and writes nothing)."""
    with ctx.store.write() as conn:
        gone = twins.find(conn, twin_id)
        if gone is None:
            raise NotFoundError(f"no twin {twin_id!r}")
        name, key = gone.id, gone.key
        cancelled = store_jobs.cancel_twin_jobs(
            conn, key, f"the twin {name!r} was deleted", utc_now_iso()
        )
        touched = sorted(
            set(observations.batch_ids_of_twin(conn, key))
            | set(observations.batches_naming(conn, key))
        )
        twins.delete_twin_rows(conn, key)
        # Its batches no longer count as ingested: the same file may come back later.
        retired = observations.retire_batches(conn, observations.batches_naming(conn, key))
        ledger.append(
            conn,
            "twin_deleted",
            key,
            {
                "batch_hashes": _str_keys(observations.batch_digests(conn, touched)),
                "quarantine_hashes": _str_keys(observations.quarantine_digests(conn, touched)),
                "retired_batches": retired,
                "uid": gone.uid,
                "cancelled_jobs": cancelled,
            },
        )
    return cancelled
