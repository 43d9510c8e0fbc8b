"""Ready-made datasets, real or simulated, in twinkit's long format."""

from __future__ import annotations
