"""Decision twins over the store: clone queries, answers and reports, and their commands.

The data: three "other people" label the same 60 items (two features, three classes, a
threshold rule on ``f1`` with 5% noise); the donor labels 8 of those items and 12 of
their own, and says "b" where the rule says "a" in one region (``f2 > 1.5``). The
strong-bias donor says "b" wherever the rule says "a", on 36 items.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from twinkit.cli.testing import run
from twinkit.core.errors import NotFoundError, TwinkitError, ValidationError
from twinkit.engine import TwinEngine
from twinkit.engine.clone_questions import decisions
from twinkit.store import tables

SnapshotFn = Callable[[TwinEngine], dict[str, list[tuple[Any, ...]]]]  # conftest `snapshot`

FEATURES = ["f1", "f2"]
CLASSES = ["a", "b", "c"]
OTHERS = ["p1", "p2", "p3"]
DONOR = "donor"
N_SHARED = 60
SHARED_IDS = [f"i{i:03d}" for i in range(N_SHARED)]
QUERY_KEYS = {"item_id", "confusion", "clone_says", "features"}
ZONE_KEYS = {"expected", "said", "person_rate", "general_rate", "support"}


# -- data -----------------------------------------------------------------------------------


def rule(x: np.ndarray) -> np.ndarray:
    """What people in general answer: "a" for f1 < 1, "b" for f1 < 2, else "c"."""
    return np.where(x[:, 0] < 1.0, "a", np.where(x[:, 0] < 2.0, "b", "c"))


def shared_items(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 3.0, (N_SHARED, 2))


def frame_of(twin: str, ids: list[str], x: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {"twin_id": twin, "item_id": ids, "f1": x[:, 0], "f2": x[:, 1], "label": labels}
    )


def others_frame(
    people: list[str] = OTHERS, n_items: int = N_SHARED, noise: float = 0.05, seed: int = 0
) -> pd.DataFrame:
    """Each person labels the first ``n_items`` shared items by the rule, a few at random."""
    x = shared_items()[:n_items]
    rng = np.random.default_rng(seed + 1)
    frames = []
    for person in people:
        labels = rule(x).astype(object)
        flip = rng.random(n_items) < noise
        labels[flip] = rng.choice(CLASSES, int(flip.sum()))
        frames.append(frame_of(person, SHARED_IDS[:n_items], x, labels))
    return pd.concat(frames, ignore_index=True)


def donor_frame(
    n_shared: int = 8, n_own: int = 12, *, everywhere: bool = False, seed: int = 2
) -> pd.DataFrame:
    """The donor's labels on the first ``n_shared`` shared items and ``n_own`` of their own:
    "b" where the rule says "a" (only where f2 > 1.5 unless ``everywhere``)."""
    own = np.random.default_rng(seed).uniform(0.0, 3.0, (n_own, 2))
    x = np.concatenate([shared_items()[:n_shared], own])
    ids = SHARED_IDS[:n_shared] + [f"d{i:03d}" for i in range(n_own)]
    labels = rule(x).astype(object)
    region = np.ones(len(x), dtype=bool) if everywhere else x[:, 1] > 1.5
    biased = (labels == "a") & region
    labels[biased] = "b"
    return frame_of(DONOR, ids, x, labels)


def build_store(engine: TwinEngine, donor: pd.DataFrame | None = None) -> TwinEngine:
    for twin in [*OTHERS, DONOR]:
        engine.create_twin(twin, "decision")
    engine.ingest(others_frame(), source="others")
    engine.ingest(donor_frame() if donor is None else donor, source="donor")
    return engine


@pytest.fixture
def store(engine: TwinEngine) -> TwinEngine:
    """Three other people's 180 labels and the donor's 20 (with a regional bias)."""
    return build_store(engine)


# -- helpers --------------------------------------------------------------------------------


def decision_count(engine: TwinEngine, twin: str = DONOR) -> int:
    return int(engine.twin_summary(twin)["decisions"])


def recorded(engine: TwinEngine, twin: str = DONOR) -> dict[str, int | None]:
    """The twin's recorded questions: item id -> answering batch (None: still waiting)."""
    q = tables.clone_queries.c
    with engine.store.read() as conn:
        rows = conn.execute(
            select(q.item_id, q.answered_batch).where(q.twin_id == engine.get_twin(twin).key)
        ).all()
    return {str(item): batch for item, batch in rows}


def answer_rows(asked: list[dict[str, Any]], twin: str = DONOR) -> list[dict[str, Any]]:
    """Answers to asked questions: the rule's label on each item's features."""
    return [
        {
            "twin_id": twin,
            "item_id": q["item_id"],
            **q["features"],
            "label": str(rule(np.array([[q["features"]["f1"], q["features"]["f2"]]]))[0]),
        }
        for q in asked
    ]


def write_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    pd.DataFrame(rows, columns=["twin_id", "item_id", *FEATURES, "label"]).to_csv(path, index=False)
    return path


def donor_ids() -> set[str]:
    return set(donor_frame()["item_id"])


# -- engine -----------------------------------------------------------------------------------


def test_queries_come_from_the_pool_are_recorded_and_never_repeat(store: TwinEngine) -> None:
    # Prepare
    pool = set(SHARED_IDS) - donor_ids()
    shared_x = dict(zip(SHARED_IDS, shared_items().tolist(), strict=True))
    ledger_before = len(store.history(DONOR))

    # Execute
    first = store.clone_queries(DONOR, k=5)

    # Assert: five distinct questions, each described: pool items, and (issue #18) up to
    # two rechecks: the donor asked again about an answer of theirs (ITEM~1)
    ids = [q["item_id"] for q in first]
    assert len(ids) == 5
    assert len(set(ids)) == 5
    fresh = [q for q in first if q["recheck"] is None]
    assert {q["item_id"] for q in fresh} <= pool and len(fresh) >= 3
    mine = donor_frame().set_index("item_id")
    for q in first:
        assert set(q) >= QUERY_KEYS
        assert q["clone_says"] in CLASSES
        assert q["confusion"].split("|")
        assert set(q["confusion"].split("|")) <= set(CLASSES)
        assert set(q["features"]) == set(FEATURES)
        where = (
            shared_x[q["item_id"]]
            if q["recheck"] is None
            else mine.loc[q["recheck"], FEATURES].tolist()
        )
        assert [q["features"][f] for f in FEATURES] == pytest.approx(where)
        assert q["recheck"] is None or q["item_id"] == f"{q['recheck']}~1"
    assert recorded(store) == dict.fromkeys(ids)
    history = store.history(DONOR)
    assert len(history) == ledger_before + 1
    assert history[-1].event == "clone_queries"
    assert history[-1].payload["items"] == ids

    # Execute: ask again; asked items are out of the pool now
    second = store.clone_queries(DONOR, k=5)

    # Assert
    again = [q["item_id"] for q in second]
    assert len(again) == 5
    assert {q["item_id"] for q in second if q["recheck"] is None} <= pool
    assert not set(again) & set(ids)
    assert set(recorded(store)) == set(ids) | set(again)
    events = [e.event for e in store.history(DONOR)]
    assert events.count("clone_queries") == 2
    with pytest.raises(TwinkitError, match="at least 1"):
        store.clone_queries(DONOR, k=0)


def test_answering_the_asked_items_stores_them_and_marks_them_answered(
    store: TwinEngine, tmp_path: Path
) -> None:
    # Prepare
    asked = store.clone_queries(DONOR, k=5)
    rows = answer_rows(asked)
    path = write_rows(rows, tmp_path / "answers.csv")
    before = decision_count(store)

    # Execute
    result = store.clone_answer(DONOR, path)

    # Assert: stored as a decisions batch, every question answered by that batch
    assert (result.n_rows, result.n_stored, result.n_quarantined) == (5, 5, 0)
    assert decision_count(store) == before + 5
    assert recorded(store) == dict.fromkeys([q["item_id"] for q in asked], result.batch_id)
    assert store.history(DONOR)[-1].event == "batch_ingested"
    stored = decisions(store.context)
    mine = stored[stored["twin_id"] == store.get_twin(DONOR).key].set_index("item_id")["label"]
    assert {r["item_id"]: mine[r["item_id"]] for r in rows} == {
        r["item_id"]: r["label"] for r in rows
    }
    report = store.clone_report(DONOR)
    assert report["labels"] == before + 5
    assert report["questions_asked"] == 5
    assert report["questions_waiting"] == 0
    assert store.verify().ok


def test_answer_file_with_an_unasked_or_answered_item_is_rejected_whole(
    store: TwinEngine, tmp_path: Path, snapshot: SnapshotFn
) -> None:
    # Prepare: the five answers with a never-asked pool item as row 3
    asked = store.clone_queries(DONOR, k=5)
    ids = [q["item_id"] for q in asked]
    rows = answer_rows(asked)
    stranger = sorted(set(SHARED_IDS) - donor_ids() - set(ids))[0]
    x = dict(zip(SHARED_IDS, shared_items(), strict=True))[stranger]
    unasked = {"twin_id": DONOR, "item_id": stranger, "f1": x[0], "f2": x[1], "label": "a"}
    bad = write_rows([*rows[:2], unasked, *rows[2:]], tmp_path / "bad.csv")
    before = snapshot(store)
    count, ledger_len = decision_count(store), len(store.history())

    # Execute
    with pytest.raises(ValidationError) as caught:
        store.clone_answer(DONOR, bad)

    # Assert: the error names the row and the column; nothing stored, nothing answered
    (problem,) = caught.value.problems
    assert (problem.row, problem.column) == (3, "item_id")
    assert stranger in problem.message
    assert "row 3" in str(caught.value)
    assert "column 'item_id'" in str(caught.value)
    assert str(bad) in str(caught.value)
    assert snapshot(store) == before
    assert decision_count(store) == count
    assert len(store.history()) == ledger_len
    assert recorded(store) == dict.fromkeys(ids)

    # Prepare: answer the first two; then a file re-answering one of them
    first = store.clone_answer(DONOR, write_rows(rows[:2], tmp_path / "first.csv"))
    assert first.n_stored == 2
    again = write_rows([rows[2], rows[1]], tmp_path / "again.csv")
    before = snapshot(store)
    count, ledger_len = decision_count(store), len(store.history())

    # Execute
    with pytest.raises(ValidationError) as caught:
        store.clone_answer(DONOR, again)

    # Assert: row 2 (answered already) is named; row 3's pending question stays pending
    (problem,) = caught.value.problems
    assert (problem.row, problem.column) == (2, "item_id")
    assert "answered already" in problem.message
    assert snapshot(store) == before
    assert decision_count(store) == count
    assert len(store.history()) == ledger_len
    assert [recorded(store)[i] is None for i in ids] == [False, False, True, True, True]

    # Execute: the rest, then the very same file twice
    rest = write_rows(rows[2:], tmp_path / "rest.csv")
    assert store.clone_answer(DONOR, rest).n_stored == 3
    before = snapshot(store)
    with pytest.raises(ValidationError) as caught:
        store.clone_answer(DONOR, rest)

    # Assert
    assert [(p.row, p.column) for p in caught.value.problems] == [
        (1, "item_id"),
        (2, "item_id"),
        (3, "item_id"),
    ]
    assert snapshot(store) == before
    assert decision_count(store) == count + 3
    assert all(batch is not None for batch in recorded(store).values())
    assert store.verify().ok


def test_clone_commands_need_a_decision_twin_and_other_peoples_labels(
    engine: TwinEngine, tmp_path: Path
) -> None:
    # Prepare: a state twin, and a donor whose only fellow decision twin has no labels
    engine.create_twin("s1", "state")
    engine.create_twin(DONOR, "decision")
    engine.create_twin("p1", "decision")
    answers = write_rows([], tmp_path / "answers.csv")

    # Execute / Assert: a state twin has no clone
    for call in (
        lambda: engine.clone_queries("s1", k=3),
        lambda: engine.clone_answer("s1", answers),
        lambda: engine.clone_report("s1"),
    ):
        with pytest.raises(TwinkitError, match="'s1' is a state twin; clones are for decision"):
            call()
    with pytest.raises(NotFoundError):
        engine.clone_queries("nobody", k=3)

    # Execute / Assert: no labels at all, then only the donor's own
    prior = "population prior needs other decision twins' labels"
    with pytest.raises(TwinkitError, match=prior):
        engine.clone_queries(DONOR, k=3)
    engine.ingest(donor_frame())
    with pytest.raises(TwinkitError, match=prior):
        engine.clone_queries(DONOR, k=3)
    with pytest.raises(TwinkitError, match=prior):
        engine.clone_report(DONOR)
    assert recorded(engine) == {}
    assert not [e for e in engine.history(DONOR) if e.event == "clone_queries"]


def test_report_recovers_a_strong_planted_bias(engine: TwinEngine) -> None:
    # Prepare: the donor says "b" wherever people in general say "a", on 36 items
    build_store(engine, donor_frame(n_shared=10, n_own=26, everywhere=True))

    # Execute
    report = engine.clone_report(DONOR)

    # Assert: the figures
    assert report["labels"] == 36
    assert report["classes"] == CLASSES
    assert report["questions_asked"] == report["questions_waiting"] == 0
    assert report["pool"] == N_SHARED - 10
    cv = report["cross_validated"]
    for name in ("clone_agreement", "population_agreement"):
        assert 0.0 <= cv[name] <= 1.0
    assert -1.0 <= cv["clone_kappa"] <= 1.0
    assert report["clone_is_prior"] is False
    assert cv["clone_agreement"] > cv["population_agreement"]

    # Assert: the confusion zone, its first pair the planted one
    zone = report["confusion_zone"]
    assert isinstance(zone, list)
    assert zone
    for pair in zone:
        assert set(pair) >= ZONE_KEYS
        assert 0.0 <= pair["person_rate"] <= 1.0
        assert 0.0 <= pair["general_rate"] <= 1.0
        assert pair["support"] >= 3
    top = zone[0]
    assert (top["expected"], top["said"]) == ("a", "b")
    assert top["person_rate"] > 0.8
    assert top["general_rate"] < 0.2


def test_same_store_and_seed_ask_the_same_questions(tmp_path: Path) -> None:
    # Prepare: two stores built identically
    engines = [TwinEngine(f"sqlite:///{tmp_path}/{name}.db") for name in ("one", "two")]
    try:
        for engine in engines:
            build_store(engine)

        # Execute
        asked = [engine.clone_queries(DONOR, k=5, seed=3) for engine in engines]
    finally:
        for engine in engines:
            engine.store.dispose()

    # Assert
    assert [q["item_id"] for q in asked[0]] == [q["item_id"] for q in asked[1]]
    assert asked[0] == asked[1]


def test_delete_twin_removes_its_questions(store: TwinEngine) -> None:
    # Prepare
    first = [q["item_id"] for q in store.clone_queries(DONOR, k=5)]
    assert len(recorded(store)) == 5

    # Execute
    store.delete_twin(DONOR)

    # Assert: no question of the deleted twin is left
    with store.store.read() as conn:
        left = conn.execute(select(tables.clone_queries)).all()
    assert left == []
    assert store.verify().ok

    # Execute: the same twin again, with the same labels
    store.create_twin(DONOR, "decision")
    assert store.ingest(donor_frame(), source="donor").n_stored == 20
    again = [q["item_id"] for q in store.clone_queries(DONOR, k=5)]

    # Assert: the old questions do not count as asked: the same store asks the same
    assert again == first
    assert recorded(store) == dict.fromkeys(first)


# -- command line -----------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "cli.db")


def test_cli_clone_queries_answer_report(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    # Prepare: the store, through the command line
    for twin in [*OTHERS, DONOR]:
        assert run(capsys, "twin", "create", twin, "--kind", "decision", "--db", db)[0] == 0
    data = tmp_path / "decisions.csv"
    pd.concat([others_frame(), donor_frame()]).to_csv(data, index=False)
    code, _, err = run(capsys, "ingest", str(data), "--db", db)
    assert code == 0, err

    # Execute: ask three questions into a file
    questions = tmp_path / "out" / "questions.csv"
    code, _, err = run(
        capsys, "clone", "queries", DONOR, "-k", "3", "--out", str(questions), "--db", db
    )

    # Assert: twin_id, item_id, the features, an empty label
    assert code == 0, err
    asked = pd.read_csv(questions)
    assert list(asked.columns) == ["twin_id", "item_id", *FEATURES, "label"]
    assert len(asked) == 3
    assert set(asked["twin_id"]) == {DONOR}
    # new items from the pool; one (of three) may ask the donor again about an answer of
    # theirs where they departed from people in general (ITEM~1: issue #18's rechecks)
    new = [i for i in asked["item_id"] if "~" not in i]
    again = [i.split("~")[0] for i in asked["item_id"] if "~" in i]
    assert set(new) <= set(SHARED_IDS) - donor_ids() and len(again) <= 1
    assert set(again) <= donor_ids()
    assert asked["label"].isna().all()

    # Execute: the donor fills in the labels
    asked["label"] = rule(asked[FEATURES].to_numpy())
    asked.to_csv(questions, index=False)
    code, out, err = run(capsys, "clone", "answer", DONOR, str(questions), "--db", db)

    # Assert
    assert code == 0, err
    assert "3 answers stored" in out

    # Execute / Assert: the report
    code, out, err = run(capsys, "clone", "report", DONOR, "--json", "--db", db)
    assert code == 0, err
    report = json.loads(out)
    assert report["labels"] == 23
    assert report["questions_waiting"] == 0

    # Execute / Assert: an answer about an item never asked exits 1, stores nothing
    bad = tmp_path / "bad.csv"
    asked.assign(item_id="d000").head(1).to_csv(bad, index=False)
    code, _, err = run(capsys, "clone", "answer", DONOR, str(bad), "--db", db)
    assert code == 1
    assert "error" in err
    assert "'d000' was not asked" in err
    assert "column 'item_id'" in err
    check = TwinEngine(db)
    try:
        assert decision_count(check) == 23
        assert all(batch is not None for batch in recorded(check).values())
    finally:
        check.store.dispose()


def tiny_decisions(path: Path) -> Path:
    """Four people on 20 shared items: p1 labels all 20, p2 and p3 14, p4 8."""
    frames = [
        others_frame(["p1"], n_items=20, seed=5),
        others_frame(["p2", "p3"], n_items=14, seed=6),
        others_frame(["p4"], n_items=8, seed=7),
    ]
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return path


def test_cli_eval_clone_reports_strategies_and_baselines(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Prepare
    data = tiny_decisions(tmp_path / "people.csv")
    out = tmp_path / "report" / "clone.json"
    strategies = ["random", "uncertainty", "confusion", "tgan"]

    # Execute
    code, _, err = run(
        capsys, "eval", "clone", str(data), "--budgets", "2,4",
        "--strategies", ",".join(strategies), "--seeds", "0", "--min-labels", "15",
        "--json", str(out), "--html", str(tmp_path / "clone.html"),
    )  # fmt: skip

    # Assert
    assert code == 0, err
    page = (tmp_path / "clone.html").read_text()
    assert "<h1>twinkit eval clone</h1>" in page and "<td>tgan</td>" in page
    assert "<th>4 questions</th>" in page and "<script" not in page
    report = json.loads(out.read_text())
    assert set(report) >= {"strategies", "baselines", "per_twin", "advice", "data"}
    assert list(report["strategies"]) == strategies
    for name, curve in report["strategies"].items():
        assert set(curve) == {"2", "4"}, name
        for budget in ("2", "4"):
            assert 0.0 <= curve[budget]["agreement_mean"] <= 1.0, (name, budget)
    assert set(report["baselines"]) == {"population", "personal_full", "majority"}
    for name, row in report["baselines"].items():
        assert 0.0 <= row["agreement_mean"] <= 1.0, name
    assert list(report["per_twin"]) == ["p1"]
    assert report["per_twin"]["p1"]["n_labels"] == 20
    assert report["data"]["skipped"] == {"p2": 14, "p3": 14, "p4": 8}
    assert report["data"]["people"] == 1
    assert report["data"]["budgets"] == [2, 4]
    assert report["data"]["classes"] == CLASSES
    assert report["advice"] == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "needs a decisions file"),
        (("--budgets", "2,x"), "bad --budgets"),
        (("--strategies", "random,oracle"), "unknown strategies"),
        (("--min-labels", "50"), "no person has at least 50 labels"),
    ],
    ids=["signals_file", "bad_budgets", "unknown_strategy", "too_few_labels"],
)
def test_cli_eval_clone_rejects_bad_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    # Prepare
    if message == "needs a decisions file":
        data = tmp_path / "signals.csv"
        data.write_text("twin_id,time,channel,value\np1,2026-01-01T00:00:00Z,glucose,100\n")
    else:
        data = tiny_decisions(tmp_path / "people.csv")
    out = tmp_path / "clone.json"

    # Execute
    code, _, err = run(capsys, "eval", "clone", str(data), "--json", str(out), *args)

    # Assert
    assert code == 1
    assert message in err
    assert not out.exists()


def test_an_answer_about_an_edited_item_is_rejected(store: TwinEngine, tmp_path: Path) -> None:
    # Prepare: one question asked; the answer file changes the item's f1
    asked = store.clone_queries(DONOR, k=1)
    rows = answer_rows(asked)
    rows[0]["f1"] = 99.0
    before = decision_count(store)

    # Execute
    with pytest.raises(ValidationError) as caught:
        store.clone_answer(DONOR, write_rows(rows, tmp_path / "edited.csv"))

    # Assert: the row and the column are named; nothing stored, the question still waits
    assert "row 1" in str(caught.value) and "column 'f1'" in str(caught.value)
    assert decision_count(store) == before
    assert recorded(store) == {asked[0]["item_id"]: None}


def test_a_quarantined_answer_leaves_its_question_waiting(
    store: TwinEngine, tmp_path: Path
) -> None:
    # Prepare: two questions; the file answers the first twice, with different labels
    # (a conflict the screen quarantines), and the second once
    asked = store.clone_queries(DONOR, k=2)
    rows = answer_rows(asked)
    conflict = {**rows[0], "label": "c" if rows[0]["label"] != "c" else "a"}

    # Execute
    result = store.clone_answer(DONOR, write_rows([rows[0], conflict, rows[1]], tmp_path / "a.csv"))

    # Assert: only the stored answer counts; the quarantined one can be answered again
    assert result.n_quarantined >= 1
    state = recorded(store)
    assert state[asked[1]["item_id"]] == result.batch_id
    assert state[asked[0]["item_id"]] is None
    again = store.clone_answer(DONOR, write_rows([rows[0]], tmp_path / "again.csv"))
    assert again.n_stored == 1
    assert recorded(store)[asked[0]["item_id"]] == again.batch_id


# -- decision twins as versioned models (issue #17) -----------------------------------------


def items_frame(points: list[tuple[float, float]]) -> pd.DataFrame:
    """Items to decide: ``q0, q1, ...`` at these (f1, f2) points."""
    return pd.DataFrame(
        {
            "item_id": [f"q{i}" for i in range(len(points))],
            "f1": [p[0] for p in points],
            "f2": [p[1] for p in points],
        }
    )


def more_donor_answers(n: int = 20, seed: int = 7) -> pd.DataFrame:
    """``n`` more of the donor's own items, labelled with the same regional bias."""
    frame = donor_frame(n_shared=0, n_own=n, seed=seed)
    return frame.assign(item_id=[f"e{i:03d}" for i in range(n)])


def flip_artifact_byte(engine: TwinEngine, sha256: str) -> None:
    path = engine.artifacts.path(sha256)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_decision_twin_fits_a_versioned_clone_that_decides(store: TwinEngine) -> None:
    # Execute
    fitted = store.fit(DONOR)
    answers = store.decide(DONOR, items_frame([(0.5, 2.5), (2.5, 0.5), (1.5, 1.0)]))

    # Assert: v1 serves, scored on the donor's held-out answers, recorded in the ledger
    assert (fitted.version, fitted.model, fitted.promoted) == (1, "clone", True)
    assert fitted.metrics["held"] > 0 and 0.0 <= fitted.metrics["agreement"] <= 1.0
    assert {"kappa", "ece", "prior_agreement", "labels_trained"} <= set(fitted.metrics)
    (version,) = store.models(DONOR)
    assert (version.status, version.params["features"]) == ("serving", FEATURES)
    assert [e.event for e in store.history(DONOR)][-2:] == ["model_registered", "model_promoted"]
    # The donor says "b" where people say "a" when f2 > 1.5: that item is in the zone
    assert (answers.version, answers.source, answers.degraded) == (1, "twin", False)
    by_item = {d.item_id: d for d in answers.decisions}
    assert by_item["q0"].in_confusion_zone is True
    assert (by_item["q1"].label, by_item["q1"].in_confusion_zone) == ("c", False)
    for d in answers.decisions:
        assert d.label in CLASSES
        assert abs(sum(d.proba.values()) - 1.0) < 1e-3
        assert d.probability == max(d.proba.values())
    assert store.verify().ok


def test_a_second_clone_serves_only_if_not_worse_and_rollback_restores_the_first(
    store: TwinEngine,
) -> None:
    # Prepare
    store.fit(DONOR)
    store.ingest(more_donor_answers(), source="more answers")

    # Execute
    second = store.fit(DONOR)

    # Assert: the gate compared both on the same held-out answers
    assert second.version == 2
    assert second.serving_metrics is not None
    mine, theirs = second.metrics["agreement"], second.serving_metrics["agreement"]
    assert second.promoted == (mine >= theirs), second.reason
    if not second.promoted:
        store.promote(DONOR, 2)
    assert store.version(DONOR).version == 2

    # Execute / Assert: rollback serves v1 again, and decide answers with it
    assert store.rollback(DONOR) == 1
    assert store.decide(DONOR, items_frame([(0.5, 0.5)])).version == 1
    assert store.verify().ok


def test_a_broken_clone_artifact_is_caught_and_decide_fails_over(store: TwinEngine) -> None:
    # Prepare: v1, then v2 serving; v2's artifact damaged on disk
    store.fit(DONOR)
    store.ingest(more_donor_answers(), source="more answers")
    if not store.fit(DONOR).promoted:
        store.promote(DONOR, 2)
    v1, v2 = store.models(DONOR)
    flip_artifact_byte(store, v2.sha256)

    # Execute
    report = store.verify()
    answers = store.decide(DONOR, items_frame([(0.5, 2.5)]))
    flip_artifact_byte(store, v1.sha256)
    prior = store.decide(DONOR, items_frame([(0.5, 2.5)]))

    # Assert
    assert not report.ok
    assert any(f"{v2.twin_id} v2" in p for p in report.problems), report.problems
    assert (answers.version, answers.source, answers.degraded) == (1, "twin", True)
    assert "answered by v1" in (answers.degraded_reason or "")
    assert (prior.version, prior.source, prior.degraded) == (None, "population", True)
    failovers = [e for e in store.history(DONOR) if e.event == "serving_failover"]
    assert [e.payload["served_by"] for e in failovers] == [
        {"source": "twin", "version": 1},
        {"source": "population"},
    ]


def test_decide_refuses_items_that_do_not_fit_the_clone_naming_the_item_and_column(
    store: TwinEngine,
) -> None:
    # Prepare
    store.fit(DONOR)
    good = items_frame([(0.5, 0.5), (1.5, 1.5)])

    # Execute / Assert: a missing feature, an unknown one, a value that is not a number
    with pytest.raises(ValidationError) as missing:
        store.decide(DONOR, good.drop(columns=["f2"]))
    assert missing.value.problems[0].column == "f2"
    with pytest.raises(ValidationError) as extra:
        store.decide(DONOR, good.assign(f3=1.0))
    assert extra.value.problems[0].column == "f3"
    with pytest.raises(ValidationError) as text:
        store.decide(DONOR, good.astype({"f1": object}).assign(f1=[0.5, "high"]))
    problem = text.value.problems[0]
    assert (problem.row, problem.column) == (2, "f1")
    assert "'q1'" in problem.message and "not a finite number" in problem.message
    with pytest.raises(TwinkitError, match="decision twin: it decides"):
        store.forecast(DONOR)


def test_cli_fit_and_decide_a_decision_twin(
    capsys: pytest.CaptureFixture[str], db: str, tmp_path: Path
) -> None:
    # Prepare (the donor opts in to the poison screen)
    for twin in OTHERS:
        assert run(capsys, "twin", "create", twin, "--kind", "decision", "--db", db)[0] == 0
    made = run(
        capsys, "twin", "create", DONOR, "--kind", "decision", "--screen", "poison", "--db", db
    )
    assert made[0] == 0, made[2]
    data = tmp_path / "decisions.csv"
    pd.concat([others_frame(), donor_frame()]).to_csv(data, index=False)
    assert run(capsys, "ingest", str(data), "--db", db)[0] == 0
    shown = json.loads(run(capsys, "twin", "show", DONOR, "--json", "--db", db)[1])
    assert shown["metadata"]["screens"] == ["poison"]
    items = tmp_path / "items.csv"
    items_frame([(0.5, 2.5), (2.5, 0.5)]).to_csv(items, index=False)
    bad = tmp_path / "bad.csv"
    items_frame([(0.5, 2.5)]).drop(columns=["f2"]).to_csv(bad, index=False)

    # Execute
    fit_code, fit_out, fit_err = run(capsys, "fit", DONOR, "--json", "--db", db)
    code, out, err = run(capsys, "decide", DONOR, str(items), "--json", "--db", db)
    bad_code, _, bad_err = run(capsys, "decide", DONOR, str(bad), "--db", db)

    # Assert
    assert fit_code == 0, fit_err
    assert json.loads(fit_out)["fitted"][0]["model"] == "clone"
    assert code == 0, err
    answers = json.loads(out)
    assert [d["item_id"] for d in answers["decisions"]] == ["q0", "q1"]
    assert answers["version"] == 1
    assert bad_code == 1
    assert "column 'f2'" in bad_err

    # Execute / Assert: a damaged clone artifact makes `ledger verify` exit 2
    check = TwinEngine(db)
    try:
        flip_artifact_byte(check, check.version(DONOR).sha256)
    finally:
        check.store.dispose()
    code, _, err = run(capsys, "ledger", "verify", "--db", db)
    assert code == 2, err


def test_queries_and_report_use_the_serving_clone_and_report_disagreements_and_advice(
    store: TwinEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a fitted clone; from now on no prior may be trained (the served one is used)
    store.fit(DONOR)
    import twinkit.clone.prior as prior

    def no_training(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the serving clone's prior should have been used")

    monkeypatch.setattr(prior, "train_population", no_training)
    donor = donor_frame()
    truth = dict(zip(donor["item_id"], rule(donor[FEATURES].to_numpy()), strict=True))

    # Execute
    asked = store.clone_queries(DONOR, k=3)
    report = store.clone_report(DONOR, truth=truth)

    # Assert
    assert len(asked) == 3
    differ = report["disagreements"]
    assert len(differ["items"]) == min(differ["n"], 20)
    for item in differ["items"]:
        assert item["donor"] != item["clone"]
    advice = report["advice"]
    assert advice is not None and advice["n"] == len(donor)
    # The donor's bias makes them wrong where the rule says "a" and f2 > 1.5
    assert advice["donor_accuracy"] < 1.0
    assert 0.0 <= advice["advised_accuracy"] <= 1.0


def test_an_image_decision_twins_clone_is_a_cnn(engine: TwinEngine) -> None:
    # Prepare: 4x4 "images" (16 pixel features) labelled by the brightness of their top half
    rng = np.random.default_rng(3)
    pixels = [f"px{i}" for i in range(16)]

    def people(twin: str, n: int, start: int) -> pd.DataFrame:
        x = rng.uniform(0.0, 1.0, (n, 16))
        labels = np.where(x[:, :8].mean(axis=1) > 0.5, "bright", "dark")
        frame = pd.DataFrame(x, columns=pixels)
        ids = [f"img{start + i:03d}" for i in range(n)]
        return frame.assign(twin_id=twin, item_id=ids, label=labels)

    for twin in ("p1", "p2"):
        engine.create_twin(twin, "decision", metadata={"image": [4, 4]})
    engine.create_twin(DONOR, "decision", metadata={"image": [4, 4]})
    engine.ingest(pd.concat([people("p1", 60, 0), people("p2", 60, 60), people(DONOR, 24, 200)]))

    # Execute
    fitted = engine.fit(DONOR)

    # Assert
    from twinkit.engine.clone_artifacts import load_clone

    clone = load_clone(engine.context, engine.version(DONOR))
    assert fitted.model == "clone"
    assert clone.image_shape == (4, 4)


def test_the_opt_in_poison_screen_holds_a_label_flippers_small_batches_not_an_honest_ones(
    engine: TwinEngine,
) -> None:
    # Prepare: two donors who opted in, each with 60 honest labels stored
    rng = np.random.default_rng(0)
    swap = {"a": "b", "b": "c", "c": "a"}
    held = {}
    for who in ("honest", "flipper"):
        engine.create_twin(who, "decision", metadata={"screens": ["poison"]})
        x = rng.uniform(0.0, 3.0, (60, 2))
        engine.ingest(frame_of(who, [f"h{i:02d}" for i in range(60)], x, rule(x)))

        # Execute: answers arrive five at a time; the flipper's labels are all wrong
        results = []
        for batch in range(4):
            x = rng.uniform(0.0, 3.0, (5, 2))
            labels = rule(x).astype(object)
            if who == "flipper":
                labels = np.asarray([swap[v] for v in labels], dtype=object)
            ids = [f"n{batch}{i}" for i in range(5)]
            results.append(engine.ingest(frame_of(who, ids, x, labels)))
        held[who] = sum(r.n_quarantined for r in results)

    # Assert (seeded: 0 of 20 honest answers held, 18 of 20 flipped ones)
    assert held["honest"] <= 2
    assert held["flipper"] >= 15
    reasons = {q["reason"] for q in engine.quarantine("flipper")}
    assert all(r.startswith("possible poisoning: ") for r in reasons)


def test_only_known_opt_in_screens_may_be_asked_for(engine: TwinEngine) -> None:
    with pytest.raises(TwinkitError, match="opt-in screens of a decision twin \\(poison\\)"):
        engine.create_twin("d1", "decision", metadata={"screens": ["magic"]})
    with pytest.raises(TwinkitError, match="opt-in screens of a state twin \\(none\\)"):
        engine.create_twin("s1", "state", metadata={"screens": ["poison"]})
    assert engine.create_twin("d2", "decision", metadata={"screens": []}).screens == ()


def test_the_clone_update_fits_a_version_on_new_answers_and_asks_with_the_serving_one(
    engine: TwinEngine,
) -> None:
    # Prepare: a donor with no answers yet, and people in general
    for twin in [*OTHERS, DONOR]:
        engine.create_twin(twin, "decision")
    engine.ingest(others_frame(), source="others")

    # Execute: the service's clone job, before any answer, after them, and again
    first = engine.clone_update(DONOR, k=4)
    engine.ingest(pd.DataFrame(answer_rows(engine.clone_waiting(DONOR))), source="answers")
    second = engine.clone_update(DONOR, k=4)
    third = engine.clone_update(DONOR, k=4)

    # Assert: no version before answers (the prior asks); then v1, fitted on the answers
    # and serving the guesses; nothing new, no new version
    assert first["fit"] is None and len(first["asked"]) == 4
    assert second["fit"] is not None
    assert (second["fit"]["version"], second["fit"]["promoted"]) == (1, True)
    assert engine.version(DONOR).version == 1
    assert third["fit"] is None
    assert [v.version for v in engine.models(DONOR)] == [1]
    assert set(second["guesses"]) == {q["item_id"] for q in engine.clone_waiting(DONOR)}
    assert engine.verify().ok
