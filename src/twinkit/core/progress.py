"""How long work says how far it is: ``progress(what, done, total)``.

Long-running functions (evaluations, population training) take a ``progress`` callback
and call it as each step starts: what the step is, how many steps are done, how many
there are. The command line draws a bar with the time left from it; a script passes a
printer, or nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

#: ``progress(what, done, total)``: the step that starts, steps done, steps in all
ProgressFn = Callable[[str, int, int], None]


class Steps:
    """Counts the steps of a known total and reports each one as it starts.

    >>> seen = []
    >>> steps = Steps(2, lambda what, done, total: seen.append((what, done, total)))
    >>> steps("first"); steps("second"); steps.finish()
    >>> seen
    [('first', 0, 2), ('second', 1, 2), ('done', 2, 2)]
    """

    def __init__(self, total: int, progress: ProgressFn | None = None) -> None:
        self.total = max(int(total), 1)
        self.progress = progress
        self.done = -1

    def __call__(self, what: str) -> None:
        self.done = min(self.done + 1, self.total)
        if self.progress is not None:
            self.progress(what, self.done, self.total)

    def finish(self) -> None:
        self.done = self.total
        if self.progress is not None:
            self.progress("done", self.total, self.total)


def to_stderr(what: str, done: int, total: int) -> None:
    """A :data:`ProgressFn` for scripts: one line on stderr per step."""
    print(f"... [{done}/{total}] {what}", file=sys.stderr, flush=True)
