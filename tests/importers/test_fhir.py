"""FHIR R4 Observations: a well-formed Bundle, glucose in the other unit, values beyond the
device's range, entered-in-error Observations, offsets across a DST change, NDJSON, and
truncated or corrupted files (clear error, store unchanged)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from twinkit.core.errors import ValidationError
from twinkit.engine import TwinEngine
from twinkit.importers import fhir

SnapshotFn = Callable[[TwinEngine], dict[str, list[tuple[Any, ...]]]]  # conftest `snapshot`

BERLIN = ZoneInfo("Europe/Berlin")
MG_PER_MMOL = 18.0156
GLUCOSE_MG, GLUCOSE_MMOL, HEART_RATE, STEPS = "2339-0", "15074-8", "8867-4", "55423-8"


def us(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def stored(engine: TwinEngine, twin: str, channel: str = "glucose") -> pd.Series:
    return engine.signals(twin)[channel].dropna()


def morning(files: ModuleType) -> list[dict[str, Any]]:
    """Observations of a June morning in Berlin (UTC+2), as a phone app writes them."""
    obs = files.fhir_observation
    return [
        obs(0, GLUCOSE_MG, "2026-06-01T08:00:00+02:00", 110, "mg/dL"),
        obs(1, GLUCOSE_MMOL, "2026-06-01T08:05:00+02:00", 6.1, "mmol/L"),
        obs(2, GLUCOSE_MG, "2026-06-01T06:10:00Z", 125, "mg/dL"),
        obs(3, HEART_RATE, "2026-06-01T08:00:30+02:00", 62, "/min"),
        obs(4, HEART_RATE, "2026-06-01T08:01:30.250+02:00", 64, "/min"),
        obs(5, STEPS, "2026-06-01T08:00:00+02:00", 1200, "{steps}"),
    ]


def test_a_bundle_lands_on_its_channels_in_utc(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    path = files.fhir_file(tmp_path / "bundle.json", morning(files))
    readings = fhir.read(str(path))
    assert readings.units == {"glucose": "mg/dL", "heart_rate": "bpm", "steps": "count"}
    engine.create_twin("p1", "state")
    result = engine.import_data("fhir", path, "p1")
    assert (result.n_stored, result.n_quarantined) == (6, 0)
    assert result.channels == {"glucose": 3, "heart_rate": 2, "steps": 1}
    glucose = stored(engine, "p1")
    assert list(glucose.index) == [
        pd.Timestamp("2026-06-01 06:00Z"),
        pd.Timestamp("2026-06-01 06:05Z"),
        pd.Timestamp("2026-06-01 06:10Z"),
    ]
    # the mmol/L Observation in the Bundle's first glucose unit, mg/dL
    assert np.allclose(glucose.to_numpy(), [110, 6.1 * MG_PER_MMOL, 125])
    assert stored(engine, "p1", "heart_rate").to_dict() == {
        pd.Timestamp("2026-06-01 06:00:30Z"): 62.0,
        pd.Timestamp("2026-06-01 06:01:30.250Z"): 64.0,
    }
    assert stored(engine, "p1", "steps").to_dict() == {pd.Timestamp("2026-06-01 06:00Z"): 1200}
    entry = next(e for e in engine.history("p1") if e.event == "batch_ingested")
    assert entry.payload["import"]["format"] == "fhir-r4"
    assert engine.import_data("fhir", path, "p1").already_ingested


def test_glucose_in_mmol_converts_to_the_first_unit_and_to_the_twins(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    obs = files.fhir_observation
    mmol_first = [
        obs(0, GLUCOSE_MMOL, "2026-06-01T08:00:00+02:00", 5.5, "mmol/L"),
        obs(1, GLUCOSE_MG, "2026-06-01T08:05:00+02:00", 99, "mg/dL"),
    ]
    path = files.fhir_file(tmp_path / "mmol.json", mmol_first)
    readings = fhir.read(str(path))
    assert readings.units == {"glucose": "mmol/L"}
    assert np.allclose(readings.value, [5.5, 99 / MG_PER_MMOL])
    engine.create_twin("p1", "state")  # glucose is kept in mg/dL
    result = engine.import_data("fhir", path, "p1")
    assert result.conversions == {"glucose": "mmol/L -> mg/dL"}
    assert np.allclose(stored(engine, "p1").to_numpy(), [5.5 * MG_PER_MMOL, 99])
    engine.create_twin("p2", "state", channels=["glucose:mmol/L:1:40"])
    path = files.fhir_file(tmp_path / "mg.json", morning(files)[:3])
    result = engine.import_data("fhir", path, "p2")
    assert result.conversions == {"glucose": "mg/dL -> mmol/L"}
    assert np.allclose(stored(engine, "p2").to_numpy(), [110 / MG_PER_MMOL, 6.1, 125 / MG_PER_MMOL])


def test_a_glucose_value_without_a_unit_is_refused_naming_the_entry(
    files: ModuleType, tmp_path: Path
) -> None:
    observations = morning(files)
    del observations[1]["valueQuantity"]["unit"], observations[1]["valueQuantity"]["code"]
    path = files.fhir_file(tmp_path / "bundle.json", observations)
    with pytest.raises(
        ValidationError, match=r"entry\[1\]\.valueQuantity\.unit': a glucose value without a unit"
    ):
        fhir.read(str(path))
    # named by the user, the unit is used where the file gives none
    assert np.allclose(fhir.read(str(path), unit="mmol/L").value[:2], [110, 6.1 * MG_PER_MMOL])


def test_a_value_beyond_the_devices_range_is_quarantined_with_the_reason(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    obs = files.fhir_observation
    observations = [
        obs(0, GLUCOSE_MG, "2026-06-01T06:00:00Z", 90, "mg/dL"),
        obs(1, GLUCOSE_MG, "2026-06-01T06:05:00Z", 40, "mg/dL", quantity={"comparator": "<"}),
        obs(2, GLUCOSE_MG, "2026-06-01T06:10:00Z", 400, "mg/dL", quantity={"comparator": ">"}),
        obs(3, GLUCOSE_MG, "2026-06-01T06:15:00Z", 95, "mg/dL"),
    ]
    path = files.fhir_file(tmp_path / "bundle.json", observations)
    engine.create_twin("p1", "state")
    result = engine.import_data("fhir", path, "p1")
    assert (result.n_stored, result.n_quarantined) == (2, 2)
    assert stored(engine, "p1").tolist() == [90, 95]
    held = sorted(engine.quarantine("p1"), key=lambda r: r["row"])
    assert [float(r["record"]["value"]) for r in held] == [40.0, 400.0]
    assert "value <40 mg/dL: beyond what the device measures" in held[0]["reason"]
    assert "value >400 mg/dL" in held[1]["reason"]
    assert [r["row"] for r in held] == [2, 3]  # the Bundle's entries, from 1
    assert held[0]["record"]["t"] == us(datetime(2026, 6, 1, 6, 5, tzinfo=UTC))


def test_entered_in_error_and_other_resources_are_skipped_and_counted(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    obs = files.fhir_observation
    observations = [
        obs(0, GLUCOSE_MG, "2026-06-01T06:00:00Z", 90, "mg/dL"),
        obs(1, GLUCOSE_MG, "2026-06-01T06:05:00Z", 900, "mg/dL", status="entered-in-error"),
        obs(2, GLUCOSE_MG, "2026-06-01T06:10:00Z", 95, "mg/dL", status="cancelled"),
        obs(3, "8480-6", "2026-06-01T06:10:00Z", 120, "mm[Hg]"),  # systolic blood pressure
        {"resourceType": "Patient", "id": "p1", "birthDate": "1815-12-10"},
    ]
    path = files.fhir_file(tmp_path / "bundle.json", observations)
    engine.create_twin("p1", "state")
    result = engine.import_data("fhir", path, "p1")
    assert result.n_stored == 1
    skipped = {"entered-in-error": 1, "cancelled": 1, "other codes": 1, "Patient": 1}
    assert result.notes == {"skipped": skipped}
    entry = next(e for e in engine.history("p1") if e.event == "batch_ingested")
    assert entry.payload["import"]["notes"]["skipped"] == skipped


@pytest.mark.parametrize(
    "start",
    [datetime(2026, 3, 29, 0, 0, tzinfo=UTC), datetime(2026, 10, 25, 0, 0, tzinfo=UTC)],
    ids=["spring", "autumn"],
)
def test_offsets_across_a_dst_change_land_in_utc(
    start: datetime, files: ModuleType, tmp_path: Path
) -> None:
    instants = [start + timedelta(minutes=5 * i) for i in range(36)]  # the change at 01:00
    observations = [
        files.fhir_observation(i, GLUCOSE_MG, t.astimezone(BERLIN).isoformat(), 100 + i, "mg/dL")
        for i, t in enumerate(instants)
    ]
    offsets = {o["effectiveDateTime"][-6:] for o in observations}
    assert offsets == {"+01:00", "+02:00"}
    path = files.fhir_file(tmp_path / "dst.json", observations)
    readings = fhir.read(str(path))
    assert readings.t.tolist() == [us(t) for t in instants]
    assert readings.value.tolist() == [100 + i for i in range(36)]


def test_ndjson_reads_as_the_bundle_does(files: ModuleType, tmp_path: Path) -> None:
    resources = morning(files)
    bundle = fhir.read(str(files.fhir_file(tmp_path / "bundle.json", resources)))
    patient = {"resourceType": "Patient", "id": "p1"}
    ndjson = files.fhir_file(tmp_path / "Observation.ndjson", [patient, *resources], ndjson=True)
    lines = fhir.read(str(ndjson))
    assert lines.t.tolist() == bundle.t.tolist()
    assert lines.channel.tolist() == bundle.channel.tolist()
    assert np.allclose(lines.value, bundle.value)
    assert lines.line.tolist() == [2, 3, 4, 5, 6, 7]  # the file's lines
    assert lines.notes == {"skipped": {"Patient": 1}}
    # several files at once, as a bulk export writes one per resource type
    more = files.fhir_file(
        tmp_path / "more.ndjson",
        [files.fhir_observation(9, STEPS, "2026-06-01T09:00:00+02:00", 300, "{steps}")],
        ndjson=True,
    )
    both = fhir.read([str(ndjson), str(more)])
    assert both.counts() == {"glucose": 3, "heart_rate": 2, "steps": 2}


@pytest.mark.parametrize("ndjson", [False, True], ids=["bundle", "ndjson"])
def test_a_truncated_file_is_refused_naming_the_line_and_stores_nothing(
    ndjson: bool, engine: TwinEngine, files: ModuleType, tmp_path: Path, snapshot: SnapshotFn
) -> None:
    path = files.fhir_file(tmp_path / "obs.json", morning(files), ndjson=ndjson)
    text = path.read_text()
    cut = text[: text.rindex('"valueQuantity"') + 20]  # the last Observation stops mid-way
    path.write_text(cut)
    # NDJSON: the 6th resource's line; a Bundle: the last line there is
    line = 6 if ndjson else cut.count("\n") + 1
    engine.create_twin("p1", "state")
    before = snapshot(engine)
    with pytest.raises(ValidationError, match=rf"line {line}, .*not valid JSON.*truncated"):
        engine.import_data("fhir", path, "p1")
    assert snapshot(engine) == before


def test_a_corrupted_observation_is_refused_naming_the_entry(
    files: ModuleType, tmp_path: Path
) -> None:
    observations = morning(files)
    observations[3]["valueQuantity"]["value"] = "sixty-two"
    observations[4]["effectiveDateTime"] = "2026-06-01T08:01:30"  # no zone
    path = files.fhir_file(tmp_path / "bundle.json", observations)
    with pytest.raises(ValidationError) as caught:
        fhir.read(str(path))
    assert [str(p) for p in caught.value.problems] == [
        "line 4, column 'entry[3].valueQuantity.value': not a number: 'sixty-two'",
        "line 5, column 'entry[4].effective[x]': no effective time with a time zone "
        "(effectiveDateTime, effectivePeriod)",
    ]
    path.write_text('{"resourceType": "Bundle", "entry": ["urn:uuid:obs-0"]}')
    with pytest.raises(ValidationError, match="not a FHIR resource or Bundle"):
        fhir.read(str(path))
    path.write_text('[{"resourceType": "Observation"}]')
    with pytest.raises(ValidationError, match="no glucose, heart-rate or step Observations"):
        fhir.read(str(path))
