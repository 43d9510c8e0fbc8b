"""The web pages and the decision-twin routes: login cookie, CSRF, per-owner 404, the fan
chart, and the donor's labeling page; ``/v1/twins/{id}/clone/...``, ``.../fit`` and
``.../decide`` over the same data.

The client talks to https://testserver, so the login cookie keeps its Secure flag (httpx
sends a Secure cookie only over HTTPS, as a browser does).
"""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from twinkit.report.fanchart import fan_chart
from twinkit.service.routes.clones import item_image
from twinkit.service.state import ServiceState
from twinkit.store import model_versions

Headers = dict[str, str]
ALICE_TWIN = "alice-p1"
DONOR = "donor"
CLASSES = ["a", "b", "c"]
SLOW_JOB_S = 600.0  # a clone update trains small networks; a loaded 2-core machine is slow


# -- helpers --------------------------------------------------------------------------------


@pytest.fixture
def web(client: TestClient) -> TestClient:
    client.base_url = httpx.URL("https://testserver")
    return client


def token_of(headers: Headers) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def log_in(client: TestClient, headers: Headers) -> httpx.Response:
    form = client.get("/login")
    answer: httpx.Response = client.post(
        "/login",
        data={"token": token_of(headers), "csrf_token": csrf_in(form.text)},
        follow_redirects=False,
    )
    return answer


def item_ids(html: str) -> list[str]:
    return re.findall(r'<li class="query" data-item="([^"]+)"', html)


def decision_frame(n: int, seed: int = 0, bias: bool = False) -> pd.DataFrame:
    """``n`` items on two features labelled by a threshold rule on ``f1``; a biased donor
    says "b" where the rule says "a"."""
    x = np.random.default_rng(seed).uniform(0.0, 3.0, (n, 2))
    labels = np.where(x[:, 0] < 1.0, "a", np.where(x[:, 0] < 2.0, "b", "c")).astype(object)
    if bias:
        labels[labels == "a"] = "b"
    return pd.DataFrame(
        {"item_id": [f"i{i:03d}" for i in range(n)], "f1": x[:, 0], "f2": x[:, 1], "label": labels}
    )


def upload(client: TestClient, twin: str, frame: pd.DataFrame, headers: Headers) -> None:
    file = {"file": ("d.csv", frame.to_csv(index=False).encode())}
    answer = client.post(f"/v1/twins/{twin}/observations/upload", files=file, headers=headers)
    assert answer.status_code == 200, answer.text


def decision_twins(client: TestClient, owner: Headers, donor_labels: int) -> Headers:
    """The owner's two annotators (40 items each) and donor (``donor_labels``, biased)."""
    twins = [("p1", decision_frame(40)), ("p2", decision_frame(40)), (DONOR, None)]
    for twin, frame in twins:
        body = {"id": twin, "kind": "decision", "metadata": {"secret": f"marker-{twin}"}}
        assert client.post("/v1/twins", json=body, headers=owner).status_code == 201
        if frame is not None:
            upload(client, twin, frame, owner)
    if donor_labels:
        upload(client, DONOR, decision_frame(donor_labels, bias=True), owner)
    return owner


@pytest.fixture
def decision_owner(web: TestClient, new_owner: Callable[[str], Headers]) -> Headers:
    """Alice's annotators, and her donor with 6 labels."""
    return decision_twins(web, new_owner("alice"), donor_labels=6)


@pytest.fixture
def new_donor_owner(web: TestClient, new_owner: Callable[[str], Headers]) -> Headers:
    """Alice's annotators, and a donor with no labels yet (the clone is the prior: the
    first update trains one network, not the cross-validated personalisations)."""
    return decision_twins(web, new_owner("alice"), donor_labels=0)


def wait_for_clone(client: TestClient, twin: str, headers: Headers) -> dict[str, Any]:
    deadline = time.monotonic() + SLOW_JOB_S
    while time.monotonic() < deadline:
        view: dict[str, Any] = client.get(f"/v1/twins/{twin}/clone/queries", headers=headers).json()
        if not view["updating"]:
            assert view["job"]["status"] == "done", view["job"]
            return view
        time.sleep(0.5)
    raise AssertionError(f"the clone update of {twin} did not end in {SLOW_JOB_S} s")


@pytest.fixture
def state_with_forecast(
    web: TestClient,
    service: ServiceState,
    state_twin: Callable[[str, str], Headers],
    glucose_rows: list[dict[str, Any]],
) -> Headers:
    """Alice's state twin with two days of glucose and a fitted model."""
    alice = state_twin("alice", ALICE_TWIN)
    answer = web.post(
        f"/v1/twins/{ALICE_TWIN}/observations", json={"rows": glucose_rows}, headers=alice
    )
    assert answer.status_code == 200, answer.text
    service.engine.fit(ALICE_TWIN, model="linear_ar")
    return alice


# -- login ----------------------------------------------------------------------------------


def test_login_sets_an_httponly_secure_strict_cookie_and_opens_the_twin_list(
    web: TestClient, state_with_forecast: Headers
) -> None:
    # Execute
    answer = log_in(web, state_with_forecast)
    listed = web.get("/twins")

    # Assert
    assert answer.status_code == 303
    assert answer.headers["location"] == "/twins"
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith("twinkit_session=")
    )
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags
    assert listed.status_code == 200
    assert f'href="/twins/{ALICE_TWIN}"' in listed.text
    assert listed.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in listed.headers["content-security-policy"]


def test_the_cookie_drops_secure_only_when_settings_say_so(
    make_client: Callable[..., TestClient], admin: Headers
) -> None:
    client = make_client(cookie_secure=False)
    token = client.post("/v1/owners", json={"name": "alice"}, headers=admin).json()["token"]
    answer = log_in(client, {"Authorization": f"Bearer {token}"})
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith("twinkit_session=")
    )
    assert "httponly" in cookie.lower()
    assert "secure" not in cookie.lower()
    assert client.get("/twins").status_code == 200


@pytest.mark.parametrize("case", ["unknown token", "not a token", "admin token"])
def test_a_wrong_token_is_refused_and_sets_no_session(
    web: TestClient, state_with_forecast: Headers, admin: Headers, case: str
) -> None:
    # Prepare
    token = {
        "unknown token": "twk_" + "A" * 43,
        "not a token": "tok en!",
        "admin token": token_of(admin),
    }[case]
    form = web.get("/login")

    # Execute
    answer = web.post(
        "/login", data={"token": token, "csrf_token": csrf_in(form.text)}, follow_redirects=False
    )

    # Assert
    assert answer.status_code == 401
    assert 'id="login-error"' in answer.text
    assert not any(c.startswith("twinkit_session=") for c in answer.headers.get_list("set-cookie"))
    assert web.get("/twins", follow_redirects=False).headers["location"] == "/login"


@pytest.mark.parametrize("csrf", [None, "wrong"])
def test_login_without_the_right_csrf_token_is_403(
    web: TestClient, state_with_forecast: Headers, csrf: str | None
) -> None:
    web.get("/login")  # sets the login CSRF cookie
    data = {"token": token_of(state_with_forecast)}
    if csrf is not None:
        data["csrf_token"] = csrf
    answer = web.post("/login", data=data, follow_redirects=False)
    assert answer.status_code == 403
    assert web.get("/twins", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "path",
    ["/twins", f"/twins/{ALICE_TWIN}", f"/twins/{ALICE_TWIN}/label", "/twins/x/label/status"],
)
def test_pages_without_a_session_lead_to_the_login_form(
    web: TestClient, state_with_forecast: Headers, path: str
) -> None:
    answer = web.get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"
    assert "marker-" not in answer.text


def test_a_stale_cookie_is_cleared(web: TestClient, state_with_forecast: Headers) -> None:
    stale = {"cookie": "twinkit_session=" + "B" * 43}  # a session the store forgot, say
    answer = web.get("/twins", headers=stale, follow_redirects=False)
    assert answer.headers["location"] == "/login"
    assert any(
        c.startswith("twinkit_session=") and "max-age=0" in c.lower()
        for c in answer.headers.get_list("set-cookie")
    )


def test_logout_needs_the_csrf_token_and_ends_the_session(
    web: TestClient, state_with_forecast: Headers
) -> None:
    log_in(web, state_with_forecast)
    csrf = csrf_in(web.get("/twins").text)
    refused = web.post("/logout", data={"csrf_token": "x" * 64}, follow_redirects=False)
    assert refused.status_code == 403
    assert web.get("/twins").status_code == 200
    done = web.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303
    assert web.get("/twins", follow_redirects=False).headers["location"] == "/login"


# -- one owner never sees another's twin ---------------------------------------------------


def test_another_owners_twin_pages_answer_exactly_as_a_missing_twin(
    web: TestClient,
    service: ServiceState,
    state_with_forecast: Headers,
    new_owner: Callable[[str], Headers],
) -> None:
    # Prepare: Bob logs in
    log_in(web, new_owner("bob"))
    csrf = csrf_in(web.get("/twins").text)
    gets = [
        f"/twins/{ALICE_TWIN}",
        f"/twins/{ALICE_TWIN}/label",
        f"/twins/{ALICE_TWIN}/label/status",
    ]
    posts = [f"/twins/{ALICE_TWIN}/label", f"/twins/{ALICE_TWIN}/label/ask"]

    def visit() -> list[httpx.Response]:
        return [web.get(p) for p in gets] + [
            web.post(p, data={"csrf_token": csrf, "label:i000": "a"}) for p in posts
        ]

    # Execute: Alice's twin, then the same id once it is gone
    theirs = visit()
    listed = web.get("/twins")
    service.engine.delete_twin(ALICE_TWIN)
    missing = visit()

    # Assert
    for answer, gone in zip(theirs, missing, strict=True):
        assert answer.status_code == 404, answer.request.url
        assert answer.content == gone.content
        assert "marker-" not in answer.text
        assert f"no twin &#39;{ALICE_TWIN}&#39;" in answer.text
    assert ALICE_TWIN not in listed.text
    assert service.engine.jobs.of_twin(ALICE_TWIN) == []


def test_forms_without_the_sessions_csrf_token_are_403_and_change_nothing(
    web: TestClient,
    service: ServiceState,
    decision_owner: Headers,
    new_owner: Callable[[str], Headers],
) -> None:
    # Prepare: Bob's CSRF token is not Alice's
    log_in(web, new_owner("bob"))
    bobs = csrf_in(web.get("/twins").text)
    log_in(web, decision_owner)
    before = service.engine.twin_summary(DONOR)["decisions"]

    for csrf in (None, "", "0" * 64, bobs):
        data = {"label:i000": "a"} if csrf is None else {"csrf_token": csrf, "label:i000": "a"}
        for path in (f"/twins/{DONOR}/label", f"/twins/{DONOR}/label/ask", "/logout"):
            # Execute
            answer = web.post(path, data=data, follow_redirects=False)

            # Assert
            assert answer.status_code == 403, (path, csrf)
            assert "CSRF" in answer.text
    assert service.engine.jobs.of_twin(DONOR) == []
    assert service.engine.twin_summary(DONOR)["decisions"] == before
    assert web.get("/twins").status_code == 200  # still logged in


# -- the twin page --------------------------------------------------------------------------


def test_the_twin_page_draws_the_fan_chart_counts_versions_and_provenance(
    web: TestClient, state_with_forecast: Headers
) -> None:
    # Prepare
    log_in(web, state_with_forecast)

    # Execute
    page = web.get(f"/twins/{ALICE_TWIN}")

    # Assert
    assert page.status_code == 200
    html = page.text
    for part in ("band", "median", "actual"):
        found = re.search(rf'<path class="{part}" d="([^"]*)"', html)
        assert found and found.group(1).startswith("M"), part
    assert re.search(r'<path class="band" d="[^"]+ Z"', html)
    assert re.search(r'id="count-observations">\d{3,}<', html)
    assert 'id="count-quarantined">0<' in html
    assert "<td>v1</td><td>linear_ar</td>" in html
    for event in ("twin_created", "batch_ingested", "model_registered"):
        assert f"<td>{event}</td>" in html
    # the ledger in words, each entry's record and full hash on demand
    assert "Created as a state twin recording glucose (mg/dL), carbs (g)." in html
    assert re.search(r"Received \d+ rows[^<]*: \d+ stored, 0 held in quarantine", html)
    assert "Model v1 now serves (automatically)" in html
    assert re.search(r'<details class="raw"><summary>record and hash</summary>\s*'
                     r'<p><code class="hash">[0-9a-f]{64}</code>', html)  # fmt: skip


def _fitted_on_36_hours(
    web: TestClient,
    service: ServiceState,
    state_twin: Callable[[str, str], Headers],
    glucose_rows: list[dict[str, Any]],
) -> tuple[Headers, list[dict[str, Any]]]:
    """Alice's twin with its first 36 hours of glucose, fitted (linear_ar), alice logged in
    on ``web``; her headers and the 3 hours of readings after those."""
    alice = state_twin("alice", ALICE_TWIN)
    glucose = [r for r in glucose_rows if r["channel"] == "glucose"]
    url = f"/v1/twins/{ALICE_TWIN}/observations"
    assert web.post(url, json={"rows": glucose[:432]}, headers=alice).status_code == 200
    service.engine.fit(ALICE_TWIN, model="linear_ar")
    log_in(web, alice)
    return alice, glucose[432:468]


def test_the_twin_page_shows_live_accuracy_once_readings_score_its_forecasts(
    web: TestClient,
    service: ServiceState,
    state_twin: Callable[[str, str], Headers],
    glucose_rows: list[dict[str, Any]],
) -> None:
    # Prepare: fitted on the first 36 hours; the page serves a forecast; 3 hours arrive
    alice, rest = _fitted_on_36_hours(web, service, state_twin, glucose_rows)
    url = f"/v1/twins/{ALICE_TWIN}/observations"
    before = web.get(f"/twins/{ALICE_TWIN}").text
    assert "No served forecast has been scored yet" in before
    assert web.post(url, json={"rows": rest}, headers=alice).status_code == 200

    # Execute
    page = web.get(f"/twins/{ALICE_TWIN}")

    # Assert: the panel's table and chart, against the holdout the version was promoted with
    assert page.status_code == 200
    html = page.text
    assert 'id="health"' in html and 'id="live"' in html
    assert re.search(r"<td>v1</td><td>served</td><td>\+30 min</td><td>\d+</td>", html)
    served = re.search(r'<svg id="live-chart".*?<path class="median" d="([^"]*)"', html, re.S)
    assert served is not None and served.group(1).startswith("M")
    assert "holdout RMSE at promotion" in html


def test_the_twin_page_shows_the_live_band_that_serves(
    web: TestClient,
    service: ServiceState,
    state_twin: Callable[[str, str], Headers],
    glucose_rows: list[dict[str, Any]],
) -> None:
    _fitted_on_36_hours(web, service, state_twin, glucose_rows)
    assert 'id="live-band"' not in web.get(f"/twins/{ALICE_TWIN}").text
    key = service.engine.get_twin(f"alice/{ALICE_TWIN}").key
    with service.engine.store.write() as conn:  # as the monitor's calibrate stores it
        model_versions.set_live_band(conn, key, 1, {30: 1.5, 60: 1.75})

    html = web.get(f"/twins/{ALICE_TWIN}").text

    assert 'id="live-band"' in html
    assert "x1.50 at +30 min, x1.75 at +60 min" in html


def test_a_twin_without_a_model_says_so_instead_of_a_chart(
    web: TestClient, state_twin: Callable[[str, str], Headers]
) -> None:
    log_in(web, state_twin("alice", ALICE_TWIN))
    page = web.get(f"/twins/{ALICE_TWIN}")
    assert page.status_code == 200
    assert 'id="no-forecast"' in page.text
    assert "fan-chart" not in page.text


def test_the_fan_chart_puts_the_band_around_the_median_from_the_last_reading() -> None:
    # Prepare: an hour of readings at 100, a forecast rising to 130 with a +-20 band
    origin = pd.Timestamp("2026-01-05T12:00:00Z")
    past = pd.date_range(origin - pd.Timedelta(hours=1), origin, freq="5min")
    times = pd.DatetimeIndex([origin + pd.Timedelta(minutes=m) for m in (30, 60)])
    median = np.array([115.0, 130.0])

    # Execute
    chart = fan_chart(
        past, np.full(len(past), 100.0), origin, times, median, median - 20, median + 20
    )

    # Assert: paths start where the readings end; the band is closed; higher is up
    def points(path: str) -> list[tuple[float, float]]:
        return [(float(x), float(y)) for x, y in re.findall(r"[ML]([\d.]+),([\d.]+)", path)]

    actual, med, band = points(chart.actual), points(chart.median), points(chart.band)
    assert actual[-1] == med[0] == band[0]
    assert chart.band.endswith("Z")
    assert len(band) == 2 * len(med)
    assert med[-1][1] < med[0][1]  # 130 is drawn above 100
    upper, lower = band[: len(med)], band[len(med) :][::-1]
    for (xu, yu), (xm, ym), (xl, yl) in zip(upper, med, lower, strict=True):
        assert xu == xm == xl
        assert yu <= ym <= yl
    assert [t.label for t in chart.x_ticks] == ["11:00", "12:00", "13:00"]  # the clock, UTC
    assert chart.x_label == "time (UTC)"


def test_the_fan_chart_reads_as_a_clinician_expects() -> None:
    # Prepare: glucose around 100-130 mg/dL in the evening in Berlin, crossing midnight
    origin = pd.Timestamp("2026-01-05T22:30:00Z")  # 23:30 in Berlin (UTC+1)
    past = pd.date_range(origin - pd.Timedelta(hours=3), origin, freq="5min")
    times = pd.DatetimeIndex([origin + pd.Timedelta(minutes=m) for m in (30, 60, 90)])
    median = np.array([115.0, 125.0, 130.0])

    # Execute
    chart = fan_chart(
        past, np.full(len(past), 100.0), origin, times, median, median - 20, median + 20,
        zone="Europe/Berlin", target_range=(70.0, 180.0), hypo=70.0,
        y_label="glucose (mg/dL)",
    )  # fmt: skip

    # Assert: clock times of Berlin, the date at midnight; the value axis reaches the
    # whole target range although the data stay within it; the hypo line is its floor
    labels = [t.label for t in chart.x_ticks]
    assert labels[:3] == ["21:00", "22:00", "23:00"] and "Jan 06" in labels
    assert chart.x_label == "time (Europe/Berlin)" and chart.y_label == "glucose (mg/dL)"
    values = [float(t.label) for t in chart.y_ticks]
    assert min(values) <= 70 and max(values) >= 180
    _, top, _, bottom = chart.plot
    assert chart.target is not None and chart.hypo_y is not None
    high_px, low_px = chart.target
    assert top <= high_px < low_px <= bottom
    assert chart.hypo_y == low_px  # 70 mg/dL: the range's floor is the hypo line


def test_the_twin_page_labels_its_axes_and_warns_when_the_data_are_old(
    web: TestClient, state_with_forecast: Headers
) -> None:
    log_in(web, state_with_forecast)
    html = web.get(f"/twins/{ALICE_TWIN}").text
    assert 'id="y-label"' in html and "glucose (mg/dL)</text>" in html
    assert "time (UTC)</text>" in html
    assert '<rect class="target"' in html and '<line class="hypo"' in html
    # the synthetic readings are from January 2026: long before the page is asked for
    stale = re.search(r'<p class="warning" id="stale">The last reading is ([^<]+) old', html)
    assert stale and " d " in stale.group(1)


def test_fresh_readings_in_mmol_show_their_range_in_the_twins_zone(
    web: TestClient, client: TestClient, service: ServiceState, new_owner: Callable[[str], Headers]
) -> None:
    # Prepare: a twin kept in mmol/L, in New York, with readings up to a few minutes ago
    bob = new_owner("bob")
    twin = {"id": "p-mmol", "kind": "state", "metadata": {"tz": "America/New_York"},
            "channels": [{"name": "glucose", "unit": "mmol/L", "low": 1, "high": 40}]}  # fmt: skip
    assert client.post("/v1/twins", json=twin, headers=bob).status_code == 201
    end = pd.Timestamp.now(tz="UTC").floor("5min")
    times = pd.date_range(end - pd.Timedelta(hours=30), end, freq="5min")
    level = 6.5 + 1.5 * np.sin(np.arange(len(times)) / 20)
    rows = [{"time": t.isoformat(), "channel": "glucose", "value": float(v)}
            for t, v in zip(times, level, strict=True)]  # fmt: skip
    answer = client.post("/v1/twins/p-mmol/observations", json={"rows": rows}, headers=bob)
    assert answer.status_code == 200, answer.text
    service.engine.fit("bob/p-mmol", model="linear_ar")
    log_in(web, bob)

    # Execute
    html = web.get("/twins/p-mmol").text

    # Assert: no stale warning; mmol/L on the axis; New York's clock
    assert 'id="stale"' not in html
    assert "glucose (mmol/L)</text>" in html and "time (America/New_York)</text>" in html
    assert "America/New_York" in html


def test_an_image_twins_items_are_shown_as_pngs() -> None:
    # Prepare: a 2 x 3 image whose pixels are named p0..p5 (p10-style names sort naturally)
    features = {f"p{i}": i / 5 for i in range(6)}

    # Execute
    image = item_image((2, 3), features)

    # Assert
    assert image is not None
    assert image.png.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(image.png.split(",", 1)[1])))
    assert decoded.size == (3, 2)
    assert np.asarray(decoded).ravel().tolist() == [0, 51, 102, 153, 204, 255]  # row by row
    assert item_image((2, 2), features) is None
    assert item_image(None, features) is None


# -- the clone: API and labeling page -------------------------------------------------------


def test_clone_routes_ask_answer_and_refuse_what_was_not_asked(
    web: TestClient,
    service: ServiceState,
    decision_owner: Headers,
    new_owner: Callable[[str], Headers],
) -> None:
    # Prepare: Bob's annotator labels other items; they must never reach Alice's clone
    alice = decision_owner
    bob = new_owner("bob")
    assert web.post("/v1/twins", json={"id": "bob-p", "kind": "decision"}, headers=bob).is_success
    bobs = decision_frame(40, seed=5).assign(item_id=lambda f: "bob-" + f["item_id"], label="z")
    upload(web, "bob-p", bobs, bob)
    base = f"/v1/twins/{DONOR}/clone"

    # Execute: nothing asked yet, then an update that asks three questions
    empty = web.get(f"{base}/queries", headers=alice).json()
    started = web.post(f"{base}/queries", json={"k": 3, "seed": 1}, headers=alice)
    view = wait_for_clone(web, DONOR, alice)

    # Assert
    assert empty["queries"] == [] and empty["updating"] is False and empty["job"] is None
    assert empty["classes"] == CLASSES
    assert started.status_code == 202
    assert started.json()["kind"] == "clone"
    assert len(view["queries"]) == 3
    assert not [q for q in view["queries"] if q["item_id"].startswith("bob-")]
    assert view["classes"] == CLASSES  # Bob's "z" did not train Alice's prior
    assert view["labels"] == 6
    for q in view["queries"]:
        assert q["clone_says"] in CLASSES
        assert q["confidence"] == pytest.approx(max(q["proba"].values()))
        assert sum(q["proba"].values()) == pytest.approx(1.0)
        assert set(q["features"]) == {"f1", "f2"}
        assert q["image"] is None

    # Execute: bad answers are refused whole, with the row and column at fault
    first = view["queries"][0]["item_id"]
    bad = web.post(
        f"{base}/answers",
        json={"answers": [{"item_id": first, "label": "a"}, {"item_id": "i039", "label": "zzz"}]},
        headers=alice,
    )
    unknown_label = web.post(
        f"{base}/answers", json={"answers": [{"item_id": first, "label": "zzz"}]}, headers=alice
    )
    state_twin = web.post(
        "/v1/twins", json={"id": "s1", "kind": "state"}, headers=alice
    ).status_code
    on_state = web.get("/v1/twins/s1/clone/queries", headers=alice)

    # Assert
    assert bad.status_code == 422
    assert bad.json()["error"]["problems"][0]["row"] == 2
    assert bad.json()["error"]["problems"][0]["column"] == "item_id"
    assert unknown_label.status_code == 422
    assert unknown_label.json()["error"]["problems"][0]["column"] == "label"
    assert service.engine.twin_summary(DONOR)["decisions"] == 6
    assert state_twin == 201
    assert on_state.status_code == 400

    # Execute: two good answers
    answers = [{"item_id": q["item_id"], "label": "c"} for q in view["queries"][:2]]
    posted = web.post(f"{base}/answers", json={"answers": answers, "k": 3}, headers=alice)
    again = web.post(f"{base}/answers", json={"answers": answers[:1]}, headers=alice)
    after = wait_for_clone(web, DONOR, alice)

    # Assert: stored as decisions (through the ingest pipeline and ledger), then new questions
    assert posted.status_code == 202, posted.text
    assert posted.json()["ingest"]["n_stored"] == 2
    assert posted.json()["job"]["kind"] == "clone"
    assert again.status_code == 422  # answered already
    assert service.engine.twin_summary(DONOR)["decisions"] == 8
    assert after["labels"] == 8
    ids = [q["item_id"] for q in after["queries"]]
    assert len(ids) == 3
    assert not {a["item_id"] for a in answers} & set(ids)
    assert view["queries"][2]["item_id"] in ids
    sources = [e.payload.get("source") for e in service.engine.history(DONOR)]
    assert "api:alice:answers" in sources


def test_the_labeling_page_posts_labels_and_shows_the_clones_next_questions(
    web: TestClient, service: ServiceState, new_donor_owner: Headers
) -> None:
    # Prepare: log in and ask the clone for its questions from the page
    decision_owner = new_donor_owner
    log_in(web, decision_owner)
    empty = web.get(f"/twins/{DONOR}/label")
    asked = web.post(
        f"/twins/{DONOR}/label/ask",
        data={"csrf_token": csrf_in(empty.text)},
        follow_redirects=False,
    )
    wait_for_clone(web, DONOR, decision_owner)
    page = web.get(f"/twins/{DONOR}/label")
    before = item_ids(page.text)

    # Execute: label three of them
    chosen = before[:3]
    form = {"csrf_token": csrf_in(page.text), **{f"label:{i}": "b" for i in chosen}}
    form[f"label:{before[3]}"] = ""  # skipped
    posted = web.post(f"/twins/{DONOR}/label", data=form, follow_redirects=False)
    meanwhile = web.get(f"/twins/{DONOR}/label")
    wait_for_clone(web, DONOR, decision_owner)
    after = item_ids(web.get(f"/twins/{DONOR}/label").text)

    # Assert
    assert 'id="no-questions"' in empty.text
    assert asked.status_code == 303
    assert len(before) == 5
    assert "The clone guesses" in page.text
    # a probability is shown as the model's, never "100% sure", against what was measured
    assert "% sure" not in page.text and "100%" not in page.text
    assert "its probability" in page.text
    assert re.search(
        r"not yet checked against your answers|agreed with \d+% of your \d+ held-out", page.text
    )
    assert posted.status_code == 303
    assert posted.headers["location"] == f"/twins/{DONOR}/label"
    assert item_ids(meanwhile.text) == before[3:]
    assert 'data-updating="true"' in meanwhile.text
    assert len(after) == 5
    assert not set(chosen) & set(after)
    assert set(after) != set(before[3:])
    stored = service.engine.decisions(DONOR)
    assert set(chosen) <= set(stored["item_id"])
    assert set(stored.loc[stored["item_id"].isin(chosen), "label"]) == {"b"}


def test_the_labeling_page_shows_problems_instead_of_storing_them(
    web: TestClient, service: ServiceState, decision_owner: Headers
) -> None:
    log_in(web, decision_owner)
    csrf = csrf_in(web.get("/twins").text)
    nothing = web.post(f"/twins/{DONOR}/label", data={"csrf_token": csrf})
    not_asked = web.post(f"/twins/{DONOR}/label", data={"csrf_token": csrf, "label:i030": "a"})
    assert nothing.status_code == 422
    assert "pick a label" in nothing.text
    assert not_asked.status_code == 422
    assert "was not asked" in not_asked.text
    assert service.engine.twin_summary(DONOR)["decisions"] == 6


def test_a_decision_twin_is_fitted_and_decides_over_http_for_its_owner_only(
    client: TestClient,
    new_owner: Callable[[str], Headers],
    finished_job: Callable[[TestClient, str, Headers], dict[str, Any]],
) -> None:
    # Prepare: alice's annotators and a donor with 30 biased labels; bob, another owner
    alice = decision_twins(client, new_owner("alice"), donor_labels=30)
    bob = new_owner("bob")
    items = {
        "items": [
            {"item_id": "q0", "features": {"f1": 0.5, "f2": 2.0}},
            {"item_id": "q1", "features": {"f1": 2.5, "f2": 0.5}},
        ]
    }

    # Execute
    before = client.post(f"/v1/twins/{DONOR}/decide", json=items, headers=alice)
    started = client.post(f"/v1/twins/{DONOR}/fit", json={"model": "auto"}, headers=alice)
    job = finished_job(client, f"/v1/twins/{DONOR}/jobs/{started.json()['id']}", alice)
    answer = client.post(f"/v1/twins/{DONOR}/decide", json=items, headers=alice)
    his = client.post(f"/v1/twins/{DONOR}/decide", json=items, headers=bob)
    missing = {"items": [{"item_id": "q0", "features": {"f1": 0.5}}]}
    refused = client.post(f"/v1/twins/{DONOR}/decide", json=missing, headers=alice)
    other_model = client.post(f"/v1/twins/{DONOR}/fit", json={"model": "gp"}, headers=alice)

    # Assert
    assert before.status_code == 404  # no serving clone yet
    assert job["status"] == "done", job
    assert (job["result"]["model"], job["result"]["version"]) == ("clone", 1)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["twin_id"], body["version"], body["degraded"]) == (DONOR, 1, False)
    assert [d["item_id"] for d in body["decisions"]] == ["q0", "q1"]
    assert all(d["label"] in CLASSES for d in body["decisions"])
    assert his.status_code == 404
    assert refused.status_code == 422
    assert refused.json()["error"]["problems"][0]["column"] == "f2"
    assert other_model.status_code == 400
    models = client.get(f"/v1/twins/{DONOR}/models", headers=alice).json()
    assert [(m["version"], m["model"], m["status"]) for m in models] == [(1, "clone", "serving")]

    # Execute: 20 more answers, a second fit, then a rollback
    more = decision_frame(20, seed=5, bias=True).assign(item_id=[f"m{i:03d}" for i in range(20)])
    upload(client, DONOR, more, alice)
    second = client.post(f"/v1/twins/{DONOR}/fit", json={"model": "auto"}, headers=alice)
    job2 = finished_job(client, f"/v1/twins/{DONOR}/jobs/{second.json()['id']}", alice)
    serving = [
        m["version"]
        for m in client.get(f"/v1/twins/{DONOR}/models", headers=alice).json()
        if m["status"] == "serving"
    ]
    rolled = client.post(f"/v1/twins/{DONOR}/models/rollback", headers=alice)

    # Assert: v2 serves only if the gate let it; a rollback then serves v1 again
    assert job2["status"] == "done", job2
    assert serving == ([2] if job2["result"]["promoted"] else [1])
    if job2["result"]["promoted"]:
        assert rolled.json() == {"version": 1}
        decided = client.post(f"/v1/twins/{DONOR}/decide", json=items, headers=alice)
        assert decided.json()["version"] == 1
    else:
        assert rolled.status_code == 409  # nothing served before v1


def test_item_images_are_drawn_at_a_readable_size_and_probabilities_never_certain() -> None:
    from types import SimpleNamespace

    from twinkit.service.pages.views import _image_scale, sure

    def view(side: int) -> SimpleNamespace:
        image = SimpleNamespace(width=side, height=side)
        return SimpleNamespace(queries=[SimpleNamespace(image=image)])

    assert _image_scale(view(8)) * 8 >= 160  # sklearn's 8x8 digits
    assert _image_scale(view(28)) * 28 >= 160  # MNIST
    assert _image_scale(SimpleNamespace(queries=[])) == 4
    assert [sure(p) for p in (1.0, 0.999, 0.5, 0.0)] == [">99%", ">99%", "50%", "<1%"]
