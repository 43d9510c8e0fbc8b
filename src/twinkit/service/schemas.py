"""Request and response bodies of the API, per resource (``XCreate`` in, ``XPublic`` out)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    field_validator,
)

import twinkit.models  # noqa: F401  (importing it registers every forecaster)
from twinkit.core.errors import InvalidTwinError
from twinkit.core.twin import CHANNEL_PATTERN, TWIN_ID_PATTERN, public_id, validate_metadata
from twinkit.engine.owners import OWNER_NAME_PATTERN
from twinkit.models.base import registered_forecasters

MAX_ROWS_PER_REQUEST = 100_000
MAX_HORIZON_MIN = 7 * 24 * 60
#: the largest id (of a job, a batch) a store holds: a signed 64-bit integer
MAX_ID = 2**63 - 1


def _public_id(value: Any) -> Any:
    return public_id(value) if isinstance(value, str) else value


#: a twin's id as its owner knows it: the engine's store key (``owner/id``) shortened, since
#: an owner only ever sees its own twins
PublicTwinId = Annotated[str, BeforeValidator(_public_id)]


class _In(BaseModel):
    """Request bodies refuse unknown fields: a typo (or an ``owner``) is an error, not ignored.

    Their numbers are what JSON Schema says (``JsonInt``, ``StrictFloat``): ``false`` or
    ``"3"`` is not a number, though pydantic would read them as 0 and 3.
    """

    model_config = ConfigDict(extra="forbid")


# -- shared types ---------------------------------------------------------------------------

_ISO_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:?\d{2})?",
    re.ASCII,
)


def iso_date_time(value: Any) -> datetime:
    """``value`` if it is a datetime, else the time its ISO-8601 text says (a date and a
    time, to the minute at least; no offset: a naive datetime); anything else, a number
    (which pydantic would read as a Unix time) among them, is refused.

    >>> iso_date_time("2026-01-05T06:00:00Z").isoformat()
    '2026-01-05T06:00:00+00:00'
    >>> iso_date_time("0.5")
    Traceback (most recent call last):
    ...
    ValueError: not an ISO-8601 date and time: write e.g. 2026-01-05T06:00:00Z
    """
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE_TIME.fullmatch(value):
        try:
            return datetime.fromisoformat(value.upper())  # RFC 3339 allows "t" and "z"
        except ValueError as exc:
            raise ValueError(f"not a valid date and time: {exc}") from None
    raise ValueError("not an ISO-8601 date and time: write e.g. 2026-01-05T06:00:00Z")


def json_integer(value: Any) -> Any:
    """``value`` if it is a JSON number (pydantic then takes 3 and 3.0, not 3.5); a bool
    or text is refused: JSON Schema's ``"type": "integer"`` holds neither.

    >>> json_integer(3.0)
    3.0
    >>> json_integer(False)
    Traceback (most recent call last):
    ...
    ValueError: Input should be an integer, not a bool
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"Input should be an integer, not a {type(value).__name__}")
    return value


#: An integer in a JSON body: ``3`` or ``3.0``, not ``true``, ``false`` or ``"3"``.
JsonInt = Annotated[int, BeforeValidator(json_integer)]

#: A time given as ISO-8601 text (a query parameter, a body field): strict, so that
#: ``start=0.5`` is refused rather than read as half a second after 1970. Its OpenAPI
#: schema stays ``{"type": "string", "format": "date-time"}``.
IsoDateTime = Annotated[datetime, BeforeValidator(iso_date_time)]


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


class PopulationSharing(_In):
    share: StrictBool = Field(description="pool your twins with other sharing owners' twins")


class OwnerCreated(OwnerPublic):
    token: str = Field(description="The owner's bearer token. Shown once: only its hash is kept.")


# -- twins ----------------------------------------------------------------------------------


class ChannelIn(_In):
    name: str = Field(pattern=CHANNEL_PATTERN.pattern, examples=["glucose"])
    unit: str | None = Field(None, max_length=32, description="default: the known unit, if any")
    low: StrictFloat | None = Field(
        None, description="lowest plausible value (default: known range)"
    )
    high: StrictFloat | None = Field(None, description="highest plausible value")


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
    metadata: dict[str, Any] = Field(
        {},
        description="free-form JSON; its size is bounded (TWINKIT_MAX_METADATA_BYTES, "
        "_KEYS, _DEPTH)",
    )

    @field_validator("metadata")
    @classmethod
    def _json(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        # Python's JSON reader takes NaN, Infinity and lone surrogates ("\ud800"), which
        # are not JSON: they would fail the ledger's encoding. The size is checked by
        # the engine, against the service's settings.
        try:
            return validate_metadata(metadata, limits=None)
        except InvalidTwinError as exc:
            raise ValueError(str(exc)) from None


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
    # The pipeline checks times and channel names, and says which row is wrong; the
    # bounds here make pydantic read the text as Unicode (a lone surrogate is refused).
    time: str = Field(
        max_length=64,
        description="ISO-8601; with a UTC offset, or taken as UTC",
        json_schema_extra={"format": "date-time"},
    )
    channel: str = Field(max_length=256)
    value: StrictFloat


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
    twin_id: PublicTwinId
    rows: list[SignalPublic]
    truncated: bool = Field(description="more rows are in the range than were returned")
    next_start: str | None = Field(None, description="start of the next page, when truncated")


class DecisionPublic(BaseModel):
    item_id: str
    label: str
    features: dict[str, float]


class DecisionPage(BaseModel):
    twin_id: PublicTwinId
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

    @field_validator("record")
    @classmethod
    def _record_twin(cls, record: dict[str, Any]) -> dict[str, Any]:
        if isinstance(record.get("twin_id"), str):
            return {**record, "twin_id": public_id(record["twin_id"])}
        return record


class ReleaseRequest(_In):
    ids: list[JsonInt] = Field(min_length=1, max_length=10_000)


class ReleasePublic(BaseModel):
    released: int


# -- models, jobs, forecasts ----------------------------------------------------------------


Horizon = Annotated[int, Field(ge=1, le=MAX_HORIZON_MIN)]
#: a horizon in a JSON body, where ``true`` or ``"30"`` is not an integer
JsonHorizon = Annotated[Horizon, BeforeValidator(json_integer)]


def _forecaster_names(schema: dict[str, Any]) -> None:
    # Read when the OpenAPI document is made, so that every registered forecaster is named.
    schema["enum"] = ["auto", *registered_forecasters()]


class FitRequest(_In):
    model: str = Field(
        "auto",
        description="a forecaster name, or auto: the twin's best candidate",
        json_schema_extra=_forecaster_names,
    )
    seed: JsonInt = Field(0, ge=0, le=2**31 - 1)
    horizons: list[JsonHorizon] = Field([30, 60], min_length=1, max_length=32)
    update: Literal["auto", "ewc", "finetune", "scratch"] | None = Field(
        None,
        description="bring the serving version up to date instead of fitting anew: ewc "
        "(elastic weight consolidation and replay of old windows), finetune, scratch; auto "
        "is ewc for a neural serving model, else a fit of `model`",
    )
    since: IsoDateTime | None = Field(
        None,
        description="with update: the data from this time on are the new regime (UTC if no "
        "offset); most of them train, their last share is the holdout",
    )

    @field_validator("model")
    @classmethod
    def _known(cls, model: str) -> str:
        known = ["auto", *registered_forecasters()]
        if model not in known:
            raise ValueError(f"unknown model {model!r}; known: {', '.join(known)}")
        return model


class JobPublic(BaseModel):
    id: int
    twin_id: PublicTwinId
    kind: str
    params: dict[str, Any]
    status: Literal["queued", "running", "done", "failed", "cancelled"]
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
    twin_id: PublicTwinId
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
    twin_id: PublicTwinId | None
    event: str
    payload: dict[str, Any]
    created_at: str
    prev_hash: str
    hash: str

    @field_validator("payload")
    @classmethod
    def _payload_twins(cls, payload: dict[str, Any]) -> dict[str, Any]:
        """The twins an entry lists, by the ids their owner knows (the owner's view of
        the ledger lists no other owner's twin)."""
        listed = payload.get("twins")
        if isinstance(listed, list):
            return {**payload, "twins": [_public_id(t) for t in listed]}
        return payload


class VerifyPublic(BaseModel):
    ok: bool
    entries: int
    batches: int
    models: int
    problems: list[str]


# -- clones (decision twins) ----------------------------------------------------------------

STRATEGY_NAMES = Literal["confusion", "uncertainty", "random", "tgan"]


class CloneAsk(_In):
    k: JsonInt = Field(
        default=5, ge=1, le=50, description="questions to keep waiting for the donor"
    )
    strategy: STRATEGY_NAMES = Field(
        default="confusion",
        description="how new questions are chosen (tgan: near the Turing GAN's)",
    )
    seed: JsonInt = Field(default=0, ge=0, le=2**31 - 1)


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
    twin_id: PublicTwinId
    classes: list[str] = Field(description="the labels the donor may give")
    labels: int | None = Field(description="donor labels the clone was last trained on")
    updating: bool = Field(description="a clone update is queued or running")
    job: JobPublic | None = Field(description="the newest clone update job")
    queries: list[CloneQueryPublic] = Field(description="questions waiting, oldest first")


class CloneAnswersPublic(BaseModel):
    ingest: IngestPublic
    job: JobPublic | None = Field(
        description="the clone update that learns from the answers; null when the owner's "
        "job quota is full (the answers are stored: ask for an update later)"
    )


# -- retractions ----------------------------------------------------------------------------


class RetractionRequest(_In):
    """Which rows to take out of the twin's data; every condition given must hold."""

    reason: str = Field(min_length=1, max_length=1000, description="recorded in the ledger")
    batch_id: JsonInt | None = Field(None, description="rows of this batch (ids start at 1)")
    start: IsoDateTime | None = Field(None, description="inclusive; ISO-8601 (UTC if no offset)")
    end: IsoDateTime | None = Field(None, description="inclusive; ISO-8601 (UTC if no offset)")
    channels: list[Annotated[str, Field(pattern=CHANNEL_PATTERN.pattern)]] | None = Field(
        None, max_length=1000, description="signals: only these channels"
    )
    items: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        None, max_length=MAX_ROWS_PER_REQUEST, description="decisions: these items"
    )


class RetractionPublic(BaseModel):
    twin_id: PublicTwinId
    n_retracted: int
    batches: dict[str, int] = Field(description="batch id -> rows it lost")
    retraction_batch: int | None = Field(None, description="the retraction's own batch id")
    ledger_seq: int | None = Field(None, description="the ledger entry that records it")


# -- decisions ------------------------------------------------------------------------------


class DecideItem(_In):
    item_id: str = Field(min_length=1, max_length=256)
    features: dict[Annotated[str, Field(max_length=256)], StrictFloat] = Field(
        description="feature name -> value: the features the twin's clone was trained on"
    )


class DecideRequest(_In):
    items: list[DecideItem] = Field(min_length=1, max_length=10_000)


class ItemDecisionPublic(BaseModel):
    item_id: str
    label: str = Field(description="what the clone says the person would choose")
    probability: float = Field(description="the clone's probability of that label")
    proba: dict[str, float] = Field(description="label -> probability")
    in_confusion_zone: bool = Field(
        description="the person answers items like this differently from people in general"
    )


class DecisionsPublic(BaseModel):
    twin_id: PublicTwinId
    version: int | None = Field(description="the version that answered; null: the prior")
    source: Literal["twin", "population"]
    degraded: bool = Field(description="the serving version could not answer; a fallback did")
    degraded_reason: str | None
    features: list[str]
    decisions: list[ItemDecisionPublic]
