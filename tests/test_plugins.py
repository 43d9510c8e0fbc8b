"""Plugins are found by their entry points (group ``twinkit.plugins``): an installed package
that registers an attack, a forecaster or a decision model is seen by the registries, the
CLI and the service without being imported by hand; one that fails to import is an error
that names it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from twinkit.core.errors import TwinkitError
from twinkit.core.plugins import forget_plugins, load_plugins
from twinkit.immunity.base import registered_attacks, unregister_attack

PLUGIN = '''
from twinkit.immunity.base import register_attack
from twinkit.immunity.classifier_attacks import FGSM


@register_attack
class SignNudge(FGSM):
    """FGSM under another name: enough to see a plugin registered."""

    name = "sign_nudge"
'''


def _install(site: Path, module: str, source: str, dist: str = "twinkit-nudge") -> None:
    """Lay out an installed distribution (as pip would) whose entry point names ``module``."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[twinkit.plugins]\n{module} = {module}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path to install plugins into; the registries forget them after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    forget_plugins()
    yield tmp_path
    unregister_attack("sign_nudge")
    for name in ("nudge_plugin", "broken_plugin"):
        sys.modules.pop(name, None)
    forget_plugins()


def test_an_installed_plugin_is_registered_when_a_registry_is_asked(site: Path) -> None:
    # Prepare
    _install(site, "nudge_plugin", PLUGIN)
    assert "nudge_plugin" not in sys.modules

    # Execute
    attacks = registered_attacks("classifier")

    # Assert: listed, and loaded once
    assert "sign_nudge" in attacks
    assert "nudge_plugin" in load_plugins()


def test_the_cli_lists_a_plugins_attack_in_a_new_process(site: Path) -> None:
    # Prepare
    _install(site, "nudge_plugin", PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}

    # Execute
    done = subprocess.run(
        [sys.executable, "-m", "twinkit", "eval", "attacks", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )

    # Assert
    assert done.returncode == 0, done.stderr
    assert "sign_nudge" in done.stdout


def test_a_plugin_that_fails_to_import_is_named(site: Path) -> None:
    # Prepare
    _install(site, "broken_plugin", "import no_such_module_here\n", dist="twinkit-broken")

    # Execute, Assert: the registry refuses to answer with a gap, naming the plugin
    with pytest.raises(TwinkitError) as failed:
        registered_attacks()
    assert "broken_plugin" in str(failed.value)
    assert "ModuleNotFoundError" in str(failed.value)
