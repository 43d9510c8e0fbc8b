"""`twinkit report`: one self-contained HTML file on your own twins, state and decision,
with and without a model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twinkit.cli.testing import run
from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine
from twinkit.report.owner import write_owner_report


@pytest.fixture
def store(engine: TwinEngine) -> TwinEngine:
    """p1: a state twin in Berlin with two days of glucose, fitted, and one NaN reading in
    quarantine; p2: a state twin without a model; d1: a decision twin with labels."""
    frame = synthetic_cohort(n_twins=1, days=2, seed=7).drop(columns="twin_id")
    engine.create_twin("p1", "state", metadata={"tz": "Europe/Berlin"})
    bad = pd.DataFrame({"time": ["2026-01-05T00:02:00Z"], "channel": ["glucose"],
                        "value": [float("nan")]})  # fmt: skip
    engine.ingest(pd.concat([frame, bad]), twin="p1")
    engine.fit("p1", model="linear_ar")
    engine.create_twin("p2", "state")
    engine.ingest(frame.iloc[:20], twin="p2")
    engine.create_twin("d1", "decision")
    rng = np.random.default_rng(0)
    labels = pd.DataFrame(
        {"item_id": [f"i{k}" for k in range(30)], "f0": rng.normal(size=30),
         "label": ["a", "b"] * 15}
    )  # fmt: skip
    engine.ingest(labels, twin="d1")
    return engine


def test_the_report_covers_every_kind_of_twin(store: TwinEngine, tmp_path: Path) -> None:
    now = pd.Timestamp("2026-01-07T12:00:00Z")
    path = write_owner_report(store, tmp_path / "r.html", now=now)
    text = path.read_text()

    # one section per twin
    for twin in ("p1", "p2", "d1"):
        assert f"<section class='twin' id='{twin}'>" in text
    p1 = text.split("id='p1'>")[1].split("</section>")[0]
    # the chart: clock times of Berlin, the unit, the target range and the hypo line
    assert '<rect class="target"' in p1 and '<line class="hypo"' in p1
    assert "glucose (mg/dL)</text>" in p1 and "time (Europe/Berlin)</text>" in p1
    assert re.search(r">\d{2}:00</text>", p1)
    # recent data, accuracy, quarantine by reason, versions, the ledger in words
    assert "time in range 70-180 mg/dL" in p1
    assert "Holdout accuracy (v1)" in p1
    assert "<td>non-finite value</td><td>1</td>" in p1
    assert "<td>v1</td><td>linear_ar</td><td>serving</td>" in p1
    assert "Model v1 now serves (automatically)" in p1
    assert "The last reading is" in p1  # the data end on Jan 7, 00:00: 12 h before "now"
    # a twin without a model, a decision twin
    p2 = text.split("id='p2'>")[1].split("</section>")[0]
    assert "No model yet: <code>twinkit fit p2</code>" in p2
    d1 = text.split("id='d1'>")[1].split("</section>")[0]
    assert "30 decisions" in d1 and "No clone yet" in d1
    assert "id='robustness'" not in d1  # no robustness report was made
    # self-contained and printable
    assert "<script" not in text and not re.search(r"(src|href)=['\"]?https?:", text)
    assert "@media print" in text


def test_the_command_writes_the_named_twins(
    store: TwinEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    out = tmp_path / "mine.html"
    code, stdout, err = run(capsys, "--db", db_url, "report", "p1", "d1", "--out", str(out))
    assert code == 0, err
    text = out.read_text()
    assert "id='p1'" in text and "id='d1'" in text and "id='p2'" not in text
    assert str(out) in stdout
    code, _, err = run(capsys, "--db", db_url, "report", "nobody", "--out", str(out))
    assert code == 1 and "nobody" in err


def test_a_decision_twins_robustness_report_is_shown_where_one_was_made(
    store: TwinEngine, tmp_path: Path
) -> None:
    # Prepare: the service's robustness job, run and finished as a worker would
    d1 = store.get_twin("d1")
    job = store.jobs.create(d1.key, d1.owner, "robustness", {}, twin_uid=d1.uid)
    store.jobs.start(job.id)
    made = store.robustness_report("d1", eps=[0.1], attacks=["fgsm"], vaccine=20, pgd_steps=5)
    store.jobs.finish(job.id, made)

    # Execute
    text = write_owner_report(store, tmp_path / "r.html", ["d1"]).read_text()

    # Assert
    assert "<section id='robustness'><h2>Robustness</h2>" in text
    assert "fgsm" in text and "From the robustness job of" in text
