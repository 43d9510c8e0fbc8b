"""End to end in headless Chromium against a real server on loopback: log in, see a twin's
fan chart drawn, answer three of the clone's questions and see its questions change.

Needs Debian's ``chromium`` at /usr/bin/chromium (driven by Playwright, never
``playwright install``). Without it the tests skip, except in CI (``CI=true``), which
installs it: there they fail, so a missing browser cannot pass unnoticed.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from matplotlib.image import imread
from pydantic import SecretStr

from twinkit.engine import TwinEngine
from twinkit.service import ServiceSettings, create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ADMIN_TOKEN = "admin-token-for-browser-tests-" + "y" * 32
STATE_TWIN = "p-007"
DONOR = "donor"
CLONE_UPDATE_MS = 600_000  # a clone update trains small networks; a loaded machine is slow


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing in CI: .ci/run must install Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return CHROMIUM


def decision_frame(n: int) -> pd.DataFrame:
    """``n`` items on two features, labelled "a", "b" or "c" by a threshold on ``f1``."""
    x = np.random.default_rng(0).uniform(0.0, 3.0, (n, 2))
    labels = np.where(x[:, 0] < 1.0, "a", np.where(x[:, 0] < 2.0, "b", "c"))
    return pd.DataFrame(
        {"item_id": [f"i{i:03d}" for i in range(n)], "f1": x[:, 0], "f2": x[:, 1], "label": labels}
    )


@pytest.fixture
def server(store_url: str) -> Iterator[str]:
    """``uvicorn`` serving the app over the test's store on a free loopback port; its URL."""
    fields: dict[str, Any] = {"admin_token": SecretStr(ADMIN_TOKEN)}
    settings = ServiceSettings(**fields)
    app = create_app(store_url, settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=60)
    sock.close()
    app.state.twinkit.engine.store.dispose()


@pytest.fixture
def alice_token(server: str, store_url: str, glucose_rows: list[dict[str, Any]]) -> str:
    """Alice, over HTTP: a state twin with two days of glucose (and a model fitted on them),
    two annotators' decisions and a donor without any; her token."""
    with httpx.Client(base_url=server, timeout=60) as http:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        token = str(http.post("/v1/owners", json={"name": "alice"}, headers=admin).json()["token"])
        alice = {"Authorization": f"Bearer {token}"}
        twin = {"id": STATE_TWIN, "kind": "state", "channels": [{"name": "glucose"}]}
        assert http.post("/v1/twins", json=twin, headers=alice).status_code == 201
        rows = [r for r in glucose_rows if r["channel"] == "glucose"]
        posted = http.post(
            f"/v1/twins/{STATE_TWIN}/observations", json={"rows": rows}, headers=alice
        )
        assert posted.status_code == 200, posted.text
        # The donor has no labels yet, so the first clone update trains only the prior.
        for name, frame in [("p1", decision_frame(40)), ("p2", decision_frame(40)), (DONOR, None)]:
            twin = {"id": name, "kind": "decision"}
            assert http.post("/v1/twins", json=twin, headers=alice).status_code == 201
            if frame is not None:
                file = {"file": ("d.csv", frame.to_csv(index=False).encode())}
                answer = http.post(
                    f"/v1/twins/{name}/observations/upload", files=file, headers=alice
                )
                assert answer.status_code == 200, answer.text
    engine = TwinEngine(store_url)
    engine.fit(STATE_TWIN, model="linear_ar")
    engine.store.dispose()
    return token


def test_log_in_see_the_chart_and_label_three_questions(
    chromium: Path, server: str, alice_token: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})

            # Execute: log in
            page.goto(f"{server}/twins")
            assert page.url == f"{server}/login"
            page.fill("#token", alice_token)
            page.click("form.login button[type=submit]")
            page.wait_for_url(f"{server}/twins")
            cookies = {c["name"]: c for c in page.context.cookies()}

            # Assert: the session cookie is out of scripts' reach, and not the token
            session = cookies["twinkit_session"]
            assert session["value"] != alice_token
            assert session["httpOnly"] and session["secure"]
            assert session["sameSite"] == "Strict"
            assert page.evaluate("document.cookie") == ""

            # Execute: open the state twin's page
            page.click(f"a[href='/twins/{STATE_TWIN}']")
            page.wait_for_selector("#fan-chart path.band")
            drawn = page.eval_on_selector_all(
                "#fan-chart path",
                "ps => ps.map(p => [p.getAttribute('class'), p.getAttribute('d'),"
                " p.getBBox().width, p.getBBox().height])",
            )
            page.screenshot(path=str(tmp_path / "twin.png"), full_page=True)

            # Assert: band, median and readings are drawn, with a real extent on screen
            by_class = {c: (d, w, h) for c, d, w, h in drawn}
            assert set(by_class) == {"band", "median", "actual"}
            for name, (d, width, _) in by_class.items():
                assert d.startswith("M") and len(d) > 20, name
                assert width > 50, name
            assert by_class["band"][2] > 0  # an area, not a line
            assert (tmp_path / "twin.png").stat().st_size > 10_000

            # Assert: what a clinician reads on the chart: clock times, the unit, the
            # target range (its colour is in the screenshot) and the hypoglycaemia line
            ticks = page.eval_on_selector_all(
                "#fan-chart text.x", "ts => ts.map(t => t.textContent)"
            )
            assert ticks and all(re.fullmatch(r"\d{2}:\d{2}|[A-Z][a-z]{2} \d{2}", t) for t in ticks)
            assert "(mg/dL)" in (page.text_content("#fan-chart #y-label") or "")
            target = page.eval_on_selector(
                "#fan-chart rect.target", "r => r.getBoundingClientRect().height"
            )
            assert target > 20
            assert (
                page.eval_on_selector(
                    "#fan-chart line.hypo", "l => l.getBoundingClientRect().width"
                )
                > 100
            )
            pixels = (imread(tmp_path / "twin.png")[..., :3] * 255).round()
            green = np.all(np.abs(pixels - np.array([220, 242, 227])) <= 2, axis=-1)
            assert green.sum() > 5_000  # the target range's band is on the screen

            # Execute: the donor's page; ask the clone, wait for its questions
            page.goto(f"{server}/twins/{DONOR}/label")
            page.click("#ask-button")
            page.wait_for_selector("li.query", timeout=CLONE_UPDATE_MS)
            page.wait_for_selector("#clone-status[data-updating='false']")
            before = page.eval_on_selector_all("li.query", "ls => ls.map(l => l.dataset.item)")

            # Execute: answer three of them
            for item in before[:3]:
                page.check(f"li.query[data-item='{item}'] input[value='c']")
            page.click("#send-answers")
            page.wait_for_selector("#clone-status[data-updating='true']")
            meanwhile = page.eval_on_selector_all("li.query", "ls => ls.map(l => l.dataset.item)")
            # The page's script reloads it when the clone has learned from the answers.
            page.wait_for_selector("#clone-status[data-updating='false']", timeout=CLONE_UPDATE_MS)
            after = page.eval_on_selector_all("li.query", "ls => ls.map(l => l.dataset.item)")
            page.screenshot(path=str(tmp_path / "label.png"), full_page=True)
        finally:
            browser.close()

    # Assert: the answered questions left, new ones came
    assert len(before) == 5
    assert meanwhile == before[3:]
    assert len(after) == 5
    assert not set(before[:3]) & set(after)
    assert set(after) - set(before)
