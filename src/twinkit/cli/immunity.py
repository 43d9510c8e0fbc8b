"""``twinkit eval immunity``: attack, vaccinate, adversarially train and screen poison on
an image (or feature) classification set, and write the robustness report;
``twinkit eval attacks``: the attacks it can run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import numpy as np
import typer
from rich.table import Table

from twinkit.cli.common import JsonOption, bar, console, eval_app, read_signals
from twinkit.core.errors import TwinkitError
from twinkit.immunity.base import DEFAULT_ATTACKS, attack_class, registered_attacks
from twinkit.immunity.forecaster_attacks import DEFAULT_FORECASTER_ATTACK

# Read when the commands are defined: the help lists every attack registered by then.
_CLASSIFIER_ATTACKS = ", ".join(registered_attacks("classifier"))
_FORECASTER_ATTACKS = ", ".join(registered_attacks("forecaster"))


@eval_app.command("attacks")
def eval_attacks(json_out: JsonOption = False) -> None:
    """List the registered attacks: what each attacks, its norm and budget, whether it can
    aim at a target, and whether it needs the model's gradient or only its answers."""
    rows = [attack_class(name).describe() for name in registered_attacks()]
    if json_out:
        console.print_json(json.dumps(rows))
        return
    table = Table("name", "attacks", "norm", "targeted", "access", "what it is")
    for row in rows:
        table.add_row(
            str(row["name"]),
            str(row["attacks"]),
            str(row["norm"]),
            "yes" if row["targeted"] else "no",
            str(row["access"]),
            str(row["summary"]),
        )
    console.print(table)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``X`` and ``y`` from an .npz file, with a clear error for anything else."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("X", "y") if k not in data.files]
            if missing:
                raise TwinkitError(
                    f"{path}: needs arrays X and y, missing {missing} (has {data.files})"
                )
            x, y = np.asarray(data["X"]), np.asarray(data["y"])
    except (OSError, ValueError) as exc:
        raise TwinkitError(f"{path}: not a readable .npz file without pickles ({exc})") from None
    if len(x) != len(y):
        raise TwinkitError(f"{path}: X has {len(x)} rows but y has {len(y)}")
    if x.ndim not in (2, 3):
        raise TwinkitError(f"{path}: X must be N x D or N x H x W, got shape {x.shape}")
    return x, y


@eval_app.command("immunity")
def eval_immunity(
    data: Annotated[
        Path | None, typer.Argument(help=".npz with X (N x H x W or N x D) and y.")
    ] = None,
    train: Annotated[
        Path | None, typer.Option(help="Training .npz; without it, 80% of DATA trains.")
    ] = None,
    eps: Annotated[
        str, typer.Option(help="Budgets, comma-separated, in each attack's norm.")
    ] = "0.1,0.2,0.3",
    attacks: Annotated[
        str | None,
        typer.Option(
            help="Attacks to run, comma-separated (see `twinkit eval attacks`). Classifier "
            f"attacks: {_CLASSIFIER_ATTACKS} (default {','.join(DEFAULT_ATTACKS)}); with "
            f"--forecast, one forecaster attack: {_FORECASTER_ATTACKS} (default "
            f"{DEFAULT_FORECASTER_ATTACK}).",
        ),
    ] = None,
    vaccine: Annotated[int, typer.Option(help="Vaccine samples.")] = 300,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    adv_training: Annotated[
        bool, typer.Option(help="Also train a PGD adversarially trained baseline.")
    ] = True,
    adv_loss: Annotated[
        str, typer.Option(help="Adversarial training's loss: trades or madry.")
    ] = "trades",
    adv_width: Annotated[
        int | None,
        typer.Option(help="Adversarially trained CNN's width (default: the clone's, 8)."),
    ] = None,
    adv_epochs: Annotated[
        int, typer.Option(help="Adversarial training's passes over the data.", min=1)
    ] = 20,
    adv_awp: Annotated[
        float,
        typer.Option(
            help="Adversarial weight perturbation in adversarial training (0: none).", min=0.0
        ),
    ] = 0.0,
    adv_binarize: Annotated[
        float | None,
        typer.Option(
            help="Threshold the adversarially trained clone's inputs at this value "
            "(1 at or above, 0 below) before its network; attacked through it with a "
            "straight-through gradient (BPDA).",
        ),
    ] = None,
    poisoning: Annotated[bool, typer.Option(help="Also run the poisoning part.")] = True,
    flip_seeds: Annotated[
        int,
        typer.Option(help="Training seeds the label-flip accuracies are averaged over.", min=1),
    ] = 3,
    flip_threshold: Annotated[
        float | None,
        typer.Option(
            help="Loss screen: flag a label whose out-of-fold probability is below this "
            "(default: the screen's, 0.2).",
            min=0.0,
            max=1.0,
        ),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write an HTML robustness report here.")
    ] = None,
    forecast: Annotated[
        Path | None,
        typer.Option(
            help="Attack forecasters instead: a signals file (twin_id,time,channel,value)."
        ),
    ] = None,
    target: Annotated[str, typer.Option(help="With --forecast: the channel forecast.")] = "glucose",
    horizons: Annotated[str, typer.Option(help="With --forecast: minutes ahead.")] = "30,60",
    models: Annotated[
        str, typer.Option(help="With --forecast: forecasters to attack, comma-separated.")
    ] = "linear_ar,gru",
    budget: Annotated[
        float, typer.Option(help="With --forecast: the most a reading may move (target units).")
    ] = 10.0,
    window: Annotated[int, typer.Option(help="With --forecast: readings that may move.")] = 12,
    max_origins: Annotated[
        int, typer.Option(help="With --forecast: forecast origins per twin, at most.")
    ] = 60,
) -> None:
    """Clean accuracy, accuracy under attack (FGSM and PGD unless --attacks says otherwise;
    undefended, vaccinated replay and adaptive, adversarially trained), and poison
    screening; print a table, write JSON.

    With --forecast, forecasters instead: RMSE from true and from tampered histories
    (each of the last --window readings moved by at most --budget), before and after a
    vaccine, and how many coming lows the forecast still flags."""
    if forecast is not None:
        if data is not None:
            raise TwinkitError("give either DATA.npz (classifiers) or --forecast (forecasters)")
        names = _names(attacks, (DEFAULT_FORECASTER_ATTACK,))
        if len(names) != 1:
            raise TwinkitError(f"--forecast runs one attack at a time, got {', '.join(names)}")
        report = _forecast_immunity(
            forecast, target, horizons, models, budget, window, max_origins, seed, names[0]
        )
    elif data is None:
        raise TwinkitError("give DATA.npz (classifiers) or --forecast SIGNALS (forecasters)")
    else:
        if adv_loss not in ("trades", "madry"):
            raise TwinkitError(f"--adv-loss must be trades or madry, not {adv_loss!r}")
        report = _classifier_immunity(
            data,
            train,
            eps,
            _names(attacks, DEFAULT_ATTACKS),
            vaccine,
            seed,
            adv_training,
            poisoning,
            adv_loss=cast(Literal["madry", "trades"], adv_loss),
            adv_width=adv_width,
            adv_epochs=adv_epochs,
            adv_awp=adv_awp,
            adv_binarize=adv_binarize,
            flip_seeds=flip_seeds,
            flip_threshold=flip_threshold,
        )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2))
    if html_out is not None:
        from twinkit.report.html import write_report

        source = forecast if forecast is not None else data
        write_report(html_out, f"twinkit robustness: {source}", [], robustness=report)
        console.print(f"report: {html_out}")


def _names(option: str | None, default: tuple[str, ...]) -> list[str]:
    """The attack names of an --attacks option, once each, in the order given."""
    if option is None:
        return list(default)
    names = list(dict.fromkeys(n.strip() for n in option.split(",") if n.strip()))
    if not names:
        raise TwinkitError("--attacks names no attack (see `twinkit eval attacks`)")
    return names


def _classifier_immunity(
    data: Path,
    train: Path | None,
    eps: str,
    attacks: list[str],
    vaccine: int,
    seed: int,
    adv_training: bool,
    poisoning: bool,
    *,
    adv_loss: Literal["madry", "trades"],
    adv_width: int | None,
    adv_epochs: int,
    adv_awp: float,
    adv_binarize: float | None,
    flip_seeds: int,
    flip_threshold: float | None,
) -> dict[str, Any]:
    from twinkit.eval.immunity_benchmark import evaluate_immunity

    try:
        budgets = [float(e) for e in eps.split(",") if e.strip()]
    except ValueError as exc:
        raise TwinkitError(f"bad --eps: {exc}") from None
    if not budgets or any(not 0.0 <= e <= 1.0 for e in budgets):
        raise TwinkitError(f"--eps must be budgets between 0 and 1, got {eps!r}")
    x, y = _load_npz(data)
    if train is not None:
        x_train, y_train = _load_npz(train)
        x_test, y_test = x, y
    else:
        order = np.random.default_rng(seed).permutation(len(y))
        cut = int(len(y) * 0.8)
        x_train, y_train = x[order[:cut]], y[order[:cut]]
        x_test, y_test = x[order[cut:]], y[order[cut:]]
    with bar("attacking, vaccinating, screening") as progress:
        report: dict[str, Any] = evaluate_immunity(
            x_train,
            [str(v) for v in y_train],
            x_test,
            [str(v) for v in y_test],
            eps=budgets,
            vaccine=vaccine,
            seed=seed,
            attacks=attacks,
            adv_training=adv_training,
            adv_loss=adv_loss,
            adv_width=adv_width,
            adv_epochs=adv_epochs,
            adv_awp=adv_awp,
            adv_binarize=adv_binarize,
            poisoning=poisoning,
            progress=progress,
            flip_seeds=flip_seeds,
            flip_threshold=flip_threshold,
        )
    table = Table(
        "attack",
        "eps",
        "undefended",
        "vacc. replay",
        "retrained replay",
        "vacc. adaptive",
        "adv. trained",
    )
    for attack, by_eps in report["attacks"].items():
        for budget, row in by_eps.items():
            cells = [
                row.get(k)
                for k in (
                    "undefended",
                    "vaccinated_replay",
                    "retrained_replay",
                    "vaccinated_adaptive",
                    "adv_trained_adaptive",
                )
            ]
            table.add_row(attack, budget, *["-" if c is None else f"{c:.3f}" for c in cells])
    console.print(f"clean accuracy {report['clean_acc']:.3f}")
    console.print(table)
    return report


def _forecast_immunity(
    path: Path,
    target: str,
    horizons: str,
    models: str,
    budget: float,
    window: int,
    max_origins: int,
    seed: int,
    attack: str,
) -> dict[str, Any]:
    from twinkit.eval.forecaster_immunity_benchmark import evaluate_forecast_immunity
    from twinkit.immunity.history_tampering import HistoryBudget

    try:
        steps = [int(h) for h in horizons.split(",") if h.strip()]
    except ValueError as exc:
        raise TwinkitError(f"bad --horizons: {exc}") from None
    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise TwinkitError("--models names no forecaster")
    frame = read_signals(path, "--forecast")
    with bar("attacking and vaccinating forecasters") as progress:
        report = evaluate_forecast_immunity(
            frame,
            target,
            steps,
            models=names,
            budget=HistoryBudget(eps=budget, window=window),
            max_origins=max_origins,
            seed=seed,
            attack=attack,
            progress=progress,
        )
    table = Table(
        "model",
        "horizon",
        "clean",
        "undefended",
        "vacc. clean",
        "vacc. replay",
        "vacc. adaptive",
        title=f"RMSE of {target}",
    )
    for name, row in report["models"].items():
        errors = row["attacks"]["error"]
        for h in map(str, report["horizons_min"]):
            cells = [
                row["clean_rmse"][h],
                errors["undefended"][h],
                row["clean_rmse_vaccinated"][h],
                errors["vaccinated_replay"][h],
                errors["vaccinated_adaptive"][h],
            ]
            table.add_row(name, h, *["-" if c is None else f"{c:.2f}" for c in cells])
    console.print(table)
    return report
