"""The model registry: versions of each twin's model, and which one is serving."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, select, update

from twinkit.store import tables


class Status:
    SERVING = "serving"
    RETIRED = "retired"  # served before, replaced by a newer version
    REJECTED = "rejected"  # registered, never promoted (scored worse than serving)
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class ModelVersion:
    twin_id: str
    version: int
    model: str
    status: str
    sha256: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    data_hash: str
    created_at: str
    #: the monitor's live band: horizon (minutes) -> scale of the model's band; None: none
    live_band: dict[int, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parse_band(text: str | None) -> dict[int, float] | None:
    """A stored live band (JSON, horizon minutes as keys) as a dict, None for none."""
    if not text:
        return None
    return {int(h): float(v) for h, v in json.loads(text).items()}


def _version(row: Any) -> ModelVersion:
    return ModelVersion(
        twin_id=row.twin_id,
        version=row.version,
        model=row.model,
        status=row.status,
        sha256=row.sha256,
        params=json.loads(row.params),
        metrics=json.loads(row.metrics),
        data_hash=row.data_hash,
        created_at=row.created_at,
        live_band=parse_band(row.live_band),
    )


def next_version(conn: Connection, twin_id: str) -> int:
    m = tables.model_versions.c
    top = conn.execute(select(func.max(m.version)).where(m.twin_id == twin_id)).scalar()
    return int(top or 0) + 1


def insert_version(conn: Connection, version: ModelVersion) -> None:
    conn.execute(
        tables.model_versions.insert().values(
            twin_id=version.twin_id,
            version=version.version,
            model=version.model,
            status=version.status,
            sha256=version.sha256,
            params=json.dumps(version.params, sort_keys=True),
            metrics=json.dumps(version.metrics, sort_keys=True),
            data_hash=version.data_hash,
            created_at=version.created_at,
        )
    )


def versions(conn: Connection, twin_id: str) -> list[ModelVersion]:
    m = tables.model_versions.c
    rows = conn.execute(
        select(tables.model_versions).where(m.twin_id == twin_id).order_by(m.version)
    )
    return [_version(r) for r in rows]


def get_version(conn: Connection, twin_id: str, version: int) -> ModelVersion | None:
    m = tables.model_versions.c
    row = conn.execute(
        select(tables.model_versions).where(m.twin_id == twin_id, m.version == version)
    ).first()
    return None if row is None else _version(row)


def version_ids(conn: Connection, twin_id: str) -> dict[int, int]:
    """The twin's version numbers -> their rows' ids."""
    m = tables.model_versions.c
    rows = conn.execute(select(m.version, m.id).where(m.twin_id == twin_id)).all()
    return {int(version): int(row_id) for version, row_id in rows}


def serving(conn: Connection, twin_id: str) -> ModelVersion | None:
    m = tables.model_versions.c
    row = conn.execute(
        select(tables.model_versions).where(m.twin_id == twin_id, m.status == Status.SERVING)
    ).first()
    return None if row is None else _version(row)


@dataclass(frozen=True)
class ServingHead:
    """What a forecast of one twin depends on in the store, read by one statement: the
    twin's owner and kind, its data watermark (``twins.data_batch``), and the serving
    version's row id, number, model, artifact sha256 and live band as stored (JSON; None
    without one)."""

    twin_id: str
    owner: str
    kind: str
    data_batch: int | None
    version_id: int | None
    version: int | None
    model: str | None
    sha256: str | None
    live_band: str | None


_t, _m = tables.twins.c, tables.model_versions.c
_HEAD = (
    select(_t.owner, _t.kind, _t.data_batch, _m.id, _m.version, _m.model, _m.sha256, _m.live_band)
    .select_from(
        tables.twins.outerjoin(
            tables.model_versions, and_(_m.twin_id == _t.id, _m.status == bindparam("status"))
        )
    )
    .where(_t.id == bindparam("twin_id"))
)


_HEAD_SQL: dict[str, tuple[str, tuple[str, ...], bool]] = {}


def _compiled_head(conn: Connection) -> tuple[str, tuple[str, ...], bool]:
    """The head statement in the dialect's SQL and parameter style, compiled once."""
    key = f"{conn.dialect.name}+{conn.dialect.driver}"
    found = _HEAD_SQL.get(key)
    if found is None:
        compiled = _HEAD.compile(dialect=conn.dialect)
        names = tuple(compiled.positiontup or ()) if compiled.positional else ()
        if set(compiled.binds) != {"status", "twin_id"}:
            raise RuntimeError(f"unexpected parameters in the head statement: {compiled.binds}")
        found = _HEAD_SQL[key] = (str(compiled), names, compiled.positional)
    return found


def serving_head(conn: Connection, twin_id: str) -> ServingHead | None:
    """The twin's :class:`ServingHead`, or None if there is no such twin.

    One indexed statement (twins by primary key, model_versions by its (twin_id, version)
    index), run on the driver's cursor: SQLAlchemy's per-statement machinery costs several
    times the query itself, and this runs on every forecast request.
    """
    sql, names, positional = _compiled_head(conn)
    values = {"status": Status.SERVING, "twin_id": twin_id}
    params: Any = tuple(values[n] for n in names) if positional else values
    driver = conn.connection.driver_connection
    if driver is None:
        raise RuntimeError("the store's connection has no driver connection")
    cursor = driver.cursor()
    try:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    finally:
        cursor.close()
    if row is None:
        return None
    return ServingHead(twin_id, *row)


def set_status(conn: Connection, twin_id: str, version: int, status: str) -> None:
    m = tables.model_versions.c
    conn.execute(
        update(tables.model_versions)
        .where(m.twin_id == twin_id, m.version == version)
        .values(status=status)
    )


def set_live_band(conn: Connection, twin_id: str, version: int, band: dict[int, float]) -> None:
    """Store the version's live band (see :mod:`twinkit.monitor.band`)."""
    m = tables.model_versions.c
    text = json.dumps({str(h): v for h, v in sorted(band.items())})
    conn.execute(
        update(tables.model_versions)
        .where(m.twin_id == twin_id, m.version == version)
        .values(live_band=text)
    )


def all_versions(conn: Connection) -> list[ModelVersion]:
    m = tables.model_versions.c
    rows = conn.execute(select(tables.model_versions).order_by(m.twin_id, m.version))
    return [_version(r) for r in rows]


@dataclass(frozen=True)
class PopulationVersion:
    version: int
    model: str
    target: str
    sha256: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    twins: list[str]
    data_hash: str
    created_at: str
    #: the owners whose twins it pools
    owners: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def serves(self, owner: str, sharing: set[str]) -> bool:
        """Whether a fit of ``owner``'s twin may start from this prior: it pools
        ``owner``'s twins, and no other owner's unless all of them share (``sharing``).

        >>> p = PopulationVersion(1, "gru", "glucose", "", {}, {}, [], "", "", ["a", "b"])
        >>> p.serves("a", {"a", "b"}), p.serves("a", {"a"}), p.serves("c", {"a", "b", "c"})
        (True, False, False)
        """
        return owner in self.owners and (self.owners == [owner] or set(self.owners) <= sharing)


def _population(row: Any) -> PopulationVersion:
    return PopulationVersion(
        version=row.version,
        model=row.model,
        target=row.target,
        sha256=row.sha256,
        params=json.loads(row.params),
        metrics=json.loads(row.metrics),
        twins=json.loads(row.twins),
        data_hash=row.data_hash,
        created_at=row.created_at,
        owners=json.loads(row.owners) if row.owners else [],
    )


def insert_population(conn: Connection, population: PopulationVersion) -> None:
    conn.execute(
        tables.population_models.insert().values(
            version=population.version,
            model=population.model,
            target=population.target,
            sha256=population.sha256,
            params=json.dumps(population.params, sort_keys=True),
            metrics=json.dumps(population.metrics, sort_keys=True),
            twins=json.dumps(population.twins),
            data_hash=population.data_hash,
            created_at=population.created_at,
            owners=json.dumps(population.owners),
        )
    )


def populations(conn: Connection, withdrawn: bool = False) -> list[PopulationVersion]:
    """The population priors, oldest first; those withdrawn only if ``withdrawn``."""
    p = tables.population_models.c
    query = select(tables.population_models).order_by(p.version)
    if not withdrawn:
        gone = select(tables.population_withdrawn.c.version)
        query = query.where(p.version.not_in(gone))
    return [_population(r) for r in conn.execute(query)]


def withdraw_population(conn: Connection, version: int, replaced_by: int | None, now: str) -> None:
    """Mark prior ``version`` as serving no more, replaced by ``replaced_by``."""
    conn.execute(
        tables.population_withdrawn.insert().values(
            version=version, replaced_by=replaced_by, withdrawn_at=now
        )
    )


def sharing_owners(conn: Connection) -> set[str]:
    """The owners who pool their twins with each other's for a shared prior."""
    return {str(r[0]) for r in conn.execute(select(tables.population_sharing.c.owner))}


def set_sharing(conn: Connection, owner: str, share: bool, now: str) -> bool:
    """Add or remove ``owner`` among the sharing owners; whether that changed anything."""
    s = tables.population_sharing.c
    was = conn.execute(select(s.owner).where(s.owner == owner)).first() is not None
    if share and not was:
        conn.execute(tables.population_sharing.insert().values(owner=owner, since=now))
    elif was and not share:
        conn.execute(delete(tables.population_sharing).where(s.owner == owner))
    return was != share


def next_population_version(conn: Connection) -> int:
    p = tables.population_models.c
    return int(conn.execute(select(func.max(p.version))).scalar() or 0) + 1
