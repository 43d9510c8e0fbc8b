"""A decision twin's robustness report: made in the background, then read back.

``POST`` starts a job that trains the twin's clone on its own labelled decisions and
attacks it (any registered classifier attack; FGSM and PGD by default) at the budgets
asked, undefended and vaccinated (:func:`twinkit.engine.robustness.clone_robustness`);
``GET`` answers the newest finished report, in the layout of ``twinkit eval immunity``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from twinkit.engine.jobs import JobStatus
from twinkit.engine.robustness import MIN_LABELS, check_attacks
from twinkit.immunity.base import DEFAULT_ATTACKS, registered_attacks
from twinkit.service.deps import OwnerDep, StateDep, TwinDep
from twinkit.service.errors import not_found
from twinkit.service.jobs import jsonable
from twinkit.service.routes.models import job_public
from twinkit.service.routes.responses import AUTH_RESPONSES, TWIN_RESPONSES, Responses
from twinkit.service.schemas import ErrorPublic, JobPublic, JsonInt

KIND = "robustness"

router = APIRouter(
    prefix="/twins/{twin_id}", tags=["robustness"], responses={**AUTH_RESPONSES, **TWIN_RESPONSES}
)

Budget = Annotated[float, Field(gt=0.0, le=1.0, strict=True)]

#: the classifier attacks registered when this module is imported: the schema lists them
ATTACK_NAMES = tuple(registered_attacks("classifier"))
if TYPE_CHECKING:
    AttackName = str
else:
    # A Literal made from the registry, so that the OpenAPI schema enumerates the names.
    AttackName = Literal[ATTACK_NAMES]


class RobustnessRequest(BaseModel):
    # Its numbers are JSON's, as in every request body (see schemas._In): not true or "3".
    model_config = ConfigDict(extra="forbid")

    eps: list[Budget] = Field(
        default=[0.05, 0.1],
        min_length=1,
        max_length=8,
        description="attack budgets, each a fraction of every feature's range among the "
        "twin's labelled items, in each attack's norm (see `twinkit eval attacks`)",
    )
    attacks: list[AttackName] = Field(
        default=list(DEFAULT_ATTACKS),
        min_length=1,
        max_length=len(ATTACK_NAMES),
        description="registered classifier attacks to run (attacks that perturb images need "
        "image items)",
    )
    vaccine: JsonInt = Field(
        default=100, ge=2, le=2000, description="vaccine samples to retrain on"
    )
    pgd_steps: JsonInt = Field(default=20, ge=1, le=200)
    adv_training: bool = Field(
        default=False, strict=True, description="also train a PGD-adversarial clone (slower)"
    )
    seed: JsonInt = Field(default=0, ge=0, le=2**31 - 1)


class AttackScores(BaseModel):
    """Accuracy on the held-out items under one attack at one budget (None: not run)."""

    undefended: float
    vaccinated_replay: float
    retrained_replay: float
    vaccinated_adaptive: float
    adv_trained_adaptive: float | None


class RobustnessReport(BaseModel):
    """The immunity benchmark's report (``twinkit eval immunity``), for this twin's clone."""

    twin: str
    clean_acc: float
    clean_acc_vaccinated: float
    clean_acc_adv_trained: float | None
    attacks: dict[str, dict[str, AttackScores]] = Field(description="attack -> eps -> scores")
    vaccine_samples: int
    threat_model: dict[str, Any]
    model: dict[str, Any]
    data: dict[str, Any]
    seed: int


class RobustnessPublic(BaseModel):
    twin_id: str
    job_id: int
    params: dict[str, Any]
    finished_at: str | None
    report: RobustnessReport


_NOT_YET: Responses = {
    404: {"model": ErrorPublic, "description": "no such twin, or no report made yet"}
}


@router.post(
    "/robustness",
    status_code=202,
    response_model=JobPublic,
    summary="Start a robustness report of a decision twin's clone; poll the job it answers",
    responses={
        400: {
            "model": ErrorPublic,
            "description": f"not a decision twin, fewer than {MIN_LABELS} labelled decisions, "
            "or an attack that perturbs images",
        }
    },
)
def start_robustness(
    twin: TwinDep, caller: OwnerDep, state: StateDep, body: RobustnessRequest | None = None
) -> JobPublic:
    body = body or RobustnessRequest()
    # Refuses at once what the job would fail on.
    state.engine.robustness_items(twin.ref)
    check_attacks(body.attacks, twin.image_shape)
    params = body.model_dump()
    params["eps"] = sorted(set(params["eps"]))
    params["attacks"] = sorted(set(params["attacks"]))
    return job_public(state.runner.submit(KIND, twin.key, caller.name, params, twin.uid))


@router.get(
    "/robustness",
    response_model=RobustnessPublic,
    summary="The newest finished robustness report of the twin's clone",
    responses=_NOT_YET,
)
def get_robustness(twin: TwinDep, caller: OwnerDep, state: StateDep) -> RobustnessPublic:
    job = state.engine.jobs.latest(twin.key, KIND, JobStatus.DONE, twin.uid)
    if job is None or job.owner != caller.name or job.result is None:
        newest = state.engine.jobs.latest(twin.key, KIND, twin_uid=twin.uid)
        if newest is not None and newest.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            hint = f"job {newest.id} is making one"
        elif newest is not None and newest.status is JobStatus.FAILED:
            hint = f"job {newest.id} failed: {newest.error}"
        else:
            hint = f"start one with POST /v1/twins/{twin.id}/robustness"
        raise not_found(f"robustness report of twin {twin.id!r} yet; {hint}")
    return RobustnessPublic(
        twin_id=twin.id,
        job_id=job.id,
        params=job.params,
        finished_at=job.finished_at,
        report=RobustnessReport(**jsonable(job.result)),
    )
