"""`twinkit federated`: population priors learned across sites with Flower, simulated on
one machine (`simulate`) or deployed (`serve` a SuperLink, `join` it from each site's
store, `run` a federation on it)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from twinkit.cli.common import (
    DbOption,
    JsonOption,
    console,
    engine_for,
    err,
    print_forgotten,
    print_json,
    spinner,
)
from twinkit.cli.common import app as root
from twinkit.core.lazy import require
from twinkit.engine.population import Federation, PopulationResult

app = typer.Typer(
    help="Federated learning: population priors trained across sites with Flower, their "
    "data never pooled.",
    no_args_is_help=True,
)
root.add_typer(app, name="federated")

StrategyOption = Annotated[
    str,
    typer.Option(
        help="fedavg, fedprox, fedadam, fedyogi, fedmedian, fedtrimmedavg, krum, multikrum."
    ),
]
RoundsOption = Annotated[int, typer.Option(help="Federated rounds.")]
EpochsOption = Annotated[int, typer.Option(help="Each site's epochs per round.")]
NoiseOption = Annotated[
    float | None,
    typer.Option(
        help="Central differential privacy per site (fedavg, fedprox): the noise "
        "multiplier. The epsilon spent is printed and recorded."
    ),
]
ClipOption = Annotated[float, typer.Option(help="With --dp-noise: the clipping norm.")]
DeltaOption = Annotated[float, typer.Option(help="With --dp-noise: delta.")]
ModelOption = Annotated[str, typer.Option(help="A neural model (gru, transformer).")]
TargetOption = Annotated[str, typer.Option(help="The channel to forecast.")]
SeedOption = Annotated[int, typer.Option(help="Random seed.")]
SecureOption = Annotated[
    bool,
    typer.Option(
        help="Secure aggregation (SecAgg+): the server learns only the sum of the sites' "
        "updates (fedavg, fedprox, fedadam, fedyogi; sites weighted equally)."
    ),
]
SuperLinkOption = Annotated[str, typer.Option(help="The SuperLink's address (host:port).")]
CaOption = Annotated[
    Path | None,
    typer.Option(help="TLS: the CA certificate (PEM) to check the SuperLink's against."),
]


def _privacy(noise: float | None, clip: float, delta: float) -> Any:
    if noise is None:
        return None
    strategies = require("twinkit.federated.strategies", "differential privacy")
    return strategies.Privacy(noise_multiplier=noise, clipping_norm=clip, delta=delta)


def _become(command: list[str], env: dict[str, str]) -> None:
    """Replace this process with Flower's ``command``: a signal to stop it reaches Flower,
    which stops its own children, and nothing is left running behind a dead parent."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)


def _settings(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs, each VALUE read as JSON (a number, true, null) or else as text.

    >>> _settings(["hidden=16", "future_covariates=false", "target=hr"])
    {'hidden': 16, 'future_covariates': False, 'target': 'hr'}
    """
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--param")
        try:
            settings[key] = json.loads(value)
        except ValueError:
            settings[key] = value
    return settings


def _template(model: str, settings: dict[str, Any]) -> Any:
    from twinkit.models.base import forecaster_class

    try:
        return forecaster_class(model)(**settings)
    except TypeError as exc:
        raise typer.BadParameter(f"{model}: {exc}", param_hint="--param") from None


def _report(result: PopulationResult, where: str, as_json: bool) -> None:
    if as_json:
        print_json(result.to_dict())
        return
    record = result.federation or {}
    console.print(
        f"population v{result.version} ({result.model}) federated over {where}, "
        f"{record.get('rounds')} rounds of {record.get('strategy')} in {result.seconds:.1f} s"
    )
    spent = record.get("privacy")
    if spent:
        console.print(
            f"  differential privacy: epsilon {spent['epsilon']:.3g} at delta "
            f"{spent['delta']:g} (noise {spent['noise_multiplier']:g}, clip "
            f"{spent['clipping_norm']:g}; the unit protected is a site)"
        )
    for round_, loss in record.get("held_loss", {}).items():
        missing = record.get("failures", {}).get(round_, {})
        note = (
            f" ({len(missing)} site(s) missing: {'; '.join(missing.values())})" if missing else ""
        )
        console.print(f"  round {round_}: held-out pinball loss {loss:.4f}{note}", markup=False)
    if record.get("installed"):
        console.print(f"  registered in the stores of {len(record['installed'])} site(s)")
    for twin_id, why in result.skipped.items():
        err.print(f"  skipped {twin_id}: {why}", markup=False)


@app.command("simulate")
def simulate(
    twin_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Twins to learn from (default: every state twin of the owner)."),
    ] = None,
    sites: Annotated[
        int, typer.Option(help="Sites to deal the twins to (round-robin, in key order).")
    ] = 3,
    strategy: StrategyOption = "fedavg",
    rounds: RoundsOption = 20,
    local_epochs: EpochsOption = 1,
    dp_noise: NoiseOption = None,
    dp_clip: ClipOption = 1.0,
    dp_delta: DeltaOption = 1e-5,
    owner: Annotated[
        str | None, typer.Option(help="Whose twins (default: the store's one owner).")
    ] = None,
    secure: SecureOption = False,
    continue_from: Annotated[
        int | None,
        typer.Option(
            help="Go on training from this population version (same model): a checkpoint, "
            "so forgetting a twin that joined since retrains only from there."
        ),
    ] = None,
    model: ModelOption = "gru",
    target: TargetOption = "glucose",
    seed: SeedOption = 0,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Train a population prior across simulated sites on Flower's simulation engine (each
    site's twins train locally; only weights travel) and register it like a pooled prior:
    `twinkit fit` then personalises from it. The ledger records the rounds, the sites by
    pseudonym and the hash of every round's aggregate."""
    federation = Federation(
        sites=sites,
        strategy=strategy,
        rounds=rounds,
        local_epochs=local_epochs,
        privacy=_privacy(dp_noise, dp_clip, dp_delta),
        start_from=continue_from,
        secure=secure,
    )
    with spinner(f"{rounds} rounds of {strategy} over {sites} sites"):
        result = engine_for(db).fit_population(
            model, twin_ids or None, target, seed, owner=owner, federation=federation
        )
    _report(result, f"{sites} simulated sites ({len(result.twins)} twins)", as_json)


@app.command("forget")
def forget(
    twin_id: Annotated[str, typer.Argument(help="The twin (id or owner/id; may be deleted).")],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Retrain every population prior that learned from this twin without it (from the
    last checkpoint before it joined: a prior continued with --continue-from retrains only
    from there), withdraw the old priors and delete their weights. The ledger records the
    erasure without naming the twin."""
    with spinner(f"forgetting {twin_id} in the population priors"):
        result = engine_for(db).forget(twin_id)
    if as_json:
        print_json(result.to_dict())
    elif not result.replaced and not result.withdrawn:
        console.print(f"no serving population prior learned from {twin_id}", markup=False)
    else:
        print_forgotten(result)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port sites and runs connect to.")] = 9092,
    certificates: Annotated[
        Path | None,
        typer.Option(
            help="TLS: a directory with ca.crt, server.pem and server.key (the server "
            "certificate must name the address sites use). Default: in the clear."
        ),
    ] = None,
    authenticate_nodes: Annotated[
        bool,
        typer.Option(
            help="Admit only SuperNodes whose public keys were registered (flwr supernode "
            "register); needs --certificates."
        ),
    ] = False,
) -> None:
    """Start the coordinator's Flower SuperLink and keep it running. Sites join it with
    `twinkit federated join`, and `twinkit federated run` trains a prior across them."""
    federation = require("twinkit.engine.federation", "a federated deployment")
    tls = None
    if certificates is not None:
        tls = (certificates / "ca.crt", certificates / "server.pem", certificates / "server.key")
    command = federation.superlink_command(host, port, tls, authenticate_nodes)
    err.print(
        f"SuperLink on {host}:{port}. Sites: twinkit federated join --superlink "
        f"{host}:{port} --store URL; a run: twinkit federated run --superlink {host}:{port}"
    )
    _become(command, federation.flower_env())


@app.command("certificates")
def certificates(
    directory: Annotated[Path, typer.Argument(help="Where to write them.")],
    host: Annotated[
        list[str] | None,
        typer.Option(help="A name or address the SuperLink is reached at (repeatable)."),
    ] = None,
    sites: Annotated[int, typer.Option(help="Key pairs to make for this many sites.")] = 0,
) -> None:
    """Make a CA, the SuperLink's TLS certificate and sites' key pairs, to try a
    federation over TLS with authenticated nodes (a real deployment uses its own PKI)."""
    federation = require("twinkit.engine.federation", "a federated deployment")
    hosts = host or ["127.0.0.1", "localhost"]
    for path in federation.make_certificates(directory, hosts, sites):
        console.print(str(path), markup=False)


@app.command("admit")
def admit(
    public_key: Annotated[Path, typer.Argument(help="The site's public key (site-N.pub).")],
    superlink: SuperLinkOption = "127.0.0.1:9092",
    root_certificates: CaOption = None,
) -> None:
    """Let the site holding this key's private half join a SuperLink started with
    --authenticate-nodes (Flower's node authentication)."""
    federation = require("twinkit.engine.federation", "a federated deployment")
    node = federation.admit(federation.Connection(superlink, root_certificates), public_key)
    console.print(f"{public_key.name} admitted as node {node}", markup=False)


@app.command("join")
def join(
    superlink: SuperLinkOption = "127.0.0.1:9092",
    store: Annotated[
        str | None,
        typer.Option(help="This site's store (URL or SQLite path; default: as --db)."),
    ] = None,
    owner: Annotated[
        str | None, typer.Option(help="Whose twins (default: the store's one owner).")
    ] = None,
    twins: Annotated[
        list[str] | None, typer.Option("--twin", help="Only these twins (repeatable).")
    ] = None,
    port: Annotated[
        int, typer.Option(help="This SuperNode's runtime port (one per SuperNode on a host).")
    ] = 9094,
    root_certificates: CaOption = None,
    auth_key: Annotated[
        Path | None,
        typer.Option(help="This node's private key, where the SuperLink authenticates nodes."),
    ] = None,
    accept_priors: Annotated[
        bool,
        typer.Option(help="Register the priors the runs hand back in this store."),
    ] = True,
    db: DbOption = None,
) -> None:
    """Join a federation as a site: start a Flower SuperNode that trains on this store's
    twins when a run asks (their data never leave) and registers each run's prior here,
    so `twinkit fit` personalises from it."""
    federation = require("twinkit.engine.federation", "a federated deployment")
    url = federation.absolute_url(store or db)
    command = federation.supernode_command(
        superlink,
        url,
        owner=owner,
        twins=twins or (),
        port=port,
        root_certificates=root_certificates,
        auth_key=auth_key,
        accept_priors=accept_priors,
    )
    err.print(f"site of {url} joining {superlink}")
    _become(command, federation.flower_env())


@app.command("run")
def run(
    superlink: SuperLinkOption = "127.0.0.1:9092",
    sites: Annotated[int, typer.Option(help="How many sites to wait for.")] = 2,
    wait: Annotated[float, typer.Option(help="Seconds to wait for them to connect.")] = 600.0,
    strategy: StrategyOption = "fedavg",
    rounds: RoundsOption = 20,
    local_epochs: EpochsOption = 1,
    dp_noise: NoiseOption = None,
    dp_clip: ClipOption = 1.0,
    dp_delta: DeltaOption = 1e-5,
    install: Annotated[
        bool, typer.Option(help="Register the prior in every site's store too.")
    ] = True,
    secure: SecureOption = False,
    owner: Annotated[str, typer.Option(help="Whose prior it is in this store.")] = "local",
    model: ModelOption = "gru",
    param: Annotated[
        list[str] | None,
        typer.Option(
            help="The model's settings, KEY=VALUE (repeatable; e.g. hidden=16 context_min=60)."
        ),
    ] = None,
    target: TargetOption = "glucose",
    seed: SeedOption = 0,
    root_certificates: CaOption = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Train a population prior across the sites joined to a SuperLink (Flower's
    deployment runtime) and register it in this store (and, by default, in each site's).
    Run it on the SuperLink's host: the server writes its result there."""
    federated = require("twinkit.federated.app", "a federated population model")
    plan = federated.Plan.of(
        _template(model, {"target": target, "seed": seed, **_settings(param or [])}),
        epochs=local_epochs,
        strategy=strategy,
        rounds=rounds,
        sites=sites,
        privacy=_privacy(dp_noise, dp_clip, dp_delta),
        seed=seed,
        wait_s=wait,
        install=install,
        secure=secure,
    )
    with spinner(f"{rounds} rounds of {strategy} over {sites} sites at {superlink}"):
        result = engine_for(db).fit_population_deployed(superlink, plan, owner, root_certificates)
    _report(result, f"{sites} sites at {superlink}", as_json)
