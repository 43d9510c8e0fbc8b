"""What the package declares: the `all` extra is the product, the test tools are `dev`."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _extras() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    return extras


def test_the_all_extra_installs_the_product_not_the_test_tools() -> None:
    extras = _extras()
    (everything,) = extras["all"]
    parts = set(everything.split("[", 1)[1].rstrip("]").split(","))
    # every product extra but `compare`, whose statsforecast pins pandas<3 (the product
    # needs pandas 3): the comparators are installed into an environment of their own
    assert parts == set(extras) - {"all", "dev", "compare"}
    assert not any("pandas" in r for r in extras["all"])
    assert any(r.startswith("pytest") for r in extras["dev"])
    # the README's commands (make) install the tools as well
    assert "'.[all,dev]'" in (ROOT / "Makefile").read_text()
