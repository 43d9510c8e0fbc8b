"""The model registry: versions of each twin's model, and which one is serving."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update

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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


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


def serving(conn: Connection, twin_id: str) -> ModelVersion | None:
    m = tables.model_versions.c
    row = conn.execute(
        select(tables.model_versions).where(m.twin_id == twin_id, m.status == Status.SERVING)
    ).first()
    return None if row is None else _version(row)


def set_status(conn: Connection, twin_id: str, version: int, status: str) -> None:
    m = tables.model_versions.c
    conn.execute(
        update(tables.model_versions)
        .where(m.twin_id == twin_id, m.version == version)
        .values(status=status)
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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


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
        )
    )


def populations(conn: Connection) -> list[PopulationVersion]:
    p = tables.population_models.c
    return [
        _population(r) for r in conn.execute(select(tables.population_models).order_by(p.version))
    ]


def next_population_version(conn: Connection) -> int:
    p = tables.population_models.c
    return int(conn.execute(select(func.max(p.version))).scalar() or 0) + 1
