"""A simulated type-1 diabetes cohort (UVA/Padova via simglucose) in twinkit's long format."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import uuid
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twinkit.core.errors import TwinkitError

#: Bump whenever the simulation or the frame layout changes, so stale caches are not reused.
CACHE_VERSION = 1

#: The columns of the frame :func:`simulate_cohort` returns, in order.
COLUMNS = ("twin_id", "time", "channel", "value")

#: GuardianRT samples every 5 minutes, so the CGM grid is the controller's grid (Dexcom: 3).
SENSOR = "GuardianRT"
PUMP = "Insulet"
ADULTS = tuple(f"adult#{i:03d}" for i in range(1, 11))
KNOWN_PATIENTS = frozenset(
    f"{group}#{i:03d}" for group in ("adolescent", "adult", "child") for i in range(1, 11)
)

_TIME_DTYPE = pd.DatetimeTZDtype(unit="us", tz="UTC")  # the store keeps microseconds
_INSTALL_HINT = "simglucose is not installed: install the sim extra (pip install 'twinkit[sim]')"


def simulate_cohort(
    patients: int | Sequence[str] = 4,
    days: float = 2.0,
    seed: int = 0,
    cache_dir: Path | None = None,
    workers: int = 2,
    start: datetime = datetime(2026, 1, 5, 0, 0, tzinfo=UTC),
    changes: Sequence[tuple[float, dict[str, float]]] = (),
) -> pd.DataFrame:
    """Simulate virtual patients under a basal-bolus controller and random meals.

    ``patients`` is a count (the first N of simglucose's ten adults) or explicit simglucose
    names such as ``"adolescent#003"``. Each patient gets its own meal scenario and sensor
    noise, seeded from ``seed`` and the patient's *name* rather than its position, so a
    patient's data do not change when the cohort around it does.

    The frame is long: ``twin_id`` (``adult#001`` becomes ``adult-001``), ``time`` (UTC),
    ``channel`` and ``value`` (float64), covering ``[start, start + days)``:

    - ``glucose``: the CGM reading in mg/dL every 5 minutes. It is the sensor's own sample,
      not simglucose's ``CGM`` column, which averages the held previous reading into it.
    - ``carbs``: grams of a meal, one row per meal, at the start of the 5-minute step in
      which it was announced (the virtual patient then eats at 5 g/min).
    - ``insulin``: units delivered in each 5-minute step, basal plus bolus, one row per step.
      A dense per-step dose is chosen over separate bolus events because it is exactly what
      the physiology received, needs no second channel, and aligns with the glucose grid.

    ``changes`` alter the patients' physiology during the run: each ``(day, factors)``
    sets, from ``day`` days after ``start`` on, each named UVA/Padova parameter to its
    original value times its factor (``{"Vmx": 0.6, "kp3": 0.6}`` makes insulin 40 % less
    effective; ``{"Vmx": 1.0, "kp3": 1.0}`` later restores it). The controller keeps dosing
    as before, as a person whose sensitivity changed unnoticed would.

    With ``cache_dir`` the frame is stored as parquet under a name hashed from the patients,
    days, seed, start and :data:`CACHE_VERSION`, and read back instead of simulating when
    present. ``workers`` > 1 simulates patients in spawned processes, which gives the same
    frame as ``workers=1`` but costs ~2.5 s of imports per worker, so it only pays off from
    a few patient-days per worker; scripts must call it under ``if __name__ == "__main__"``.

    Raises :class:`TwinkitError` if simglucose is missing or an argument is invalid.
    """
    names = _resolve_patients(patients)
    if not (days > 0 and math.isfinite(days)):
        raise TwinkitError(f"days must be a positive finite number, got {days!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise TwinkitError(f"seed must be a non-negative integer, got {seed!r}")
    if workers < 1:
        raise TwinkitError(f"workers must be at least 1, got {workers!r}")
    if start.tzinfo is None:
        raise TwinkitError(f"start must be timezone-aware (e.g. tzinfo=UTC), got {start!r}")
    if start.second or start.microsecond:
        # simglucose draws the next day's meals only when a step lands within a second of
        # midnight; off the minute grid that never happens and every day repeats day one.
        raise TwinkitError(f"start must fall on a whole minute, got {start.isoformat()}")
    naive_start = start.astimezone(UTC).replace(tzinfo=None)
    schedule = tuple(sorted((float(day), dict(factors)) for day, factors in changes))
    for day, factors in schedule:
        if not 0 <= day < days or not all(math.isfinite(f) and f > 0 for f in factors.values()):
            raise TwinkitError(
                f"a change at day {day} with factors {factors}: give a day within the run and "
                "positive factors"
            )

    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / _cache_name(
            names, float(days), int(seed), naive_start, schedule
        )
        cached = _read_cache(cache_file)
        if cached is not None:
            return cached

    _import_simglucose()  # fail early, before spawning workers that would all fail
    jobs = [(name, float(days), int(seed), naive_start, schedule) for name in names]
    if workers == 1 or len(jobs) == 1:
        parts = [_simulate_patient(*job) for job in jobs]
    else:
        # spawn, not fork: the parent may hold threads (torch, sqlalchemy) that fork breaks.
        context = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
                parts = list(pool.map(_simulate_patient, *zip(*jobs, strict=True)))
        except BrokenProcessPool as exc:
            raise TwinkitError(
                "a simulation worker process died; if you called simulate_cohort from a "
                "script, put the call under `if __name__ == '__main__':` (spawned workers "
                "re-import the main module), or pass workers=1"
            ) from exc
    frame = _normalise(pd.concat(parts, ignore_index=True))

    if cache_file is not None:
        _write_cache(frame, cache_file)
    return frame


def _resolve_patients(patients: int | Sequence[str]) -> list[str]:
    if isinstance(patients, bool):
        raise TwinkitError(f"patients must be a count or a list of names, got {patients!r}")
    if isinstance(patients, int | np.integer):
        if not 1 <= patients <= len(ADULTS):
            raise TwinkitError(
                f"patients={patients}: simglucose has {len(ADULTS)} adults; pass 1 to "
                f"{len(ADULTS)}, or a list of names such as 'adolescent#001' or 'child#004'"
            )
        return list(ADULTS[: int(patients)])
    if isinstance(patients, str):
        raise TwinkitError(f"patients must be a list of names, not the string {patients!r}")
    names = list(patients)
    unknown = [n for n in names if n not in KNOWN_PATIENTS]
    if unknown:
        raise TwinkitError(
            f"unknown simglucose patients {unknown}: use adolescent#001..010, "
            "adult#001..010 or child#001..010"
        )
    if not names:
        raise TwinkitError("patients is empty: name at least one simglucose patient")
    if len(set(names)) != len(names):
        raise TwinkitError(f"patients lists a name twice: {names}")
    return names


def _cache_name(
    names: list[str],
    days: float,
    seed: int,
    naive_start: datetime,
    schedule: tuple[tuple[float, dict[str, float]], ...] = (),
) -> str:
    # start is part of the key too: the same seed at another start gives other timestamps
    # (and, since meals are drawn per calendar day, possibly other meals).
    fields: dict[str, Any] = {
        "patients": names,
        "days": days,
        "seed": seed,
        "start": naive_start.isoformat(),
        "version": CACHE_VERSION,
    }
    if schedule:  # runs without changes keep the names they always had
        fields["changes"] = [[day, factors] for day, factors in schedule]
    key = json.dumps(fields, sort_keys=True)
    return f"simglucose-{hashlib.sha256(key.encode()).hexdigest()[:20]}.parquet"


def _read_cache(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError):
        return None  # a damaged cache is only a lost shortcut: simulate again and overwrite
    if tuple(frame.columns) != COLUMNS:
        return None
    return _normalise(frame)


def _write_cache(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # write then rename, so a concurrent reader never sees half a file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Fixed dtypes and row order, so fresh and cached frames compare equal."""
    out = pd.DataFrame(
        {
            "twin_id": frame["twin_id"].astype(str),
            "time": pd.to_datetime(frame["time"], utc=True).astype(_TIME_DTYPE),
            "channel": frame["channel"].astype(str),
            "value": frame["value"].astype(np.float64),
        }
    )
    out = out.sort_values(["twin_id", "channel", "time"], kind="stable")
    return out.reset_index(drop=True)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Mute simglucose's prints and INFO logs (and gym's import warnings) for a while."""
    logger = logging.getLogger("simglucose")
    level = logger.level
    logger.setLevel(logging.ERROR)  # still let "ODE solver failed" through
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _import_simglucose() -> dict[str, Any]:
    """simglucose's classes, imported lazily because the sim extra is optional."""
    try:
        with _quiet(), warnings.catch_warnings():
            # gym 0.9 and simglucose import pkg_resources, which warns it is deprecated
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            from simglucose.actuator.pump import InsulinPump
            from simglucose.controller.basal_bolus_ctrller import BBController
            from simglucose.patient.t1dpatient import T1DPatient
            from simglucose.sensor.cgm import CGMSensor
            from simglucose.simulation.env import T1DSimEnv
            from simglucose.simulation.scenario_gen import RandomScenario
            from simglucose.simulation.sim_engine import SimObj
    except ImportError as exc:
        raise TwinkitError(f"{_INSTALL_HINT} ({exc})") from exc
    return {
        "InsulinPump": InsulinPump,
        "BBController": BBController,
        "T1DPatient": T1DPatient,
        "CGMSensor": CGMSensor,
        "T1DSimEnv": T1DSimEnv,
        "RandomScenario": RandomScenario,
        "SimObj": SimObj,
    }


def _patient_seeds(seed: int, name: str) -> tuple[int, int]:
    """Independent (scenario, sensor) seeds for one patient, stable across cohort shapes."""
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=tuple(name.encode("utf-8")))
    scenario_seed, sensor_seed = sequence.generate_state(2, dtype=np.uint32)
    return int(scenario_seed), int(sensor_seed)


class _PlainParams:
    """A patient's parameters as plain attributes, for the ODE right-hand side.

    simglucose reads ~40 parameters per right-hand-side call as attributes of a pandas
    Series, and that lookup is about 90% of the run time. The same float values as plain
    attributes give bit-identical trajectories about ten times faster. ``iloc`` is the
    Series' own indexer, which ``T1DPatient.reset`` uses for the initial state.
    """

    def __init__(self, series: pd.Series) -> None:
        self.__dict__.update({str(k): v for k, v in series.to_dict().items()})
        self.iloc = series.iloc


class _RecordingSensor:
    """Wraps simglucose's CGM sensor to keep each genuine sample, keyed by minute.

    ``T1DSimEnv.step`` averages the sensor over the 1-minute sub-steps of a sample period,
    and the sensor holds its previous reading until the last sub-step, so the ``CGM`` it
    reports is 0.8 * previous + 0.2 * new reading: a lagged, smoothed series no real CGM
    produces. The env only uses ``sample_time``, ``measure`` and ``reset``.
    """

    def __init__(self, sensor: Any) -> None:
        self._sensor = sensor
        self.sample_time = sensor.sample_time
        self.readings: dict[int, float] = {}

    def measure(self, patient: Any) -> float:
        value = float(self._sensor.measure(patient))
        minute = round(float(patient.t))
        if minute % self.sample_time == 0:
            self.readings[minute] = value  # at t=0 the env measures twice: the last one counts
        return value

    def reset(self) -> None:
        self._sensor.reset()
        self.readings = {}


class _CachingController:
    """Wraps ``BBController`` to skip its pandas look-ups between meals.

    Between meals the basal-bolus policy returns the patient's constant basal and no bolus,
    whatever the glucose, yet it filters two DataFrames by regex on every step, about half
    the run time once the ODE is fast. That constant action is computed once and reused;
    meal steps still go to the real policy, so the actions are identical.
    """

    def __init__(self, controller: Any) -> None:
        self._controller = controller
        self._between_meals: dict[tuple[str, float], Any] = {}

    def policy(self, observation: Any, reward: float, done: bool, **info: Any) -> Any:
        if info.get("meal", 0) > 0:
            return self._controller.policy(observation, reward, done, **info)
        key = (str(info.get("patient_name")), float(info.get("sample_time", 1)))
        if key not in self._between_meals:
            self._between_meals[key] = self._controller.policy(observation, reward, done, **info)
        return self._between_meals[key]

    def reset(self) -> None:
        self._controller.reset()


def _simulate_patient(
    name: str,
    days: float,
    seed: int,
    naive_start: datetime,
    schedule: tuple[tuple[float, dict[str, float]], ...] = (),
) -> pd.DataFrame:
    """One patient's frame; module-level so spawned worker processes can import it."""
    sg = _import_simglucose()
    scenario_seed, sensor_seed = _patient_seeds(seed, name)
    with _quiet():
        patient = sg["T1DPatient"].withName(name)
        patient._params = _PlainParams(patient._params)
        sensor = _RecordingSensor(sg["CGMSensor"].withName(SENSOR, seed=sensor_seed))
        pump = sg["InsulinPump"].withName(PUMP)
        scenario = sg["RandomScenario"](start_time=naive_start, seed=scenario_seed)
        env = sg["T1DSimEnv"](patient, sensor, pump, scenario)
        controller = _CachingController(sg["BBController"]())
        if schedule:
            history = _simulate_with_changes(patient, env, controller, days, schedule)
        else:
            sim = sg["SimObj"](env, controller, timedelta(days=days), animate=False)
            sim.simulate()
            history = sim.results()
    return _to_long(name, history, sensor.readings, naive_start, days, float(env.sample_time))


def _simulate_with_changes(
    patient: Any,
    env: Any,
    controller: Any,
    days: float,
    schedule: tuple[tuple[float, dict[str, float]], ...],
) -> pd.DataFrame:
    """``SimObj.simulate``'s loop, with the parameters of ``schedule`` set as their days
    come (see :func:`simulate_cohort`)."""
    params = patient._params
    original = {p: float(getattr(params, p)) for _, factors in schedule for p in factors}
    pending = list(schedule)
    controller.reset()
    obs, reward, done, info = env.reset()
    start = env.scenario.start_time
    while env.time < start + timedelta(days=days):
        while pending and env.time >= start + timedelta(days=pending[0][0]):
            _, factors = pending.pop(0)
            for name, factor in factors.items():
                setattr(params, name, original[name] * factor)
        action = controller.policy(obs, reward, done, **info)
        obs, reward, done, info = env.step(action)
    history: pd.DataFrame = env.show_history()
    return history


def _to_long(
    name: str,
    history: pd.DataFrame,
    readings: dict[int, float],
    naive_start: datetime,
    days: float,
    step_minutes: float,
) -> pd.DataFrame:
    end_minute = days * 24 * 60
    minutes = np.array(sorted(m for m in readings if m < end_minute), dtype=np.int64)
    glucose = pd.DataFrame(
        {
            "time": [naive_start + timedelta(minutes=int(m)) for m in minutes],
            "channel": "glucose",
            "value": [readings[int(m)] for m in minutes],
        }
    )

    # history rows are step starts; CHO (g/min) and insulin (U/min) are step averages, and
    # the last row (the end state) has no action yet, hence NaN.
    steps = history.loc[history.index < naive_start + timedelta(minutes=end_minute)]
    steps = steps.dropna(subset=["CHO", "insulin"])
    step_times = list(pd.DatetimeIndex(steps.index).to_pydatetime())
    carbs_g = (steps["CHO"].to_numpy(np.float64) * step_minutes).round(6)  # undo /5*5 noise
    insulin_u = steps["insulin"].to_numpy(np.float64) * step_minutes
    meals = carbs_g > 0
    carbs = pd.DataFrame(
        {
            "time": [t for t, m in zip(step_times, meals, strict=True) if m],
            "channel": "carbs",
            "value": carbs_g[meals],
        }
    )
    insulin = pd.DataFrame({"time": step_times, "channel": "insulin", "value": insulin_u})

    frame = pd.concat([glucose, carbs, insulin], ignore_index=True)
    frame["time"] = pd.to_datetime(frame["time"]).dt.tz_localize(UTC)
    frame.insert(0, "twin_id", name.replace("#", "-"))
    return _normalise(frame)
