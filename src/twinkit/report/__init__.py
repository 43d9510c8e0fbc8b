"""Reports a person reads: HTML pages with plots and tables."""

from __future__ import annotations
