"""Reading, validating and shaping an individual's data."""

from __future__ import annotations
