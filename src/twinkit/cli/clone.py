"""Commands for decision twins: what to ask the donor, their answers, the clone's report,
and ``twinkit eval clone`` over a decisions file with many people."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from twinkit.cli.common import (
    DbOption,
    JsonOption,
    app,
    bar,
    console,
    engine_for,
    eval_app,
    print_json,
    spinner,
)
from twinkit.core.errors import TwinkitError
from twinkit.core.twin import split_ref

clone_app = typer.Typer(
    help="Decision twins: ask the donor, record answers, report.", no_args_is_help=True
)
app.add_typer(clone_app, name="clone")


@clone_app.command("queries")
def clone_queries(
    twin_id: str,
    k: Annotated[int, typer.Option("-k", help="How many items to ask about.")] = 10,
    strategy: Annotated[
        str, typer.Option(help="random, uncertainty, confusion or tgan.")
    ] = "confusion",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option(help="Write a CSV for the donor to fill in (the label column empty)."),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """What the twin's clone should ask its donor next (recorded as asked)."""
    with spinner("choosing questions"):
        asked = engine_for(db).clone_queries(twin_id, k, strategy, seed)
    if out is not None:
        import pandas as pd

        name = split_ref(twin_id)[1]  # the file names the twin by its id, as data files do
        rows = [
            {"twin_id": name, "item_id": q["item_id"], **q["features"], "label": ""} for q in asked
        ]
        out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(out, index=False)
    if as_json:
        print_json(asked)
        return
    table = Table("item", "confusion", "clone says")
    for q in asked:
        table.add_row(q["item_id"], q["confusion"], q["clone_says"])
    console.print(table)
    if not asked:
        console.print("nothing left to ask: every item in the pool is answered or asked")


@app.command()
def decide(
    twin_id: Annotated[str, typer.Argument(help="A decision twin with a fitted clone.")],
    items: Annotated[
        Path, typer.Argument(help="Items to decide: item_id,<features> (CSV, Parquet, JSONL).")
    ],
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """What the person would choose for each item, by the twin's serving clone: the label,
    its probability, and whether the item lies in the donor's confusion zone."""
    answers = engine_for(db).decide(twin_id, items)
    if as_json:
        print_json(answers.to_dict())
        return
    table = Table("item", "label", "probability", "confusion zone")
    for d in answers.decisions:
        table.add_row(
            d.item_id, d.label, f"{d.probability:.2f}", "yes" if d.in_confusion_zone else ""
        )
    console.print(table)
    version = f"v{answers.version}" if answers.version is not None else "the population prior"
    console.print(f"{answers.twin_id}: answered by {version}")
    if answers.degraded:
        console.print(f"[yellow]degraded:[/yellow] {answers.degraded_reason}")


@clone_app.command("answer")
def clone_answer(
    twin_id: str,
    path: Annotated[Path, typer.Argument(help="Decisions file with the donor's answers.")],
    db: DbOption = None,
) -> None:
    """Record the donor's answers to questions asked (rejects rows nobody asked about)."""
    result = engine_for(db).clone_answer(twin_id, path)
    console.print(f"{twin_id}: {result.n_stored} answers stored, {result.n_quarantined} held")


def _truth(path: Path) -> dict[str, str]:
    """item_id -> label from a CSV of right answers."""
    import pandas as pd

    if not path.is_file():
        raise TwinkitError(f"{path}: no such file")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("item_id", "label") if c not in frame.columns]
    if missing:
        raise TwinkitError(f"{path}: the truth file needs the columns item_id and label")
    return dict(zip(frame["item_id"], frame["label"], strict=True))


@clone_app.command("report")
def clone_report(
    twin_id: str,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    truth: Annotated[
        Path | None,
        typer.Option(help="Right answers where known (item_id,label): adds the advice figures."),
    ] = None,
    every: Annotated[
        int, typer.Option(help="Answers per stretch of the zone's history.", min=1)
    ] = 100,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """How faithful the clone is to its donor, the donor's personal confusion zone and how
    it moved over time, where the clone disagrees with the donor, and (with --truth)
    whether its advice helps. After a change of the donor, the figures are over the
    answers since it."""
    known = _truth(truth) if truth is not None else None
    with spinner("scoring the clone"):
        report = engine_for(db).clone_report(twin_id, seed, known, every)
    if as_json:
        print_json(report)
        return
    cv = report["cross_validated"]
    console.print(
        f"{twin_id}: {report['labels']} labels, {report['questions_waiting']} questions "
        f"waiting, pool of {report['pool']} items"
    )
    if cv["clone_agreement"] is not None:
        console.print(
            f"cross-validated agreement with the donor: clone {cv['clone_agreement']:.3f} "
            f"(kappa {cv['clone_kappa']:.3f}), population prior {cv['population_agreement']:.3f}"
        )
    table = Table("people in general say", "donor says", "donor rate", "general rate", "items")
    for pair in report["confusion_zone"]:
        table.add_row(
            str(pair["expected"]),
            str(pair["said"]),
            f"{pair['person_rate']:.2f}",
            f"{pair['general_rate']:.2f}",
            str(pair["support"]),
        )
    console.print(table)
    if report["answers_before_window"]:
        console.print(
            f"the donor changed: the {report['answers_before_window']} answers before their "
            "last change no longer teach the clone"
        )
    history = Table("answers", "from", "to", "donor swaps (rate vs people in general)")
    for stretch in report["zone_over_time"]:
        first, last = stretch["answers"]
        pairs = ", ".join(
            f"{z['expected']}->{z['said']} {z['person_rate']:.2f} vs {z['general_rate']:.2f}"
            for z in stretch["zone"]
        )
        history.add_row(
            f"{first + 1}-{last}" + (" (changed)" if stretch["donor_changed"] else ""),
            stretch["from"],
            stretch["to"],
            pairs or "-",
        )
    if len(report["zone_over_time"]) > 1:
        console.print(history)
    differ = report["disagreements"]
    console.print(f"the cross-validated clone disagrees with the donor on {differ['n']} items")
    advice = report["advice"]
    if advice is not None:
        console.print(
            f"where the right answer is known ({advice['n']} items): donor alone "
            f"{advice['donor_accuracy']:.3f}, taking the clone's answer when it disagrees with "
            f"confidence > {advice['threshold']:.2f}: {advice['advised_accuracy']:.3f} "
            f"({advice['overrides']} overrides)"
        )


@eval_app.command("clone")
def eval_clone(
    data: Annotated[
        Path, typer.Argument(help="Decisions file (twin_id,item_id,<features>,label).")
    ],
    budgets: Annotated[
        str, typer.Option(help="Questions per person, comma-separated.")
    ] = "10,20,40",
    strategies: Annotated[
        str, typer.Option(help="Comma-separated query strategies.")
    ] = "random,uncertainty,confusion,tgan",
    test_frac: Annotated[float, typer.Option(help="Share of each person's items held out.")] = 0.3,
    min_labels: Annotated[int, typer.Option(help="People with fewer labels are skipped.")] = 30,
    seeds: Annotated[str, typer.Option(help="Seeds, comma-separated.")] = "0,1,2",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write an HTML report here (printable).")
    ] = None,
) -> None:
    """Clone each person with each query strategy; report agreement on held-out items."""
    from twinkit.data.importers import DecisionBatch, load_batch
    from twinkit.eval.clone_benchmark import evaluate_clones

    try:
        budget_list = [int(b) for b in budgets.split(",") if b.strip()]
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError as exc:
        raise TwinkitError(f"bad --budgets or --seeds: {exc}") from None
    with spinner(f"reading {data}"):
        batch = load_batch(data)
    if not isinstance(batch, DecisionBatch):
        raise TwinkitError(f"{data}: eval clone needs a decisions file, this holds signals")
    import pandas as pd

    frame = pd.concat(
        [
            batch.frame.drop(columns=["row"]),
            pd.DataFrame(batch.features, columns=list(batch.feature_names)),
        ],
        axis=1,
    )
    with bar("evaluating clones") as progress:
        report = evaluate_clones(
            frame,
            budget_list,
            [s.strip() for s in strategies.split(",") if s.strip()],
            test_frac=test_frac,
            min_labels=min_labels,
            seeds=seed_list,
            progress=progress,
        )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2))
    if html_out is not None:
        from twinkit.report.evaluation import clone_html, write_evaluation

        note = f"{data}: {report['data']['people']} people"
        write_evaluation(html_out, "twinkit eval clone", clone_html(report), note)
    table = Table("strategy", *[f"agree@{b}" for b in report["data"]["budgets"]])
    for name, curve in report["strategies"].items():
        table.add_row(
            name, *[f"{curve[str(b)]['agreement_mean']:.3f}" for b in report["data"]["budgets"]]
        )
    for name, row in report["baselines"].items():
        table.add_row(name, f"{row['agreement_mean']:.3f}", *[""] * (len(budget_list) - 1))
    console.print(table)
    console.print(f"{report['data']['people']} people; per-person JSON with --json")
