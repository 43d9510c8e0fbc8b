"""Progress: long work reports ``(what, done, total)``; the command line draws a bar with
the time left on a terminal, and nothing with ``--quiet`` or when stderr is a file."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from twinkit.cli import common
from twinkit.cli.testing import run
from twinkit.core.progress import ProgressFn
from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.eval.forecast_benchmark import evaluate_forecasts
from twinkit.models.gru import GRUAttention

Seen = list[tuple[str, int, int]]


def _record(seen: Seen) -> ProgressFn:
    def report(what: str, done: int, total: int) -> None:
        seen.append((what, done, total))

    return report


def _counts_up(seen: Seen) -> None:
    assert seen, "no progress was reported"
    total = seen[0][2]
    assert all(t == total for _, _, t in seen)
    done = [d for _, d, _ in seen]
    assert done == sorted(done) and done[0] == 0 and done[-1] == total


def test_an_evaluation_counts_its_twins_and_population_folds() -> None:
    seen: Seen = []
    frame = synthetic_cohort(n_twins=3, days=2, seed=1)
    evaluate_forecasts(frame, "glucose", [30], models=["persistence", "linear_ar"],
                       max_origins=20, progress=_record(seen))  # fmt: skip
    _counts_up(seen)
    assert seen[0][2] == 3  # no population model asked for: one step per twin
    assert {w for w, _, _ in seen[:-1]} == {"synth-001", "synth-002", "synth-003"}


def test_a_neural_model_reports_its_epochs() -> None:
    seen: Seen = []
    frame = synthetic_cohort(n_twins=1, days=3, seed=2)
    wide = frame.pivot_table(index="time", columns="channel", values="value")
    model = GRUAttention.tiny(target="glucose", seed=0)
    model.progress = _record(seen)
    model.fit(wide)
    _counts_up(seen)
    assert seen[0][0].startswith("epoch 1 of at most")


@pytest.fixture
def signals(tmp_path: Path) -> Path:
    frame = synthetic_cohort(n_twins=2, days=2, seed=3)
    frame["time"] = frame["time"].map(lambda t: t.isoformat())
    path = tmp_path / "signals.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("quiet", [False, True])
def test_the_command_draws_a_bar_on_a_terminal_unless_quiet(
    quiet: bool,
    signals: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(common, "err", Console(file=screen, force_terminal=True, width=120))
    args = ["eval", "forecast", str(signals), "--models", "persistence", "--max-origins", "10"]
    code, out, _ = run(capsys, *(["--quiet"] if quiet else []), *args)
    assert code == 0
    assert "persistence" in out  # the table, on stdout, either way
    drawn = screen.getvalue()
    if quiet:
        assert drawn.strip() == ""  # no bar, no spinner
    else:
        assert "evaluating forecasters" in drawn and "eta" in drawn and "2/2" in drawn


def test_without_a_terminal_the_output_stays_clean(
    signals: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "eval", "forecast", str(signals), "--models", "persistence", "--max-origins", "10"
    )
    assert code == 0
    assert "persistence" in out
    assert err == ""  # stderr is pytest's capture, not a terminal: no bar, no spinner
