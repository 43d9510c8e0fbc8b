"""Federated priors on Flower's deployment runtime: a SuperLink for the coordinator, one
SuperNode per site reading its own store, and the Flower apps they run.

The apps are :mod:`twinkit.federated.app`'s and :mod:`twinkit.federated.server`'s (the
code path of the simulation too): here a site is read from the store its SuperNode names
(``--node-config 'store="URL" owner="NAME"'``), and the server writes its result where
the run's configuration says.
:func:`submit` hands a :class:`~twinkit.federated.app.Plan` to a SuperLink with ``flwr
run`` (a Flower App project it writes, whose components are this module's ``serverapp``
and ``clientapp``) and waits for the result; :func:`fit_deployed` registers it as a
population prior. With ``plan.install`` every site also registers it in its own store,
so its twins personalise from it as from a pooled prior.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from twinkit.core.errors import TwinkitError
from twinkit.engine.population import Histories, PopulationResult, collect_histories, register_prior
from twinkit.federated.app import Plan, Site, client_app
from twinkit.federated.server import run_federation
from twinkit.models.base import forecaster_class
from twinkit.models.neural import NeuralForecaster
from twinkit.store.artifacts import ArtifactStore
from twinkit.store.db import Store, resolve_url

#: the Flower App project's name and publisher (what ``flwr ls`` shows)
APP_NAME = "twinkit-federation"
#: the connection name the written Flower configuration gives the SuperLink
CONNECTION = "twinkit"


def _store_site(context: Context, plan: Plan) -> Site:
    """The site a SuperNode serves: the twins of its store (``store``: a database URL),
    those of ``owner`` or the ``twins`` named (comma-separated), as a pooled prior would
    take them (each cut at its holdout split). With ``install="false"`` the site does not
    register the runs' priors in its store."""
    config = context.node_config
    if "store" not in config:
        raise TwinkitError(
            "this SuperNode names no store: start it with twinkit federated join --store URL"
        )
    store = Store(str(config["store"]))
    named = [t for t in str(config.get("twins", "")).split(",") if t.strip()]
    owner = str(config["owner"]) if config.get("owner") else None
    data = collect_histories(store, named or None, plan.target, plan.holdout_frac, owner=owner)
    # the site's name in every ledger: a hash of its data and the run's seed, no twin ids
    name = "site-" + hashlib.sha256(f"{plan.seed}:{data.data_hash}".encode()).hexdigest()[:10]

    def install(model: NeuralForecaster, record: dict[str, Any]) -> None:
        register_prior(
            store,
            ArtifactStore(store.artifacts_dir),
            model,
            data,
            "federated",
            {**record, "this_site": name},
            plan.holdout_frac,
        )

    accepts = str(config.get("install", "true")).lower() != "false"
    return Site(name, data.histories, data.data_hash, install=install if accepts else None)


#: the ClientApp of every site (``twinkit federated join`` starts a SuperNode that runs it)
clientapp = client_app(_store_site)
#: the ServerApp of a run (the SuperLink starts it for each ``twinkit federated run``)
serverapp = ServerApp()


@serverapp.main()
def _serve(grid: Grid, context: Context) -> None:
    plan = Plan.from_json(str(context.run_config["plan"]))
    out = Path(str(context.run_config["out"]))
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = run_federation(grid, plan, engine="flower-deployment", context=context)
    except TwinkitError as exc:
        (out / "error.json").write_text(json.dumps({"error": str(exc)}))
        raise
    tensors, config = result.model.get_state()
    sha = ArtifactStore(out).save(tensors, config)
    outcome = {"sha256": sha, "record": result.record(), "installed": result.installed}
    (out / "result.json").write_text(json.dumps(outcome))


# -- the coordinator's side ----------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    """How to reach a SuperLink: ``address`` (host:port) over TLS checked against
    ``root_certificates`` (a CA's PEM file), or in the clear if that is None."""

    address: str
    root_certificates: Path | None = None


@dataclass
class DeployedRun:
    """What a run on the deployment runtime gave: the model and its ledger record."""

    model: NeuralForecaster
    record: dict[str, Any]
    installed: list[str]
    seconds: float


def flower_env() -> dict[str, str]:
    """The environment Flower's processes need: this interpreter's scripts first on PATH
    (a SuperLink and SuperNode start ``flwr-serverapp``/``flwr-clientapp`` by name), and
    no installing of the app's dependencies at run time (they are this twinkit's)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] = "1"
    return env


def flower_program(name: str) -> str:
    """The path of Flower's command ``name`` beside this interpreter (or on PATH)."""
    found = shutil.which(name, path=flower_env()["PATH"])
    if found is None:
        raise TwinkitError(f"Flower's {name!r} is not installed: pip install 'twinkit[federated]'")
    return found


def superlink_command(
    host: str = "127.0.0.1",
    port: int = 9092,
    certificates: tuple[Path, Path, Path] | None = None,
    authenticate_nodes: bool = False,
) -> list[str]:
    """The command that starts a SuperLink on ``host:port``: over TLS with
    ``certificates`` (CA certificate, server certificate, server key), else in the
    clear; ``authenticate_nodes`` admits only SuperNodes whose public keys were
    registered (``flwr supernode register``)."""
    command = [
        flower_program("flower-superlink"),
        "--host",
        host,
        "--port",
        str(port),
        "--disable-runtime-dependency-installation",
    ]
    if certificates is None:
        command.append("--insecure")
    else:
        ca, cert, key = certificates
        command += ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert)]
        command += ["--ssl-keyfile", str(key)]
    if authenticate_nodes:
        command.append("--enable-supernode-auth")
    return command


def absolute_url(url: str | None) -> str:
    """The store URL (:func:`~twinkit.store.db.resolve_url`) with a SQLite file's path
    made absolute: a SuperNode's ClientApps need not run where it was started.

    >>> absolute_url("sqlite:////data/t.db"), absolute_url("postgresql://h/db")
    ('sqlite:////data/t.db', 'postgresql://h/db')
    """
    resolved = resolve_url(url)
    prefix = "sqlite:///"
    path = resolved[len(prefix) :]
    if resolved.startswith(prefix) and not path.startswith("/") and path != ":memory:":
        return prefix + str(Path(path).resolve())
    return resolved


def _quoted(key: str, value: str) -> str:
    if '"' in value or "\n" in value:
        raise TwinkitError(f"{key} may not contain a double quote or a line break")
    return f'{key}="{value}"'


def supernode_command(
    superlink: str,
    store: str,
    *,
    owner: str | None = None,
    twins: Sequence[str] = (),
    port: int = 9094,
    root_certificates: Path | None = None,
    auth_key: Path | None = None,
    accept_priors: bool = True,
) -> list[str]:
    """The command that starts a site's SuperNode: it connects to ``superlink``
    (host:port), serves the twins of ``store`` (``owner``'s or those named) and answers
    Flower's runtime on ``port`` (one per SuperNode on a host). TLS with
    ``root_certificates``; ``auth_key`` is the node's private key where the SuperLink
    authenticates nodes. ``accept_priors=False``: the site trains but does not register
    the runs' results in its store."""
    node = [_quoted("store", store)]
    if not accept_priors:
        node.append(_quoted("install", "false"))
    if owner:
        node.append(_quoted("owner", owner))
    if twins:
        node.append(_quoted("twins", ",".join(twins)))
    command = [
        flower_program("flower-supernode"),
        "--superlink",
        superlink,
        "--port",
        str(port),
        "--node-config",
        " ".join(node),
    ]
    if root_certificates is None:
        command.append("--insecure")
    else:
        command += ["--root-certificates", str(root_certificates)]
    if auth_key is not None:
        command += ["--auth-supernode-private-key", str(auth_key)]
    return command


def _toml(values: dict[str, str]) -> str:
    # JSON's string escapes are TOML basic strings' (ASCII only: ensure_ascii)
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


def app_project(directory: Path) -> Path:
    """Write the Flower App project ``flwr run`` ships to the SuperLink: no code of its
    own, its components are this module's apps (twinkit is installed where it runs)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(
        "[project]\n"
        f'name = "{APP_NAME}"\n'
        'version = "1.0.0"\n'
        'description = "A twinkit population prior trained across sites"\n'
        "dependencies = []\n\n"
        "[tool.flwr.app]\n"
        'publisher = "twinkit"\n\n'
        "[tool.flwr.app.components]\n"
        'serverapp = "twinkit.engine.federation:serverapp"\n'
        'clientapp = "twinkit.engine.federation:clientapp"\n\n'
        "[tool.flwr.app.config]\n" + _toml({"plan": "", "out": ""})
    )
    return directory


@contextmanager
def flwr_cli(connection: Connection) -> Iterator[tuple[dict[str, str], Path]]:
    """The environment and a scratch directory for Flower's ``flwr`` command, its
    configuration naming ``connection`` as the SuperLink ``twinkit`` (nothing of the
    user's own Flower configuration is read or changed)."""
    with tempfile.TemporaryDirectory(prefix="twinkit-federation-") as scratch:
        root = Path(scratch)
        home = root / "flwr"
        home.mkdir()
        link = f'[superlink.{CONNECTION}]\naddress = "{connection.address}"\n'
        if connection.root_certificates is None:
            link += "insecure = true\n"
        else:
            ca = connection.root_certificates.resolve()
            link += f"root-certificates = {json.dumps(str(ca))}\n"
        (home / "config.toml").write_text(f'[superlink]\ndefault = "{CONNECTION}"\n\n{link}')
        yield {**flower_env(), "FLWR_HOME": str(home)}, root


def _flwr(
    args: list[str], env: dict[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [flower_program("flwr"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TwinkitError(f"flwr {args[0]} took longer than {timeout_s:g} s") from None


def _failed(what: str, done: subprocess.CompletedProcess[str]) -> TwinkitError:
    said = (done.stdout + done.stderr).strip().splitlines()[-15:]
    return TwinkitError(f"{what} failed (flwr exited {done.returncode}):\n" + "\n".join(said))


def admit(connection: Connection, public_key: Path) -> int:
    """Register a site's public key (an EC key in OpenSSH format, as
    :func:`make_certificates` writes) with a SuperLink that authenticates nodes; the
    SuperNode holding the private key may then join. Returns its node id."""
    with flwr_cli(connection) as (env, _):
        done = _flwr(
            ["supernode", "register", str(public_key.resolve()), CONNECTION, "--format", "json"],
            env,
            120,
        )
    found = re.search(r'\{[^{}]*"node-id"[^{}]*\}', done.stdout)
    if done.returncode != 0 or found is None:
        raise _failed(f"registering {public_key.name} at {connection.address}", done)
    return int(json.loads(found.group(0))["node-id"])


def submit(connection: Connection, plan: Plan, timeout_s: float = 3600.0) -> DeployedRun:
    """Run ``plan`` on the SuperLink at ``connection`` (``flwr run`` with a Flower App
    project written for it) and wait for its result. The ServerApp writes the result to a
    directory on the SuperLink's host: run this there (or with a shared file system)."""
    started = time.perf_counter()
    with flwr_cli(connection) as (env, root):
        project = app_project(root / "app")
        out = root / "out"
        overrides = root / "run.toml"
        overrides.write_text(_toml({"plan": plan.to_json(), "out": str(out)}))
        args = ["run", str(project), CONNECTION, "--run-config", str(overrides), "--stream"]
        done = _flwr(args, env, timeout_s)
        if (out / "error.json").exists():
            raise TwinkitError(json.loads((out / "error.json").read_text())["error"])
        if done.returncode != 0 or not (out / "result.json").exists():
            raise _failed(f"the federated run at {connection.address}", done)
        outcome = json.loads((out / "result.json").read_text())
        tensors, config = ArtifactStore(out).load(outcome["sha256"])
    model = forecaster_class(config["model"]).from_state(tensors, config)
    if not isinstance(model, NeuralForecaster):  # pragma: no cover - the plan is neural
        raise TwinkitError(f"the run returned a {config['model']!r}, not a network")
    return DeployedRun(
        model, outcome["record"], outcome["installed"], round(time.perf_counter() - started, 2)
    )


def make_certificates(
    directory: Path, hosts: Sequence[str] = ("127.0.0.1", "localhost"), sites: int = 0
) -> list[Path]:
    """Write what a federation over TLS with authenticated nodes needs, for trying it
    out (a real deployment uses its own PKI): a CA (``ca.crt``, ``ca.key``), the
    SuperLink's certificate for ``hosts`` signed by it (``server.pem``, ``server.key``),
    and for each of ``sites`` sites an EC P-384 key pair in OpenSSH format (``site-N``,
    ``site-N.pub``). Returns the files written."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    written: list[Path] = []

    def write(name: str, data: bytes, private: bool = False) -> None:
        path = directory / name
        path.write_bytes(data)
        if private:
            path.chmod(0o600)
        written.append(path)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def certificate(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, ca: bool
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "twinkit federation CA")])
    ca_cert = certificate("twinkit federation CA", ca_key, ca_name, True).sign(
        ca_key, hashes.SHA256()
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_cert = (
        certificate(hosts[0], server_key, ca_name, False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write("ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM))
    write("ca.key", pem_key(ca_key), private=True)
    write("server.pem", server_cert.public_bytes(serialization.Encoding.PEM))
    write("server.key", pem_key(server_key), private=True)
    for i in range(1, sites + 1):
        key = ec.generate_private_key(ec.SECP384R1())
        openssh = serialization.PrivateFormat.OpenSSH
        write(
            f"site-{i}",
            key.private_bytes(serialization.Encoding.PEM, openssh, serialization.NoEncryption()),
            private=True,
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        write(f"site-{i}.pub", public + b"\n")
    return written


def fit_deployed(
    store: Store,
    artifacts: ArtifactStore,
    connection: Connection,
    plan: Plan,
    owner: str,
) -> PopulationResult:
    """Run ``plan`` on the SuperLink at ``connection`` and register the result in
    ``store`` as a population prior of ``owner``'s: its ledger entry lists the rounds, the
    sites by pseudonym with a digest of each one's data, and the hash of every aggregate
    (no twin of any site is named)."""
    started = time.perf_counter()
    run = submit(connection, plan)
    digests = [str(site["data_hash"]) for site in run.record["sites"]]
    sites = Histories([], [], {}, digests, [owner])
    record = {**run.record, "installed": run.installed}
    return register_prior(
        store, artifacts, run.model, sites, "federated", record, plan.holdout_frac, started
    )
