"""The service does what its OpenAPI document says, and answers what HTTP asks: JSON that
is not JSON gets a 422 naming the field, integers and times are what the schema says,
twin ids are unique whatever their case, OPTIONS and 405 carry ``Allow``, one
``Authorization`` header per request, and the docs pages need no CDN."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from twinkit.service.routes import route_specs
from twinkit.service.state import ServiceState

Headers = dict[str, str]
NewOwnerFn = Callable[[str], Headers]


def _post_raw(client: TestClient, path: str, body: bytes, headers: Headers) -> Any:
    """POST ``body`` as it is: Python's JSON reader takes NaN and lone surrogates, which a
    JSON encoder would never write."""
    return client.post(path, content=body, headers={**headers, "content-type": "application/json"})


@pytest.fixture
def alice(client: TestClient, new_owner: NewOwnerFn) -> Headers:
    """Alice, with a state twin p1 and a decision twin d1."""
    headers = new_owner("alice")
    for twin_id, kind in (("p1", "state"), ("d1", "decision")):
        answer = client.post("/v1/twins", json={"id": twin_id, "kind": kind}, headers=headers)
        assert answer.status_code == 201, answer.text
    return headers


# -- metadata -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (b'{"a": NaN}', "metadata.a: NaN is not JSON"),
        (b'{"a": Infinity}', "metadata.a: Infinity is not JSON"),
        (b'{"a": [1, {"b": -Infinity}]}', "metadata.a[1].b: -Infinity is not JSON"),
        (b'{"a": "\\ud800"}', "metadata.a: the text has a lone surrogate"),
        (b'{"\\udfff": 1}', 'metadata["\\udfff"]: the key has a lone surrogate'),
    ],
)
def test_metadata_that_is_not_json_answers_422_naming_the_field(
    client: TestClient,
    service: ServiceState,
    new_owner: NewOwnerFn,
    metadata: bytes,
    message: str,
) -> None:
    # Prepare
    alice = new_owner("alice")
    body = b'{"id": "p1", "kind": "state", "metadata": ' + metadata + b"}"

    # Execute
    answer = _post_raw(client, "/v1/twins", body, alice)

    # Assert
    assert answer.status_code == 422, answer.text
    problem = answer.json()["error"]["problems"][0]
    assert problem["field"] == ["body", "metadata"]
    assert message in problem["message"]
    assert service.engine.list_twins() == []


def test_metadata_over_the_limits_answers_422_and_the_limits_are_settings(
    make_client: Callable[..., TestClient], admin: Headers
) -> None:
    # Prepare
    client = make_client(max_metadata_bytes=100, max_metadata_keys=3, max_metadata_depth=2)
    token = client.post("/v1/owners", json={"name": "alice"}, headers=admin).json()["token"]
    alice = {"Authorization": f"Bearer {token}"}

    def create(twin_id: str, metadata: dict[str, Any]) -> Any:
        body = {"id": twin_id, "kind": "state", "metadata": metadata}
        return client.post("/v1/twins", json=body, headers=alice)

    # Execute
    fits = create("p1", {"a": {"b": 1}, "c": "x" * 50})
    too_many_keys = create("p2", {"a": {"b": 1, "c": 2}, "d": 3})
    too_deep = create("p3", {"a": [[1]]})
    too_large = create("p4", {"a": "x" * 100})

    # Assert
    assert fits.status_code == 201, fits.text
    for answer, message in (
        (too_many_keys, "metadata has more than 3 keys (nested objects' keys included)"),
        (too_deep, "metadata.a[0]: nested deeper than 2 levels"),
        (too_large, "metadata is larger than 100 bytes as JSON"),
    ):
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["type"] == "InvalidTwinError"
        assert message in answer.json()["error"]["message"]
    listed = client.get("/v1/twins", headers=alice).json()
    assert [t["id"] for t in listed] == ["p1"]


def test_a_million_metadata_keys_are_refused(client: TestClient, new_owner: NewOwnerFn) -> None:
    # Prepare
    alice = new_owner("alice")
    keys = ",".join(f'"k{i}":0' for i in range(1_000_000))
    body = f'{{"id": "p1", "kind": "state", "metadata": {{{keys}}}}}'.encode()

    # Execute
    answer = _post_raw(client, "/v1/twins", body, alice)

    # Assert
    assert answer.status_code == 422
    assert "more than 1000 keys" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "row"),
    [
        ("/v1/twins/p1/observations", b'{"time": "2026-01-05T00:00:00Z", "channel": "g\\ud800"'),
        ("/v1/twins/p1/observations", b'{"time": "2026-01-05T00:00:00\\ud800", "channel": "g"'),
    ],
)
def test_rows_with_lone_surrogates_answer_422_not_500(
    client: TestClient, alice: Headers, path: str, row: bytes
) -> None:
    # Execute
    answer = _post_raw(client, path, b'{"rows": [' + row + b', "value": 1.0}]}', alice)

    # Assert
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["type"] == "RequestValidationError"


# -- twin ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("twin_id", [".", ".."])
def test_dot_and_dot_dot_are_refused_as_twin_ids(
    client: TestClient, new_owner: NewOwnerFn, twin_id: str
) -> None:
    answer = client.post(
        "/v1/twins", json={"id": twin_id, "kind": "state"}, headers=new_owner("alice")
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["problems"][0]["field"] == ["body", "id"]


def test_an_id_differing_only_in_case_answers_409_only_among_the_callers_twins(
    client: TestClient, new_owner: NewOwnerFn
) -> None:
    # Prepare
    alice, bob = new_owner("alice"), new_owner("bob")
    assert client.post("/v1/twins", json={"id": "p1", "kind": "state"}, headers=alice).is_success

    # Execute
    hers = client.post("/v1/twins", json={"id": "P1", "kind": "state"}, headers=alice)
    his = client.post("/v1/twins", json={"id": "P1", "kind": "state"}, headers=bob)
    exact = client.post("/v1/twins", json={"id": "p1", "kind": "decision"}, headers=bob)
    again = client.post("/v1/twins", json={"id": "p1", "kind": "state"}, headers=bob)

    # Assert: ids are unique per owner, so Bob's ids never collide with Alice's
    assert (hers.status_code, his.status_code, exact.status_code) == (409, 201, 409)
    assert "your twin 'p1'" in hers.json()["error"]["message"]
    assert "your twin 'P1'" in exact.json()["error"]["message"]
    assert again.status_code == 409
    assert [t["id"] for t in client.get("/v1/twins", headers=bob).json()] == ["P1"]
    assert client.get("/v1/twins/p1", headers=alice).json()["kind"] == "state"


# -- strict types ---------------------------------------------------------------------------


@pytest.mark.parametrize("start", ["0.5", "1700000000", "2026-01-05", "soon", "2026-01-05T25:00Z"])
def test_data_times_must_be_iso_8601_not_unix_times(
    client: TestClient, alice: Headers, start: str
) -> None:
    answer = client.get("/v1/twins/p1/data", params={"start": start}, headers=alice)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["problems"][0]["field"] == ["query", "start"]


@pytest.mark.parametrize(
    "start",
    ["2026-01-05T06:00:00Z", "2026-01-05T06:00:00", "2026-01-05t06:00z", "2026-01-05 06:00"],
)
def test_data_times_in_iso_8601_are_taken(client: TestClient, alice: Headers, start: str) -> None:
    answer = client.get("/v1/twins/p1/data", params={"start": start, "end": start}, headers=alice)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/twins/p1/fit", {"seed": False}),
        ("/v1/twins/p1/fit", {"seed": "1"}),
        ("/v1/twins/p1/fit", {"horizons": [True]}),
        ("/v1/twins/d1/clone/queries", {"k": True}),
        ("/v1/twins/d1/clone/queries", {"seed": "0"}),
        ("/v1/twins/d1/robustness", {"seed": False}),
        ("/v1/twins/d1/robustness", {"adv_training": "true"}),
        ("/v1/twins/d1/robustness", {"eps": ["0.1"]}),
        ("/v1/twins/p1/quarantine/release", {"ids": [True]}),
        (
            "/v1/twins/p1/observations",
            {"rows": [{"time": "2026-01-05T00:00:00Z", "channel": "g", "value": "1"}]},
        ),
        ("/v1/twins", {"id": "p2", "kind": "state", "channels": [{"name": "g", "low": "1"}]}),
    ],
)
def test_body_numbers_are_strict(
    client: TestClient, alice: Headers, path: str, body: dict[str, Any]
) -> None:
    # Execute
    answer = client.post(path, json=body, headers=alice)

    # Assert
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["type"] == "RequestValidationError"


@pytest.mark.parametrize("job_id", ["9749652503476601896335711404032", "0", "-1"])
def test_a_job_id_out_of_the_stores_range_answers_422_not_500(
    client: TestClient, alice: Headers, job_id: str
) -> None:
    answer = client.get(f"/v1/twins/p1/jobs/{job_id}", headers=alice)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["problems"][0]["field"] == ["path", "job_id"]


# -- HTTP -----------------------------------------------------------------------------------


def _methods_of(path: str) -> set[str]:
    return {m for spec in route_specs() if spec.path == path for m in spec.methods}


@pytest.mark.parametrize(
    ("template", "path"),
    [("/v1/twins", "/v1/twins"), ("/v1/twins/{twin_id}", "/v1/twins/p1"), ("/healthz", "/healthz")],
)
def test_options_and_405_name_every_method_of_the_path(
    client: TestClient, template: str, path: str
) -> None:
    # Prepare
    expected = _methods_of(template) | {"OPTIONS"}

    # Execute
    options = client.options(path)
    wrong = client.request("PATCH", path)

    # Assert
    assert options.status_code == 200
    assert set(options.headers["allow"].split(", ")) == expected
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].split(", ")) == expected


def test_options_on_no_route_answers_404(client: TestClient) -> None:
    assert client.options("/v1/nothing-here").status_code == 404


@pytest.mark.parametrize("second", ["same", "other"])
def test_a_repeated_authorization_header_answers_401(
    client: TestClient, alice: Headers, second: str
) -> None:
    # Prepare
    token = alice["Authorization"]
    headers = [("Authorization", token), ("Authorization", token if second == "same" else "x")]

    # Execute
    answer = client.get("/v1/twins", headers=headers)

    # Assert
    assert answer.status_code == 401
    assert answer.json()["error"]["message"] == "2 Authorization headers: send exactly one"
    assert 'error="invalid_request"' in answer.headers["www-authenticate"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_need_no_cdn(client: TestClient, page: str) -> None:
    # Execute
    html = client.get(page)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
    answers = {url: client.get(url) for url in assets}

    # Assert
    assert html.status_code == 200
    assert not re.search(r"https?://", html.text), html.text
    assert len(assets) >= 2
    assert {url: a.status_code for url, a in answers.items()} == dict.fromkeys(assets, 200)
    assert all(len(a.content) > 1000 for a in answers.values())
