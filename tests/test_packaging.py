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
    assert parts == set(extras) - {"all", "dev"}
    assert any(r.startswith("pytest") for r in extras["dev"])
    # the README's commands (make) install the tools as well
    assert "'.[all,dev]'" in (ROOT / "Makefile").read_text()
