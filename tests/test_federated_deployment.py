"""Flower's deployment runtime end to end from the CLI, over TLS with authenticated nodes:
a SuperLink (`twinkit federated serve`), one SuperNode per site each reading its own store
(`twinkit federated join`, its key admitted with `twinkit federated admit`), and a run
(`twinkit federated run`) whose prior is registered by the coordinator and by every site,
whose twins then personalise from it. One site's store is unreachable: the run goes on
without it and the ledger says so. A node with a key never admitted is turned away."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

import pytest

from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine
from twinkit.engine.population import collect_histories
from twinkit.store.db import Store

pytest.importorskip("flwr")
import torch

from twinkit.federated import federate
from twinkit.models.gru import GRUAttention
from twinkit.models.neural import NeuralForecaster

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _running(*markers: str, grace_s: float = 15.0) -> list[str]:
    """The command lines of live processes that name any of ``markers``, after waiting up
    to ``grace_s`` for them to end."""
    deadline = time.monotonic() + grace_s
    while True:
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if any(marker in command for marker in markers):
                found.append(command)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def site_store(path: Path, seed: int) -> str:
    url = f"sqlite:///{path}"
    engine = TwinEngine(url)
    cohort = synthetic_cohort(n_twins=2, days=3, seed=seed)
    for twin in sorted(cohort["twin_id"].unique()):
        engine.create_twin(twin, "state")
    engine.ingest(cohort)
    engine.store.dispose()
    return url


def test_a_superlink_and_three_supernodes_run_a_whole_federation(tmp_path: Path) -> None:
    # Prepare: three sites' stores and a fourth site whose database does not answer; TLS
    # and node keys for four sites, and a fifth key the SuperLink is never told of
    stores = [site_store(tmp_path / f"site{s}.db", seed=s) for s in range(3)]
    stores.append(f"postgresql+psycopg://twinkit:none@127.0.0.1:{free_port()}/gone")
    env = {**os.environ, "FLWR_HOME": str(tmp_path / "flwr"), "PYTHONUNBUFFERED": "1"}
    twinkit = [sys.executable, "-m", "twinkit", "--quiet", "federated"]
    tls = tmp_path / "tls"
    subprocess.run([*twinkit, "certificates", str(tls), "--sites", "5"], env=env, check=True)
    ca = ("--root-certificates", str(tls / "ca.crt"))
    link = f"127.0.0.1:{free_port()}"
    logs: list[Path] = []
    ports: list[str] = []
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        logs.append(tmp_path / f"{name}.log")
        with logs[-1].open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [*twinkit, *args],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, Flower's children too
                )
            )
        return processes[-1]

    def join(site: int, store: str) -> subprocess.Popen[bytes]:
        key = str(tls / f"site-{site + 1}")
        port = str(free_port())  # one runtime port per SuperNode on a host
        ports.append(f"127.0.0.1:{port}")
        return start(f"site{site}", "join", "--superlink", link, "--store", store, *ca,
                     "--auth-key", key, "--port", port)  # fmt: skip

    # Execute
    try:
        start("superlink", "serve", "--port", link.split(":")[1],
              "--certificates", str(tls), "--authenticate-nodes")  # fmt: skip
        for site in range(4):
            admit = [*twinkit, "admit", str(tls / f"site-{site + 1}.pub"), "--superlink", link]
            for _ in range(60):  # until the SuperLink answers
                admitted = subprocess.run([*admit, *ca], env=env, capture_output=True)
                if admitted.returncode == 0:
                    break
                time.sleep(1)
            assert admitted.returncode == 0, admitted.stderr.decode()[-2000:]
        for site, store in enumerate(stores):
            join(site, store)
        stranger = join(4, stores[0])
        run = subprocess.run(
            [
                *twinkit,
                "run",
                "--superlink",
                link,
                *ca,
                "--sites",
                "4",
                "--rounds",
                "1",
                "--wait",
                "120",
                *("--param", "hidden=8", "--param", "context_min=30"),
                *("--param", "max_horizon_min=30", "--param", "batch_size=64"),
                "--db",
                f"sqlite:///{tmp_path / 'coordinator.db'}",
                "--json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        stranger_exit = stranger.poll()
        # stopping `serve` and `join` stops Flower: nothing is left running
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        left = _running(str(tmp_path), link, *ports)
    finally:
        for process in processes:  # whatever a failure above left, its whole group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    said = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{said}"

    # Assert: no Flower process outlived the commands that started it
    assert left == [], left
    # a node whose key was not admitted was turned away
    assert stranger_exit not in (None, 0), said
    # the coordinator registered a prior trained on the runtime by three sites
    result = json.loads(run.stdout)
    record = result["federation"]
    assert record["engine"] == "flower-deployment" and record["rounds"] == 1
    sites = [s["site"] for s in record["sites"]]
    assert len(sites) == 3 and all(s["twins"] == 2 and s["windows"] > 0 for s in record["sites"])
    assert {r: sorted(s) for r, s in record["joined"].items()} == {"1": sorted(sites)}
    # the unreachable store: it could not describe itself, and missed the round
    assert list(record["failures"]) == ["0", "1"]
    assert all(list(f) == ["unknown-site-1"] for f in record["failures"].values())
    assert "connect" in record["failures"]["0"]["unknown-site-1"].lower()
    assert len(record["aggregates"]) == 2 and sorted(record["installed"]) == sorted(sites)
    coordinator = TwinEngine(f"sqlite:///{tmp_path / 'coordinator.db'}")
    entry = [e for e in coordinator.history() if e.event == "population_registered"][-1]
    assert entry.payload["training"] == "federated" and entry.payload["twins"] == []
    # every site holds the same prior, and its twins personalise from it
    first = TwinEngine(stores[0])
    prior = first.populations()[-1]
    assert prior.sha256 == result["sha256"] and len(prior.twins) == 2
    fitted = first.fit(prior.twins[0], candidates=["population"])
    assert fitted.promoted, fitted
    # one code path: the simulation engine on the same sites' data gives the same weights
    histories = {
        f"s{i}": collect_histories(Store(url), None, "glucose").histories
        for i, url in enumerate(stores[:3])
    }
    template = GRUAttention(hidden=8, context_min=30, max_horizon_min=30, batch_size=64, seed=0)
    simulated = federate(template, histories, rounds=1, seed=0)
    deployed = coordinator.population()
    assert deployed is not None and simulated.model.network is not None
    network = cast(NeuralForecaster, deployed[1]).network
    assert network is not None
    for name, value in simulated.model.network.state_dict().items():
        torch.testing.assert_close(network.state_dict()[name], value, atol=1e-6, rtol=0)
