"""Running ``twinkit`` in-process, for tests of the command line (like ``typer.testing``)."""

from __future__ import annotations

import sys
from typing import Protocol


class _Captured(Protocol):
    @property
    def out(self) -> str: ...

    @property
    def err(self) -> str: ...


class Capture(Protocol):
    """What pytest's ``capsys`` fixture offers: the output written since the last call."""

    def readouterr(self) -> _Captured: ...


def run(capture: Capture, *args: str) -> tuple[int, str, str]:
    """Run ``twinkit ARGS`` through its real entry point (exit codes and error printing
    included); return (exit code, stdout, stderr)."""
    from twinkit.cli import main

    old = sys.argv
    sys.argv = ["twinkit", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old
    captured = capture.readouterr()
    return code, captured.out, captured.err
