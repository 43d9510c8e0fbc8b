"""``twinkit eval immunity`` on a tiny .npz: the report's layout, and bad files refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits

from twinkit.cli.testing import run as run_cli


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `twinkit ARGS`; stderr is wrapped to the terminal's width, so its words are
    compared, not its line breaks."""
    code, out, err = run_cli(capsys, *args)
    return code, out, " ".join(err.split())


@pytest.fixture
def digits_npz(tmp_path: Path) -> Path:
    """250 of sklearn's 8x8 digits as uint8 images (N x 8 x 8, 0-255) and their labels."""
    data = load_digits()
    images = np.round(data.images[:250] * 255 / 16).astype(np.uint8)
    path = tmp_path / "digits.npz"
    np.savez(path, X=images, y=data.target[:250])
    return path


def evaluate(
    capsys: pytest.CaptureFixture[str], npz: Path, tmp_path: Path, *options: str
) -> tuple[int, str, dict[str, Any]]:
    """`twinkit eval immunity NPZ --eps 0.1 OPTIONS --json OUT`: exit code, stdout and the
    report written (empty when the command failed)."""
    out = tmp_path / "imm.json"
    code, stdout, _ = run(
        capsys, "eval", "immunity", str(npz), "--eps", "0.1", *options, "--json", str(out)
    )
    return code, stdout, json.loads(out.read_text()) if code == 0 else {}


def test_eval_immunity_writes_the_report(
    capsys: pytest.CaptureFixture[str], digits_npz: Path, tmp_path: Path
) -> None:
    # Execute
    code, stdout, report = evaluate(
        capsys, digits_npz, tmp_path, "--vaccine", "20", "--no-adv-training", "--no-poisoning"
    )

    # Assert: the layout, accuracies in [0, 1], the switched-off parts None
    assert code == 0, stdout
    assert 0.5 < report["clean_acc"] <= 1.0
    assert report["vaccine_samples"] == 20
    for attack in ("fgsm", "pgd"):
        row = report["attacks"][attack]["0.1"]
        for key in ("undefended", "vaccinated_replay", "vaccinated_adaptive"):
            assert 0.0 <= row[key] <= 1.0
        assert row["adv_trained_adaptive"] is None
    assert report["poisoning"] is None
    assert "clean accuracy" in stdout


def test_eval_immunity_adversarial_training_options(
    capsys: pytest.CaptureFixture[str], digits_npz: Path, tmp_path: Path
) -> None:
    code, stdout, report = evaluate(
        capsys, digits_npz, tmp_path,
        "--vaccine", "12", "--adv-loss", "madry", "--adv-width", "4", "--adv-epochs", "3",
        "--adv-awp", "0.01", "--adv-binarize", "0.5", "--no-poisoning",
    )  # fmt: skip

    assert code == 0, stdout
    trained = report["threat_model"]["adv_training"]
    assert trained["loss"] == "madry" and trained["cnn_width"] == 4 and trained["epochs"] == 3
    assert trained["awp"] == 0.01 and trained["binarize"] == 0.5
    combined = report["attacks"]["pgd"]["0.1"]["adv_trained_adaptive"]
    alone = report["adv_trained_by_attack"]["0.1"]
    assert 0.0 <= combined <= min(alone["pgd_bpda"], alone["square"])
    code, _, err = run(capsys, "eval", "immunity", str(digits_npz), "--adv-loss", "mart")
    assert code == 1 and "--adv-loss must be trades or madry" in err


def test_eval_immunity_flip_seeds(
    capsys: pytest.CaptureFixture[str], digits_npz: Path, tmp_path: Path
) -> None:
    code, stdout, report = evaluate(
        capsys, digits_npz, tmp_path,
        "--vaccine", "12", "--no-adv-training", "--flip-seeds", "2", "--flip-threshold", "0.05",
        "--seed", "3",
    )  # fmt: skip

    assert code == 0, stdout
    by_seed = report["poisoning_by_seed"]["label_flip_0.1"]
    assert by_seed["training_seeds"] == [3, 4]
    assert "p(label) < 0.05" in report["threat_model"]["poison_screen"]["label_flip"]
    screened = report["poisoning"]["label_flip_0.1"]["acc_screened"]
    assert screened == pytest.approx(sum(by_seed["acc_screened"]) / 2)
    code, _, err = run(capsys, "eval", "immunity", str(digits_npz), "--flip-seeds", "0")
    assert code == 1 and "--flip-seeds" in err


def test_eval_immunity_refuses_bad_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    no_labels = tmp_path / "no_y.npz"
    np.savez(no_labels, X=np.zeros((10, 4)))
    code, _, err = run(capsys, "eval", "immunity", str(no_labels))
    assert code == 1 and "missing ['y']" in err

    text = tmp_path / "notes.txt"
    text.write_text("not an array file")
    code, _, err = run(capsys, "eval", "immunity", str(text))
    assert code == 1 and "not a readable .npz" in err

    ragged = tmp_path / "ragged.npz"
    np.savez(ragged, X=np.zeros((10, 4)), y=np.zeros(9))
    code, _, err = run(capsys, "eval", "immunity", str(ragged), "--eps", "0.1")
    assert code == 1 and "X has 10 rows but y has 9" in err

    code, _, err = run(capsys, "eval", "immunity", str(ragged), "--eps", "2")
    assert code == 1 and "--eps" in err


def test_eval_immunity_runs_the_attacks_asked_for(
    capsys: pytest.CaptureFixture[str], digits_npz: Path, tmp_path: Path
) -> None:
    # Execute
    code, stdout, report = evaluate(
        capsys, digits_npz, tmp_path,
        "--attacks", "pgd_l2,bpda,pgd_l2", "--vaccine", "12", "--no-adv-training",
        "--no-poisoning",
    )  # fmt: skip
    unknown = run(capsys, "eval", "immunity", str(digits_npz), "--attacks", "fgsm,cw")
    forecaster = run(capsys, "eval", "immunity", str(digits_npz), "--attacks", "history_pgd")

    # Assert: each once, in the order given, described in the threat model
    assert code == 0, stdout
    assert list(report["attacks"]) == ["pgd_l2", "bpda"]
    described = report["threat_model"]["attacks"]
    assert described["pgd_l2"]["norm"] == "l2" and described["bpda"]["norm"] == "linf"
    assert report["threat_model"]["norm"] == "per attack"
    assert unknown[0] == 1 and "unknown classifier attack 'cw': choose among" in unknown[2]
    assert forecaster[0] == 1 and "unknown classifier attack 'history_pgd'" in forecaster[2]


def test_eval_immunity_forecast_takes_one_forecaster_attack(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Prepare: a signals file (the attack is chosen before any twin is read)
    signals = tmp_path / "signals.csv"
    signals.write_text(
        "twin_id,time,channel,value\np1,2026-01-01T00:00:00Z,glucose,100\n"
        "p1,2026-01-01T00:05:00Z,glucose,102\n"
    )

    # Execute
    two = run(capsys, "eval", "immunity", "--forecast", str(signals), "--attacks", "history_pgd,x")
    classifier = run(capsys, "eval", "immunity", "--forecast", str(signals), "--attacks", "pgd")

    # Assert
    assert two[0] == 1 and "--forecast runs one attack at a time" in two[2]
    assert classifier[0] == 1
    assert "unknown forecaster attack 'pgd': choose among history_pgd" in classifier[2]
