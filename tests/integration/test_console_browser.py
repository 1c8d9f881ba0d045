"""The console page in headless Debian chromium: log in, see the case, acknowledge, watch the state change."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from alerting import keys
from alerting.audit import Actor
from alerting.console import write_demo_tokens
from alerting.decision import Decision
from alerting.dispatcher import Dispatcher
from alerting.lifecycle import TaskLifecycle
from alerting.service import DispatchService, start_console
from core.settings import Settings
from sandbox.services import RunningService

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
HOME = (31.2304, 121.4737)
KM_LAT = 1 / 111.2
T0 = 1_700_000_000_000

if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed (scripts/setup.sh installs it)", allow_module_level=True)
playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is not installed (pip install -e .[dev])"
)


async def test_dispatcher_acknowledges_a_task_in_the_browser(
    r: aioredis.Redis, redis_server: RunningService, tmp_path: Path
) -> None:
    tokens = write_demo_tokens(tmp_path)
    settings = Settings(console_tokens_file=tokens.path, responder_search_radii_km=(2.0, 5.0, 10.0))
    dispatcher = Dispatcher(r, settings)
    await dispatcher.registry.load(
        [
            {"responder_id": rid, "kind": kind, "unit": "U1", "lat": HOME[0] + km * KM_LAT, "lon": HOME[1] + km / 150,
             "status": "available"}
            for rid, kind, km in (("p-17", "police", 0.6), ("g-4", "grid_worker", 2.5), ("p-22", "police", -3.0))
        ]
    )  # fmt: skip
    phone = "+8613800004001"
    task = await dispatcher.handle(
        Decision(
            phone,
            "e-browser-1",
            T0,
            0.97,
            3,
            "m-browser",
            ("caller claims to be police and demands a 'safe account' transfer", "first call from a virtual number"),
            *HOME,
        )
    )
    assert task is not None and task["responder_id"] == "p-17"
    tid = task["task_id"]

    console: DispatchService = await start_console(settings, redis_server.url, watch_acks=False)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        async with playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 860})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(console.url + "/")
                await page.fill("#token", tokens.dispatcher)
                await page.click("#login-button")

                row = page.locator(f'tr[data-case-key="{task["case_key"]}"]')
                await row.wait_for(timeout=10_000)
                assert await row.locator("td.subscriber").inner_text() == phone
                assert "safe account" in await row.inner_text()
                state = page.locator(f'div[data-task-id="{tid}"] .task-state')
                assert await state.inner_text() == "assigned"
                await page.locator("#live.on").wait_for(timeout=10_000)  # the SSE stream is open
                assert await page.locator("#map circle.case").count() == 1
                assert await page.locator("#map circle.responder").count() == 3

                await page.click(f'button[data-action="acknowledged"][data-task="{tid}"]')
                await page.wait_for_function(
                    "id => document.querySelector(`div[data-task-id='${id}'] .task-state`)?.textContent"
                    " === 'acknowledged'",
                    arg=tid,
                    timeout=10_000,
                )
                assert (await TaskLifecycle(r, settings).get(tid)).state == "acknowledged"

                # A change made elsewhere (the responder's app) reaches the page through the SSE stream.
                await TaskLifecycle(r, settings).transition(tid, "en_route", Actor("officer-17", "responder"))
                await page.wait_for_function(
                    "id => document.querySelector(`div[data-task-id='${id}'] .task-state`)?.textContent === 'en route'",
                    arg=tid,
                    timeout=10_000,
                )
                await page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)
                assert errors == []
            finally:
                await browser.close()
    finally:
        await console.stop()

    audit = [(keys.text(f[b"actor"]), keys.text(f[b"action"])) for _, f in await r.xrange(keys.AUDIT)]
    assert ("demo-dispatcher", "view_cases") in audit
    assert ("demo-dispatcher", "transition:acknowledged") in audit
