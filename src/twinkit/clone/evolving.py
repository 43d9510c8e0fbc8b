"""Evolving donors: notice when a donor changes their mind, and follow them.

**Rechecks.** A share of the questions (:data:`RECHECK_SHARE`, :func:`recheck_quota`) asks
the donor again about items they answered before where their answer differed from what
people in general answer: their personal zone, by their own answers, asked again longest
ago first (:func:`pick_rechecks`). A donor who keeps their habits answers as before; one
who dropped or reversed a habit contradicts themselves. The stream the detector watches is
the donor against their own past answers, one point per recheck (1: a contradiction),
with no model in between (:func:`recheck_changes`).

Why not the clone's agreement with each new answer (``agreed`` in
:class:`twinkit.clone.active.Trajectory`, the "agreement" of the health view)? The query
strategies ask where the clone is likely wrong, so that agreement rises and falls with what
they ask, not with the donor. Tried first (``docs/design.md`` has the figures): on MNIST a
detector on that stream found a change at answer 300 only at answer 417, because the
questions were elsewhere, and with part of each batch asking new items in the clone's
personal zone it fired at answer 238 on a donor who never changed. A new habit that
contradicts nothing the donor said before (a swap they never made) is not a change of
this kind: the clone learns it from the answers as it learns any habit.

**Default detector: Page-Hinkley** (``river.drift.PageHinkley``, upward, threshold 8,
tolerance 0.05, after 20 points), a CUSUM test for a rise in the mean. Its threshold is in
the stream's units, which is why the hourly streams do not use it
(:mod:`twinkit.monitor.drift`); a contradiction stream is always 0s and 1s, so one
threshold suits every donor. On seeded Bernoulli streams (``tests/clones/test_evolving.py``
states the rates) it finds a rise from 15 % to 45 % after a median of about 28 points,
where ADWIN, whose Hoeffding-type bound is loose on 0/1 points, needs about 90 at the
hourly ``delta`` and still about 45 at ``delta`` 0.1; and it raises about one false alarm
per 10,000 points of a donor who does not change (whose own inconsistency may be anything
from 5 % to 35 %). ADWIN and DDM (``river.drift.binary.DDM``, the classic monitor of a
classifier's error rate) are available by name. Only a **rise** counts: a fall is the
donor settling, and the detector simply starts afresh.

**Window.** A change begins right after the last recheck the donor still answered as
before (the change point of the contradictions since the detector last fired,
:func:`twinkit.monitor.drift.change_point`). From there on the clone learns only from the
answers since that point: a sliding window of answers whose start the detector chooses,
personalised from the population prior as a new clone would be. The answers before it are
kept (the ledger and the store hold them) but no longer teach.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from river import drift
from river.drift import binary

from twinkit.monitor.drift import fires

#: detectors of an agreement stream by name (see the module docstring)
ANSWER_DETECTORS: dict[str, Callable[[int], Any]] = {
    "page_hinkley": lambda seed: drift.PageHinkley(
        min_instances=20, delta=0.05, threshold=8.0, mode="up"
    ),
    "adwin": lambda seed: drift.ADWIN(  # type: ignore[no-untyped-call]
        delta=0.002, clock=1, grace_period=20, min_window_length=5
    ),
    "ddm": lambda seed: binary.DDM(warm_start=30, drift_threshold=3.0),
}
#: the agreement stream's detector unless one is named
DEFAULT_ANSWER_DETECTOR = "page_hinkley"
#: the share of each batch of questions that re-asks past answers (rounded up)
RECHECK_SHARE = 0.3


@dataclass(frozen=True)
class DonorChange:
    """A rise in the clone's disagreement with its donor: found at answer ``at`` (0-based,
    in arrival order), beginning at answer ``start``; the disagreement rates before it
    (since the detector last fired) and from ``start`` to ``at``."""

    at: int
    start: int
    disagreement_before: float
    disagreement_after: float
    detector: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "start": self.start,
            "disagreement_before": round(self.disagreement_before, 4),
            "disagreement_after": round(self.disagreement_after, 4),
            "answers": self.at + 1 - self.start,
            "detector": self.detector,
        }


def donor_changes(
    agree: Sequence[bool] | np.ndarray,
    detector: str = DEFAULT_ANSWER_DETECTOR,
    seed: int = 0,
) -> list[DonorChange]:
    """The donor's changes in an agreement stream (oldest answer first): where a fresh
    detector fed the disagreements fired on a rise. The same stream gives the same
    changes, so replaying a growing stream finds each change once, at the same answer.

    >>> changed = [True] * 60 + [False, False, True, False] * 15
    >>> [(c.start, c.at) for c in donor_changes(changed)]
    [(60, 72)]
    >>> donor_changes([True, False] * 60)
    []
    """
    disagree = 1.0 - np.asarray(agree, dtype=np.float64)
    out: list[DonorChange] = []
    for i, start, since in fires(disagree, detector, seed, ANSWER_DETECTORS):
        before = float(disagree[since:start].mean())
        after = float(disagree[start : i + 1].mean())
        if after > before:
            out.append(DonorChange(i, start, before, after, detector))
    return out


@dataclass(frozen=True)
class Recheck:
    """A past question asked again: the donor's answer ``answer`` (its index among all
    answers, in arrival order) on ``item``, which they had answered ``before``."""

    answer: int
    item: str
    before: str
    now: str

    @property
    def contradicts(self) -> bool:
        return self.before != self.now


def recheck_changes(
    rechecks: Sequence[Recheck], detector: str = DEFAULT_ANSWER_DETECTOR, seed: int = 0
) -> list[DonorChange]:
    """The donor's changes found in their rechecks (oldest first): where the detector fed
    the contradictions (1 when the donor now answers otherwise) fired on a rise. A
    change is ``at`` the answer of the recheck that made it fire and starts right after
    the last recheck the donor still answered as before (indices among all answers);
    the rates are the contradictions' before and within the change.

    >>> same = [Recheck(10 * n, f"i{n}", "9", "9") for n in range(30)]
    >>> flipped = [Recheck(300 + 10 * n, f"i{n}", "9", "4") for n in range(10)]
    >>> [(c.start, c.at) for c in recheck_changes(same + flipped)]
    [(291, 390)]
    """
    contradicted = np.asarray([r.contradicts for r in rechecks], dtype=np.float64)
    out: list[DonorChange] = []
    for i, start, since in fires(contradicted, detector, seed, ANSWER_DETECTORS):
        before = float(contradicted[since:start].mean())
        after = float(contradicted[start : i + 1].mean())
        if after > before:
            first = rechecks[start - 1].answer + 1
            out.append(DonorChange(rechecks[i].answer, first, before, after, detector))
    return out


def recheck_quota(asked: int, rechecked: int, k: int, share: float = RECHECK_SHARE) -> int:
    """How many of the next ``k`` questions recheck, when ``asked`` questions were asked
    so far and ``rechecked`` of them were rechecks: what brings the rechecks to ``share``
    of all questions, but no more than ``share`` of the ``k`` (rounded up). A batch of 10
    gets 3; batches of one recheck about one question in three.

    >>> recheck_quota(0, 0, 10), recheck_quota(20, 6, 10), recheck_quota(20, 0, 10)
    (3, 3, 3)
    >>> [recheck_quota(n, r, 1) for n, r in [(0, 0), (1, 0), (2, 1), (3, 1), (4, 1)]]
    [0, 1, 0, 0, 1]
    """
    if k <= 0 or share <= 0:
        return 0
    owed = round(share * (asked + k)) - rechecked
    return max(0, min(k, math.ceil(share * k), owed))


def pick_rechecks(
    labels: Sequence[str], usual: Sequence[str], items: Sequence[str], start: int, k: int
) -> list[int]:
    """Which past answers to ask again (indices into the answers, in arrival order): of
    the answers from ``start`` on, the newest one per item, where the donor's answer
    (``labels``) differs from what people in general answer (``usual``): the donor's
    personal zone, by their own answers. Asked again longest ago first; at most ``k``."""
    newest: dict[str, int] = {}
    for j in range(start, len(labels)):
        newest[items[j]] = j
    zone = sorted(j for j in newest.values() if labels[j] != usual[j])
    return zone[:k]


def window_start(changes: Sequence[DonorChange]) -> int:
    """The first answer the clone learns from: the newest change's start, else 0."""
    return changes[-1].start if changes else 0
