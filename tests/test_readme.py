"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from twinkit.data.datasets.synthetic import synthetic_cohort

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: the readings.csv the example reads, for the twin it creates
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "README has no python example"
    frame = synthetic_cohort(n_twins=1, days=3, seed=0).assign(twin_id="p-007")
    frame.assign(time=frame["time"].map(lambda t: t.isoformat())).to_csv(
        tmp_path / "readings.csv", index=False
    )
    monkeypatch.chdir(tmp_path)

    # Execute
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})

    # Assert
    assert (tmp_path / "twins.db").is_file()
