"""Torch execution settings shared by twinkit's small networks and GPs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread for the block, then restore the caller's setting.

    These models are small: handing each op to a second thread costs more than it saves
    (about 10 ms per op, and a GP fit 20 times slower, when the other core is busy), and
    one thread makes the arithmetic, hence the result, the same on any number of cores.
    ``torch.set_num_threads`` is process-wide, so this is not safe across Python threads.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch on one thread for the block; leave the caller's random state as it was."""
    with torch.random.fork_rng(devices=[]), one_thread():
        torch.manual_seed(seed)
        yield
