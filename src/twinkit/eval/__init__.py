"""Benchmark runners: evaluate twinkit's models on data sets, honestly split."""

from __future__ import annotations
