"""Response bodies of the health route (``GET /v1/twins/{id}/health``): a state twin's
live accuracy and drift alerts, a decision twin's agreement with its donor and the
donor's changes (issue #18). The other bodies are in :mod:`twinkit.service.schemas`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from twinkit.service.schemas import PublicTwinId


class LiveFigures(BaseModel):
    version: int
    role: Literal["served", "shadow"] = Field(
        description="served: what the twin answered; shadow: what the version before it "
        "would have answered from the same data"
    )
    horizon: int = Field(description="minutes ahead")
    n: int = Field(description="forecasts scored")
    rmse: float
    mae: float
    bias: float = Field(description="mean of forecast minus reading")
    coverage90: float = Field(description="share of readings inside the 90% band")


class LiveBucket(BaseModel):
    start: str = Field(description="the hour's start (target time)")
    version: int
    role: Literal["served", "shadow"]
    n: int
    rmse: float


class ServingPublic(BaseModel):
    version: int
    model: str
    holdout: dict[str, float] = Field(
        description="the holdout figures the version was promoted with"
    )
    live_band: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "the monitor's live band: per horizon (minutes), the scale applied to the "
            "model's band so that 90% of readings fall inside it; empty until enough "
            "served forecasts were scored"
        ),
    )


class HealthWindow(BaseModel):
    hours: float
    start: str | None = Field(None, alias="from")
    end: str | None = Field(None, alias="to")


class DriftWindow(BaseModel):
    start: str = Field(description="where the change most likely began")
    end: str = Field(description="the hour the detector fired")


class DriftStatistic(BaseModel):
    mean_before: float | None = Field(description="the stream's mean before the window")
    mean_after: float = Field(description="its mean within the window")
    points: int = Field(description="hours in the window")


class DriftAlert(BaseModel):
    version: int | None = Field(description="the version serving when it was found")
    stream: str = Field(description="residuals, misses or input:CHANNEL")
    detector: str
    time: str
    window: DriftWindow
    statistic: DriftStatistic
    recorded_at: str


class AutomaticRollback(BaseModel):
    from_version: int
    to_version: int
    reason: str
    evidence: dict[str, Any] = Field(description="the paired test's figures")
    recorded_at: str


class HealthPublic(BaseModel):
    kind: Literal["state"] = "state"
    twin_id: PublicTwinId
    target: str | None
    serving: ServingPublic | None
    shadow_version: int | None = Field(description="the version a rollback would serve")
    window: HealthWindow
    logged: dict[str, int] = Field(description="forecasts logged and scored, per role")
    live: list[LiveFigures]
    series: list[LiveBucket] = Field(description="live RMSE per hour, all horizons")
    alerts: list[DriftAlert] = Field(
        description="drift the monitor recorded while the serving version served"
    )
    rollbacks: list[AutomaticRollback] = Field(
        description="the twin's automatic rollbacks: a version worse in live use than the "
        "one before it on the same forecasts"
    )


class AnswerRef(BaseModel):
    batch_id: int
    item_id: str


class DonorChangeAnswers(BaseModel):
    start: AnswerRef = Field(description="the first answer of the donor's new habits")
    at: AnswerRef = Field(description="the answer at which the detector fired")


class DonorChangeAlert(BaseModel):
    version: int | None = Field(description="the version serving when it was found")
    stream: Literal["rechecks"]
    detector: str
    time: str = Field(description="when the answer that made the detector fire arrived")
    window: DriftWindow
    statistic: DriftStatistic = Field(
        description="the share of rechecks the donor answered as before, before the change "
        "and within it; points: answers from its start to the one that made it fire"
    )
    answers: DonorChangeAnswers
    recorded_at: str


class AgreementFigures(BaseModel):
    answers: int
    agreement: float | None


class VersionAgreement(BaseModel):
    version: int
    n: int
    agreement: float


class RecheckFigures(BaseModel):
    answered: int = Field(description="past questions the donor answered again")
    as_before: int = Field(description="of those, answered as they had before")
    recent: int = Field(description="the newest rechecks (up to 50)")
    recent_as_before: int


class DonorWindow(BaseModel):
    start: AnswerRef | None = Field(description="None: no change recorded, every answer")
    answers: int


class DecisionHealthPublic(BaseModel):
    kind: Literal["decision"]
    twin_id: PublicTwinId
    serving: ServingPublic | None
    answers: int = Field(description="the donor's answers stored")
    checked: int = Field(description="answers checked against the clone serving when it came")
    agreement: float | None = Field(description="the share of those the clone chose")
    recent: AgreementFigures = Field(description="the same over the newest answers")
    per_version: list[VersionAgreement]
    rechecks: RecheckFigures = Field(description="what the change detector watches")
    window: DonorWindow = Field(description="the answers the clone learns from")
    alerts: list[DonorChangeAlert] = Field(description="the donor's changes recorded")
