"""The `twinkit` command line over TwinEngine: exit 0 ok, 1 user error, 2 integrity failure."""

from __future__ import annotations

import sys

import typer

from twinkit.cli import clone, federated, immunity, imports, learn, monitor, report, serve, store  # noqa: F401  (importing them registers the commands)
from twinkit.cli.common import app, err
from twinkit.core.errors import TwinkitError

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: user errors exit 1, integrity failures exit 2, with a clear message."""
    try:
        code = app(standalone_mode=False)
    except TwinkitError as exc:
        err.print("error:", style="red", end=" ")
        err.print(str(exc), markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(1)
    except Exception as exc:
        # Typer's usage errors (unknown option, missing argument) know how to show
        # themselves; they are user errors like any other.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
            sys.exit(1)
        raise
    sys.exit(code if isinstance(code, int) else 0)
