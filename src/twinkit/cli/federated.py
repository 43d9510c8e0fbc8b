"""`twinkit federated simulate`: a population prior learned across sites with Flower."""

from __future__ import annotations

from typing import Annotated

import typer

from twinkit.cli.common import DbOption, JsonOption, console, engine_for, err, print_json, spinner
from twinkit.cli.common import app as root
from twinkit.engine.population import Federation

app = typer.Typer(
    help="Federated learning: population priors trained across sites with Flower, their "
    "data never pooled.",
    no_args_is_help=True,
)
root.add_typer(app, name="federated")


@app.command("simulate")
def simulate(
    twin_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Twins to learn from (default: every state twin of the owner)."),
    ] = None,
    sites: Annotated[
        int, typer.Option(help="Sites to deal the twins to (round-robin, in key order).")
    ] = 3,
    strategy: Annotated[
        str,
        typer.Option(
            help="fedavg, fedprox, fedadam, fedyogi, fedmedian, fedtrimmedavg, krum, multikrum."
        ),
    ] = "fedavg",
    rounds: Annotated[int, typer.Option(help="Federated rounds.")] = 20,
    local_epochs: Annotated[int, typer.Option(help="Each site's epochs per round.")] = 1,
    dp_noise: Annotated[
        float | None,
        typer.Option(
            help="Central differential privacy per site (fedavg, fedprox): the noise "
            "multiplier. The epsilon spent is printed and recorded."
        ),
    ] = None,
    dp_clip: Annotated[float, typer.Option(help="With --dp-noise: the clipping norm.")] = 1.0,
    dp_delta: Annotated[float, typer.Option(help="With --dp-noise: delta.")] = 1e-5,
    owner: Annotated[
        str | None, typer.Option(help="Whose twins (default: the store's one owner).")
    ] = None,
    model: Annotated[str, typer.Option(help="A neural model (gru, transformer).")] = "gru",
    target: Annotated[str, typer.Option(help="The channel to forecast.")] = "glucose",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Train a population prior across simulated sites on Flower's simulation engine (each
    site's twins train locally; only weights travel) and register it like a pooled prior:
    `twinkit fit` then personalises from it. The ledger records the rounds, the sites by
    pseudonym and the hash of every round's aggregate."""
    privacy = None
    if dp_noise is not None:
        from twinkit.federated.strategies import Privacy

        privacy = Privacy(noise_multiplier=dp_noise, clipping_norm=dp_clip, delta=dp_delta)
    federation = Federation(
        sites=sites,
        strategy=strategy,
        rounds=rounds,
        local_epochs=local_epochs,
        privacy=privacy,
    )
    with spinner(f"{rounds} rounds of {strategy} over {sites} sites"):
        result = engine_for(db).fit_population(
            model, twin_ids or None, target, seed, owner=owner, federation=federation
        )
    if as_json:
        print_json(result.to_dict())
        return
    record = result.federation or {}
    console.print(
        f"population v{result.version} ({result.model}) federated over {sites} sites "
        f"({len(result.twins)} twins of {', '.join(result.owners)}), {rounds} rounds of "
        f"{strategy} in {result.seconds:.1f} s"
    )
    spent = record.get("privacy")
    if spent:
        console.print(
            f"  differential privacy: epsilon {spent['epsilon']:.3g} at delta "
            f"{spent['delta']:g} (noise {spent['noise_multiplier']:g}, clip "
            f"{spent['clipping_norm']:g}; the unit protected is a site)"
        )
    for round_, loss in record.get("held_loss", {}).items():
        console.print(f"  round {round_}: held-out pinball loss {loss:.4f}")
    for twin_id, why in result.skipped.items():
        err.print(f"  skipped {twin_id}: {why}", markup=False)
