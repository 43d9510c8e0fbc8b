"""Real CGM data in the iglu package's CSV layout (``id,time,gl``) -> twinkit's long format."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from twinkit.core.errors import TwinkitError

#: the two iglu example files and the prefix their people get as twin ids
IGLU_FILES = {"example_data_hall.csv": "hall", "example_data_5_subject.csv": "broll"}


def twin_id_for(prefix: str, raw: str) -> str:
    """A valid twin id from a data set's own person id.

    >>> twin_id_for("broll", "Subject 1")
    'broll-Subject-1'
    """
    return f"{prefix}-" + re.sub(r"[^A-Za-z0-9_.:-]+", "-", str(raw).strip()).strip("-")


def load_cgm_iglu(folder: Path | str) -> pd.DataFrame:
    """Every iglu example file found in ``folder``, as ``twin_id,time,channel,value``.

    Times in these files carry no zone; they are read as UTC (only differences matter for
    forecasting). Readings without a glucose value are dropped.
    """
    folder = Path(folder)
    frames = []
    for name, prefix in IGLU_FILES.items():
        path = folder / name
        if not path.is_file():
            continue
        raw = pd.read_csv(path)
        missing = {"id", "time", "gl"} - set(raw.columns)
        if missing:
            raise TwinkitError(f"{path}: not in iglu's layout, missing column(s) {sorted(missing)}")
        raw = raw.dropna(subset=["gl"])
        frames.append(
            pd.DataFrame(
                {
                    "twin_id": [twin_id_for(prefix, i) for i in raw["id"]],
                    "time": pd.to_datetime(raw["time"]).dt.tz_localize("UTC"),
                    "channel": "glucose",
                    "value": raw["gl"].astype(float),
                }
            )
        )
    if not frames:
        raise TwinkitError(f"no iglu CSV files ({', '.join(IGLU_FILES)}) in {folder}")
    return pd.concat(frames, ignore_index=True)
