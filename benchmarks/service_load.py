"""Load on `twinkit serve`: ingest over HTTP, then forecasts at increasing request rates.

Starts ``twinkit serve`` (a fresh SQLite file, ``--workers`` processes) on loopback,
creates an owner and ``--twins`` state twins and posts a day of 5-minute glucose readings
to each over HTTP (rows/s measured). Fits: ``--http-fits`` twins through ``POST .../fit``
(a background job each, timed), the others with ``linear_ar`` through ``TwinEngine.fit`` in
this process against the same store while the server idles, since starting a fit process
per twin would take longer than the rest of the benchmark and fits are not what this
measures. Then a load generator in a separate process sends ``GET /v1/twins/{id}/forecast``
for random twins (seeded) on a fixed-rate open-loop schedule: request ``i`` of a step is
due at ``i / rate`` seconds and is sent then whether or not earlier ones have answered, and
its latency runs from when it was due, so a server that falls behind is charged for the
queue (no coordinated omission). The generator is a minimal asyncio HTTP/1.1 client with
keep-alive connections: it shares the machine's cores with the server, so it should cost as
little as possible; its CPU time and the server's are reported per step, and so are the
forecast cache's hits and misses (from ``/metrics``, which sums the workers). Warm-up:
passes over every twin (unmeasured) until two passes in a row have no cache miss. Three
series: "cached" asks the default horizons (answered from each worker's forecast cache,
since the data do not change); "live" does the same while new readings arrive for random
twins (``--live-ingest`` per second, one-row POSTs, timed too), each of which makes that
twin's next forecast be computed again, as in use; "uncached" asks each (twin, horizons)
once, so every answer is computed. Before each step the benchmark waits until the server is
idle (requests that timed out at the client are still worked off by the server).

Prints JSON. Example: ``python benchmarks/service_load.py --twins 1000 --workers 2``.
The owner's rate limit is raised for the run (the limiter still runs on every request):
one token sends all the load here, where in use many owners would. The server inherits
the environment, so ``TWINKIT_SWITCH_INTERVAL_MS`` sets its workers' GIL switch interval
(default 1 ms; the JSON records it).

``--tenants`` runs another benchmark instead (issue #16, see :func:`main_tenants`): two
owners, B's forecasts and one fit measured alone, then while owner A holds its job quota
full of fits and uploads files; the JSON gives B's figures under the flood over B's alone,
from one run, and whether B's fit started within one job slot. Example:
``python benchmarks/service_load.py --tenants --seed 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import multiprocessing
import os
import platform
import re
import resource
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from twinkit.engine import TwinEngine
from twinkit.service.app import load_settings

TARGET = {"rate_per_s": 500, "p99_ms_max": 50.0, "errors": 0}
DAY_READINGS = 288  # one day every 5 minutes


def glucose_rows(k: int, seed: int) -> list[dict[str, Any]]:
    """Twin ``k``'s day of glucose: a daily swing plus a bounded random walk, as JSON rows."""
    rng = np.random.default_rng([seed, k])
    steps = np.arange(DAY_READINGS)
    walk = np.cumsum(rng.normal(0, 2.0, DAY_READINGS))
    value = 130 + 30 * np.sin(2 * np.pi * steps / DAY_READINGS + rng.uniform(0, 6.3)) + walk
    start = np.datetime64("2026-01-01T00:00:00")
    return [
        {
            "time": f"{start + np.timedelta64(5 * int(i), 'm')}+00:00",
            "channel": "glucose",
            "value": round(float(v), 1),
        }
        for i, v in zip(steps, np.clip(value, 50, 350), strict=True)
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the server ---------------------------------------------------------------------------


@contextmanager
def serve(
    db_url: str, port: int, workers: int, admin_token: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``twinkit serve`` in its own process group, stopped (the whole group) at the end."""
    env = {
        **os.environ,
        "TWINKIT_ADMIN_TOKEN": admin_token,
        "TWINKIT_RATE_LIMIT_PER_MINUTE": "1e9",
        "TWINKIT_RATE_LIMIT_BURST": "1000000",
    }
    command = [sys.executable, "-m", "twinkit", "serve", "--db", db_url]
    command += ["--port", str(port), "--workers", str(workers)]
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"twinkit serve exited with {server.returncode}; see {log}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"twinkit serve did not become ready; see {log}")
            time.sleep(0.5)
        yield server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def process_tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of ``root`` and its descendants so far (Linux /proc)."""
    return sum(process_tree_cpu_by_pid(root).values())


def process_tree_cpu_by_pid(root: int, reaped: bool = False) -> dict[int, float]:
    """User + system CPU seconds of ``root`` and of each descendant so far (Linux /proc).
    ``reaped``: with those of each one's children that ended and were waited for (a fit
    job's process, once its worker joined it)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    cpu, todo, tick = {}, [root], os.sysconf("SC_CLK_TCK")
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime; then cutime, cstime (the reaped children's)
        cpu[pid] = sum(int(x) for x in fields[11 : 15 if reaped else 13]) / tick
        todo.extend(children.get(pid, []))
    return cpu


# -- setup over HTTP ----------------------------------------------------------------------


async def _setup(
    base: str,
    admin_token: str,
    twins: list[str],
    seed: int,
    concurrency: int,
    owner: str = "bench",
    first_k: int = 0,
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Create ``owner`` (its token is returned) and its ``twins``, and post each a day of
    readings (twin ``i``'s are :func:`glucose_rows` ``(first_k + i, seed)``)."""
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        answer = await client.post(
            "/v1/owners",
            json={"name": owner},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        answer.raise_for_status()
        token = str(answer.json()["token"])
        auth = {"Authorization": f"Bearer {token}"}
        started = time.perf_counter()
        for twin in twins:
            created = await client.post(
                "/v1/twins",
                json={"id": twin, "kind": "state", "channels": [{"name": "glucose"}]},
                headers=auth,
            )
            created.raise_for_status()
        create_s = time.perf_counter() - started

        bodies = [{"rows": glucose_rows(first_k + k, seed)} for k in range(len(twins))]
        gate = asyncio.Semaphore(concurrency)
        latencies: list[float] = []

        async def post(twin: str, body: dict[str, Any]) -> int:
            async with gate:
                sent = time.perf_counter()
                answer = await client.post(
                    f"/v1/twins/{twin}/observations", json=body, headers=auth
                )
                latencies.append(time.perf_counter() - sent)
                answer.raise_for_status()
                return int(answer.json()["n_stored"])

        started = time.perf_counter()
        stored = await asyncio.gather(*(post(t, b) for t, b in zip(twins, bodies, strict=True)))
        ingest_s = time.perf_counter() - started
    rows = sum(len(b["rows"]) for b in bodies)
    ingest = {
        "requests": len(twins),
        "rows_per_request": DAY_READINGS,
        "concurrency": concurrency,
        "rows": rows,
        "rows_stored": sum(stored),
        "seconds": round(ingest_s, 2),
        "rows_per_s": round(rows / ingest_s),
        "request_p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 1),
        "request_p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 1),
    }
    return token, {"twins": len(twins), "seconds": round(create_s, 2)}, ingest


def fit_over_http(base: str, token: str, twins: list[str]) -> list[float]:
    """Fit each twin with a background job; the seconds from submission to done, each."""
    auth = {"Authorization": f"Bearer {token}"}
    seconds = []
    with httpx.Client(base_url=base, headers=auth, timeout=60) as client:
        for twin in twins:
            started = time.perf_counter()
            job = client.post(f"/v1/twins/{twin}/fit", json={"model": "linear_ar"})
            job.raise_for_status()
            url = f"/v1/twins/{twin}/jobs/{job.json()['id']}"
            while (status := client.get(url).json())["status"] not in ("done", "failed"):
                time.sleep(0.1)
            if status["status"] != "done":
                raise RuntimeError(f"fit job of {twin} failed: {status['error']}")
            seconds.append(round(time.perf_counter() - started, 2))
    return seconds


# -- the load generator (its own process) -----------------------------------------------


class Connections:
    """Keep-alive HTTP/1.1 connections to one server: send a request, get (status, body)."""

    def __init__(self, port: int, token: str, size: int) -> None:
        self.port = port
        self.head = f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = (
            asyncio.Queue()
        )
        for _ in range(size):
            self.idle.put_nowait(None)  # opened on first use

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self.request("GET", path)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        conn = await self.idle.get()
        try:
            for reused in (conn is not None, False):
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", self.port)
                reader, writer = conn
                if body:
                    length_head = (
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    )
                    writer.write(f"{method} {path} HTTP/1.1\r\n{length_head}{self.head}".encode())
                    writer.write(body)
                else:
                    writer.write(f"{method} {path} HTTP/1.1\r\n{self.head}".encode())
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                    break
                except asyncio.IncompleteReadError as exc:
                    # The server closes a keep-alive connection idle for 5 s (uvicorn's
                    # default): at low rates a pooled connection may be closed before it
                    # is used again. Not a byte came back, so send again on a new one.
                    if not reused or exc.partial:
                        raise
                    writer.close()
                    conn = None
            head = raw.decode("latin-1").lower()
            status = int(head.split(" ", 2)[1])
            length = next(
                int(line.split(":", 1)[1])
                for line in head.split("\r\n")
                if line.startswith("content-length:")
            )
            answer = await reader.readexactly(length)
            if "connection: close" in head:
                writer.close()
                conn = None
        except BaseException:
            if conn is not None:
                conn[1].close()
            conn = None
            raise
        finally:
            self.idle.put_nowait(conn)
        return status, answer


#: horizons an "uncached" request picks two of (linear_ar forecasts up to 120 minutes)
FRESH_HORIZONS = list(range(5, 121, 5))


def forecast_paths(twins: list[str], n: int, fresh: bool, rng: np.random.Generator) -> list[str]:
    """``n`` forecast requests for random twins. ``fresh``: each asks a (twin, pair of
    horizons) no other request of the run asks, so no answer can come from the server's
    forecast cache (the key holds the horizons); else the default horizons (30, 60)."""
    if not fresh:
        return [f"/v1/twins/{twins[i]}/forecast" for i in rng.integers(0, len(twins), n)]
    pairs = [(a, b) for a in FRESH_HORIZONS for b in FRESH_HORIZONS if a < b]
    if n > len(twins) * len(pairs):
        raise ValueError(f"only {len(twins) * len(pairs)} distinct uncached requests exist")
    picks = rng.choice(len(twins) * len(pairs), size=n, replace=False)
    return [
        f"/v1/twins/{twins[k // len(pairs)]}/forecast"
        f"?horizons={pairs[k % len(pairs)][0]}&horizons={pairs[k % len(pairs)][1]}"
        for k in picks
    ]


class Readings:
    """Each twin's next 5-minute glucose reading after its day of history, as one-row
    ingest bodies: the value walks on from the twin's last one (seeded)."""

    def __init__(self, twins: list[str], seed: int) -> None:
        self.twins = twins
        self.rng = np.random.default_rng([seed, 7])
        self.index = [DAY_READINGS] * len(twins)
        self.value = [float(glucose_rows(k, seed)[-1]["value"]) for k in range(len(twins))]

    def take(self, n: int) -> list[tuple[str, bytes]]:
        """``n`` (path, JSON body) requests for random twins, each twin's readings in order."""
        out = []
        start = np.datetime64("2026-01-01T00:00:00")
        for k in self.rng.integers(0, len(self.twins), n):
            at = start + np.timedelta64(5 * self.index[k], "m")
            self.index[k] += 1
            self.value[k] = float(np.clip(self.value[k] + self.rng.normal(0, 2.0), 50, 350))
            row = {"time": f"{at}+00:00", "channel": "glucose", "value": round(self.value[k], 1)}
            body = json.dumps({"rows": [row]}).encode()
            out.append((f"/v1/twins/{self.twins[k]}/observations", body))
        return out


def _summary(latencies: np.ndarray, outcomes: Counter[str], wall: float) -> dict[str, Any]:
    done = latencies[np.isfinite(latencies)] * 1e3

    def pct(q: float) -> float | None:
        return round(float(np.percentile(done, q)), 1) if len(done) else None

    ok = sum(n for status, n in outcomes.items() if status in ("200", "201"))
    return {
        "requests": len(latencies),
        "achieved_per_s": round(ok / wall, 1),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": pct(100),
        "errors": len(latencies) - ok,
        "outcomes": dict(outcomes),
    }


async def _one_step(
    pool: Connections,
    series: str,
    rate: float,
    paths: list[str],
    writes: list[tuple[str, bytes]] | None = None,
) -> dict[str, Any]:
    """Send ``paths`` (GETs) at ``rate`` per second, open loop; ``writes`` (POSTs), if any,
    spread evenly over the same time. Latency runs from when a request was due."""
    n = len(paths)
    loop = asyncio.get_running_loop()
    latencies = np.full(n, np.nan)
    sent_at = np.full(n, np.nan)
    outcomes: Counter[str] = Counter()
    degraded = 0
    writes = writes or []
    write_latencies = np.full(len(writes), np.nan)
    write_outcomes: Counter[str] = Counter()

    async def one(i: int, due: float) -> None:
        nonlocal degraded
        sent_at[i] = loop.time()
        try:
            status, body = await asyncio.wait_for(pool.get(paths[i]), timeout=30)
        except Exception as exc:  # a failed request is a result here, not a crash
            outcomes[type(exc).__name__] += 1
            return
        latencies[i] = loop.time() - due
        outcomes[str(status)] += 1
        degraded += int(b'"degraded":true' in body)

    async def write(j: int, due: float) -> None:
        path, body = writes[j]
        try:
            status, _ = await asyncio.wait_for(pool.request("POST", path, body), timeout=30)
        except Exception as exc:
            write_outcomes[type(exc).__name__] += 1
            return
        write_latencies[j] = loop.time() - due
        write_outcomes[str(status)] += 1

    gc.collect()
    gc.disable()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    start = loop.time() + 0.05
    duration = n / rate
    schedule = sorted(
        [(start + i / rate, 0, i) for i in range(n)]
        + [(start + j * duration / len(writes), 1, j) for j in range(len(writes))]
    )
    tasks = []
    for due, kind, i in schedule:
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        tasks.append(asyncio.create_task(write(i, due) if kind else one(i, due)))
    await asyncio.gather(*tasks)
    wall = loop.time() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    gc.enable()
    step: dict[str, Any] = {"series": series, "rate_per_s": rate}
    step.update(_summary(latencies, outcomes, wall))
    step["sent_per_s"] = round(n / (np.nanmax(sent_at) - start), 1) if n > 1 else None
    step["degraded"] = degraded
    step["wall_s"] = round(wall, 2)
    step["generator_cpu_s"] = round(
        after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime, 2
    )
    if writes:
        step["ingest"] = {"per_s": round(len(writes) / duration, 1)}
        step["ingest"].update(_summary(write_latencies, write_outcomes, wall))
    return step


def run_generator(
    port: int, token: str, twins: list[str], plan: dict[str, Any], answer: Connection
) -> None:
    """The load generator process. Warm-up passes over every twin until the parent says
    "enough"; then each step when the parent says "go". Answers each result, then "done"."""

    # The generator must not stall: a full garbage collection over what this process
    # imported (torch, through this module's imports: some 300,000 objects) took about
    # 250 ms and charged every request due meanwhile. Freeze that, and collect only
    # between steps.
    gc.collect()
    gc.freeze()

    async def main() -> None:
        pool = Connections(port, token, plan["connections"])
        rng = np.random.default_rng([plan["seed"], 1])
        for _ in range(plan["warmup_passes"]):
            paths = [f"/v1/twins/{twins[k]}/forecast" for k in rng.permutation(len(twins))]
            answer.send(("warmup", await _one_step(pool, "warmup", plan["warmup_rate"], paths)))
            if answer.recv() == "enough":
                break
        readings = Readings(twins, plan["seed"])
        for series, rate, ingest_per_s in plan["steps"]:
            answer.recv()  # the parent is ready, and the server idle: measure this step
            # Uncached steps draw from one seeded stream per run, so that no request repeats.
            step_rng = np.random.default_rng([plan["seed"], int(rate), int(series == "uncached")])
            n = max(1, int(rate * plan["duration_s"]))
            paths = forecast_paths(twins, n, series == "uncached", step_rng)
            writes = readings.take(round(ingest_per_s * plan["duration_s"]))
            answer.send(("step", await _one_step(pool, series, rate, paths, writes)))

    asyncio.run(main())
    answer.send(("done", None))
    answer.close()


def wait_until_idle(server_pid: int, window_s: float = 0.5, timeout_s: float = 300.0) -> float:
    """Wait until the server's processes use under 5% of a core over ``window_s``: requests
    that timed out at the client are still worked off by the server, and must not be
    charged to the next step. The seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        before = process_tree_cpu_s(server_pid)
        time.sleep(window_s)
        if process_tree_cpu_s(server_pid) - before < 0.05 * window_s:
            break
    return round(time.monotonic() - started, 1)


def cache_lookups(base: str) -> dict[str, int]:
    """The server's forecast cache hits and misses so far, from /metrics (every worker's:
    ``serve --workers N`` sums them)."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    found = dict.fromkeys(("hit", "miss"), 0)
    for result, value in re.findall(
        r'^twinkit_forecast_cache_lookups_total\{result="(\w+)"\} (\S+)$', text, re.MULTILINE
    ):
        found[result] = int(float(value))
    return found


def _warm_up(
    here: Connection, base: str, plan: dict[str, Any], lookups: dict[str, int]
) -> list[dict[str, Any]]:
    """The parent's side of the generator's warm-up: a pass at a time until two passes in a
    row had no forecast cache miss (or ``plan["warmup_passes"]`` were made). ``lookups``:
    the cache's counts before the generator started."""
    warmup: list[dict[str, Any]] = []
    for k in range(plan["warmup_passes"]):
        _, passed = here.recv()
        now = cache_lookups(base)
        passed["cache_misses"] = now["miss"] - lookups["miss"]
        lookups = now
        warmup.append(
            {key: passed[key] for key in ("requests", "p99_ms", "errors", "cache_misses")}
        )
        clean = len(warmup) >= 2 and all(p["cache_misses"] == 0 for p in warmup[-2:])
        enough = clean or k == plan["warmup_passes"] - 1
        here.send("enough" if enough else "again")
        if enough:
            break
    return warmup


def _measure_step(
    here: Connection,
    base: str,
    server_pid: int,
    wait_idle: bool = True,
    during: Callable[[], None] | None = None,
    reaped: bool = False,
) -> dict[str, Any]:
    """Have the generator run its next step and return it, with the server's CPU and the
    forecast cache's counts over the step. ``wait_idle``: first wait until the server is
    idle. ``during`` runs in a thread from the step's start; the step is returned once it
    has returned too (its CPU and cache counts are taken when the step ends). ``reaped``:
    count the CPU of the server's children that ended meanwhile (fit jobs' processes)."""
    drain_s = wait_until_idle(server_pid) if wait_idle else None
    load_before, by_pid = os.getloadavg()[0], process_tree_cpu_by_pid(server_pid, reaped)
    server_cpu = sum(by_pid.values())
    lookups = cache_lookups(base)
    here.send("go")
    side = None if during is None else threading.Thread(target=during, name="during-step")
    if side is not None:
        side.start()
    step: dict[str, Any] = here.recv()[1]
    after = process_tree_cpu_by_pid(server_pid, reaped)
    now = cache_lookups(base)
    load_after = os.getloadavg()[0]
    if side is not None:
        side.join()
    step["cache_hits"] = now["hit"] - lookups["hit"]
    step["cache_misses"] = now["miss"] - lookups["miss"]
    step["server_cpu_s"] = round(sum(after.values()) - server_cpu, 2)
    # How the work spread over the server's processes (the workers, busiest first).
    step["server_cpu_s_per_process"] = sorted(
        (round(after[p] - by_pid.get(p, 0.0), 2) for p in after), reverse=True
    )
    step["server_cpu_ms_per_request"] = round(1e3 * step["server_cpu_s"] / step["requests"], 2)
    step["generator_cpu_ms_per_request"] = round(
        1e3 * step["generator_cpu_s"] / step["requests"], 3
    )
    step["server_drain_before_s"] = drain_s
    step["loadavg_1m_before_after"] = [round(load_before, 2), round(load_after, 2)]
    return step


def _start_generator(
    base: str, token: str, twins: list[str], plan: dict[str, Any]
) -> tuple[Connection, BaseProcess]:
    here, there = multiprocessing.get_context("spawn").Pipe()
    port = int(base.rsplit(":", 1)[1])
    generator = multiprocessing.get_context("spawn").Process(
        target=run_generator, args=(port, token, twins, plan, there), name="load-generator"
    )
    generator.start()
    return here, generator


def run_load(
    base: str, server_pid: int, token: str, twins: list[str], plan: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    lookups = cache_lookups(base)
    here, generator = _start_generator(base, token, twins, plan)
    warmup = _warm_up(here, base, plan, lookups)
    steps = []
    for _ in plan["steps"]:
        step = _measure_step(here, base, server_pid)
        step["target_met"] = (
            step["p99_ms"] is not None
            and step["p99_ms"] <= TARGET["p99_ms_max"]
            and step["errors"] == 0
            and step["achieved_per_s"] >= 0.95 * step["rate_per_s"]
            and (step.get("ingest") or {}).get("errors", 0) == 0
        )
        steps.append(step)
    here.recv()  # done
    generator.join(timeout=30)
    return warmup, steps


# -- two tenants (issue #16) -------------------------------------------------------------

#: B's forecast p99 while A floods, over B's alone, at most; B's fit within one job slot
TENANT_TARGET: dict[str, Any] = {"b_p99_ratio_max": 2.0, "b_fit_within_one_job_slot": True}
OWNER_A, OWNER_B = "tenant-a", "tenant-b"
#: a job that has ended, as the API names it
ENDED = ("done", "failed", "cancelled")
#: seconds a slot may take to pass from a job that ended to the next: the worker thread
#: records the end, takes the next job from its queue and records its start (two store
#: writes; the runs measure it: ``handover_s`` in the JSON)
HANDOVER_S = 0.1


def _utc_s(stamp: str | None) -> float | None:
    """A store timestamp (ISO 8601 with its UTC offset) as POSIX seconds."""
    return None if stamp is None else datetime.fromisoformat(stamp).timestamp()


def job_records(db_file: Path) -> list[dict[str, Any]]:
    """Every job of the store, read from its SQLite file (the API does not show which
    server process runs a job): id, owner, twin, status, the runner's pid, and when it was
    created, started and finished, as POSIX seconds."""
    query = (
        "SELECT id, owner, twin_id, status, runner, created_at, started_at, finished_at, error "
        "FROM jobs ORDER BY id"
    )
    with closing(sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=30)) as conn:
        rows = conn.execute(query).fetchall()
    return [
        {
            "id": int(r[0]),
            "owner": r[1],
            "twin": r[2],
            "status": r[3],
            # runner: host:pid:instance (service/jobs.py); one JobRunner per worker process
            "runner_pid": int(r[4].rsplit(":", 2)[1]) if r[4] else None,
            "created": _utc_s(r[5]),
            "started": _utc_s(r[6]),
            "finished": _utc_s(r[7]),
            "error": r[8],
        }
        for r in rows
    ]


def _jobs_at(jobs: list[dict[str, Any]], t: float, runner: int | None = None) -> dict[str, int]:
    """How many of ``jobs`` (of ``runner``'s, if given) were queued and running at ``t``."""
    mine = [j for j in jobs if runner is None or j["runner_pid"] == runner]

    def ended_by(j: dict[str, Any]) -> bool:
        return j["finished"] is not None and j["finished"] <= t

    queued = sum(
        j["created"] <= t and (j["started"] is None or j["started"] > t) and not ended_by(j)
        for j in mine
    )
    running = sum(j["started"] is not None and j["started"] <= t and not ended_by(j) for j in mine)
    return {"queued": int(queued), "running": int(running)}


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def fit_wait(
    b: dict[str, Any], a_jobs: list[dict[str, Any]], client: dict[str, Any], a_run_s: float | None
) -> dict[str, Any]:
    """B's fit job ``b`` (a record of :func:`job_records`) against A's jobs: how long it
    waited and what for. ``client``: what B's client saw (POSIX s); ``a_run_s``: A's median
    job run time. See :func:`main_tenants` for "within one job slot"."""
    c, s, f = b["created"], b["started"], b["finished"]
    if s is None:
        return {"job_id": b["id"], "twin": b["twin"], "status": b["status"], "error": b["error"]}
    # A's jobs asked for before B's ended (none for B alone: A's flood comes later)
    a_jobs = [j for j in a_jobs if f is None or j["created"] < f]

    def first_end(runner: int | None = None) -> float | None:
        ends = [
            j["finished"]
            for j in a_jobs
            if j["finished"] is not None
            and j["finished"] > c
            and (runner is None or j["runner_pid"] == runner)
        ]
        return min(ends) if ends else None

    def in_time(end: float | None) -> bool:
        # started into a slot free already, or at most a hand-over after ``end``
        return end is None or s <= end + HANDOVER_S

    here = b["runner_pid"]
    first, first_here = first_end(), first_end(here)
    ahead = [j for j in a_jobs if j["started"] is not None and c < j["started"] < s]
    ahead_here = [j for j in ahead if j["runner_pid"] == here]
    ended = [j for j in a_jobs if j["finished"] is not None and c < j["finished"] <= s]
    return {
        "job_id": b["id"],
        "twin": b["twin"],
        "status": b["status"],
        "runner_pid": b["runner_pid"],
        "wait_s": _r(s - c),
        "run_s": _r(None if f is None else f - s),
        "total_s": _r(None if f is None else f - c),
        "wait_in_a_job_runs": _r(None if not a_run_s else (s - c) / a_run_s, 2),
        "client_post_to_running_seen_s": _r(client["running_seen"] - client["sent"]),
        "client_post_to_done_seen_s": _r(client["done_seen"] - client["sent"]),
        "a_jobs_at_submit": _jobs_at(a_jobs, c),
        "a_jobs_at_start": _jobs_at(a_jobs, s),
        "a_jobs_on_its_runner_at_submit": _jobs_at(a_jobs, c, b["runner_pid"]),
        "a_jobs_ended_while_it_waited": len(ended),
        "a_jobs_ended_on_its_runner_while_it_waited": sum(j["runner_pid"] == here for j in ended),
        "first_a_job_end_after_submit_s": _r(None if first is None else first - c),
        "started_minus_first_a_job_end_s": _r(None if first is None else s - first),
        "started_minus_first_a_job_end_on_its_runner_s": _r(
            None if first_here is None else s - first_here
        ),
        "a_jobs_started_ahead": len(ahead),
        "a_jobs_started_ahead_on_its_runner": len(ahead_here),
        "within_one_job_slot": not ahead and in_time(first),
        "within_one_job_slot_of_its_runner": not ahead_here and in_time(first_here),
    }


def _one_fit(base: str, token: str, twin: str, model: str, seed: int) -> dict[str, Any]:
    """Fit ``twin`` through the API and follow its job to the end (polled every 50 ms): the
    job's id and when (POSIX s) the request was sent and the client saw it run and end."""
    auth = {"Authorization": f"Bearer {token}"}
    sent = time.time()
    # A connection of its own, as a client that fits now and then would open: the server
    # process that accepts it queues and runs the job.
    answer = httpx.post(
        f"{base}/v1/twins/{twin}/fit", json={"model": model, "seed": seed}, headers=auth, timeout=60
    )
    answer.raise_for_status()
    url = f"{base}/v1/twins/{twin}/jobs/{answer.json()['id']}"
    running_seen = None
    with httpx.Client(headers=auth, timeout=60) as client:
        while True:
            status = client.get(url).json()
            now = time.time()
            if status["status"] != "queued" and running_seen is None:
                running_seen = now
            if status["status"] in ENDED:
                break
            time.sleep(0.05)
    return {
        "job_id": int(answer.json()["id"]),
        "status": status["status"],
        "error": status["error"],
        "sent": sent,
        "running_seen": running_seen,
        "done_seen": now,
    }


def b_fits(
    base: str, token: str, twins: list[str], args: argparse.Namespace, out: list[Any]
) -> Callable[[], None]:
    """What B's fits do during a step: ``args.b_fit_at`` s into it, fit ``twins`` one after
    another (a second apart); each outcome (or the exception) appended to ``out``."""

    def run() -> None:
        time.sleep(args.b_fit_at)
        for twin in twins:
            try:
                out.append(_one_fit(base, token, twin, args.fit_model, args.seed))
            except Exception as exc:  # raised again in the main thread
                out.append(exc)
                return
            time.sleep(1.0)

    return run


def _upload_body(k: int, chunk: int, rows: int, seed: int) -> bytes:
    """CSV of twin ``k``'s readings ``chunk`` (``rows`` 5-minute readings each, after its
    first day): glucose around 130 with a daily swing and noise, seeded."""
    rng = np.random.default_rng([seed, 11, k, chunk])
    steps = DAY_READINGS + chunk * rows + np.arange(rows)
    value = np.clip(
        130 + 30 * np.sin(2 * np.pi * steps / DAY_READINGS) + rng.normal(0, 8, rows), 50, 350
    )
    times = np.datetime64("2026-01-01T00:00:00") + steps.astype("timedelta64[m]") * 5
    lines = [
        f"{t}+00:00,glucose,{v:.1f}\n"
        for t, v in zip(np.datetime_as_string(times, unit="s"), value, strict=True)
    ]
    return ("time,channel,value\n" + "".join(lines)).encode()


def run_flood(
    port: int,
    token: str,
    twins: list[str],
    cfg: dict[str, Any],
    stop: Any,
    report: Connection,
) -> None:
    """Owner A's flood (its own process) until ``stop`` (an Event) is set; see
    :func:`main_tenants`. Sends ("full", ...) at the first 429 of a fit, then its counts."""
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()  # stop was set
        ended = asyncio.Event()  # one of A's jobs ended
        outstanding: dict[int, str] = {}
        counts: Counter[str] = Counter()
        retry_after_seen: set[str] = set()
        upload_s: list[float] = []

        async def watch_stop() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.05)
            done.set()

        async def until(event: asyncio.Event, timeout: float) -> None:
            waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(done.wait())]
            _, pending = await asyncio.wait(
                waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()

        async def fits() -> None:
            # no keep-alive: each fit on a new connection, as many clients' would be, so
            # that the server's processes share A's jobs as the kernel hands them out
            limits = httpx.Limits(max_keepalive_connections=0)
            told_full, k = False, 0
            async with httpx.AsyncClient(
                base_url=base, headers=auth, timeout=120, limits=limits
            ) as client:
                while not done.is_set():
                    twin = twins[k % len(twins)]
                    ended.clear()
                    answer = await client.post(
                        f"/v1/twins/{twin}/fit", json={"model": cfg["model"], "seed": cfg["seed"]}
                    )
                    if answer.status_code == 202:
                        outstanding[int(answer.json()["id"])] = twin
                        counts["fits_accepted"] += 1
                        k += 1
                        continue
                    counts[f"fits_{answer.status_code}"] += 1
                    if answer.status_code != 429:
                        await asyncio.sleep(1.0)
                        continue
                    if not told_full:
                        told_full = True
                        report.send(("full", time.time(), len(outstanding)))
                    retry_after = answer.headers.get("Retry-After", "1")
                    retry_after_seen.add(retry_after)
                    # Ask again after Retry-After, or as soon as one of A's jobs ends (what
                    # the refusal says: "ask again when one has ended"), whichever is first.
                    await until(ended, float(retry_after))
                    if ended.is_set():
                        counts["retries_after_a_job_ended"] += 1
                    elif not done.is_set():
                        counts["retries_after_retry_after"] += 1

        async def poll() -> None:
            async with httpx.AsyncClient(base_url=base, headers=auth, timeout=120) as client:
                while not done.is_set():
                    for job_id, twin in list(outstanding.items()):
                        status = (await client.get(f"/v1/twins/{twin}/jobs/{job_id}")).json()
                        if status["status"] in ENDED:
                            del outstanding[job_id]
                            counts[f"jobs_{status['status']}"] += 1
                            ended.set()
                    await asyncio.sleep(cfg["poll_s"])

        async def uploads() -> None:
            limits = httpx.Limits(max_connections=cfg["upload_inflight"])
            inflight: set[asyncio.Task[None]] = set()
            pause_until = 0.0

            async def one(client: httpx.AsyncClient, j: int) -> None:
                nonlocal pause_until
                k, chunk = j % len(twins), j // len(twins)
                body = _upload_body(cfg["first_k"] + k, chunk, cfg["upload_rows"], cfg["seed"])
                files = {"file": (f"{twins[k]}-{chunk}.csv", body, "text/csv")}
                sent = loop.time()
                try:
                    answer = await client.post(
                        f"/v1/twins/{twins[k]}/observations/upload", files=files
                    )
                except Exception as exc:
                    counts[f"uploads_{type(exc).__name__}"] += 1
                    return
                counts[f"uploads_{answer.status_code}"] += 1
                if answer.status_code == 200:
                    upload_s.append(loop.time() - sent)
                    counts["rows_stored"] += int(answer.json()["n_stored"])
                elif answer.status_code == 429:
                    pause_until = loop.time() + float(answer.headers.get("Retry-After", "1"))

            async with httpx.AsyncClient(
                base_url=base, headers=auth, timeout=120, limits=limits
            ) as client:
                due, j = loop.time(), 0
                while not done.is_set():
                    if loop.time() < due:
                        await asyncio.sleep(due - loop.time())
                        continue
                    due += 1.0 / cfg["uploads_per_s"]
                    if loop.time() < pause_until:
                        counts["uploads_paused_by_retry_after"] += 1
                    elif len(inflight) >= cfg["upload_inflight"]:
                        counts["uploads_skipped_at_inflight_cap"] += 1
                    else:
                        task = asyncio.create_task(one(client, j))
                        inflight.add(task)
                        task.add_done_callback(inflight.discard)
                        j += 1
                await asyncio.gather(*inflight)

        started, cpu = time.time(), resource.getrusage(resource.RUSAGE_SELF)
        work = [watch_stop()]
        if cfg["fits"]:
            work += [fits(), poll()]
        else:
            report.send(("full", started, 0))  # no fits: nothing to wait for
        if cfg["uploads_per_s"] > 0:
            work.append(uploads())
        await asyncio.gather(*work)
        seconds = time.time() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        lat = np.array(upload_s) * 1e3
        return {
            "seconds": round(seconds, 1),
            # A's client shares the machine's cores with the server, as the generator does
            "client_cpu_s": round(after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime, 2),
            "counts": dict(sorted(counts.items())),
            "fits_accepted_per_s": round(counts["fits_accepted"] / seconds, 2),
            "retry_after_seen": sorted(retry_after_seen),
            "jobs_unfinished_at_stop": len(outstanding),
            "uploads": {
                "ok_per_s": round(len(upload_s) / seconds, 1),
                "rows_per_s": round(counts["rows_stored"] / seconds),
                "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
                "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
            },
        }

    report.send(("report", asyncio.run(main())))
    report.close()


def _a_jobs_summary(a_jobs: list[dict[str, Any]], since: float, until: float) -> dict[str, Any]:
    """A's jobs created in [since, until]: how many ended how, how long they waited and ran,
    and which server process ran them."""
    mine = [j for j in a_jobs if since <= j["created"] <= until]
    run = [j["finished"] - j["started"] for j in mine if j["finished"] and j["started"]]
    wait = [j["started"] - j["created"] for j in mine if j["started"]]

    def pct(xs: list[float], q: float) -> float | None:
        return round(float(np.percentile(xs, q)), 2) if xs else None

    return {
        "created": len(mine),
        "by_status": dict(Counter(j["status"] for j in mine)),
        "by_runner_pid": {
            str(k): v for k, v in sorted(Counter(j["runner_pid"] for j in mine).items(), key=str)
        },
        "run_s_p50": pct(run, 50),
        "run_s_p90": pct(run, 90),
        "wait_s_p50": pct(wait, 50),
        "wait_s_max": pct(wait, 100),
    }


def handovers(jobs: list[dict[str, Any]]) -> list[float]:
    """Each job that was waiting when the previous job of the process that ran it ended
    (one slot per process): the seconds from that end to its start."""
    gaps = []
    by_slot: dict[int, list[dict[str, Any]]] = {}
    for j in jobs:
        if j["started"] is not None and j["runner_pid"] is not None:
            by_slot.setdefault(j["runner_pid"], []).append(j)
    for started in by_slot.values():
        started.sort(key=lambda j: j["started"])
        for prev, job in itertools.pairwise(started):
            if prev["finished"] is not None and job["created"] < prev["finished"]:
                gaps.append(job["started"] - prev["finished"])
    return gaps


def idle_slots(
    jobs: list[dict[str, Any]], a_jobs: list[dict[str, Any]], slots: int, t0: float, t1: float
) -> float:
    """The seconds of [t0, t1] in which fewer than ``slots`` jobs ran (the service's job
    slots, within the host's cap) while A had jobs queued, sampled every 10 ms."""
    idle = 0
    for t in np.arange(t0, t1, 0.01):
        if _jobs_at(a_jobs, t)["queued"] and _jobs_at(jobs, t)["running"] < slots:
            idle += 1
    return round(idle * 0.01, 2)


def main_tenants(
    args: argparse.Namespace, load_start: tuple[float, float, float]
) -> dict[str, Any]:
    """Two owners on one server (issue #16). B's forecasts and fits, first alone, then while
    A floods; B's figures under the flood over B's alone, in one run.

    Setup: owners ``tenant-a`` and ``tenant-b``, ``--tenant-twins`` state twins each
    (``a-0000``..., ``b-0000``...), a day of readings each over HTTP; B's twins fitted
    (``--fit-model``) in this process. The load generator (as in the rate series: its own
    process, open loop) warms B's forecasts up, then measures two steps of
    ``GET /v1/twins/{random B twin}/forecast`` (default horizons, answered from the forecast
    cache but for the twin B refits), ``--tenant-rate`` per second for
    ``--tenant-duration`` s, the same requests in both:

    1. **alone**: A is idle (and the server too when it starts). ``--b-fit-at`` s in, B fits
       ``--b-fits`` twins, one after another.
    2. **contended**: A floods, from its own process, from ``--a-ramp`` s after its job quota
       first filled until B's step and fits are over. Fits: A posts ``POST .../fit`` for its
       twins in turn, each on a new connection, until one is refused (429, the quota:
       ``TWINKIT_MAX_JOBS_PER_OWNER`` queued or running); then it asks again after the
       answer's Retry-After or as soon as one of its jobs ends (it polls them every
       ``--a-poll`` s), whichever is first, so it holds its quota full all along.
       Uploads: ``--a-uploads-per-s`` a second (the default rate limit's 600 a minute;
       every owner's limit is raised for this run so that B's forecasts pass), each a CSV of
       ``--a-upload-rows`` new 5-minute readings for the next of A's twins through
       ``POST .../observations/upload``, at most ``--a-upload-inflight`` unanswered; a 429
       pauses them for its Retry-After. B does as in the alone step, on other twins.

    B's fit wait is the job record's ``started_at - created_at`` (the client's view, from
    the POST to the poll that saw it run, is given too). Job records, with the server
    process that claimed and ran each, are read from the store's file afterwards.

    **Within one job slot**: a job slot is one job running at a time in one server process
    (``TWINKIT_FIT_WORKERS`` per process, times ``--workers``). From the job records, with
    ``c``, ``s`` B's job's ``created_at`` and ``started_at`` and ``F`` the first
    ``finished_at`` after ``c`` among A's jobs: B's fit started within one job slot when
    ``s <= F + HANDOVER_S`` (or B started before any A job ended: a slot was free) and no A
    job started between ``c`` and ``s``. That is, the first slot that came free after B
    submitted went to B, so B waited at most for the rest of one A job; ``HANDOVER_S``
    (0.1 s) allows for a slot's hand-over (the worker thread records the end, takes the
    next job and records its start; the JSON gives the hand-overs A's jobs had:
    ``handover_s``). The job queue is the store's, shared by the server processes: the
    first free slot anywhere claims the next job, and the claim records the start in the
    same store write. The JSON also gives the same test against the
    process that claimed B's job alone (``within_one_job_slot_of_its_runner``, with ``F``
    its first A job end), how many A jobs ended while B waited, B's wait over A's median
    job run time (``wait_in_a_job_runs``), and how long fewer jobs ran than the service
    has slots while A had jobs queued (``slot_idle_s_while_a_queued``).

    Targets: B's forecast p99 contended <= 2x alone (and no errors); every B fit of the
    contended step within one job slot.
    """
    n = args.tenant_twins
    a_twins = [f"a-{k:04d}" for k in range(n)]
    b_twins = [f"b-{k:04d}" for k in range(n)]
    if 2 * args.b_fits > n:
        raise SystemExit("--b-fits: B fits other twins in each step; give more --tenant-twins")
    admin_token = secrets.token_urlsafe(32)
    settings = load_settings(admin_token=admin_token)  # as the server reads its environment
    ctx = multiprocessing.get_context("spawn")
    report: dict[str, Any] = {"benchmark": "service_load", "mode": "two_tenants"}
    with tempfile.TemporaryDirectory() as tmp:
        db_file = Path(tmp) / "service.db"
        db_url = f"sqlite:///{db_file}"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with serve(db_url, port, args.workers, admin_token, Path(tmp) / "server.log") as server:
            b_token, b_created, b_ingest = asyncio.run(
                _setup(base, admin_token, b_twins, args.seed, args.ingest_concurrency, OWNER_B)
            )
            a_token, a_created, a_ingest = asyncio.run(
                _setup(base, admin_token, a_twins, args.seed, args.ingest_concurrency, OWNER_A, n)
            )
            engine = TwinEngine(db_url)
            started = time.perf_counter()
            for twin in b_twins:
                engine.fit(twin, model=args.fit_model, seed=args.seed)
            engine_fit_s = time.perf_counter() - started
            engine.store.dispose()

            plan = {
                "steps": [("cached", float(args.tenant_rate), 0.0)] * 2,
                "duration_s": args.tenant_duration,
                "connections": args.connections,
                "warmup_passes": args.warmup_passes,
                "warmup_rate": 400.0,
                "seed": args.seed,
            }
            lookups = cache_lookups(base)
            here, generator = _start_generator(base, b_token, b_twins, plan)
            warmup = _warm_up(here, base, plan, lookups)

            alone_fits: list[Any] = []
            alone_twins = b_twins[: args.b_fits]
            alone = _measure_step(
                here,
                base,
                server.pid,
                during=b_fits(base, b_token, alone_twins, args, alone_fits),
                reaped=True,
            )

            stop = ctx.Event()
            reports, there = ctx.Pipe(duplex=False)
            cfg = {
                "model": args.fit_model,
                "seed": args.seed,
                "fits": not args.a_no_fits,
                "poll_s": args.a_poll,
                "uploads_per_s": args.a_uploads_per_s,
                "upload_rows": args.a_upload_rows,
                "upload_inflight": args.a_upload_inflight,
                "first_k": n,
            }
            flood = ctx.Process(
                target=run_flood, args=(port, a_token, a_twins, cfg, stop, there), name="flood"
            )
            flood_start = time.time()
            flood.start()
            there.close()
            if not reports.poll(180):
                raise RuntimeError("owner A's job quota did not fill within 180 s")
            _, quota_full_at, a_outstanding = reports.recv()
            time.sleep(args.a_ramp)
            contended_fits: list[Any] = []
            contended_twins = b_twins[args.b_fits : 2 * args.b_fits]
            contended = _measure_step(
                here,
                base,
                server.pid,
                wait_idle=False,
                during=b_fits(base, b_token, contended_twins, args, contended_fits),
                reaped=True,
            )
            stop.set()
            _, flood_report = reports.recv()
            flood_end = time.time()
            flood.join(timeout=30)
            here.recv()  # done
            generator.join(timeout=30)
            jobs = job_records(db_file)

    for outcome in alone_fits + contended_fits:
        if isinstance(outcome, Exception):
            raise outcome
    by_id = {j["id"]: j for j in jobs}
    a_jobs = [j for j in jobs if j["owner"] == OWNER_A]
    a_summary = _a_jobs_summary(a_jobs, flood_start, flood_end)
    slots = settings.fit_workers * args.workers
    a_summary["slot_idle_s_while_a_queued"] = idle_slots(
        jobs, a_jobs, slots, quota_full_at, flood_end
    )
    a_summary["slot_idle_window_s"] = round(flood_end - quota_full_at, 1)
    gaps = handovers(jobs) if settings.fit_workers == 1 else []
    handover_s = {
        "count": len(gaps),
        "p50": _r(float(np.percentile(gaps, 50))) if gaps else None,
        "max": _r(max(gaps)) if gaps else None,
    }
    a_run_s = a_summary["run_s_p50"]
    b_alone = [fit_wait(by_id[f["job_id"]], a_jobs, f, a_run_s) for f in alone_fits]
    b_contended = [fit_wait(by_id[f["job_id"]], a_jobs, f, a_run_s) for f in contended_fits]

    def ratio(x: float | None, y: float | None, digits: int = 2) -> float | None:
        return None if x is None or not y else round(x / y, digits)

    wait_alone = float(np.median([f["wait_s"] for f in b_alone]))
    wait_contended = float(np.median([f["wait_s"] for f in b_contended]))
    ratios = {
        "b_p50_contended_over_alone": ratio(contended["p50_ms"], alone["p50_ms"]),
        "b_p99_contended_over_alone": ratio(contended["p99_ms"], alone["p99_ms"]),
        "b_max_contended_over_alone": ratio(contended["max_ms"], alone["max_ms"]),
        "b_fit_wait_contended_over_alone": ratio(wait_contended, wait_alone, 1),
        "b_fit_total_contended_over_alone": ratio(
            float(np.median([f["total_s"] for f in b_contended])),
            float(np.median([f["total_s"] for f in b_alone])),
        ),
    }
    p99_ratio = ratios["b_p99_contended_over_alone"]
    report.update(
        {
            "data": {
                "kind": "synthetic glucose (daily swing + bounded random walk), 5-minute grid",
                "twins_per_owner": n,
                "readings_per_twin": DAY_READINGS,
                "model": f"{args.fit_model} per twin (B's fitted in process, then by B's jobs)",
                "a_upload": f"CSV of {args.a_upload_rows} new readings of one of A's twins",
            },
            "seed": args.seed,
            "server": {
                "command": "twinkit serve --db sqlite:///<tmp>/service.db "
                f"--workers {args.workers}",
                "store": "SQLite file (WAL)",
                "rate_limit": "raised for the run: TWINKIT_RATE_LIMIT_PER_MINUTE=1e9",
                "switch_interval_ms": settings.switch_interval_ms,
                "fit_workers_per_process": settings.fit_workers,
                "job_slots": settings.fit_workers * args.workers,
                "ingest_processes_per_process": settings.ingest_processes,
                "max_jobs_per_owner": settings.max_jobs_per_owner,
                "max_upload_rows": settings.max_upload_rows,
            },
            "setup": {
                "create_twins": {"b": b_created, "a": a_created},
                "ingest_over_http": {"b": b_ingest, "a": a_ingest},
                "engine_fits_b": {"twins": n, "seconds": round(engine_fit_s, 1)},
                "b_forecast_warmup": warmup,
            },
            "b_forecasts": {
                "request": "GET /v1/twins/{random B twin}/forecast (horizons 30, 60 min), "
                "open loop, the same requests in both steps",
                "alone": alone,
                "contended": contended,
            },
            "b_fits": {"alone": b_alone, "contended": b_contended, "handover_s": handover_s},
            "a_flood": {
                "quota_full_after_s": round(quota_full_at - flood_start, 1),
                "jobs_accepted_when_full": a_outstanding,
                "ramp_s_before_b_measured": args.a_ramp,
                "fits": not args.a_no_fits,
                "uploads_per_s_offered": args.a_uploads_per_s,
                "client": flood_report,
                "jobs": a_summary,
            },
            "ratios": ratios,
            "target": TENANT_TARGET,
            "target_met": {
                "b_p99_within_2x": p99_ratio is not None
                and p99_ratio <= TENANT_TARGET["b_p99_ratio_max"]
                and contended["errors"] == 0,
                "b_fit_within_one_job_slot": all(f.get("within_one_job_slot") for f in b_contended),
            },
            "machine": machine(load_start),
        }
    )
    print(json.dumps(report, indent=2))
    return report


def machine(load_start: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "loadavg_before": [round(x, 2) for x in load_start],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "note": "server and load generator share these cores; so did any other work",
    }


# -- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--twins", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="twinkit serve --workers")
    parser.add_argument(
        "--rates", default="100,200,300,500,750,1000", help="requests/s, in order (cached)"
    )
    parser.add_argument(
        "--uncached-rates",
        default="50,100,200,300",
        help="requests/s, in order, each request a (twin, horizons) never asked before",
    )
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per rate")
    parser.add_argument("--connections", type=int, default=64, help="of the load generator")
    parser.add_argument("--http-fits", type=int, default=3, help="fits through POST .../fit")
    parser.add_argument("--ingest-concurrency", type=int, default=4)
    parser.add_argument(
        "--live-rates",
        default="200,500",
        help="requests/s, in order, of forecasts while new readings arrive (--live-ingest)",
    )
    parser.add_argument(
        "--live-ingest",
        type=float,
        default=10.0,
        help="new readings/s during the live steps, one twin each (1,000 CGMs: 3.3/s)",
    )
    parser.add_argument(
        "--warmup-passes",
        type=int,
        default=30,
        help="at most this many unmeasured passes over every twin; stops after two in a row "
        "without a cache miss",
    )
    parser.add_argument("--seed", type=int, default=0)
    tenants = parser.add_argument_group(
        "two tenants", "--tenants: owner B measured alone, then while owner A floods"
    )
    tenants.add_argument(
        "--tenants",
        action="store_true",
        help="run the two-tenant benchmark (issue #16) instead of the rate series",
    )
    tenants.add_argument("--tenant-twins", type=int, default=50, help="twins of each owner")
    tenants.add_argument("--tenant-rate", type=float, default=100.0, help="B's forecasts/s")
    tenants.add_argument("--tenant-duration", type=float, default=30.0, help="s per step")
    tenants.add_argument("--fit-model", default="linear_ar", help="of every fit")
    tenants.add_argument("--b-fits", type=int, default=1, help="B's fits per step, in turn")
    tenants.add_argument("--b-fit-at", type=float, default=5.0, help="s into a step")
    tenants.add_argument(
        "--a-ramp", type=float, default=10.0, help="s of A's flood after its quota filled"
    )
    tenants.add_argument("--a-poll", type=float, default=0.2, help="A polls its jobs (s)")
    tenants.add_argument(
        "--a-no-fits", action="store_true", help="A only uploads (to tell the causes apart)"
    )
    tenants.add_argument("--a-uploads-per-s", type=float, default=10.0)
    tenants.add_argument("--a-upload-rows", type=int, default=DAY_READINGS)
    tenants.add_argument("--a-upload-inflight", type=int, default=4)
    args = parser.parse_args(argv)
    if not Path("/proc/self/stat").exists():
        parser.error("this benchmark reads CPU times from /proc: it runs on Linux")

    load_start = os.getloadavg()
    if args.tenants:
        return main_tenants(args, load_start)
    twins = [f"bench-{k:04d}" for k in range(args.twins)]
    admin_token = secrets.token_urlsafe(32)
    report: dict[str, Any] = {"benchmark": "service_load"}
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'service.db'}"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with serve(db_url, port, args.workers, admin_token, Path(tmp) / "server.log") as server:
            token, created, ingest = asyncio.run(
                _setup(base, admin_token, twins, args.seed, args.ingest_concurrency)
            )
            http_fits = fit_over_http(base, token, twins[: args.http_fits])
            engine = TwinEngine(db_url)
            started = time.perf_counter()
            for twin in twins[args.http_fits :]:
                engine.fit(twin, model="linear_ar", seed=args.seed)
            engine_fit_s = time.perf_counter() - started
            engine.store.dispose()
            plan = {
                "steps": [("cached", float(r), 0.0) for r in args.rates.split(",") if r]
                + [("live", float(r), args.live_ingest) for r in args.live_rates.split(",") if r]
                + [("uncached", float(r), 0.0) for r in args.uncached_rates.split(",") if r],
                "duration_s": args.duration,
                "connections": args.connections,
                "warmup_passes": args.warmup_passes,
                "warmup_rate": 400.0,
                "seed": args.seed,
            }
            warmup, steps = run_load(base, server.pid, token, twins, plan)
    at_target = {
        series: [
            s for s in steps if s["series"] == series and s["rate_per_s"] == TARGET["rate_per_s"]
        ]
        for series in ("cached", "live", "uncached")
    }
    report.update(
        {
            "data": {
                "kind": "synthetic glucose (daily swing + bounded random walk), 5-minute grid",
                "twins": args.twins,
                "readings_per_twin": DAY_READINGS,
                "model": "linear_ar per twin",
            },
            "seed": args.seed,
            "server": {
                "command": "twinkit serve --db sqlite:///<tmp>/service.db "
                f"--workers {args.workers}",
                "store": "SQLite file (WAL)",
                "rate_limit": "raised for the run: TWINKIT_RATE_LIMIT_PER_MINUTE=1e9",
                # read as the workers read it: from the environment the server inherits
                "switch_interval_ms": load_settings(admin_token=admin_token).switch_interval_ms,
            },
            "setup": {
                "create_twins": created,
                "ingest_over_http": ingest,
                "fit_jobs_over_http_s": http_fits,
                "engine_fits": {
                    "twins": args.twins - args.http_fits,
                    "seconds": round(engine_fit_s, 1),
                },
            },
            "load": {
                "generator": "separate process, asyncio HTTP/1.1 keep-alive, open loop",
                "connections": args.connections,
                "duration_s_per_rate": args.duration,
                "request": {
                    "cached": "GET /v1/twins/{random twin}/forecast (horizons 30, 60 min): "
                    "after the warm-up, answered from each worker's forecast cache",
                    "live": "as cached, while POST /v1/twins/{random twin}/observations "
                    f"adds one new reading {args.live_ingest:g} times a second: each moves "
                    "that twin's data watermark, so its next forecast is computed again",
                    "uncached": "GET /v1/twins/{random twin}/forecast?horizons=a&horizons=b, "
                    "each (twin, a, b) asked once: every answer is computed",
                },
                "cache_counts": "cache_hits and cache_misses per step from /metrics, "
                "summed over the workers",
                "between_steps": "wait until the server's CPU use is under 5% of a core",
                "warmup": {
                    "rate_per_s": plan["warmup_rate"],
                    "passes": warmup,
                    "until": "two passes over every twin (shuffled) without a forecast cache miss",
                },
                "steps": steps,
            },
            "target": TARGET,
            "target_met": {
                series: bool(found) and all(s["target_met"] for s in found)
                for series, found in at_target.items()
            },
            "machine": machine(load_start),
        }
    )
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
