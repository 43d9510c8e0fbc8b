"""Plugins: packages that add forecasters, decision models or attacks, found by their
entry points, so that nothing needs importing them by hand.

A plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."twinkit.plugins"]
    my_models = "my_package.twinkit_models"

and the module named there registers its classes when imported (``@register_forecaster``,
``@register_decision_model``, ``@register_attack``). The registries load every installed
plugin the first time they are asked (:func:`load_plugins`), so the CLI, the service, a
job's child process and a script all see the same classes. A plugin that fails to import
is an error naming it, not a silent gap.
"""

from __future__ import annotations

import threading
from importlib.metadata import entry_points

from twinkit.core.errors import TwinkitError

#: the entry-point group plugins declare
GROUP = "twinkit.plugins"

_lock = threading.RLock()
_loaded: list[str] | None = None


def load_plugins() -> list[str]:
    """Import every installed plugin's module, once per process; return their names.

    Raises :class:`TwinkitError` naming a plugin whose module cannot be imported (and tries
    again at the next call).
    """
    global _loaded
    if _loaded is not None:  # the common case, without the lock
        return list(_loaded)
    with _lock:  # re-entrant: a plugin's module may itself ask a registry
        if _loaded is not None:
            return list(_loaded)
        _loaded = []  # a registry asked while a plugin loads sees what is there so far
        names = []
        try:
            for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
                try:
                    point.load()
                except Exception as exc:
                    raise TwinkitError(
                        f"the twinkit plugin {point.name!r} ({point.value}) failed to load: "
                        f"{type(exc).__name__}: {exc}; fix or uninstall it"
                    ) from exc
                names.append(point.name)
        except BaseException:
            _loaded = None
            raise
        _loaded = names
        return list(names)


def forget_plugins() -> None:
    """Load the plugins again at the next registry call (for tests that install one)."""
    global _loaded
    with _lock:
        _loaded = None
