"""The console page in headless Debian chromium: log in, see the case, acknowledge, watch the state change."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
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
                assert await row.locator("td.subscriber .number").inner_text() == phone
                assert "safe account" in await row.inner_text()
                state = page.locator(f'div[data-task-id="{tid}"] .task-state')
                assert await state.inner_text() == "assigned"
                await page.locator("#live.on").wait_for(timeout=10_000)  # the SSE stream is open
                assert await page.locator("#map circle.case").count() == 1
                assert await page.locator("#map circle.responder").count() == 3
                assert await page.locator('#map rect.unit[data-unit="U1"]').count() == 1  # the grid unit's area
                assert "unit U1" in (await page.locator("#map circle.case title").text_content() or "")

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
                # The case's timeline: the scored event and each step with who took it.
                await row.locator("button.timeline-button").click()
                await page.locator("#timeline-panel:not([hidden])").wait_for(timeout=10_000)
                steps = await page.locator("#timeline-actions").inner_text()
                assert "acknowledged · by demo-dispatcher" in steps and "en route · by officer-17" in steps
                assert "score 0.970 → L3" in await page.locator("#timeline-scored").inner_text()
                await page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)

                # Filters: a level with no case hides the row; back to all shows it.
                await page.select_option("#filter-level", "1")
                await row.wait_for(state="detached", timeout=5_000)
                await page.select_option("#filter-level", "")
                await page.select_option("#filter-unit", "U1")  # the case lies in U1 and p-17 of U1 is on it
                await row.wait_for(timeout=5_000)
                await page.select_option("#filter-unit", "")
                await page.fill("#filter-text", phone[-4:])
                await row.wait_for(timeout=5_000)

                # At a phone's size the queue is a column of cards that fits the screen.
                await page.set_viewport_size({"width": 390, "height": 844})
                await row.wait_for(timeout=5_000)
                width = await page.evaluate("() => document.documentElement.scrollWidth")
                assert width <= 392, f"the console overflows a phone's width ({width}px)"
                await page.screenshot(path=str(ARTIFACTS / "console-phone.png"), full_page=True)
                # Once resolved, the case is found among the closed ones by its number.
                await TaskLifecycle(r, settings).transition(
                    tid, "resolved", Actor("desk", "dispatcher"), outcome="dissuaded"
                )
                await page.fill("#closed-number", phone)
                await page.click("#closed-search")
                hit = page.locator(f'#closed-results li[data-task-id="{tid}"]')
                await hit.wait_for(timeout=10_000)
                assert "dissuaded" in await hit.inner_text()
                await row.wait_for(state="detached", timeout=10_000)  # and it left the open queue

                assert errors == []
            finally:
                await browser.close()
    finally:
        await console.stop()

    audit = [(keys.text(f[b"actor"]), keys.text(f[b"action"])) for _, f in await r.xrange(keys.AUDIT)]
    assert ("demo-dispatcher", "view_cases") in audit
    assert ("demo-dispatcher", "transition:acknowledged") in audit


async def test_a_responder_takes_a_task_on_the_phone_app_and_its_label_reaches_the_topic(
    r: aioredis.Redis, redis_server: RunningService, tmp_path: Path
) -> None:
    from aiokafka import AIOKafkaConsumer

    from sandbox.services import start_tansu
    from streams import TopicPublisher
    from streams.topics import bootstrap, create_topics

    tokens = write_demo_tokens(tmp_path, ["p-17"])
    settings = Settings(console_tokens_file=tokens.path, responder_search_radii_km=(2.0, 5.0, 10.0))
    dispatcher = Dispatcher(r, settings)
    await dispatcher.registry.load(
        [{"responder_id": "p-17", "kind": "police", "unit": "U1", "lat": HOME[0] + KM_LAT, "lon": HOME[1],
          "status": "available"}]
    )  # fmt: skip
    phone = "+8613800004002"
    broker = start_tansu()
    publisher = TopicPublisher(broker.url, "labels.v1")
    console: DispatchService | None = None
    try:
        await create_topics(bootstrap(broker.url), ["labels.v1"], 1)
        console = await start_console(settings, redis_server.url, watch_acks=False, label_sink=publisher)
        async with playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(
                    viewport={"width": 390, "height": 844},
                    device_scale_factor=2,
                    is_mobile=True,
                    has_touch=True,
                    geolocation={"latitude": HOME[0] + 2 * KM_LAT, "longitude": HOME[1]},
                    permissions=["geolocation"],
                )
                page = await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(console.url + "/app/")
                await page.fill("#app-token", tokens.responders["p-17"])
                await page.click("#app-login")
                await page.locator("#empty").wait_for(timeout=10_000)
                # The phone's position arrives by heartbeat.
                for _ in range(50):
                    seen = await dispatcher.registry.get("p-17") or {}
                    if abs(float(seen.get("lat", 0)) - (HOME[0] + 2 * KM_LAT)) < 1e-6:
                        break
                    await page.wait_for_timeout(100)
                else:
                    pytest.fail("no heartbeat with the phone's position")

                task = await dispatcher.handle(
                    Decision(phone, "e-app-1", T0, 0.96, 3, "m-app", ("caller posed as police",), *HOME)
                )
                assert task is not None and task["responder_id"] == "p-17"
                await page.locator("#task:not([hidden])").wait_for(timeout=15_000)
                assert await page.locator("#phone").inner_text() == phone  # the assigned responder needs it
                assert await page.locator("#phone").get_attribute("href") == f"tel:{phone}"
                assert (await page.locator("#map-link").get_attribute("href") or "").startswith(f"geo:{HOME[0]}")
                assert "2.0 km" in await page.locator("#distance").inner_text()
                assert "posed as police" in await page.locator("#reasons").inner_text()
                box = await page.locator("#step-acknowledged").bounding_box()
                assert box is not None and box["height"] >= 48 and box["width"] >= 300  # a thumb-sized button

                # A dead spot: the step is kept on the phone and sent once the network is back.
                await context.set_offline(True)
                await page.click("#step-acknowledged")
                await page.wait_for_function("() => document.querySelector('#queue').textContent.startsWith('1 step')")
                assert (await TaskLifecycle(r, settings).get(task["task_id"])).state == "assigned"
                await context.set_offline(False)
                sent = "() => document.querySelector('#queue').textContent === ''"
                await page.wait_for_function(sent, timeout=15_000)
                assert (await TaskLifecycle(r, settings).get(task["task_id"])).state == "acknowledged"
                await page.wait_for_function("() => document.querySelector('#state').textContent === 'acknowledged'")
                await page.screenshot(path=str(ARTIFACTS / "responder-app.png"), full_page=True)
                await page.fill("#note", "talked her out of the transfer at the door")
                await page.click('button[data-outcome="dissuaded"]')
                await page.locator("#empty:not([hidden])").wait_for(timeout=15_000)
                assert errors == []
                assert await page.evaluate("JSON.parse(localStorage.getItem('fw-app-queue') || '[]').length") == 0
            finally:
                await browser.close()

        state = await TaskLifecycle(r, settings).get(task["task_id"])
        assert state.state == "resolved" and state.outcome == "dissuaded"
        events = [orjson.loads(e) for e in await r.lrange(keys.task_events(task["task_id"]), 0, -1)]
        assert any(e.get("note") == "talked her out of the transfer at the door" for e in events)
        audit = [(keys.text(f[b"actor"]), keys.text(f[b"action"])) for _, f in await r.xrange(keys.AUDIT)]
        assert ("responder-p-17", "view_number") in audit

        consumer = AIOKafkaConsumer("labels.v1", bootstrap_servers=bootstrap(broker.url), auto_offset_reset="earliest")
        await consumer.start()
        try:
            label = None
            for _ in range(40):
                got = await consumer.getmany(timeout_ms=500)
                found = [orjson.loads(m.value) for msgs in got.values() for m in msgs]
                if found:
                    label = found[0]
                    break
        finally:
            await consumer.stop()
        assert label is not None, "no label on the labels topic"
        assert label["task_id"] == task["task_id"] and label["outcome"] == "dissuaded" and label["target"] == 1
    finally:
        if console is not None:
            await console.stop()
        await publisher.stop()
        broker.stop()
