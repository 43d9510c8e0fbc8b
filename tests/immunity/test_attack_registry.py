"""The attack registry: what it holds and declares, the same numbers as the functions it
fronts, a new attack listed and run everywhere attacks are chosen, and the lifecycle's
robustness core outside ``eval/``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from twinkit.checks.attacks import tiny_clone
from twinkit.cli.testing import run
from twinkit.clone.model import CloneModel
from twinkit.core.errors import TwinkitError
from twinkit.engine.robustness import check_attacks
from twinkit.immunity import (
    FGSM,
    PGD,
    PGDL2,
    ClassifierAttack,
    attack_class,
    classifier_attack,
    fgsm,
    pgd,
    register_attack,
    registered_attacks,
)
from twinkit.immunity.attacks import Bound, Labels, Target
from twinkit.immunity.base import Access, AttackNorm, AttackSettings, unregister_attack
from twinkit.immunity.evasion import evasion_report, split_items

SRC = Path(__file__).resolve().parents[2] / "src"


class Nudge(ClassifierAttack):
    """Every feature moved by eps toward the middle of the range: a test's own attack."""

    name: ClassVar[str] = "nudge_for_the_test"
    norm: ClassVar[AttackNorm] = "linf"
    budget: ClassVar[str] = "eps: the most any feature moves"
    targeted: ClassVar[bool] = False
    access: ClassVar[Access] = "query"

    def generate(
        self,
        model: CloneModel,
        x: np.ndarray,
        y: Labels | None,
        eps: float,
        *,
        seed: int = 0,
        low: Bound = 0.0,
        high: Bound = 1.0,
        target: Target | None = None,
    ) -> np.ndarray:
        self._refuse_target(target)
        out: np.ndarray = np.clip(x + eps * np.sign(0.5 - x), low, high)
        return out


@pytest.fixture
def nudge() -> Iterator[type[Nudge]]:
    """The test's attack, registered for the test only."""
    register_attack(Nudge)
    yield Nudge
    unregister_attack(Nudge.name)


def test_the_registry_holds_twinkits_attacks_with_what_they_declare() -> None:
    # Execute
    classifier = registered_attacks("classifier")
    forecaster = registered_attacks("forecaster")

    # Assert
    assert classifier == ["bpda", "fgsm", "pgd", "pgd_l2", "square"]
    assert forecaster == ["history_pgd"]
    assert sorted(classifier + forecaster) == registered_attacks()
    declared = {n: attack_class(n).describe() for n in registered_attacks()}
    assert declared["pgd_l2"]["norm"] == "l2" and declared["pgd"]["norm"] == "linf"
    assert declared["square"]["access"] == "query" and not declared["square"]["targeted"]
    assert declared["fgsm"]["access"] == "gradient" and declared["fgsm"]["targeted"]
    assert declared["history_pgd"]["attacks"] == "forecaster"
    assert "straight-through" in str(declared["bpda"]["summary"])


def test_registered_attacks_give_the_functions_numbers() -> None:
    # Prepare
    model, x, labels = tiny_clone(images=False)

    # Execute / Assert: the classes front the functions, number for number
    np.testing.assert_array_equal(
        FGSM().generate(model, x, labels, 0.2), fgsm(model, x, labels, 0.2)
    )
    np.testing.assert_array_equal(
        PGD(steps=7).generate(model, x, labels, 0.2, seed=3),
        pgd(model, x, labels, 0.2, steps=7, seed=3),
    )
    np.testing.assert_array_equal(
        PGDL2(steps=7).generate(model, x, None, 0.5, seed=3, target="b"),
        pgd(model, x, None, 0.5, norm="l2", steps=7, seed=3, targeted=True, target="b"),
    )
    settings = AttackSettings(steps=9, restarts=2)
    built = classifier_attack("bpda", settings)
    assert isinstance(built, PGD) and (built.steps, built.restarts) == (9, 2)


def test_registration_refuses_what_is_not_an_attack() -> None:
    # Prepare: a class without a norm, and one taking a name in use
    class NoNorm(Nudge):
        name: ClassVar[str] = "no_norm_for_the_test"
        norm = "l1"  # type: ignore[assignment]

    class Impostor(Nudge):
        name: ClassVar[str] = "pgd"

    # Execute / Assert
    with pytest.raises(TwinkitError, match="norm must be one of"):
        register_attack(NoNorm)
    with pytest.raises(TwinkitError, match="'pgd' is registered already"):
        register_attack(Impostor)
    assert attack_class("pgd") is PGD
    with pytest.raises(TwinkitError, match="unknown classifier attack 'history_pgd'"):
        attack_class("history_pgd", "classifier")


def test_a_new_attack_is_listed_and_run(
    nudge: type[Nudge], capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a few flat items in [0, 1], three labels
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (45, 3))
    y = np.where(x[:, 0] < 0.33, "low", np.where(x[:, 0] < 0.66, "mid", "high"))
    items = split_items(x[:30], y[:30].tolist(), x[30:], y[30:].tolist())

    # Execute
    listed = registered_attacks("classifier")
    code, table, _ = run(capsys, "eval", "attacks")
    code_json, out, _ = run(capsys, "eval", "attacks", "--json")
    report = evasion_report(
        items, eps=(0.1,), vaccine=12, attacks=[nudge.name], adv_training=False, epochs=5
    )

    # Assert: listed by the registry and the CLI, run by the report
    assert nudge.name in listed
    assert code == 0 and nudge.name in table
    assert code_json == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert set(rows) == set(registered_attacks())
    assert rows[nudge.name]["access"] == "query"
    assert list(report["attacks"]) == [nudge.name]
    assert 0.0 <= report["attacks"][nudge.name]["0.1"]["undefended"] <= 1.0
    assert report["threat_model"]["attacks"][nudge.name]["norm"] == "linf"
    assert report["threat_model"]["white_box"] is False


def test_every_registered_attack_is_in_the_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    code, out, _ = run(capsys, "eval", "immunity", "--help")

    # Assert
    words = " ".join(out.replace("│", " ").split())
    assert code == 0
    for name in registered_attacks():
        assert name in words, name


def test_attacks_unfit_for_the_items_are_refused_before_any_work() -> None:
    # Prepare
    x = np.random.default_rng(0).uniform(0.0, 1.0, (20, 3))
    items = split_items(x[:14], ["a", "b"] * 7, x[14:], ["a", "b"] * 3)

    # Execute / Assert
    with pytest.raises(TwinkitError, match="the square attack perturbs images"):
        evasion_report(items, attacks=["square"])
    with pytest.raises(TwinkitError, match=r"unknown classifier attack 'cw': choose among bpda"):
        evasion_report(items, attacks=["fgsm", "cw"])
    with pytest.raises(TwinkitError, match="unknown classifier attack 'history_pgd'"):
        evasion_report(items, attacks=["history_pgd"])
    with pytest.raises(TwinkitError, match="this twin's decisions are flat features"):
        check_attacks(["pgd", "square"])
    check_attacks(["fgsm", "pgd", "pgd_l2", "bpda"])
    check_attacks(["pgd", "square"], image_shape=(4, 4))  # a twin whose items are images


PLUGIN = '''
from typing import ClassVar
from twinkit.immunity import FGSM, register_attack

@register_attack
class Plugin(FGSM):
    """FGSM under another name: a plugin of one module."""

    name: ClassVar[str] = "plugin_fgsm"
'''


@pytest.fixture(scope="module")
def fresh_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What a fresh interpreter saw: the modules loaded by loading every module of the
    lifecycle, then, a plugin module of one attack imported, the REST schema's attack
    names and the CLI help. One interpreter for both: each start costs seconds."""
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "my_attack.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(folder)]), "COLUMNS": "200"}
    code = """
        import importlib, io, json, pkgutil, sys
        from contextlib import redirect_stdout
        import twinkit.engine
        for module in pkgutil.iter_modules(twinkit.engine.__path__):
            importlib.import_module(f"twinkit.engine.{module.name}")
        faces = ("twinkit.eval", "twinkit.cli", "twinkit.service")
        loaded = sorted(m for m in sys.modules if m.startswith(faces))

        import my_attack
        from twinkit.service.routes.robustness import RobustnessRequest
        schema = RobustnessRequest.model_json_schema()["properties"]["attacks"]
        sys.argv = ["twinkit", "eval", "immunity", "--help"]
        from twinkit.cli import main
        shown = io.StringIO()
        with redirect_stdout(shown):
            try:
                main()
            except SystemExit:
                pass
        seen = {"loaded": loaded, "enum": schema["items"]["enum"], "help": shown.getvalue()}
        print(json.dumps(seen))
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def test_an_attack_is_one_new_module(fresh_process: dict[str, Any]) -> None:
    """A module that registers an attack, imported before the app and the CLI are built,
    is listed by the REST schema and the CLI help with nothing else changed."""
    # Assert
    assert fresh_process["enum"] == ["bpda", "fgsm", "pgd", "pgd_l2", "plugin_fgsm", "square"]
    assert "plugin_fgsm" in fresh_process["help"]


def test_the_engine_imports_nothing_from_eval(fresh_process: dict[str, Any]) -> None:
    """Loading every module of the lifecycle (the robustness job among them) loads no
    benchmark runner, CLI or service module (the import-rule test checks the source)."""
    # Assert
    assert fresh_process["loaded"] == []
