"""Screening: the stage between validation and storage that quarantines suspicious rows."""

from __future__ import annotations

from twinkit.screen.base import Screen, ScreenContext, Screening, run_screens
from twinkit.screen.rules import (
    DEFAULT_DECISION_SCREENS,
    DEFAULT_SIGNAL_SCREENS,
    ConflictingLabel,
    ConflictingValue,
    DeviceFlag,
    FutureTime,
    NonFinite,
    OutOfRange,
)

__all__ = [
    "DEFAULT_DECISION_SCREENS",
    "DEFAULT_SIGNAL_SCREENS",
    "ConflictingLabel",
    "ConflictingValue",
    "DeviceFlag",
    "FutureTime",
    "NonFinite",
    "OutOfRange",
    "Screen",
    "ScreenContext",
    "Screening",
    "run_screens",
]
