"""`python -m twinkit`: the same as the `twinkit` command."""

from __future__ import annotations

from twinkit.cli import main

if __name__ == "__main__":
    main()
