"""A decision twin's clone: the questions it asks its donor, and the donor's answers.

The twin's clone is versioned like any twin's model. Updating it takes seconds, so it runs
as a background job (kind ``clone``) through the job runner: ``POST .../clone/queries``
starts one, and ``POST .../clone/answers`` ingests the labels at once (the same ingest
pipeline and ledger as any decisions batch) and then starts one. The job fits a new clone
version on every answer so far when there are new ones (registered, and promoted only
through the gate, as ``POST .../fit`` does), asks new questions until ``k`` wait, and
records the serving version's guess on each (the population prior's while the donor has
no version: :func:`twinkit.engine.clone_versions.update_clone`). ``GET .../clone/queries``
answers the waiting questions with the newest guesses, and says whether an update is still
running; ``POST .../decide`` asks the serving version.
"""

from __future__ import annotations

import base64
import re
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from fastapi import APIRouter

from twinkit.core.errors import QuotaExceededError, TwinkitError
from twinkit.core.twin import Twin, TwinKind
from twinkit.engine.jobs import Job, JobStatus
from twinkit.service.deps import OwnerDep, StateDep, TwinDep
from twinkit.service.routes.models import job_public
from twinkit.service.routes.responses import AUTH_RESPONSES, BODY_RESPONSES, TWIN_RESPONSES
from twinkit.service.schemas import (
    CloneAnswers,
    CloneAnswersPublic,
    CloneAsk,
    CloneImagePublic,
    CloneQueriesPublic,
    CloneQueryPublic,
    ErrorPublic,
    IngestPublic,
    JobPublic,
)
from twinkit.service.state import ServiceState

#: the job kind that retrains a clone and asks its next questions
KIND = "clone"

router = APIRouter(
    prefix="/twins/{twin_id}/clone",
    tags=["clones"],
    responses={
        **AUTH_RESPONSES,
        **TWIN_RESPONSES,
        400: {"model": ErrorPublic, "description": "not a decision twin"},
    },
)


def _decision(twin: Twin) -> None:
    if twin.kind is not TwinKind.DECISION:
        raise TwinkitError(
            f"twin {twin.id!r} is a {twin.kind.value} twin; clones are for decision twins"
        )


# -- images ---------------------------------------------------------------------------------


def _natural(name: str) -> list[tuple[int, int | str]]:
    """``px2`` before ``px10``: digit runs compare as numbers."""
    return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", name) if t]


def image_shape(twin: Twin) -> tuple[int, int] | None:
    """``(height, width)`` when the twin's metadata says its features are an image's pixels
    (``"image": [height, width]``), else None (see :attr:`Twin.image_shape`)."""
    return twin.image_shape


def png_data_uri(pixels: np.ndarray) -> str:
    """A (height, width) uint8 array as a grayscale PNG ``data:`` URI."""
    height, width = pixels.shape
    rows = b"".join(b"\x00" + pixels[r].tobytes() for r in range(height))  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def item_image(shape: tuple[int, int] | None, features: dict[str, Any]) -> CloneImagePublic | None:
    """The item as an image: pixels in the natural order of the feature names (px0, px1,
    ..., px10), values in [0, 1] (or 0..255 when any is above 1); None if they do not fit."""
    if shape is None or len(features) != shape[0] * shape[1]:
        return None
    names = sorted(features, key=_natural)
    values = np.asarray(
        [np.nan if features[n] is None else float(features[n]) for n in names], dtype=np.float64
    )
    values = np.nan_to_num(values, nan=0.0)
    if values.size and values.max() <= 1.0:
        values = values * 255.0
    pixels = np.clip(np.round(values), 0, 255).astype(np.uint8).reshape(shape)
    return CloneImagePublic(height=shape[0], width=shape[1], png=png_data_uri(pixels))


# -- shared with the pages ------------------------------------------------------------------


def latest_clone_job(state: ServiceState, twin: Twin, owner: str) -> Job | None:
    job = state.engine.jobs.latest(twin.key, KIND, twin_uid=twin.uid)
    return job if job is not None and job.owner == owner else None


def clone_queries_public(state: ServiceState, twin: Twin, owner: str) -> CloneQueriesPublic:
    """The waiting questions with the newest clone update's guesses on them."""
    _decision(twin)
    waiting = state.engine.clone_waiting(twin.ref)
    newest = latest_clone_job(state, twin, owner)
    done = state.engine.jobs.latest(twin.key, KIND, JobStatus.DONE, twin.uid)
    result = done.result if done is not None and done.owner == owner and done.result else None
    guesses: dict[str, dict[str, Any]] = dict(result.get("guesses", {})) if result else {}
    if result and result.get("classes"):
        classes = [str(c) for c in result["classes"]]
    else:
        classes = state.engine.clone_labels(twin.owner)
    shape = image_shape(twin)
    queries = [
        CloneQueryPublic(
            item_id=q["item_id"],
            strategy=q["strategy"],
            asked_at=q["asked_at"],
            features=q["features"],
            image=item_image(shape, q["features"]),
            **guesses.get(q["item_id"], {}),
        )
        for q in waiting
    ]
    return CloneQueriesPublic(
        twin_id=twin.id,
        classes=classes,
        labels=int(result["labels"]) if result and "labels" in result else None,
        updating=newest is not None and newest.status in (JobStatus.QUEUED, JobStatus.RUNNING),
        job=job_public(newest) if newest is not None else None,
        queries=queries,
    )


def start_update(state: ServiceState, twin: Twin, owner: str, ask: CloneAsk) -> Job:
    """A clone update job; one already queued (it has not read the labels yet) serves."""
    _decision(twin)
    newest = latest_clone_job(state, twin, owner)
    if newest is not None and newest.status is JobStatus.QUEUED:
        return newest
    params = {"k": ask.k, "strategy_name": ask.strategy, "seed": ask.seed}
    return state.runner.submit(KIND, twin.key, owner, params, twin.uid)


def start_update_if_room(state: ServiceState, twin: Twin, owner: str, ask: CloneAsk) -> Job | None:
    """:func:`start_update`, or None when the owner's job quota is full: answers already
    stored are not refused for it (the next update learns from them)."""
    try:
        return start_update(state, twin, owner, ask)
    except QuotaExceededError:
        return None


def ingest_answers(
    state: ServiceState, twin: Twin, owner: str, answers: Sequence[tuple[str, str]], via: str
) -> IngestPublic:
    """Store the donor's labels for waiting questions, as any decisions batch."""
    _decision(twin)
    result = state.engine.clone_answer_labels(twin.ref, answers, f"{via}:{owner}:answers")
    if not result.already_ingested:
        state.metrics.rows_ingested.labels("decisions").inc(result.n_stored)
        state.metrics.rows_quarantined.labels("decisions").inc(result.n_quarantined)
    fields = result.to_dict()
    fields.pop("twins")
    return IngestPublic(**fields)


# -- routes ---------------------------------------------------------------------------------


@router.get(
    "/queries",
    response_model=CloneQueriesPublic,
    summary="The clone's questions waiting for the donor, with its guess and confidence on each",
)
def get_queries(twin: TwinDep, caller: OwnerDep, state: StateDep) -> CloneQueriesPublic:
    return clone_queries_public(state, twin, caller.name)


@router.post(
    "/queries",
    status_code=202,
    response_model=JobPublic,
    summary="Retrain the clone and ask new questions until k wait, in the background",
)
def ask_queries(
    twin: TwinDep, caller: OwnerDep, state: StateDep, body: CloneAsk | None = None
) -> JobPublic:
    return job_public(start_update(state, twin, caller.name, body or CloneAsk()))


@router.post(
    "/answers",
    status_code=202,
    response_model=CloneAnswersPublic,
    summary="Store the donor's labels for waiting questions; the clone learns in the background",
    responses=BODY_RESPONSES,
)
def post_answers(
    body: CloneAnswers, twin: TwinDep, caller: OwnerDep, state: StateDep
) -> CloneAnswersPublic:
    pairs = [(a.item_id, a.label) for a in body.answers]
    ingest = ingest_answers(state, twin, caller.name, pairs, "api")
    ask = CloneAsk(k=body.k, strategy=body.strategy, seed=body.seed)
    job = start_update_if_room(state, twin, caller.name, ask)
    return CloneAnswersPublic(ingest=ingest, job=None if job is None else job_public(job))
