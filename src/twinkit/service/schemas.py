"""Request and response bodies of the API, per resource (``XCreate`` in, ``XPublic`` out)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

import twinkit.models  # noqa: F401  (importing it registers every forecaster)
from twinkit.core.twin import CHANNEL_PATTERN, TWIN_ID_PATTERN
from twinkit.engine.owners import OWNER_NAME_PATTERN
from twinkit.models.base import registered_forecasters

MAX_ROWS_PER_REQUEST = 100_000
MAX_HORIZON_MIN = 7 * 24 * 60


class _In(BaseModel):
    """Request bodies refuse unknown fields: a typo (or an ``owner``) is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


# -- errors --------------------------------------------------------------------------------


class ProblemPublic(BaseModel):
    message: str
    row: int | None = Field(None, description="1-based data row of an ingested batch")
    column: str | None = Field(None, description="column of an ingested batch")
    field: list[str | int] | None = Field(None, description="path of a malformed request field")


class ErrorDetail(BaseModel):
    type: str
    message: str
    problems: list[ProblemPublic] = []
    request_id: str | None = None


class ErrorPublic(BaseModel):
    error: ErrorDetail


# -- owners ---------------------------------------------------------------------------------


class OwnerCreate(_In):
    name: str = Field(pattern=OWNER_NAME_PATTERN.pattern, examples=["clinic-a"])


class OwnerPublic(BaseModel):
    name: str
    created_at: str


class OwnerCreated(OwnerPublic):
    token: str = Field(description="The owner's bearer token. Shown once: only its hash is kept.")


# -- twins ----------------------------------------------------------------------------------


class ChannelIn(_In):
    name: str = Field(pattern=CHANNEL_PATTERN.pattern, examples=["glucose"])
    unit: str | None = Field(None, max_length=32, description="default: the known unit, if any")
    low: float | None = Field(None, description="lowest plausible value (default: known range)")
    high: float | None = Field(None, description="highest plausible value")


class ChannelPublic(BaseModel):
    name: str
    unit: str
    low: float | None
    high: float | None


class TwinCreate(_In):
    id: str = Field(pattern=TWIN_ID_PATTERN.pattern, examples=["p-007"])
    kind: Literal["state", "decision"]
    channels: list[ChannelIn] = Field(
        [], max_length=256, description="state twins only; none means any channel is accepted"
    )
    metadata: dict[str, Any] = {}


class TwinPublic(BaseModel):
    id: str
    kind: Literal["state", "decision"]
    owner: str
    metadata: dict[str, Any]
    channels: list[ChannelPublic]
    created_at: str
    observations: int
    decisions: int
    quarantined: int
    serving_version: int | None


# -- data -----------------------------------------------------------------------------------


class SignalRow(_In):
    time: str = Field(description="ISO-8601; with a UTC offset, or taken as UTC")
    channel: str
    value: float


class ObservationBatch(_In):
    rows: list[SignalRow] = Field(min_length=1, max_length=MAX_ROWS_PER_REQUEST)


class IngestPublic(BaseModel):
    source: str
    content_hash: str
    batch_id: int | None
    already_ingested: bool
    n_rows: int
    n_stored: int
    n_quarantined: int
    n_duplicates: int
    quarantine_reasons: dict[str, int]


class SignalPublic(BaseModel):
    time: str
    channel: str
    value: float


class SignalPage(BaseModel):
    twin_id: str
    rows: list[SignalPublic]
    truncated: bool = Field(description="more rows are in the range than were returned")
    next_start: str | None = Field(None, description="start of the next page, when truncated")


class DecisionPublic(BaseModel):
    item_id: str
    label: str
    features: dict[str, float]


class DecisionPage(BaseModel):
    twin_id: str
    rows: list[DecisionPublic]


class QuarantinePublic(BaseModel):
    id: int
    batch_id: int
    kind: str
    row: int = Field(description="the row's number in the batch it came with")
    record: dict[str, Any]
    reason: str
    created_at: str
    released_at: str | None


class ReleaseRequest(_In):
    ids: list[int] = Field(min_length=1, max_length=10_000)


class ReleasePublic(BaseModel):
    released: int


# -- models, jobs, forecasts ----------------------------------------------------------------


Horizon = Annotated[int, Field(ge=1, le=MAX_HORIZON_MIN)]


class FitRequest(_In):
    model: str = Field("auto", description="a forecaster name, or auto: the twin's best candidate")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    horizons: list[Horizon] = Field([30, 60], min_length=1, max_length=32)

    @field_validator("model")
    @classmethod
    def _known(cls, model: str) -> str:
        known = ["auto", *registered_forecasters()]
        if model not in known:
            raise ValueError(f"unknown model {model!r}; known: {', '.join(known)}")
        return model


class JobPublic(BaseModel):
    id: int
    twin_id: str
    kind: str
    params: dict[str, Any]
    status: Literal["queued", "running", "done", "failed"]
    created_at: str
    started_at: str | None
    finished_at: str | None
    result: dict[str, Any] | None
    error: str | None


class ModelVersionPublic(BaseModel):
    version: int
    model: str
    status: str
    sha256: str
    metrics: dict[str, Any]
    created_at: str


class RollbackPublic(BaseModel):
    version: int = Field(description="the version serving now")


class HorizonForecast(BaseModel):
    horizon_min: int
    time: str
    median: float | None
    mean: float | None
    quantiles: dict[str, float | None] = Field(description="level (e.g. '0.05') -> value")


class ForecastPublic(BaseModel):
    twin_id: str
    target: str
    origin: str
    model: str
    version: int | None
    source: Literal["twin", "population"]
    degraded: bool = Field(description="the serving version could not answer; a fallback did")
    degraded_reason: str | None
    forecasts: list[HorizonForecast]


# -- ledger ---------------------------------------------------------------------------------


class LedgerEntryPublic(BaseModel):
    seq: int
    twin_id: str | None
    event: str
    payload: dict[str, Any]
    created_at: str
    prev_hash: str
    hash: str


class VerifyPublic(BaseModel):
    ok: bool
    entries: int
    batches: int
    models: int
    problems: list[str]


# -- clones (decision twins) ----------------------------------------------------------------

STRATEGY_NAMES = Literal["confusion", "uncertainty", "random", "tgan"]


class CloneAsk(_In):
    k: int = Field(default=5, ge=1, le=50, description="questions to keep waiting for the donor")
    strategy: STRATEGY_NAMES = Field(
        default="confusion",
        description="how new questions are chosen (tgan: near the Turing GAN's)",
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class CloneAnswer(_In):
    item_id: str = Field(min_length=1, max_length=256, description="a waiting question's id")
    label: str = Field(min_length=1, max_length=256, description="one of the clone's classes")


class CloneAnswers(CloneAsk):
    """The donor's labels; ``k``, ``strategy`` and ``seed`` steer the update that follows."""

    answers: list[CloneAnswer] = Field(min_length=1, max_length=1000)


class CloneImagePublic(BaseModel):
    height: int
    width: int
    png: str = Field(description="a data: URI of the item as a grayscale PNG")


class CloneQueryPublic(BaseModel):
    item_id: str = Field(description="the question's id: answer with it")
    strategy: str
    asked_at: str
    features: dict[str, float | None]
    image: CloneImagePublic | None = Field(
        default=None,
        description='the features as an image, when the twin\'s metadata has "image": [h, w]',
    )
    clone_says: str | None = Field(
        default=None, description="the clone's guess (None: not made yet)"
    )
    confidence: float | None = Field(
        default=None, description="the clone's probability of its guess"
    )
    proba: dict[str, float] | None = Field(
        default=None, description="the clone's probability per class"
    )


class CloneQueriesPublic(BaseModel):
    twin_id: str
    classes: list[str] = Field(description="the labels the donor may give")
    labels: int | None = Field(description="donor labels the clone was last trained on")
    updating: bool = Field(description="a clone update is queued or running")
    job: JobPublic | None = Field(description="the newest clone update job")
    queries: list[CloneQueryPublic] = Field(description="questions waiting, oldest first")


class CloneAnswersPublic(BaseModel):
    ingest: IngestPublic
    job: JobPublic = Field(description="the clone update that learns from the answers")
