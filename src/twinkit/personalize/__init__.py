"""Personal models on top of a population prior: choosing, fine-tuning, cold start."""

from __future__ import annotations

from twinkit.personalize.select import Candidate, Selection, select_personal_model

__all__ = ["Candidate", "Selection", "select_personal_model"]
