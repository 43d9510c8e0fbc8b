"""The `twinkit` command line, run in-process through its real entry point."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from twinkit.cli.testing import run
from twinkit.data.datasets.synthetic import synthetic_cohort


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "cli.db")


@pytest.fixture
def signals_csv(tmp_path: Path) -> Path:
    frame = synthetic_cohort(n_twins=1, days=3, seed=3)
    frame = frame.assign(time=frame["time"].map(lambda t: t.isoformat()))
    path = tmp_path / "signals.csv"
    frame.drop(columns="twin_id").to_csv(path, index=False)  # no twin_id: use --twin
    return path


def test_init_uses_default_path_env_and_flag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TWINKIT_DB", raising=False)
    assert run(capsys, "init")[0] == 0
    assert (tmp_path / ".twinkit" / "twinkit.db").is_file()

    monkeypatch.setenv("TWINKIT_DB", str(tmp_path / "env.db"))
    assert run(capsys, "init")[0] == 0
    assert (tmp_path / "env.db").is_file()

    assert run(capsys, "--db", str(tmp_path / "flag.db"), "init")[0] == 0
    assert (tmp_path / "flag.db").is_file()


def test_twin_lifecycle_and_json(capsys: pytest.CaptureFixture[str], db: str) -> None:
    code, out, _ = run(
        capsys, "twin", "create", "p-1", "--kind", "state", "--owner", "ana",
        "--channel", "glucose", "--meta", "site=lab", "--metadata", '{"age": 41}', "--db", db,
    )  # fmt: skip
    assert code == 0, out
    assert "p-1" in out

    code, out, _ = run(capsys, "twin", "list", "--json", "--db", db)
    listed = json.loads(out)
    assert [t["id"] for t in listed] == ["p-1"]
    assert listed[0]["owner"] == "ana"
    assert listed[0]["metadata"] == {"site": "lab", "age": 41}
    assert listed[0]["channels"][0]["name"] == "glucose"

    code, out, err = run(capsys, "twin", "create", "ana/p-1", "--db", db)
    assert code == 1
    assert "already exists" in err
    # Ids are unique per owner: the local owner may have a p-1 too, named then as owner/id
    code, out, err = run(capsys, "twin", "create", "p-1", "--db", db)
    assert code == 0, err
    code, out, err = run(capsys, "twin", "show", "p-1", "--db", db)
    assert code == 1 and "several owners" in err

    code, _, err = run(capsys, "twin", "create", "bad id!", "--db", db)
    assert code == 1
    assert "invalid twin id" in err

    assert run(capsys, "twin", "delete", "ana/p-1", "--yes", "--db", db)[0] == 0
    assert run(capsys, "twin", "delete", "p-1", "--yes", "--db", db)[0] == 0
    assert json.loads(run(capsys, "twin", "list", "--json", "--db", db)[1]) == []


def test_ingest_fit_predict_models(
    capsys: pytest.CaptureFixture[str], db: str, signals_csv: Path
) -> None:
    run(capsys, "twin", "create", "p1", "--db", db)
    code, out, err = run(capsys, "ingest", str(signals_csv), "--twin", "p1", "--json", "--db", db)
    assert code == 0, err
    result = json.loads(out)
    assert result["n_stored"] == result["n_rows"] > 0

    code, out, _ = run(capsys, "ingest", str(signals_csv), "--twin", "p1", "--db", db)
    assert code == 0
    assert "already ingested" in out

    code, out, err = run(capsys, "fit", "p1", "--json", "--db", db)
    assert code == 0, err
    assert json.loads(out)["fitted"][0]["promoted"] is True
    code, out, err = run(capsys, "fit", "p1", "--model", "persistence", "--db", db)
    assert code == 0, err

    code, out, err = run(capsys, "predict", "p1", "--horizons", "30,60", "--json", "--db", db)
    assert code == 0, err
    forecast = json.loads(out)
    assert forecast["horizons_min"] == [30, 60]
    assert set(forecast["quantiles"]) >= {"0.05", "0.5", "0.95"}

    code, out, _ = run(capsys, "models", "list", "p1", "--json", "--db", db)
    versions = json.loads(out)
    assert [v["version"] for v in versions] == [1, 2]
    other = 2 if versions[0]["status"] == "serving" else 1
    assert run(capsys, "models", "promote", "p1", str(other), "--db", db)[0] == 0
    code, out, _ = run(capsys, "models", "rollback", "p1", "--db", db)
    assert code == 0
    assert "rolled back" in out

    code, out, err = run(
        capsys, "predict", "p1", "--as-of", "2026-01-06T12:00:00", "--json", "--db", db
    )
    assert code == 0, err
    assert json.loads(out)["origin"] <= "2026-01-06T12:00:00+00:00"

    code, out, err = run(capsys, "predict", "p1", "--horizons", "soon", "--db", db)
    assert code == 1
    assert "--horizons" in err


def test_bad_file_exits_1_names_row_and_leaves_store(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    run(capsys, "twin", "create", "p1", "--db", db)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "twin_id,time,channel,value\n"
        "p1,2026-01-01T00:00:00Z,glucose,100\n"
        "p1,2026-01-01T00:05:00Z,glucose,abc\n"
    )
    before = run(capsys, "ledger", "show", "--json", "--db", db)[1]

    code, _, err = run(capsys, "ingest", str(bad), "--db", db)

    assert code == 1
    assert "row 2" in err
    assert "'value'" in err
    assert run(capsys, "ledger", "show", "--json", "--db", db)[1] == before
    listed = json.loads(run(capsys, "twin", "list", "--json", "--db", db)[1])
    assert listed[0]["observations"] == 0


def test_quarantine_list_and_release(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    run(capsys, "twin", "create", "p1", "--channel", "glucose:mg/dL:20:600", "--db", db)
    path = tmp_path / "q.csv"
    path.write_text(
        "twin_id,time,channel,value\n"
        "p1,2026-01-01T00:00:00Z,glucose,100\n"
        "p1,2026-01-01T00:05:00Z,glucose,900\n"
    )
    code, out, _ = run(capsys, "ingest", str(path), "--db", db)
    assert code == 0
    assert "1 quarantined" in out

    held = json.loads(run(capsys, "quarantine", "list", "--json", "--db", db)[1])
    assert len(held) == 1
    assert held[0]["row"] == 2
    assert "outside the plausible range" in held[0]["reason"]

    assert run(capsys, "quarantine", "release", str(held[0]["id"]), "--db", db)[0] == 0
    assert json.loads(run(capsys, "quarantine", "list", "--json", "--db", db)[1]) == []
    assert run(capsys, "ledger", "verify", "--db", db)[0] == 0


def test_ledger_verify_exit_2_names_the_broken_entry(
    capsys: pytest.CaptureFixture[str], db: str
) -> None:
    run(capsys, "twin", "create", "a", "--db", db)
    run(capsys, "twin", "create", "b", "--db", db)
    assert run(capsys, "ledger", "verify", "--db", db)[0] == 0
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE ledger SET payload = replace(payload, 'local', 'mallory') WHERE seq = 1"
        )

    code, out, _ = run(capsys, "ledger", "verify", "--json", "--db", db)

    assert code == 2
    report = json.loads(out)
    assert report["ok"] is False
    assert "ledger entry 1" in report["problems"][0]


def test_ledger_show_history(capsys: pytest.CaptureFixture[str], db: str) -> None:
    run(capsys, "twin", "create", "a", "--db", db)
    code, out, _ = run(capsys, "ledger", "show", "a", "--json", "--db", db)
    assert code == 0
    assert [e["event"] for e in json.loads(out)] == ["twin_created"]


def test_usage_error_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "fit", "--no-such-flag")
    assert code == 1
    assert "No such option" in err


def test_demo_synthetic_writes_report(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    report = tmp_path / "report.html"
    code, out, err = run(
        capsys, "demo", "--source", "synthetic", "--patients", "1", "--days", "3",
        "--report", str(report), "--epochs", "2", "--db", db,
    )  # fmt: skip
    assert code == 0, err
    html = report.read_text()
    assert html.count("<svg") == 1
    assert "synth-001" in html
    assert "ledger verify: ok" in out
    # The last 6 hours came after the fits, an hour at a time: live accuracy (issue #18)
    assert "live: forecasts served before their readings came" in html
    assert "<th>v2 served</th><td>+30 min</td><td>6</td>" in html
    assert "v1 shadow" in html
    # A second run is idempotent: same content, no new batch.
    code, out, _ = run(
        capsys, "demo", "--source", "synthetic", "--patients", "1", "--days", "3",
        "--report", str(report), "--epochs", "2", "--db", db,
    )  # fmt: skip
    assert code == 0
    assert "already ingested" in out


def test_fit_all_reports_a_twin_without_data_and_fits_the_rest(
    capsys: pytest.CaptureFixture[str], db: str, signals_csv: Path
) -> None:
    # Prepare: p1 has data, p2 has none
    run(capsys, "twin", "create", "p1", "--db", db)
    run(capsys, "twin", "create", "p2", "--db", db)
    run(capsys, "ingest", str(signals_csv), "--twin", "p1", "--db", db)

    # Execute: no twin named means every state twin
    code, out, _ = run(capsys, "fit", "--json", "--db", db)

    # Assert
    assert code == 1
    report = json.loads(out)
    assert [r["twin_id"] for r in report["fitted"]] == ["p1"]
    assert "p2" in report["failed"]
    assert "no signals" in report["failed"]["p2"]


def test_population_fit_candidates_and_export(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    # Prepare: two twins with three days each
    frame = synthetic_cohort(n_twins=2, days=3, seed=5)
    path = tmp_path / "cohort.csv"
    frame.assign(time=frame["time"].map(lambda t: t.isoformat())).to_csv(path, index=False)
    for twin_id in ("synth-001", "synth-002"):
        run(capsys, "twin", "create", twin_id, "--db", db)
    run(capsys, "ingest", str(path), "--db", db)

    # Execute
    code, out, err = run(capsys, "population", "fit", "--json", "--db", db)
    assert code == 0, err
    population = json.loads(out)
    code, out, err = run(
        capsys, "fit", "synth-001", "--candidates", "population", "--json", "--db", db
    )
    assert code == 0, err
    fitted = json.loads(out)["fitted"][0]
    code, out, err = run(
        capsys, "export", "synth-001", "--onnx", str(tmp_path / "s1.onnx"), "--db", db
    )

    # Assert
    assert population["version"] == 1
    assert population["twins"] == ["local/synth-001", "local/synth-002"]
    assert population["owners"] == ["local"]
    assert (
        json.loads(run(capsys, "population", "list", "--json", "--db", db)[1])[0]["model"] == "gru"
    )
    assert fitted["selection"]["chosen"] == "population"
    assert code == 0, err
    assert (tmp_path / "s1.onnx").stat().st_size > 0


def test_retract_takes_rows_out_and_the_ledger_verifies(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    run(capsys, "twin", "create", "p1", "--channel", "glucose:mg/dL:20:600", "--db", db)
    path = tmp_path / "r.csv"
    path.write_text(
        "twin_id,time,channel,value\n"
        "p1,2026-01-01T00:00:00Z,glucose,100\n"
        "p1,2026-01-01T00:05:00Z,glucose,110\n"
        "p1,2026-01-01T00:10:00Z,glucose,120\n"
    )
    run(capsys, "ingest", str(path), "--db", db)

    code, out, _ = run(
        capsys,
        "retract",
        "p1",
        "--reason",
        "sensor warm-up",
        "--end",
        "2026-01-01T00:05",
        "--db",
        db,
    )
    no_rows = run(capsys, "retract", "p1", "--reason", "x", "--db", db)

    assert code == 0, out
    assert "retracted 2 row(s) (batch 1: 2)" in out
    assert no_rows[0] == 1
    assert "name the rows" in no_rows[2]
    assert (
        json.loads(run(capsys, "twin", "show", "p1", "--json", "--db", db)[1])["observations"] == 1
    )
    assert run(capsys, "ledger", "verify", "--db", db)[0] == 0
