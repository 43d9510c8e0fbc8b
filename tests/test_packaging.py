"""What the package declares: the `all` extra is the product, the test tools are `dev`."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
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
    # every product extra but `compare`, the outside comparators of the forecast
    # evaluation (statsforecast, which pulls numba)
    assert parts == set(extras) - {"all", "dev", "compare"}
    assert not any("pandas" in r for r in extras["all"])
    assert any(r.startswith("pytest") for r in extras["dev"])
    # the README's commands (make) install the tools as well
    assert "'.[all,dev]'" in (ROOT / "Makefile").read_text()


def _requirement_names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements
    }


def _imported_top_modules() -> set[str]:
    """The top-level modules twinkit's source imports, other than its own and Python's."""
    found: set[str] = set()
    for path in (ROOT / "src" / "twinkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"twinkit"}


def test_everything_the_code_imports_is_declared() -> None:
    """Each library the source imports comes from a distribution that pyproject.toml
    declares (in the core or in a product extra, not only in `dev`), and the Makefile
    installs nothing behind pyproject's back."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _requirement_names(project["dependencies"])
    for name, requirements in project["optional-dependencies"].items():
        if name != "dev":
            declared |= _requirement_names(requirements)
    providers = importlib.metadata.packages_distributions()
    undeclared = {}
    for module in sorted(_imported_top_modules()):
        # a library this environment lacks (an extra not installed) is known by its name
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [module])}
        if not dists & declared:
            undeclared[module] = sorted(dists)
    assert not undeclared, undeclared
    assert "--no-deps" not in (ROOT / "Makefile").read_text()
