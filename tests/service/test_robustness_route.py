"""The robustness report of a decision twin's clone: made by a background job in a child
process, read back by its owner, refused for twins it cannot be made for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from twinkit.engine.robustness import MIN_LABELS, holdout_split, labelled_items
from twinkit.immunity import registered_attacks
from twinkit.service.state import ServiceState

Headers = dict[str, str]
N_ITEMS = 45


def decisions_csv(n: int, seed: int = 0) -> bytes:
    """``n`` decisions over two features in their own units (0-30, 100-500), three labels
    by a threshold on the first feature."""
    rng = np.random.default_rng(seed)
    f1, f2 = rng.uniform(0.0, 30.0, n), rng.uniform(100.0, 500.0, n)
    label = np.where(f1 < 10, "low", np.where(f1 < 20, "mid", "high"))
    frame = pd.DataFrame({"item_id": [f"i{i:03d}" for i in range(n)], "f1": f1, "f2": f2})
    frame["label"] = label
    return frame.to_csv(index=False).encode()


@pytest.fixture
def decision_twin(
    client: TestClient, new_owner: Callable[[str], Headers]
) -> Callable[[str, str, int], Headers]:
    """``decision_twin(owner, twin_id, n)``: a new owner's decision twin with ``n`` labelled
    decisions; the owner's Authorization header."""

    def make(owner: str, twin_id: str, n: int) -> Headers:
        headers = new_owner(owner)
        made = client.post("/v1/twins", json={"id": twin_id, "kind": "decision"}, headers=headers)
        assert made.status_code == 201, made.text
        files = {"file": ("labels.csv", decisions_csv(n), "text/csv")}
        stored = client.post(
            f"/v1/twins/{twin_id}/observations/upload", files=files, headers=headers
        )
        assert stored.status_code == 200, stored.text
        assert stored.json()["n_stored"] == n
        return headers

    return make


def _finished_job(client: TestClient, url: str, headers: Headers) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(url, headers=headers).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {url} did not finish in time: {job}")


def test_a_report_is_made_in_the_background_and_then_read(
    client: TestClient, decision_twin: Callable[[str, str, int], Headers]
) -> None:
    # Prepare
    alice = decision_twin("alice", "d1", N_ITEMS)
    before = client.get("/v1/twins/d1/robustness", headers=alice)

    # Execute
    started = client.post(
        "/v1/twins/d1/robustness",
        json={"eps": [0.2, 0.05, 0.2], "attacks": ["pgd", "fgsm"], "vaccine": 12, "pgd_steps": 5},
        headers=alice,
    )
    job = _finished_job(client, f"/v1/twins/d1/jobs/{started.json()['id']}", alice)
    answer = client.get("/v1/twins/d1/robustness", headers=alice)

    # Assert: nothing before; a job of its own kind (budgets sorted, once each); then the
    # report in the immunity benchmark's layout, for this twin's own items
    assert before.status_code == 404
    assert "start one with POST /v1/twins/d1/robustness" in before.json()["error"]["message"]
    assert started.status_code == 202, started.text
    assert started.json()["kind"] == "robustness"
    assert started.json()["params"]["eps"] == [0.05, 0.2]
    assert job["status"] == "done", job
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["twin_id"], body["job_id"]) == ("d1", job["id"])
    report = body["report"]
    assert report["twin"] == "d1"
    assert report["data"]["n_train"] + report["data"]["n_test"] == N_ITEMS
    assert report["data"]["classes"] == ["high", "low", "mid"]
    assert report["vaccine_samples"] == 12
    assert report["threat_model"]["eps"] == [0.05, 0.2]
    scaling = report["threat_model"]["feature_scaling"]
    assert scaling["features"] == ["f1", "f2"]
    assert 0.0 <= scaling["low"][0] < scaling["high"][0] <= 30.0
    assert 100.0 <= scaling["low"][1] < scaling["high"][1] <= 500.0
    assert 0.0 <= report["clean_acc"] <= 1.0
    assert set(report["attacks"]) == {"fgsm", "pgd"}
    for attack in ("fgsm", "pgd"):
        small, large = report["attacks"][attack]["0.05"], report["attacks"][attack]["0.2"]
        for scores in (small, large):
            for key in ("undefended", "vaccinated_replay", "vaccinated_adaptive"):
                assert 0.0 <= scores[key] <= 1.0
            assert scores["adv_trained_adaptive"] is None
        # a larger ball holds every attack of the smaller one
        assert large["undefended"] <= small["undefended"]
    assert report["clean_acc_adv_trained"] is None


def test_a_report_is_refused_at_once_for_twins_it_cannot_be_made_for(
    client: TestClient,
    service: ServiceState,
    decision_twin: Callable[[str, str, int], Headers],
    state_twin: Callable[[str, str], Headers],
) -> None:
    # Prepare
    alice = decision_twin("alice", "few", MIN_LABELS - 1)
    bob = state_twin("bob", "s1")

    # Execute
    too_few = client.post("/v1/twins/few/robustness", json={}, headers=alice)
    state = client.post("/v1/twins/s1/robustness", headers=bob)

    # Assert: a 400 that says why and what to do; no job was queued
    assert too_few.status_code == 400
    assert too_few.json()["error"]["message"] == (
        f"twin 'few' has {MIN_LABELS - 1} labelled decision(s) with every feature and 3 "
        f"distinct label(s); a robustness report needs at least {MIN_LABELS} and two labels: "
        "upload more decisions first"
    )
    assert state.status_code == 400
    assert "robustness reports are for decision twins" in state.json()["error"]["message"]
    assert service.engine.jobs.of_twin("few") == []
    assert service.engine.jobs.of_twin("s1") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"eps": [0.0]}, ["body", "eps", 0]),
        ({"eps": [1.5]}, ["body", "eps", 0]),
        ({"eps": []}, ["body", "eps"]),
        ({"attacks": ["cw"]}, ["body", "attacks", 0]),
        ({"vaccine": 1}, ["body", "vaccine"]),
        ({"owner": "bob"}, ["body", "owner"]),
    ],
)
def test_malformed_requests_answer_422_with_the_field(
    client: TestClient,
    decision_twin: Callable[[str, str, int], Headers],
    body: dict[str, Any],
    field: list[str | int],
) -> None:
    alice = decision_twin("alice", "d1", MIN_LABELS)
    answer = client.post("/v1/twins/d1/robustness", json=body, headers=alice)
    assert answer.status_code == 422
    assert answer.json()["error"]["problems"][0]["field"] == field


def test_the_report_route_says_when_the_last_attempt_failed(
    client: TestClient, service: ServiceState, decision_twin: Callable[[str, str, int], Headers]
) -> None:
    # Prepare: a job that failed (recorded as the runner records one)
    alice = decision_twin("alice", "d1", MIN_LABELS)
    job = service.engine.jobs.create("alice/d1", "alice", "robustness", {}, runner="elsewhere:1")
    service.engine.jobs.fail(job.id, "the robustness process was killed by signal 9")

    # Execute
    answer = client.get("/v1/twins/d1/robustness", headers=alice)

    # Assert
    assert answer.status_code == 404
    assert answer.json()["error"]["message"] == (
        "no robustness report of twin 'd1' yet; "
        f"job {job.id} failed: the robustness process was killed by signal 9"
    )


def test_features_are_scaled_by_the_twins_own_range_and_split_per_label(
    client: TestClient, service: ServiceState, decision_twin: Callable[[str, str, int], Headers]
) -> None:
    # Prepare
    decision_twin("alice", "d1", 30)

    # Execute
    x, labels, names, low, high = labelled_items(service.engine.context, "d1")
    held = holdout_split(labels, 1 / 3, seed=0)

    # Assert: each feature spans exactly [0, 1]; every label is held out about a third
    assert names == ["f1", "f2"]
    assert x.shape == (30, 2)
    np.testing.assert_allclose(x.min(axis=0), [0.0, 0.0])
    np.testing.assert_allclose(x.max(axis=0), [1.0, 1.0])
    assert (low < high).all()
    for label in set(labels):
        rows = np.asarray(labels) == label
        assert 1 <= held[rows].sum() < rows.sum()
    assert (holdout_split(labels, 1 / 3, seed=0) == held).all()


def test_the_schema_lists_every_registered_classifier_attack(
    client: TestClient, service: ServiceState, decision_twin: Callable[[str, str, int], Headers]
) -> None:
    # Prepare
    alice = decision_twin("alice", "d1", MIN_LABELS)

    # Execute
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    square = client.post("/v1/twins/d1/robustness", json={"attacks": ["square"]}, headers=alice)

    # Assert: the enum is the registry's; an attack on images is refused at once
    listed = schema["RobustnessRequest"]["properties"]["attacks"]["items"]["enum"]
    assert listed == registered_attacks("classifier")
    assert {"fgsm", "pgd", "pgd_l2", "bpda", "square"} <= set(listed)
    assert square.status_code == 400
    assert "the square attack perturbs images" in square.json()["error"]["message"]
    assert service.engine.jobs.of_twin("alice/d1") == []


def test_square_is_accepted_for_a_twin_whose_items_are_images(
    client: TestClient, service: ServiceState, new_owner: Callable[[str], Headers]
) -> None:
    # Prepare: 4x4 "images" (16 pixel features), labelled by their top half's brightness
    alice = new_owner("alice")
    body = {"id": "img", "kind": "decision", "metadata": {"image": [4, 4]}}
    assert client.post("/v1/twins", json=body, headers=alice).status_code == 201
    x = np.random.default_rng(0).uniform(0.0, 1.0, (MIN_LABELS + 6, 16))
    frame = pd.DataFrame(x, columns=[f"px{i}" for i in range(16)])
    frame.insert(0, "item_id", [f"i{i:03d}" for i in range(len(frame))])
    frame["label"] = np.where(x[:, :8].mean(axis=1) > 0.5, "bright", "dark")
    files = {"file": ("images.csv", frame.to_csv(index=False).encode(), "text/csv")}
    upload = client.post("/v1/twins/img/observations/upload", files=files, headers=alice)
    assert upload.status_code == 200, upload.text

    # Execute
    started = client.post("/v1/twins/img/robustness", json={"attacks": ["square"]}, headers=alice)

    # Assert: queued as a job (the job attacks 4x4 images)
    assert started.status_code == 202, started.text
    assert started.json()["params"]["attacks"] == ["square"]


def images_csv(n: int, side: int = 6, seed: int = 0) -> bytes:
    """``n`` decisions on ``side`` x ``side`` grey images in [0, 1] (row-major pixels
    p00, p01...): "left" when the left half is brighter, else "right"."""
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0.0, 0.4, (n, side, side))
    left = np.arange(n) % 2 == 0
    pixels[left, :, : side // 2] += 0.5
    pixels[~left, :, side // 2 :] += 0.5
    flat = pixels.reshape(n, -1)
    frame = pd.DataFrame(flat, columns=[f"p{i:02d}" for i in range(side * side)])
    frame.insert(0, "item_id", [f"img{i:03d}" for i in range(n)])
    frame["label"] = np.where(left, "left", "right")
    return frame.to_csv(index=False).encode()


def test_an_image_twin_is_attacked_by_square_as_images(
    client: TestClient, new_owner: Callable[[str], Headers]
) -> None:
    # Prepare: a decision twin whose metadata says its items are 6x6 images
    alice = new_owner("alice")
    made = client.post(
        "/v1/twins",
        json={"id": "eyes", "kind": "decision", "metadata": {"image": [6, 6]}},
        headers=alice,
    )
    assert made.status_code == 201, made.text
    files = {"file": ("labels.csv", images_csv(N_ITEMS), "text/csv")}
    stored = client.post("/v1/twins/eyes/observations/upload", files=files, headers=alice)
    assert stored.status_code == 200, stored.text

    # Execute: Square, the query-based attack only image twins accept
    started = client.post(
        "/v1/twins/eyes/robustness",
        json={"eps": [0.1], "attacks": ["square"], "vaccine": 12},
        headers=alice,
    )
    assert started.status_code == 202, started.text
    job = _finished_job(client, f"/v1/twins/eyes/jobs/{started.json()['id']}", alice)
    report = client.get("/v1/twins/eyes/robustness", headers=alice).json()["report"]

    # Assert: a CNN on 6x6 images, attacked by Square within its budget
    assert job["status"] == "done", job
    assert report["model"]["kind"] == "cnn"
    assert report["model"]["image_shape"] == [6, 6]
    assert report["data"]["n_features"] == 36
    assert list(report["attacks"]) == ["square"]
    scores = report["attacks"]["square"]["0.1"]
    for key in ("undefended", "vaccinated_replay", "vaccinated_adaptive"):
        assert 0.0 <= scores[key] <= 1.0
    assert report["threat_model"]["attacks"]["square"]["access"] == "query"
